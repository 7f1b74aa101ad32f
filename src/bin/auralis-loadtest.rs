//! `auralis-loadtest`: N WebSocket listeners against a running gateway for a while, then a report:
//! chunks, seq gaps, lateness from publish (p50 / p99 / p99.9 / max, share within 50 ms),
//! disconnects, and CPU and RSS of each Auralis process.
//!
//! ```sh
//! auralis up --port 8000 &
//! auralis-loadtest --url ws://127.0.0.1:8000/ws --listeners 1000 --duration 60 --launcher-pid $!
//! ```
//!
//! With an `http://` URL the listeners read a plain stream instead (streamd's
//! `/stream/focus.opus`, or the same stream relayed by an Icecast server) and the report gives
//! bytes, bit rate, stalls and early closes; `--pids icecast=PID` measures any server, so one
//! script can compare streamd and Icecast serving the same stream (`scripts/bench-icecast.sh`).
//!
//! Loopback only (the URL must name 127.0.0.1, ::1 or localhost), bounded in listeners and time.
#![forbid(unsafe_code)]

#[path = "../loadtest/mod.rs"]
// Shared with the end-to-end tests; not every item is used by both.
#[allow(dead_code)]
mod loadtest;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use loadtest::client::{AudioFormat, ListenerReport, ListenerSpec, run_listener};
use loadtest::http::{HttpListenerReport, run_http_listener};
use loadtest::procstat::{self, CLOCK_TICKS};
use loadtest::stats::LatencySummary;

/// Most listeners one run may open.
const MAX_LISTENERS: usize = 20_000;
/// Longest run.
const MAX_DURATION_SECS: f64 = 3_600.0;

/// Load generator for the Auralis gateway.
#[derive(Debug, Parser)]
#[command(name = "auralis-loadtest", version, about)]
struct Args {
    /// Gateway WebSocket URL, or an `http://` stream URL (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws")]
    url: String,
    /// Listeners to open.
    #[arg(long, default_value_t = 100)]
    listeners: usize,
    /// Seconds to listen (after every listener has connected).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds over which the listeners connect.
    #[arg(long, default_value_t = 2.0)]
    ramp: f64,
    /// Seconds at the start of the run whose chunks are left out of the lateness figures (the
    /// pre-roll a new listener gets is older than live by design).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// `json`, `pcm16`, `opus`, or `mixed` (half json, half pcm16).
    #[arg(long, default_value = "json")]
    format: String,
    /// Stations, assigned round-robin (empty: the default station).
    #[arg(long, value_delimiter = ',')]
    stations: Vec<String>,
    /// Give the listeners random musical parameters (preset, bpm, intensity, key), drawn from
    /// `--params-variants` sets.
    #[arg(long)]
    params_mix: bool,
    /// Distinct random parameter sets of `--params-mix` (each becomes a station).
    #[arg(long, default_value_t = 4)]
    params_variants: usize,
    /// Seed of `--params-mix`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Reconnect with `resume_from` on `draining` or a lost connection, like the player.
    #[arg(long)]
    reconnect: bool,
    /// Processes to measure: `role=pid` or `pid`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<String>,
    /// Measure the children of this launcher (`auralis up`) by role.
    #[arg(long)]
    launcher_pid: Option<u32>,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("auralis-loadtest: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &Args) -> anyhow::Result<AudioFormatChoice> {
    let rest = args
        .url
        .strip_prefix("ws://")
        .or_else(|| args.url.strip_prefix("http://"))
        .context("--url must start with ws:// or http://")?;
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        rest.split([':', '/']).next().unwrap_or("")
    };
    if !matches!(host, "127.0.0.1" | "::1" | "localhost") {
        bail!("--url must be a loopback address (127.0.0.1, ::1 or localhost), not {host:?}");
    }
    if args.listeners == 0 || args.listeners > MAX_LISTENERS {
        bail!("--listeners must be 1..={MAX_LISTENERS}");
    }
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION_SECS) {
        bail!("--duration must be in (0, {MAX_DURATION_SECS}] seconds");
    }
    if !(0.0..=600.0).contains(&args.ramp) || !(0.0..=args.duration).contains(&args.warmup) {
        bail!("--ramp must be 0..=600 s and --warmup 0..=duration");
    }
    if args.url.starts_with("http://") {
        return Ok(AudioFormatChoice::Http);
    }
    Ok(match args.format.as_str() {
        "json" => AudioFormatChoice::All(AudioFormat::Json),
        "pcm16" | "binary" => AudioFormatChoice::All(AudioFormat::Pcm16),
        "opus" => AudioFormatChoice::All(AudioFormat::Opus),
        "mixed" => AudioFormatChoice::Mixed,
        other => bail!("--format must be json, pcm16, opus or mixed, not {other:?}"),
    })
}

