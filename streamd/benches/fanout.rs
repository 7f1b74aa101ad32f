//! Fan-out load benchmark: N WebSocket listeners on one station of a real `streamd` process, fed by
//! an in-process fixture writer publishing a chunk every 100 ms into real shared memory.
//!
//! ```sh
//! cargo bench -p streamd --bench fanout                       # 1,000 listeners, 60 s
//! cargo bench -p streamd --bench fanout -- --listeners 10 --seconds 10
//! ```
//!
//! Reports the share of chunks received within 50 ms of publication, the p50/p99/p99.9/max
//! lateness (receive time minus the chunk's `timestamp`), seq gaps, disconnects, and streamd's RSS
//! growth and CPU time per listener (from `/proc/<pid>/{status,stat}`), plus the machine's load.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use shm_proto::{AudioWriter, CHUNK_SAMPLES, ControlBlock, Namespace, StationParams};
use tokio_tungstenite::tungstenite::Message;

struct Options {
    listeners: usize,
    seconds: u64,
    format: String,
}

fn options() -> Options {
    let mut o = Options {
        listeners: 1_000,
        seconds: 60,
        format: "json".into(),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--listeners" => o.listeners = value.parse().expect("--listeners N"),
            "--seconds" => o.seconds = value.parse().expect("--seconds T"),
            "--format" => o.format = value,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// (RSS in KiB, utime + stime in clock ticks) of `pid`.
fn proc_usage(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14, stime 15 (1-based) -> indices 11, 12.
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    (rss, ticks)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What one listener saw.
#[derive(Default)]
struct Seen {
    lateness_ms: Vec<f64>,
    gaps: u64,
    disconnected: bool,
}

/// `"seq":N` and `"timestamp":T` from the head of an audio message, without parsing the rest.
fn audio_head(text: &str) -> Option<(u64, f64)> {
    let head = &text[..text.len().min(160)];
    if !head.starts_with("{\"type\":\"audio\"") {
        return None;
    }
    let number = |key: &str| {
        let start = head.find(key)? + key.len();
        let end = head[start..].find([',', '}'])? + start;
        Some(&head[start..end])
    };
    Some((
        number("\"seq\":")?.parse().ok()?,
        number("\"timestamp\":")?.parse().ok()?,
    ))
}

async fn listener(url: String, format: String, until: Instant) -> Seen {
    let mut seen = Seen::default();
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        seen.disconnected = true;
        return seen;
    };
    let start = format!(
        r#"{{"type":"control","action":"start","params":{{"station":"focus","format":"{format}"}}}}"#
    );
    if ws.send(Message::text(start)).await.is_err() {
        seen.disconnected = true;
        return seen;
    }
    let mut last_seq: Option<u64> = None;
    let mut warmed_up = false;
    loop {
        let message = tokio::select! {
            m = ws.next() => m,
            () = tokio::time::sleep_until(until.into()) => break,
        };
        let received = now_unix();
        let head = match message {
            Some(Ok(Message::Text(text))) => audio_head(text.as_str()),
            Some(Ok(Message::Binary(frame))) if frame.len() >= 24 && &frame[..4] == b"AUR1" => {
                let seq = u64::from_le_bytes(frame[8..16].try_into().unwrap_or([0; 8]));
                let ts = f64::from_le_bytes(frame[16..24].try_into().unwrap_or([0; 8]));
                Some((seq, ts))
            }
            Some(Ok(_)) => None,
            _ => {
                seen.disconnected = true;
                break;
            }
        };
        let Some((seq, timestamp)) = head else {
            continue;
        };
        if let Some(last) = last_seq
            && seq != last + 1
        {
            seen.gaps += 1;
        }
        last_seq = Some(seq);
        // The pre-roll is old by design: time only the live chunks.
        if !warmed_up && received - timestamp < 0.05 {
            warmed_up = true;
        }
        if warmed_up {
            seen.lateness_ms.push((received - timestamp) * 1000.0);
        }
    }
    let _ = ws.close(None).await;
    seen
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let o = options();
    let ns_name = format!("bench_fanout_{}", std::process::id());
    let ns = Namespace::new(&ns_name).expect("namespace");
    let _ = ns.remove_all();

    // The fixture: control block, one station, a chunk every 100 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let control = ControlBlock::create_or_adopt(&ns, 4).expect("control block");
    let params = StationParams {
        seed: 1,
        bpm: 60.0,
        intensity: 0.5,
        key: 0,
        mode: 0,
        preset: 0,
        _reserved: 0,
    };
    let index = control.ensure_station("focus", params).expect("station");
    let writer = {
        let (ns, stop) = (ns.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut writer = AudioWriter::create_or_adopt(&ns, index, 128).expect("ring");
            let mut samples = [0i16; CHUNK_SAMPLES];
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let seq = writer.next_seq();
                for (i, s) in samples.iter_mut().enumerate() {
                    *s = ((i as u64 * 31 + seq * 7) % 4_000) as i16 - 2_000;
                }
                writer.publish(&samples, params, 1);
                control.heartbeat();
                next += Duration::from_millis(100);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };

    // streamd as its own process, for honest memory and CPU figures.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut streamd: Child = Command::new(env!("CARGO_BIN_EXE_streamd"))
        .env("AURALIS_SHM_NAMESPACE", &ns_name)
        .env("AURALIS_HOST", "127.0.0.1")
        .env("AURALIS_PORT", port.to_string())
        .env("AURALIS_LOG_LEVEL", "warn")
        .env("WS_MAX_CONNECTIONS", (o.listeners + 100).to_string())
        .env("STREAMD_DRAIN_SECS", "0")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn streamd");
    let pid = streamd.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "streamd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (rss_before, _) = proc_usage(pid);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("ws://127.0.0.1:{port}/ws");
    let ramp = Duration::from_millis(2 * o.listeners as u64).max(Duration::from_secs(2));
    let measured = Duration::from_secs(o.seconds);
    let load_before = load_average();
    let results: Vec<Seen> = runtime.block_on(async {
        let until = Instant::now() + ramp + measured;
        let mut tasks = Vec::with_capacity(o.listeners);
        for i in 0..o.listeners {
            tasks.push(tokio::spawn(listener(url.clone(), o.format.clone(), until)));
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // CPU is measured over the steady part only.
        tokio::time::sleep(ramp).await;
        let (_, ticks_start) = proc_usage(pid);
        let t0 = Instant::now();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await.unwrap_or_default());
        }
        let (rss_after, ticks_end) = proc_usage(pid);
        let elapsed = t0.elapsed().as_secs_f64();
        let tick_hz = 100.0;
        let cpu_s = (ticks_end - ticks_start) as f64 / tick_hz;
        let n = o.listeners as f64;
        println!(
            "streamd: RSS {rss_before} KiB -> {rss_after} KiB ({:.1} KiB per listener); CPU {:.1}% of a core ({:.3}% per listener) over {elapsed:.0} s",
            (rss_after as f64 - rss_before as f64) / n,
            cpu_s / elapsed * 100.0,
            cpu_s / elapsed * 100.0 / n,
        );
        results
    });

    let mut all: Vec<f64> = results
        .iter()
        .flat_map(|s| s.lateness_ms.iter().copied())
        .collect();
    all.sort_by(f64::total_cmp);
    let within = all.iter().filter(|&&l| l <= 50.0).count();
    let gaps: u64 = results.iter().map(|s| s.gaps).sum();
    let disconnects = results.iter().filter(|s| s.disconnected).count();
    println!(
        "{} listeners ({}), {} s: {} chunks, {:.3}% within 50 ms; lateness p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; {gaps} seq gaps; {disconnects} disconnects; load average {load_before} -> {}",
        o.listeners,
        o.format,
        o.seconds,
        all.len(),
        within as f64 * 100.0 / all.len().max(1) as f64,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        all.last().copied().unwrap_or(f64::NAN),
        load_average(),
    );

    let _ = nix_kill(pid);
    let _ = streamd.wait();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let _ = ns.remove_all();
}

/// SIGTERM to streamd (it drains for 0 s and exits).
fn nix_kill(pid: u32) -> std::io::Result<()> {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|_| ())
}
