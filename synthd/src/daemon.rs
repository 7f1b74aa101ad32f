//! The synthd daemon: every active station of the control block rendered into its audio ring,
//! paced to the wall clock.
//!
//! Pacing: each station keeps a monotonic base (instant and chunk seq). Chunk `s` is due at
//! `base + (s - base_seq) * 100 ms - lead`, so chunks are published `lead` ahead of real time and
//! readers always find the next one waiting. If the process falls more than a second behind (it
//! was stopped, the machine was suspended), the station is re-based instead of bursting to catch
//! up. Between ticks the thread sleeps until the earliest due time (capped so the control block is
//! polled), never spinning.
//!
//! Resilience: a restarted synthd adopts the audio rings and continues each station's timeline
//! (`set_clock(next_seq * CHUNK_FRAMES)`). If composer dies or stalls, rendering goes on: queued
//! notes and reverb tails play out, and when nothing is left the last pad chord is re-triggered
//! softly so the station never falls silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use shm_proto::{
    AudioWriter, CHUNK_FRAMES, CHUNK_MS, CHUNK_SAMPLES, ControlBlock, EventConsumer, Namespace,
    NoteEvent, Part, ShmError, StationParams, StationSlot, WriterHealth,
};
use tracing::{debug, info, warn};

use crate::device::DeviceRequest;
use crate::renderer::StationRenderer;
use crate::soundfont::SoundFontBank;
use crate::stats::RenderStats;

/// Command-line / environment settings of the daemon.
#[derive(clap::Args, Clone, Debug)]
pub struct DaemonArgs {
    /// How far ahead of the wall clock chunks are published, in milliseconds.
    #[arg(long, env = "AURALIS_SYNTHD_LEAD_MS", default_value_t = 200)]
    pub lead_ms: u64,
    /// Slots per audio ring (a power of two, at least 8).
    #[arg(long, env = "AURALIS_SYNTHD_SLOTS", default_value_t = 128)]
    pub slots: u32,
    /// Composer heartbeat age after which it counts as stalled, in milliseconds.
    #[arg(long, env = "AURALIS_SYNTHD_STALL_MS", default_value_t = 2000)]
    pub stall_ms: u64,
    /// Shared-memory namespace (default: `AURALIS_SHM_NAMESPACE`, else `default`).
    #[arg(long, env = "AURALIS_SHM_NAMESPACE")]
    pub namespace: Option<String>,
    /// Unlink the audio rings this process owns when it exits.
    #[arg(long, env = "AURALIS_SYNTHD_UNLINK_ON_EXIT", default_value_t = false)]
    pub unlink_on_exit: bool,
    /// Play every station on this SoundFont (SF2, through rustysynth) instead of the built-in
    /// instruments. Loaded and checked at start-up: a bad file stops the daemon with its path and
    /// the reason, never a station later.
    #[arg(long, env = "AURALIS_SYNTHD_SOUNDFONT")]
    pub soundfont: Option<std::path::PathBuf>,
    /// Synthesis device: `auto` (CUDA when built with `--features torch` and a GPU is found,
    /// else native), `cuda`, `cpu` (native) or `torch-cpu` (parity tests). See `device.rs`.
    #[arg(long, env = "AURALIS_DEVICE", value_enum, default_value_t = DeviceRequest::Auto)]
    pub device: DeviceRequest,
}

impl Default for DaemonArgs {
    fn default() -> Self {
        DaemonArgs {
            lead_ms: 200,
            slots: 128,
            stall_ms: 2000,
            namespace: None,
            unlink_on_exit: false,
            soundfont: None,
            device: DeviceRequest::Auto,
        }
    }
}

/// Duration of one chunk.
const CHUNK: Duration = Duration::from_millis(CHUNK_MS as u64);
/// Falling further behind than this re-bases the station instead of bursting.
const MAX_BEHIND: Duration = Duration::from_secs(1);
/// Longest sleep, so the control block is polled often enough.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// How often the station table is re-read.
const CONTROL_POLL: Duration = Duration::from_millis(100);
/// How often dead readers are reaped.
const REAP_EVERY: Duration = Duration::from_secs(5);
/// Retry interval for a station whose segments could not be opened.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Length of a sustain chord while composer is away (frames); re-triggered 2 s before it ends
/// so the slow pad envelopes cross-fade.
const SUSTAIN_FRAMES: u64 = 8 * shm_proto::SAMPLE_RATE as u64;
/// Overlap between consecutive sustain chords.
const SUSTAIN_OVERLAP: u64 = 2 * shm_proto::SAMPLE_RATE as u64;
/// Notes of the remembered pad chord.
const CHORD_MAX: usize = 8;