#[derive(Clone, Copy, Debug)]
enum AudioFormatChoice {
    All(AudioFormat),
    Mixed,
    /// A plain HTTP stream: the body is the audio.
    Http,
}

/// The processes measured: role and pid.
fn targets(args: &Args) -> anyhow::Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for item in &args.pids {
        let (role, pid) = match item.split_once('=') {
            Some((role, pid)) => (Some(role.to_owned()), pid),
            None => (None, item.as_str()),
        };
        let pid: u32 = pid
            .parse()
            .with_context(|| format!("bad pid in --pids: {item:?}"))?;
        let role = role
            .or_else(|| procstat::role_of(pid))
            .unwrap_or_else(|| pid.to_string());
        out.push((role, pid));
    }
    if let Some(launcher) = args.launcher_pid {
        out.push(("launcher".into(), launcher));
        out.extend(
            procstat::children_of(launcher)
                .into_iter()
                .map(|(p, r)| (r, p)),
        );
    }
    // The generator shares the machine: its own CPU tells how much of the lateness may be its own.
    out.push(("loadtest".into(), std::process::id()));
    Ok(out)
}

/// CPU and memory of one process over the run.
#[derive(Debug, Default, serde::Serialize)]
struct ProcReport {
    pid: u32,
    cpu_pct: f64,
    rss_mib_start: f64,
    rss_mib_end: f64,
    rss_mib_max: f64,
    threads: u64,
    fds: u64,
    /// The process was gone by the end (restarted or crashed).
    gone: bool,
}

