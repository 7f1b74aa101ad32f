//! `composer run`: the daemon. It owns the control block and one event queue per station, and
//! keeps every active station composed a bounded lead ahead of what synthd has rendered.
//!
//! One thread, one loop every ~20 ms: heartbeat the control block; start a `StationRunner` for
//! each new station in the table and drop the ones whose station went away; apply parameter
//! changes (by generation); compose bars until the lead is covered; reclaim stations nobody has
//! listened to for a while (never the default ones). A failing station is logged and retried
//! later; it never stops the others.
//!
//! Process-wide concerns (signals, logging) belong to the caller: the `composer` binary and the
//! `auralis` launcher both call [`run_daemon`] and stop it through the shared flag.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use shm_proto::{ControlBlock, EventProducer, Namespace, NoteEvent, SAMPLE_RATE, StationSlot};
use tracing::{debug, error, info, warn};

use crate::composer::Composer;
use crate::metrics::metrics;
use crate::params::Params;
use crate::presets::{PresetId, preset_names};

/// How long the loop sleeps between ticks.
const TICK: Duration = Duration::from_millis(20);
/// How long a failing station waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Window of `phrase_generation_rate_hz`: long enough to hold several bars (4-6 s each).
const RATE_WINDOW: Duration = Duration::from_secs(20);

/// Options of the composer daemon. Every flag can also come from the environment variable named
/// in its help, so systemd units and the launcher configure it the same way.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct DaemonArgs {
    /// Stations kept running even without listeners, each named after its preset.
    #[arg(
        long,
        env = "AURALIS_STATIONS",
        value_delimiter = ',',
        default_value = "focus"
    )]
    pub stations: Vec<String>,
    /// How far ahead of synthd's rendering to compose, in milliseconds (composition works in
    /// whole bars, so the real lead is up to one bar more).
    #[arg(long, env = "AURALIS_COMPOSER_LEAD_MS", default_value_t = 1500)]
    pub lead_ms: u64,
    /// Shared-memory namespace (default: AURALIS_SHM_NAMESPACE, else `default`).
    #[arg(long, env = "AURALIS_SHM_NAMESPACE")]
    pub namespace: Option<String>,
    /// Station capacity of the control block.
    #[arg(long, env = "AURALIS_CONTROL_CAPACITY", default_value_t = 16)]
    pub capacity: u32,
    /// Records per station event queue (a power of two).
    #[arg(long, env = "AURALIS_EVENT_QUEUE_CAPACITY", default_value_t = 4096)]
    pub queue_capacity: u32,
    /// Seconds without listeners after which a non-default station is reclaimed.
    #[arg(long, env = "AURALIS_STATION_IDLE_SECS", default_value_t = 300)]
    pub idle_secs: u64,
    /// Seed of the default stations.
    #[arg(long, env = "AURALIS_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Unlink the control block and event queues on exit. Off by default so a restarted
    /// composer (systemd) finds its stations and progress again; the launcher turns it on.
    #[arg(long, env = "AURALIS_UNLINK_ON_EXIT")]
    pub unlink_on_exit: bool,
}

impl Default for DaemonArgs {
    /// The same values as the command line defaults (a test keeps them in step).
    fn default() -> Self {
        DaemonArgs {
            stations: vec!["focus".into()],
            lead_ms: 1500,
            namespace: None,
            capacity: 16,
            queue_capacity: 4096,
            idle_secs: 300,
            seed: 1,
            unlink_on_exit: false,
        }
    }
}