/// The torch backend's route for the stations' melodic voices (`device.rs`): present while it runs.
#[cfg(feature = "torch")]
type Route = crate::torch::VoiceRoute;
/// No torch backend in this build: there is never a route.
#[cfg(not(feature = "torch"))]
#[derive(Debug)]
enum Route {}

/// One station being rendered.
#[derive(Debug)]
struct Station {
    /// Index in the control table (names the segments).
    index: u32,
    /// Station name, for logs.
    name: String,
    /// Composer's events.
    consumer: EventConsumer,
    /// Our audio ring.
    writer: AudioWriter,
    /// The synthesis.
    renderer: StationRenderer,
    /// Parameters the chunks are rendered with.
    params: StationParams,
    /// Their control-block generation.
    generation: u64,
    /// Monotonic instant at which chunk `base_seq` is due (before subtracting the lead).
    base: Instant,
    /// Chunk seq at `base`.
    base_seq: u64,
    /// Last publish or heartbeat.
    last_beat: Instant,
    /// Last pad chord seen (pitches, instrument, velocity), for sustaining without composer.
    chord: [u8; CHORD_MAX],
    /// Notes in `chord`.
    chord_len: usize,
    /// Start frame of the chord being collected.
    chord_at: u64,
    /// Pad instrument and velocity of that chord.
    chord_voice: (u8, u8),
    /// Frame after which every note seen so far has ended.
    last_note_end: u64,
    /// Frame at which the next sustain chord is due (0: not sustaining).
    sustain_next: u64,
    /// Last time the consumer was re-attached while composer looked dead.
    last_reattach: Instant,
    /// Render metrics.
    stats: Arc<RenderStats>,
    /// Reused chunk buffer.
    chunk: Box<[i16; CHUNK_SAMPLES]>,
}

impl Station {
    fn open(
        ns: &Namespace,
        slot: &StationSlot,
        slots: u32,
        soundfont: Option<&SoundFontBank>,
    ) -> Result<Station, ShmError> {
        let consumer = EventConsumer::attach(ns, slot.index)?;
        let writer = AudioWriter::create_or_adopt(ns, slot.index, slots)?;
        let mut renderer = match soundfont {
            Some(bank) => StationRenderer::with_soundfont(slot.params, bank),
            None => StationRenderer::new(slot.params),
        };
        let next_seq = writer.next_seq();
        renderer.set_clock(next_seq * CHUNK_FRAMES as u64);
        let now = Instant::now();
        Ok(Station {
            index: slot.index,
            name: slot.name_str().to_owned(),
            consumer,
            writer,
            renderer,
            params: slot.params,
            generation: slot.generation,
            base: now,
            base_seq: next_seq,
            last_beat: now,
            chord: [0; CHORD_MAX],
            chord_len: 0,
            chord_at: u64::MAX,
            chord_voice: (0, 60),
            last_note_end: 0,
            sustain_next: 0,
            last_reattach: now,
            stats: crate::metrics::station_stats(slot.name_str()),
            chunk: Box::new([0; CHUNK_SAMPLES]),
        })
    }

    /// When chunk `seq` is due for publishing.
    fn due(&self, seq: u64, lead: Duration) -> Instant {
        let at = self.base + CHUNK * (seq - self.base_seq) as u32;
        at.checked_sub(lead).unwrap_or(at)
    }

    /// Remembers pad chords as they pass, for sustaining.
    fn observe(&mut self, ev: &NoteEvent) {
        self.last_note_end = self
            .last_note_end
            .max(ev.at_frame + u64::from(ev.duration_frames));
        if ev.part != Part::Pad as u8 {
            return;
        }
        if ev.at_frame != self.chord_at {
            self.chord_at = ev.at_frame;
            self.chord_len = 0;
            self.chord_voice = (ev.instrument, ev.velocity);
        }
        if self.chord_len < CHORD_MAX {
            self.chord[self.chord_len] = ev.pitch;
            self.chord_len += 1;
        }
    }

    /// Queues `ev`: through the torch route when there is one (melodic notes go to its engine), else
    /// into the renderer. `false` when the renderer's queue is full.
    fn push(&mut self, route: &mut Option<Route>, ev: &NoteEvent) -> bool {
        match route {
            #[cfg(feature = "torch")]
            Some(route) => route.push_event(self.index as usize, &mut self.renderer, ev),
            _ => self.renderer.push_event(ev),
        }
    }