fn run(args: Args) -> anyhow::Result<()> {
    let format = check(&args)?;
    let targets = targets(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.clamp(1, 64))
        .enable_all()
        .build()
        .context("tokio runtime")?;
    if let AudioFormatChoice::Http = format {
        return run_http(&args, &targets, &runtime);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    // `--params-mix`: a few random parameter sets shared round-robin (each distinct set is a
    // station the gateway creates, and the control block holds 16).
    let presets = ["focus", "calm", "sleep", "bright", "dream", "night"];
    let keys = ["C", "D", "Eb", "F", "G", "A", "Bb"];
    let variants: Vec<Map<String, Value>> = (0..args.params_variants.clamp(1, 64))
        .map(|_| {
            let mut m = Map::new();
            m.insert(
                "preset".into(),
                json!(presets[rng.random_range(0..presets.len())]),
            );
            m.insert("bpm".into(), json!(rng.random_range(60..=90)));
            m.insert(
                "intensity".into(),
                json!(f64::from(rng.random_range(0..=10u8)) / 10.0),
            );
            m.insert("key".into(), json!(keys[rng.random_range(0..keys.len())]));
            m
        })
        .collect();
    let specs: Vec<ListenerSpec> = (0..args.listeners)
        .map(|i| {
            let mut params = Map::new();
            if !args.stations.is_empty() {
                params.insert(
                    "station".into(),
                    json!(args.stations[i % args.stations.len()]),
                );
            }
            if args.params_mix && !variants.is_empty() {
                params.extend(variants[i % variants.len()].clone());
            }
            let format = match format {
                AudioFormatChoice::All(f) => f,
                AudioFormatChoice::Mixed if i % 2 == 0 => AudioFormat::Json,
                AudioFormatChoice::Mixed | AudioFormatChoice::Http => AudioFormat::Pcm16,
            };
            ListenerSpec {
                format,
                params,
                reconnect: args.reconnect,
                ..ListenerSpec::new(args.url.clone())
            }
        })
        .collect();

    let mut meter = Meter::start(&targets);
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let reports: Vec<ListenerReport> = runtime.block_on(async {
        let ramp = Duration::from_secs_f64(args.ramp);
        let n = specs.len() as u32;
        let mut tasks = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let delay = ramp * i as u32 / n;
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                run_listener(spec, stop).await
            }));
        }
        meter
            .watch_until(Instant::now() + ramp + Duration::from_secs_f64(args.duration))
            .await;
        let _ = stop_tx.send(true);
        let mut reports = Vec::new();
        for task in tasks {
            reports.push(task.await.unwrap_or_default());
        }
        reports
    });
    let wall = started.elapsed().as_secs_f64();
    let procs = meter.finish();

    // Lateness after the warm-up (the pre-roll is old on purpose), over every listener.
    let warm = Duration::from_secs_f64(args.warmup);
    let mut lateness = Vec::new();
    for r in &reports {
        let skip = (warm.as_secs_f64() * 10.0) as usize;
        lateness.extend(r.lateness_ms.iter().skip(skip.min(r.lateness_ms.len())));
    }
    let summary = LatencySummary::of(&mut lateness);
    let sum = |f: fn(&ListenerReport) -> u64| reports.iter().map(f).sum::<u64>();
    let connected = reports.iter().filter(|r| r.chunks > 0).count();
    let report = json!({
        "url": args.url,
        "listeners": args.listeners,
        "connected": connected,
        "duration_s": args.duration,
        "wall_s": wall,
        "format": args.format,
        "chunks": sum(|r| r.chunks),
        "chunks_per_listener_per_s": sum(|r| r.chunks) as f64 / args.listeners as f64 / args.duration,
        "gaps": sum(|r| r.gaps),
        "missing": sum(|r| r.missing),
        "duplicates": sum(|r| r.duplicates),
        "disconnects": sum(|r| r.disconnects),
        "drain_closes": sum(|r| r.drain_closes),
        "reconnects": sum(|r| r.reconnects),
        "connect_failures": sum(|r| r.connect_failures),
        "skipped_notices": reports.iter().map(|r| r.notices_of("status", Some("skipped")).count()).sum::<usize>(),
        "errors": reports.iter().map(|r| r.notices_of("error", None).count()).sum::<usize>(),
        "lateness_ms": summary,
        "processes": procs,
        "first_error": reports.iter().find_map(|r| r.last_error.clone()),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// CPU and memory of the measured processes over a window: CPU from the window's start to
/// [`Meter::finish`], RSS sampled once a second.
struct Meter {
    targets: Vec<(String, u32)>,
    start: Vec<Option<procstat::ProcSample>>,
    rss_max: Vec<u64>,
    since: Instant,
}

impl Meter {
    fn start(targets: &[(String, u32)]) -> Self {
        Meter {
            targets: targets.to_vec(),
            start: targets.iter().map(|(_, p)| procstat::sample(*p)).collect(),
            rss_max: vec![0; targets.len()],
            since: Instant::now(),
        }
    }

    /// Samples RSS once a second until `end`.
    async fn watch_until(&mut self, end: Instant) {
        while Instant::now() < end {
            for (i, (_, pid)) in self.targets.iter().enumerate() {
                if let Some(s) = procstat::sample(*pid) {
                    self.rss_max[i] = self.rss_max[i].max(s.rss_kib);
                }
            }
            tokio::time::sleep(Duration::from_secs(1).min(end - Instant::now())).await;
        }
    }

    fn finish(self) -> BTreeMap<String, ProcReport> {
        let wall = self.since.elapsed().as_secs_f64();
        self.targets
            .iter()
            .zip(self.start)
            .zip(self.rss_max)
            .map(|(((role, pid), start), max)| {
                let end = procstat::sample(*pid);
                let mib = |kib: u64| kib as f64 / 1024.0;
                let report = ProcReport {
                    pid: *pid,
                    cpu_pct: match (&start, &end) {
                        (Some(a), Some(b)) => {
                            100.0 * b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64
                                / CLOCK_TICKS
                                / wall
                        }
                        _ => 0.0,
                    },
                    rss_mib_start: start.as_ref().map_or(0.0, |s| mib(s.rss_kib)),
                    rss_mib_end: end.as_ref().map_or(0.0, |s| mib(s.rss_kib)),
                    rss_mib_max: mib(max.max(end.as_ref().map_or(0, |s| s.rss_kib))),
                    threads: end.as_ref().map_or(0, |s| s.threads),
                    fds: end.as_ref().map_or(0, |s| s.fds),
                    gone: end.is_none(),
                };
                (format!("{role}:{pid}"), report)
            })
            .collect()
    }
}

/// `--url http://...`: N listeners of a plain stream. The processes' CPU is measured only over
/// the `--duration` window after the ramp (plus `--warmup`), when every listener is connected,
/// so `cpu % / listeners` is the steady cost of serving them.
fn run_http(
    args: &Args,
    targets: &[(String, u32)],
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reports, procs, window) = runtime.block_on(async {
        let ramp = Duration::from_secs_f64(args.ramp);
        let n = args.listeners as u32;
        let mut tasks = Vec::with_capacity(args.listeners);
        for i in 0..n {
            let delay = ramp * i / n;
            let (stop, url) = (stop_rx.clone(), args.url.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                run_http_listener(url, stop).await
            }));
        }
        tokio::time::sleep(ramp + Duration::from_secs_f64(args.warmup)).await;
        let mut meter = Meter::start(targets);
        let since = Instant::now();
        meter
            .watch_until(since + Duration::from_secs_f64(args.duration))
            .await;
        let procs = meter.finish();
        let window = since.elapsed().as_secs_f64();
        let _ = stop_tx.send(true);
        let mut reports = Vec::new();
        for task in tasks {
            reports.push(task.await.unwrap_or_default());
        }
        (reports, procs, window)
    });
    let ok: Vec<&HttpListenerReport> = reports
        .iter()
        .filter(|r| r.status == 200 && r.bytes > 0)
        .collect();
    let rate = |r: &HttpListenerReport| {
        if r.listened_s > 0.0 {
            r.bytes as f64 * 8.0 / 1e3 / r.listened_s
        } else {
            0.0
        }
    };
    let mut rates: Vec<f64> = ok.iter().map(|r| rate(r)).collect();
    let rates = loadtest::stats::sort(&mut rates);
    let mut first: Vec<f64> = ok.iter().filter_map(|r| r.first_byte_ms).collect();
    let first = loadtest::stats::sort(&mut first);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for e in reports.iter().filter_map(|r| r.error.as_deref()) {
        *errors.entry(e.to_owned()).or_default() += 1;
    }
    let report = json!({
        "url": args.url,
        "listeners": args.listeners,
        "connected": ok.len(),
        "duration_s": args.duration,
        "measured_window_s": window,
        "content_types": ok.iter().filter_map(|r| r.content_type.clone()).collect::<std::collections::BTreeSet<_>>(),
        "bytes": reports.iter().map(|r| r.bytes).sum::<u64>(),
        "kbit_s_per_listener": {
            "min": rates.first(),
            "p50": loadtest::stats::quantile(rates, 0.5),
            "max": rates.last(),
        },
        "first_byte_ms": {
            "p50": loadtest::stats::quantile(first, 0.5),
            "p99": loadtest::stats::quantile(first, 0.99),
        },
        "stalls_over_1s": ok.iter().filter(|r| r.max_gap_ms > 1_000.0).count(),
        "max_gap_ms": ok.iter().map(|r| r.max_gap_ms).fold(0.0, f64::max),
        "closed_early": reports.iter().filter(|r| r.closed_early).count(),
        "errors": errors,
        "processes": procs,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_http_table(&report);
    }
    Ok(())
}