/// One station being composed: its queue, its composer, and the events not yet pushed.
#[derive(Debug)]
struct StationRunner {
    /// Station name when the runner started, to notice a slot reused by another station.
    name: String,
    /// The queue to synthd.
    producer: EventProducer,
    /// The composition.
    composer: Composer,
    /// Generation of the parameters the composer has, to apply each change once.
    generation: u64,
    /// Events of the last bar that did not fit in the queue yet (never dropped).
    pending: VecDeque<NoteEvent>,
    /// Progress to store once `pending` has drained: (next bar, its first frame).
    pending_progress: Option<(u32, u64)>,
    /// Last `last_demand_ns` seen and when it changed, measured on our own clock.
    demand: (u64, Instant),
    /// Default stations are never reclaimed.
    is_default: bool,
    /// While failing: do nothing before this instant.
    backoff_until: Option<Instant>,
    /// `composer_bars_total{station}`, resolved once (a label lookup takes a lock).
    bars: auralis_ops::prometheus::IntCounter,
    /// Value of `bars` at the start of the current rate window.
    bars_at_window: u64,
}

impl StationRunner {
    /// Opens (or adopts) the station's queue and starts or resumes its composer.
    fn start(
        ns: &Namespace,
        slot: &StationSlot,
        queue_capacity: u32,
        is_default: bool,
        parent: Option<(&str, &Composer)>,
    ) -> anyhow::Result<Self> {
        let params = Params::from_station(&slot.params).context("station parameters")?;
        let producer = EventProducer::create_or_adopt(ns, slot.index, queue_capacity)
            .with_context(|| format!("opening event queue {}", ns.events_name(slot.index)))?;
        let (bar, frame) = producer.progress();
        let composer = if bar > 0 {
            let t = Instant::now();
            let c = Composer::resume_at(params.seed, params, bar, frame);
            info!(
                station = slot.name_str(),
                bar,
                frame,
                took_ms = t.elapsed().as_millis() as u64,
                "resumed composition"
            );
            c
        } else if let Some((parent_name, parent)) = parent {
            info!(
                station = slot.name_str(),
                from = parent_name,
                bar = parent.next_bar_index(),
                "forking the music of a station with the same seed and preset"
            );
            parent.fork(params)
        } else {
            Composer::new(params.seed, params)
        };
        info!(
            station = slot.name_str(),
            index = slot.index,
            preset = %params.preset,
            key = %params.key,
            mode = %params.mode,
            bpm = params.bpm,
            intensity = params.intensity,
            "station started"
        );
        Ok(StationRunner {
            name: slot.name_str().to_owned(),
            producer,
            composer,
            generation: slot.generation,
            pending: VecDeque::new(),
            pending_progress: None,
            demand: (slot.last_demand_ns, Instant::now()),
            is_default,
            backoff_until: None,
            bars: metrics().bars.with_label_values(&[slot.name_str()]),
            bars_at_window: 0,
        })
    }

    /// Applies a parameter change published in the control block.
    fn update_params(&mut self, slot: &StationSlot) {
        if slot.generation == self.generation {
            return;
        }
        self.generation = slot.generation;
        match Params::from_station(&slot.params) {
            Ok(p) => {
                info!(station = %self.name, preset = %p.preset, key = %p.key, mode = %p.mode, bpm = p.bpm, intensity = p.intensity, "parameters changed");
                self.composer.set_params(p);
            }
            Err(e) => warn!(station = %self.name, error = %e, "ignoring invalid parameters"),
        }
    }

    /// Composes and pushes until the lead is covered or the queue is full.
    fn tick(&mut self, lead_frames: u64) -> anyhow::Result<()> {
        self.flush()?;
        let target = self.producer.consumer_clock() + lead_frames;
        let mut bar = Vec::new(); // allocates only when a bar is composed
        while self.pending.is_empty() && self.composer.composed_until_frame() < target {
            bar.clear();
            self.composer.next_bar(&mut bar);
            self.bars.inc();
            self.pending.extend(bar.iter().copied());
            self.pending_progress = Some((
                self.composer.next_bar_index(),
                self.composer.composed_until_frame(),
            ));
            self.flush()?;
        }
        self.producer.heartbeat();
        Ok(())
    }