    /// True when this station's melodic voices go through the torch route.
    fn routed(&self, route: &Option<Route>) -> bool {
        match route {
            #[cfg(feature = "torch")]
            Some(route) => route.routes(self.index as usize, &self.renderer),
            _ => false,
        }
    }

    /// Moves the events due before the end of the next chunk from composer's queue into the
    /// renderer, or the torch route (they are in time order).
    fn drain_events(&mut self, route: &mut Option<Route>) {
        let end = self.renderer.clock() + CHUNK_FRAMES as u64;
        while let Some(ev) = self.consumer.peek() {
            if ev.at_frame >= end {
                break;
            }
            if !self.push(route, &ev) {
                self.stats.deferred_events.fetch_add(1, Ordering::Relaxed);
                break;
            }
            self.consumer.pop();
            self.observe(&ev);
        }
    }

    /// Composer dead or stalled and nothing left to play: re-trigger the last pad chord softly.
    fn sustain_if_needed(&mut self, ns: &Namespace, stall: Duration, route: &mut Option<Route>) {
        let health = self.consumer.producer_health(stall);
        if health == WriterHealth::Alive {
            self.sustain_next = 0;
            return;
        }
        if self.last_reattach.elapsed() > RETRY_EVERY {
            // A restarted composer may have replaced the queue segment: follow it.
            self.last_reattach = Instant::now();
            if let Ok(fresh) = EventConsumer::attach(ns, self.index) {
                if fresh.producer_health(stall) == WriterHealth::Alive {
                    info!(station = %self.name, "composer is back; re-attached to its event queue");
                    self.consumer = fresh;
                    self.sustain_next = 0;
                    return;
                }
            }
        }
        let clock = self.renderer.clock();
        let idle = self.consumer.peek().is_none()
            && self.renderer.pending_len() == 0
            && clock + SUSTAIN_OVERLAP >= self.last_note_end;
        if !idle || self.chord_len == 0 || clock < self.sustain_next {
            return;
        }
        if self.sustain_next == 0 {
            warn!(station = %self.name, ?health, "composer away and nothing queued: sustaining the last chord");
        }
        let (instrument, velocity) = self.chord_voice;
        let chord = self.chord;
        for &pitch in &chord[..self.chord_len] {
            let ev = NoteEvent {
                at_frame: clock,
                duration_frames: SUSTAIN_FRAMES as u32,
                part: Part::Pad as u8,
                instrument,
                pitch,
                velocity: (u16::from(velocity) * 7 / 10).max(1) as u8,
                bar: 0,
                _reserved: 0,
            };
            self.push(route, &ev);
        }
        self.last_note_end = clock + SUSTAIN_FRAMES;
        self.sustain_next = clock + SUSTAIN_FRAMES - SUSTAIN_OVERLAP;
    }

    /// Renders and publishes the next chunk.
    fn render_one(&mut self, route: &mut Option<Route>) {
        self.drain_events(route);
        let t0 = Instant::now();
        self.renderer.render_chunk(&mut self.chunk);
        self.stats
            .record(t0.elapsed(), self.renderer.voices_active());
        self.publish();
    }

    /// Publishes the rendered chunk.
    fn publish(&mut self) {
        self.writer
            .publish(&self.chunk, self.params, self.generation);
        self.consumer.set_clock(self.renderer.clock());
        self.last_beat = Instant::now();
    }
}