fn print_http_table(r: &Value) {
    let k = &r["kbit_s_per_listener"];
    println!(
        "listeners {} ({} streaming), {:.0} s measured, {}",
        r["listeners"],
        r["connected"],
        r["measured_window_s"].as_f64().unwrap_or(0.0),
        r["url"].as_str().unwrap_or("")
    );
    println!(
        "kbit/s per listener: min {:.1}  p50 {:.1}  max {:.1}   first byte p50 {:.1} ms  p99 {:.1} ms",
        k["min"].as_f64().unwrap_or(0.0),
        k["p50"].as_f64().unwrap_or(0.0),
        k["max"].as_f64().unwrap_or(0.0),
        r["first_byte_ms"]["p50"].as_f64().unwrap_or(0.0),
        r["first_byte_ms"]["p99"].as_f64().unwrap_or(0.0),
    );
    println!(
        "stalls over 1 s {}  longest gap {:.0} ms  closed early {}  errors {}",
        r["stalls_over_1s"],
        r["max_gap_ms"].as_f64().unwrap_or(0.0),
        r["closed_early"],
        r["errors"]
    );
    print_procs(r);
}

fn print_table(r: &Value) {
    let l = &r["lateness_ms"];
    println!(
        "listeners {} ({} got audio), {:.0} s, format {}",
        r["listeners"],
        r["connected"],
        r["duration_s"].as_f64().unwrap_or(0.0),
        r["format"]
    );
    println!(
        "chunks {}  ({:.2} per listener per s)  gaps {}  missing {}  duplicates {}",
        r["chunks"],
        r["chunks_per_listener_per_s"].as_f64().unwrap_or(0.0),
        r["gaps"],
        r["missing"],
        r["duplicates"]
    );
    println!(
        "disconnects {}  drain closes {}  reconnects {}  connect failures {}  skipped {}  errors {}",
        r["disconnects"],
        r["drain_closes"],
        r["reconnects"],
        r["connect_failures"],
        r["skipped_notices"],
        r["errors"]
    );
    println!(
        "lateness from publish (ms): p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  within 50 ms {:.2} %  (n={})",
        l["p50"].as_f64().unwrap_or(0.0),
        l["p99"].as_f64().unwrap_or(0.0),
        l["p999"].as_f64().unwrap_or(0.0),
        l["max"].as_f64().unwrap_or(0.0),
        l["within_50ms_pct"].as_f64().unwrap_or(0.0),
        l["count"]
    );
    print_procs(r);
    if let Some(e) = r["first_error"].as_str() {
        println!("first error: {e}");
    }
}

fn print_procs(r: &Value) {
    if let Some(procs) = r["processes"].as_object()
        && !procs.is_empty()
    {
        println!(
            "{:<22} {:>7} {:>10} {:>10} {:>10} {:>8} {:>5}",
            "process", "cpu %", "rss start", "rss end", "rss max", "threads", "fds"
        );
        for (name, p) in procs {
            println!(
                "{:<22} {:>7.1} {:>8.1}Mi {:>8.1}Mi {:>8.1}Mi {:>8} {:>5}{}",
                name,
                p["cpu_pct"].as_f64().unwrap_or(0.0),
                p["rss_mib_start"].as_f64().unwrap_or(0.0),
                p["rss_mib_end"].as_f64().unwrap_or(0.0),
                p["rss_mib_max"].as_f64().unwrap_or(0.0),
                p["threads"].as_u64().unwrap_or(0),
                p["fds"].as_u64().unwrap_or(0),
                if p["gone"] == true { "  (gone)" } else { "" }
            );
        }
    }
}