    /// Pushes pending events in order; stops at the first refusal (queue full).
    fn flush(&mut self) -> anyhow::Result<()> {
        while let Some(e) = self.pending.front() {
            if !self.producer.push(e).context("pushing an event")? {
                debug!(station = %self.name, left = self.pending.len(), "event queue full");
                return Ok(());
            }
            self.pending.pop_front();
        }
        if let Some((bar, frame)) = self.pending_progress.take() {
            self.producer.set_progress(bar, frame);
        }
        Ok(())
    }

    /// Whether no gateway has reported listeners for `idle`.
    fn idle_for(&mut self, slot: &StationSlot, idle: Duration, now: Instant) -> bool {
        if slot.last_demand_ns != self.demand.0 {
            self.demand = (slot.last_demand_ns, now);
        }
        now.duration_since(self.demand.1) >= idle
    }
}

/// Runs the composer daemon until `shutdown` becomes true. See the module docs.
pub fn run_daemon(args: DaemonArgs, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    let ns = match &args.namespace {
        Some(name) => Namespace::new(name),
        None => Namespace::from_env(),
    }
    .context("shared-memory namespace")?;
    let control = ControlBlock::create_or_adopt(&ns, args.capacity)
        .with_context(|| format!("creating control block {}", ns.control_name()))?;
    info!(
        namespace = ns.as_str(),
        capacity = control.capacity(),
        "control block ready"
    );
    let mut notifier = auralis_ops::Notifier::from_env();

    let mut defaults = HashSet::new();
    for name in &args.stations {
        let preset = PresetId::from_name(name).ok_or_else(|| {
            anyhow!(
                "default station {name:?} is not a preset (one of {})",
                preset_names()
            )
        })?;
        let params = Params::from_preset(preset, args.seed);
        let index = control
            .ensure_station(preset.name(), params.to_station())
            .with_context(|| format!("creating default station {name}"))?;
        defaults.insert(index);
    }

    let lead_frames = args.lead_ms * u64::from(SAMPLE_RATE) / 1000;
    let idle = Duration::from_secs(args.idle_secs);
    let mut runners: HashMap<u32, StationRunner> = HashMap::new();
    let mut retry_at: HashMap<u32, Instant> = HashMap::new();
    let mut window_start = Instant::now();
    notifier.ready(&format!(
        "control block ready in namespace {}; composing {}",
        ns.as_str(),
        args.stations.join(", ")
    ));

    while !shutdown.load(Ordering::Relaxed) {
        control.heartbeat();
        notifier.watchdog();
        let now = Instant::now();
        if now.duration_since(window_start) >= RATE_WINDOW {
            report_rates(&mut runners, now.duration_since(window_start), &notifier);
            window_start = now;
        }
        let slots = control.stations();

        // Stations that went away (or whose slot now holds another station): stop and unlink.
        runners.retain(|index, r| {
            let alive = slots
                .iter()
                .any(|s| s.index == *index && s.name_str() == r.name);
            if !alive {
                info!(station = %r.name, "station removed");
                forget_metrics(&r.name);
                if let Err(e) = r.producer.unlink() {
                    warn!(station = %r.name, error = %e, "unlinking event queue");
                }
            }
            alive
        });

        for slot in &slots {
            let index = slot.index;
            if !runners.contains_key(&index) {
                if retry_at.get(&index).is_some_and(|t| now < *t) {
                    continue;
                }
                let is_default = defaults.contains(&index);
                let parent = fork_parent(&runners, slot);
                match StationRunner::start(&ns, slot, args.queue_capacity, is_default, parent) {
                    Ok(r) => {
                        retry_at.remove(&index);
                        runners.insert(index, r);
                    }
                    Err(e) => {
                        error!(
                            station = slot.name_str(),
                            error = format!("{e:#}"),
                            "cannot start station; retrying"
                        );
                        retry_at.insert(index, now + RETRY_AFTER);
                        continue;
                    }
                }
            }
            let Some(r) = runners.get_mut(&index) else {
                continue;
            };
            if !r.is_default && r.idle_for(slot, idle, now) {
                info!(station = %r.name, idle_secs = args.idle_secs, "reclaiming idle station");
                if let Err(e) = control.remove_station(index) {
                    warn!(station = %r.name, error = %e, "removing station");
                    continue;
                }
                if let Err(e) = r.producer.unlink() {
                    warn!(station = %r.name, error = %e, "unlinking event queue");
                }
                forget_metrics(&r.name);
                runners.remove(&index);
                continue;
            }
            if r.backoff_until.is_some_and(|t| now < t) {
                continue;
            }
            r.update_params(slot);
            if let Err(e) = r.tick(lead_frames) {
                error!(station = %r.name, error = format!("{e:#}"), "station failed; retrying");
                r.backoff_until = Some(now + RETRY_AFTER);
            } else {
                r.backoff_until = None;
            }
        }

        std::thread::sleep(TICK);
    }

    info!("composer stopping");
    notifier.stopping("composer stopping");
    if args.unlink_on_exit {
        for r in runners.values() {
            if let Err(e) = r.producer.unlink() {
                warn!(station = %r.name, error = %e, "unlinking event queue");
            }
        }
        let name = ns.control_name();
        match nix::sys::mman::shm_unlink(name.as_str()) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => warn!(segment = %name, error = %e, "unlinking control block"),
        }
        info!(namespace = ns.as_str(), "segments unlinked");
    }
    Ok(())
}