/// Runs the daemon until `shutdown` is set. No process-global setup happens here (no signal
/// handlers, no logger), so the `auralis` launcher can call it in-process.
pub fn run_daemon(args: DaemonArgs, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    let ns = match &args.namespace {
        Some(name) => Namespace::new(name),
        None => Namespace::from_env(),
    }
    .context("shared-memory namespace")?;
    let lead = Duration::from_millis(args.lead_ms);
    let stall = Duration::from_millis(args.stall_ms);
    info!(
        namespace = ns.as_str(),
        lead_ms = args.lead_ms,
        slots = args.slots,
        "synthd starting"
    );
    // Held to the end (the status line); the torch engine moves into the route below.
    #[cfg_attr(not(feature = "torch"), allow(unused_mut))]
    let mut device = crate::device::start(args.device);
    let soundfont = match &args.soundfont {
        Some(path) => {
            let bank = SoundFontBank::load(path)?;
            info!(soundfont = %path.display(), "stations play on the SoundFont");
            Some(bank)
        }
        None => None,
    };
    let Some(control) = attach_control(&ns, &shutdown) else {
        return Ok(());
    };
    info!("attached to the control block");
    let mut route = pad_route(&mut device, &control, soundfont.is_some());
    // Positions in `stations` of the stations staged for the torch route's render.
    let mut staged: Vec<usize> = Vec::with_capacity(control.capacity() as usize);
    // systemd: READY=1 once rendering, WATCHDOG=1 from this loop, STOPPING=1 on the way out.
    let mut notifier = auralis_ops::Notifier::from_env();
    let mut ready = false;
    let mut stations: Vec<Station> = Vec::new();
    let mut failed: Vec<(u32, Instant)> = Vec::new();
    let mut last_poll = Instant::now() - CONTROL_POLL;
    let mut last_reap = Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now.duration_since(last_poll) >= CONTROL_POLL {
            last_poll = now;
            sync_stations(
                &control,
                &ns,
                &args,
                soundfont.as_ref(),
                &mut stations,
                &mut failed,
                &mut route,
            );
        }
        if !ready {
            ready = true;
            notifier.ready(&format!(
                "rendering {} stations on {device}",
                stations.len()
            ));
        }
        notifier.watchdog();
        for st in &mut stations {
            st.sustain_if_needed(&ns, stall, &mut route);
            let mut due = st.due(st.writer.next_seq(), lead);
            let now = Instant::now();
            if now > due + MAX_BEHIND {
                warn!(station = %st.name, behind_ms = (now - due).as_millis() as u64, "fell behind; re-basing instead of bursting");
                st.stats.rebases.fetch_add(1, Ordering::Relaxed);
                st.base = now + lead;
                st.base_seq = st.writer.next_seq();
                due = st.due(st.base_seq, lead);
            }
            if st.routed(&route) {
                // Rendered below, with every other due station, in one batch.
                continue;
            }
            while Instant::now() >= due && !shutdown.load(Ordering::Relaxed) {
                st.render_one(&mut route);
                due = st.due(st.writer.next_seq(), lead);
            }
        }
        render_routed(&mut stations, &mut route, &mut staged, lead, &shutdown);
        for st in &mut stations {
            let due = st.due(st.writer.next_seq(), lead);
            st.stats
                .set_ahead((due + lead).saturating_duration_since(Instant::now()));
            if st.last_beat.elapsed() > Duration::from_millis(500) {
                st.writer.heartbeat();
                st.last_beat = Instant::now();
            }
        }
        if last_reap.elapsed() >= REAP_EVERY {
            last_reap = Instant::now();
            for st in &stations {
                let n = st.writer.reap_dead_readers();
                if n > 0 {
                    debug!(station = %st.name, reaped = n, "freed dead readers");
                }
                let s = &st.stats;
                debug!(
                    station = %st.name,
                    voices = s.voices.load(Ordering::Relaxed),
                    rtf = s.real_time_factor(),
                    max_render_us = s.max_render_ns.load(Ordering::Relaxed) / 1000,
                    "render stats"
                );
            }
        }
        // Sleep until the earliest due chunk (or the next control poll).
        let next = stations
            .iter()
            .map(|st| st.due(st.writer.next_seq(), lead))
            .min();
        let wake = next
            .map_or(MAX_SLEEP, |t| t.saturating_duration_since(Instant::now()))
            .min(MAX_SLEEP);
        if !wake.is_zero() {
            std::thread::sleep(wake);
        }
    }
    info!(stations = stations.len(), "synthd stopping");
    notifier.stopping("synthd stopping");
    if args.unlink_on_exit {
        for st in &stations {
            if let Err(e) = st.writer.unlink() {
                warn!(station = %st.name, error = %e, "unlink failed");
            }
        }
    }
    Ok(())
}

/// The torch route for the melodic voices, when the torch backend runs (and no SoundFont plays
/// the notes).
#[cfg_attr(not(feature = "torch"), allow(unused_variables))]
fn pad_route(
    device: &mut crate::device::Started,
    control: &ControlBlock,
    soundfont: bool,
) -> Option<Route> {
    #[cfg(feature = "torch")]
    {
        let engine = device.engine.take()?;
        if soundfont {
            info!("the SoundFont plays every station: the torch backend stays idle");
            return None;
        }
        let capacity = control.capacity() as usize;
        info!(
            stations = capacity,
            "melodic voices of every station rendered by the torch backend"
        );
        Some(crate::torch::VoiceRoute::new(engine, capacity))
    }
    #[cfg(not(feature = "torch"))]
    None
}