/// The station a new one should fork its music from: a running station with the same seed and
/// preset (a listener who changed key, mode, tempo or intensity came from it), the default
/// stations first. `None` for a station that is unrelated to every running one.
fn fork_parent<'a>(
    runners: &'a HashMap<u32, StationRunner>,
    slot: &StationSlot,
) -> Option<(&'a str, &'a Composer)> {
    let params = Params::from_station(&slot.params).ok()?;
    runners
        .values()
        .filter(|r| {
            let p = r.composer.params();
            p.seed == params.seed && p.preset == params.preset
        })
        .min_by(|a, b| (!a.is_default, &a.name).cmp(&(!b.is_default, &b.name)))
        .map(|r| (r.name.as_str(), &r.composer))
}

/// Sets `phrase_generation_rate_hz` from the bars composed in the window that just ended, and
/// the status line `systemctl status` shows.
fn report_rates(
    runners: &mut HashMap<u32, StationRunner>,
    window: Duration,
    notifier: &auralis_ops::Notifier,
) {
    let m = metrics();
    m.stations.set(runners.len() as i64);
    let mut status = Vec::with_capacity(runners.len());
    for r in runners.values_mut() {
        let bars = r.bars.get();
        let hz = (bars - r.bars_at_window) as f64 / window.as_secs_f64();
        r.bars_at_window = bars;
        m.rate.with_label_values(&[r.name.as_str()]).set(hz);
        status.push(format!("{} {hz:.2} bars/s", r.name));
    }
    status.sort();
    notifier.status(&format!("composing: {}", status.join(", ")));
}

/// Drops a removed station's series, so label values do not pile up.
fn forget_metrics(station: &str) {
    let m = metrics();
    let _ = m.bars.remove_label_values(&[station]);
    let _ = m.rate.remove_label_values(&[station]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DaemonArgs,
    }

    #[test]
    fn default_matches_the_command_line_defaults() {
        // Env vars could leak in from the test environment; only compare when none is set.
        let vars = [
            "AURALIS_STATIONS",
            "AURALIS_COMPOSER_LEAD_MS",
            "AURALIS_SHM_NAMESPACE",
            "AURALIS_CONTROL_CAPACITY",
            "AURALIS_EVENT_QUEUE_CAPACITY",
            "AURALIS_STATION_IDLE_SECS",
            "AURALIS_SEED",
            "AURALIS_UNLINK_ON_EXIT",
        ];
        if vars.iter().any(|v| std::env::var_os(v).is_some()) {
            return;
        }
        assert_eq!(Cli::parse_from(["composer"]).args, DaemonArgs::default());
        let a = Cli::parse_from([
            "composer",
            "--stations",
            "focus,sleep",
            "--lead-ms",
            "800",
            "--unlink-on-exit",
        ])
        .args;
        assert_eq!(a.stations, vec!["focus", "sleep"]);
        assert_eq!(a.lead_ms, 800);
        assert!(a.unlink_on_exit);
    }

    /// End to end through real shared memory: the daemon creates its segments, composes the
    /// first lead, follows the consumer clock, applies a parameter change at a bar boundary, and
    /// unlinks everything on exit when asked to.
    #[test]
    fn daemon_feeds_a_consumer_in_time_order() {
        use shm_proto::EventConsumer;

        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let ns_name = format!("composer_test_{}_{nanos}", std::process::id());
        let ns = Namespace::new(&ns_name).unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let args = DaemonArgs {
            namespace: Some(ns_name.clone()),
            unlink_on_exit: true,
            ..DaemonArgs::default()
        };
        let flag = Arc::clone(&shutdown);
        let daemon = std::thread::spawn(move || run_daemon(args, flag));

        let deadline = Instant::now() + Duration::from_secs(10);
        let (control, index, mut consumer) = loop {
            assert!(Instant::now() < deadline, "daemon did not come up");
            if let Ok(control) = ControlBlock::attach(&ns) {
                if let Some(slot) = control.find("focus") {
                    if let Ok(consumer) = EventConsumer::attach(&ns, slot.index) {
                        break (control, slot.index, consumer);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };

        let mut events = Vec::new();
        let drain = |consumer: &mut EventConsumer, events: &mut Vec<NoteEvent>, wait: Duration| {
            let end = Instant::now() + wait;
            while Instant::now() < end {
                while let Some(e) = consumer.pop() {
                    events.push(e);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        // Before synthd renders anything only the first lead (one 4-second bar) is composed.
        drain(&mut consumer, &mut events, Duration::from_millis(400));
        assert!(!events.is_empty(), "no events arrived");
        let first_bars = events.iter().map(|e| e.bar).max().unwrap();
        assert_eq!(first_bars, 0, "composed beyond the first lead");

        // Change key and mode, then let "synthd" render 20 seconds.
        let new = Params {
            key: "E".parse().unwrap(),
            mode: crate::Mode::Lydian,
            ..Params::from_preset(PresetId::FOCUS, 1)
        };
        control.set_params(index, new.to_station()).unwrap();
        // The daemon applies parameters before composing in each ~20 ms tick: give it plenty.
        std::thread::sleep(Duration::from_millis(500));
        consumer.set_clock(20 * u64::from(SAMPLE_RATE));
        drain(&mut consumer, &mut events, Duration::from_millis(600));

        shutdown.store(true, Ordering::Relaxed);
        daemon.join().unwrap().unwrap();

        assert!(
            events.windows(2).all(|w| w[0].at_frame <= w[1].at_frame),
            "out of order"
        );
        let last_frame = events.last().unwrap().at_frame;
        assert!(
            last_frame >= 20 * u64::from(SAMPLE_RATE),
            "lead not followed: {last_frame}"
        );
        assert!(
            last_frame < 27 * u64::from(SAMPLE_RATE),
            "composed too far ahead: {last_frame}"
        );
        // Same events as an offline composer with the same history.
        let mut offline = Composer::new(1, Params::from_preset(PresetId::FOCUS, 1));
        let mut expected = Vec::new();
        offline.next_bar(&mut expected);
        offline.set_params(new);
        while offline.composed_until_frame() <= last_frame {
            offline.next_bar(&mut expected);
        }
        expected.truncate(events.len());
        assert_eq!(events, expected);
        for e in events
            .iter()
            .filter(|e| e.bar > 0 && e.part != shm_proto::Part::Percussion as u8)
        {
            assert!(new.scale().contains(e.pitch), "{e:?}");
        }
        assert!(
            ns.existing_segments().is_empty(),
            "{:?}",
            ns.existing_segments()
        );
        let text = crate::metrics::render();
        assert!(
            text.contains("composer_bars_total{station=\"focus\"}"),
            "{text}"
        );
    }
}