/// Renders every routed station whose chunk is due: one batched torch render of their melodic
/// voices per round, then each station's CPU part, rounds repeating while a station is still due
/// (catching up). A torch error is logged once and ends the route: from then on every station
/// renders on the native engine (the notes sounding in the engine are lost; the music returns
/// with the next notes).
// Without the torch feature there is no route and this does nothing.
#[cfg_attr(not(feature = "torch"), allow(unused_variables, clippy::ptr_arg))]
fn render_routed(
    stations: &mut [Station],
    route: &mut Option<Route>,
    staged: &mut Vec<usize>,
    lead: Duration,
    shutdown: &AtomicBool,
) {
    #[cfg(feature = "torch")]
    while !shutdown.load(Ordering::Relaxed) {
        staged.clear();
        for (k, st) in stations.iter_mut().enumerate() {
            if st.routed(route) && Instant::now() >= st.due(st.writer.next_seq(), lead) {
                st.drain_events(route);
                if let Some(r) = route.as_mut() {
                    r.stage(st.index as usize, st.renderer.clock());
                }
                staged.push(k);
            }
        }
        let Some(r) = route.as_mut() else { return };
        if staged.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let result = r.render();
        let batch_share = t0.elapsed() / staged.len() as u32;
        match result {
            Ok(()) => {
                for (j, &k) in staged.iter().enumerate() {
                    let st = &mut stations[k];
                    let t1 = Instant::now();
                    r.render_station(j, &mut st.renderer, &mut st.chunk);
                    st.stats
                        .record(t1.elapsed() + batch_share, st.renderer.voices_active());
                    st.publish();
                }
                r.clear();
            }
            Err(e) => {
                warn!(error = %e, "the torch backend failed; every station renders on the native engine from now on");
                *route = None;
                crate::device::set_device_memory(0);
                for &k in staged.iter() {
                    let st = &mut stations[k];
                    let t1 = Instant::now();
                    st.renderer.render_chunk(&mut st.chunk);
                    st.stats.record(t1.elapsed(), st.renderer.voices_active());
                    st.publish();
                }
                return;
            }
        }
    }
}

/// Attaches to the control block, retrying every 100 ms until composer has created it; `None`
/// if shutdown was requested first.
fn attach_control(ns: &Namespace, shutdown: &AtomicBool) -> Option<ControlBlock> {
    let mut logged = false;
    while !shutdown.load(Ordering::Relaxed) {
        match ControlBlock::attach(ns) {
            Ok(c) => return Some(c),
            Err(e) => {
                if !logged {
                    info!(error = %e, "waiting for composer to create the control block");
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    None
}

/// Opens new stations (starting their torch voices afresh), drops removed ones, applies
/// parameter changes.
#[cfg_attr(not(feature = "torch"), allow(unused_variables))]
fn sync_stations(
    control: &ControlBlock,
    ns: &Namespace,
    args: &DaemonArgs,
    soundfont: Option<&SoundFontBank>,
    stations: &mut Vec<Station>,
    failed: &mut Vec<(u32, Instant)>,
    route: &mut Option<Route>,
) {
    let table = control.stations();
    stations.retain(|st| {
        let keep = table
            .iter()
            .any(|s| s.index == st.index && s.name_str() == st.name);
        if !keep {
            info!(station = %st.name, "station removed; unlinking its audio ring");
            if let Err(e) = st.writer.unlink() {
                warn!(station = %st.name, error = %e, "unlink failed");
            }
        }
        keep
    });
    failed.retain(|(_, at)| at.elapsed() < RETRY_EVERY);
    for slot in &table {
        if let Some(st) = stations.iter_mut().find(|st| st.index == slot.index) {
            if slot.generation != st.generation {
                debug!(station = %st.name, generation = slot.generation, "new parameters");
                st.generation = slot.generation;
                st.params = slot.params;
                st.renderer.set_params(slot.params);
            }
            continue;
        }
        if failed.iter().any(|(i, _)| *i == slot.index) {
            continue;
        }
        match Station::open(ns, slot, args.slots, soundfont) {
            Ok(st) => {
                info!(station = %st.name, index = st.index, seq = st.base_seq, "rendering station");
                #[cfg(feature = "torch")]
                if let Some(route) = route.as_mut() {
                    if route.routes(st.index as usize, &st.renderer) {
                        route.open(st.index as usize, st.renderer.clock());
                    }
                }
                stations.push(st);
            }
            Err(e) => {
                debug!(station = slot.name_str(), error = %e, "station not ready yet");
                failed.push((slot.index, Instant::now()));
            }
        }
    }
}
