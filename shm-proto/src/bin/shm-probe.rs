//! `shm-probe`: a tiny writer / reader of audio rings, run as a separate process by the
//! multi-process tests and the ring benchmark (crashes and latency need real processes).
//!
//! ```text
//! shm-probe writer --ns X [--station S] [--slots K] [--count N] [--interval-ms M]
//!                  [--stall-at SEQ] [--hold-ms H] [--unlink]
//! shm-probe reader --ns X [--station S] [--count N] [--until-seq S] [--timeout-ms T]
//!                  [--hold-ms H] [--lat]
//! shm-probe attach --ns X [--station S]
//! ```
//!
//! Chunk `seq` carries the sample pattern [`pattern`], so a reader can tell a torn or wrong chunk.
//! Output is line-oriented on stdout (`ready ...`, `stalled ...`, `attached ...`, `result ...`).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shm_proto::process::monotonic_ns;
use shm_proto::{
    AudioReader, AudioWriter, CHUNK_SAMPLES, Namespace, ReadOutcome, StationParams, WriterHealth,
};

/// The sample pattern of chunk `seq`.
fn pattern(seq: u64, i: usize) -> i16 {
    (seq.wrapping_mul(7919).wrapping_add(i as u64 * 31)) as i16
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let key = a
                .strip_prefix("--")
                .ok_or(format!("unexpected argument {a}"))?;
            let value = match key {
                "unlink" | "lat" => "1".to_owned(),
                _ => it.next().ok_or(format!("--{key} needs a value"))?.clone(),
            };
            map.insert(key.to_owned(), value);
        }
        Ok(Self(map))
    }
    fn num(&self, key: &str, default: u64) -> Result<u64, String> {
        self.0.get(key).map_or(Ok(default), |v| {
            v.parse().map_err(|e| format!("--{key}: {e}"))
        })
    }
    fn flag(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
    fn ns(&self) -> Result<Namespace, String> {
        let name = self.0.get("ns").ok_or("--ns is required")?;
        Namespace::new(name).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("usage: shm-probe writer|reader|attach --ns X ...");
        return ExitCode::from(2);
    };
    let result = Args::parse(rest).and_then(|args| match cmd.as_str() {
        "writer" => writer(&args),
        "reader" => reader(&args),
        "attach" => attach(&args),
        _ => Err(format!("unknown command {cmd}")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("error {e}"));
            ExitCode::FAILURE
        }
    }
}

fn writer(args: &Args) -> Result<(), String> {
    let ns = args.ns()?;
    let station = args.num("station", 0)? as u32;
    let slots = args.num("slots", 8)? as u32;
    let count = args.num("count", 100)?;
    let interval = Duration::from_millis(args.num("interval-ms", 100)?);
    let stall_at = args
        .0
        .get("stall-at")
        .map(|v| v.parse::<u64>())
        .transpose()
        .map_err(|e| e.to_string())?;
    let mut w = AudioWriter::create_or_adopt(&ns, station, slots).map_err(|e| e.to_string())?;
    say(&format!(
        "ready epoch={} next_seq={} pid={}",
        w.epoch(),
        w.next_seq(),
        std::process::id()
    ));
    let params = StationParams {
        seed: 1,
        bpm: 70.0,
        intensity: 0.5,
        key: 0,
        mode: 0,
        preset: 0,
        _reserved: 0,
    };
    let mut chunk = Box::new([0i16; CHUNK_SAMPLES]);
    let start = Instant::now();
    for k in 0..count {
        let seq = w.next_seq();
        for (i, s) in chunk.iter_mut().enumerate() {
            *s = pattern(seq, i);
        }
        if stall_at == Some(seq) {
            w.publish_interrupted(&chunk, params, 1, &mut || {
                say(&format!("stalled {seq}"));
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            });
        } else {
            w.publish(&chunk, params, 1);
        }
        if !interval.is_zero() {
            let due = start + interval * (k as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    say(&format!(
        "done next_seq={} epoch={}",
        w.next_seq(),
        w.epoch()
    ));
    let hold_until = Instant::now() + Duration::from_millis(args.num("hold-ms", 0)?);
    while Instant::now() < hold_until {
        w.heartbeat();
        std::thread::sleep(Duration::from_millis(20));
    }
    if args.flag("unlink") {
        w.unlink().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn reader(args: &Args) -> Result<(), String> {
    let ns = args.ns()?;
    let station = args.num("station", 0)? as u32;
    let count = args.num("count", u64::MAX)?;
    let until_seq = args.num("until-seq", u64::MAX)?;
    let deadline = Instant::now() + Duration::from_millis(args.num("timeout-ms", 10_000)?);
    let mut r = loop {
        match AudioReader::attach(&ns, station) {
            Ok(r) => break r,
            Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    say(&format!(
        "attached cursor={} epoch={} pid={}",
        r.cursor(),
        r.epoch(),
        std::process::id()
    ));
    let mut out = Box::new([0i16; CHUNK_SAMPLES]);
    let (mut chunks, mut gaps, mut lagged, mut bad) = (0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last): (Option<u64>, Option<u64>) = (None, None);
    let mut epochs: Vec<u64> = Vec::new();
    let mut lat: Vec<u64> = Vec::new();
    let mut last_check = Instant::now();
    'outer: while chunks < count && Instant::now() < deadline {
        r.wait(Duration::from_millis(50));
        loop {
            match r.read_next(&mut out) {
                ReadOutcome::Chunk(meta) => {
                    lat.push(monotonic_ns().saturating_sub(r.last_publish_mono_ns()));
                    if out
                        .iter()
                        .enumerate()
                        .any(|(i, &s)| s != pattern(meta.seq, i))
                    {
                        bad += 1;
                    }
                    if last.is_some_and(|l| meta.seq != l + 1) {
                        gaps += 1;
                    }
                    first.get_or_insert(meta.seq);
                    last = Some(meta.seq);
                    if epochs.last() != Some(&meta.epoch) {
                        epochs.push(meta.epoch);
                    }
                    chunks += 1;
                    if chunks >= count || meta.seq >= until_seq {
                        break 'outer;
                    }
                }
                ReadOutcome::Lagged { missed, .. } => lagged += missed,
                ReadOutcome::NotYet => break,
            }
        }
        if last_check.elapsed() > Duration::from_millis(250) {
            last_check = Instant::now();
            if r.writer_health(Duration::from_millis(500)) != WriterHealth::Alive {
                let _ = r.reattach_if_replaced();
            }
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let epochs: Vec<String> = epochs.iter().map(u64::to_string).collect();
    say(&format!(
        "result chunks={chunks} first={} last={} gaps={gaps} lagged={lagged} bad={bad} epochs={} p50_ns={} p99_ns={} max_ns={}",
        first.map_or("-".into(), |v| v.to_string()),
        last.map_or("-".into(), |v| v.to_string()),
        epochs.join(","),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0),
    ));
    if args.flag("lat") {
        let all: Vec<String> = lat.iter().map(u64::to_string).collect();
        say(&format!("lat {}", all.join(" ")));
    }
    std::thread::sleep(Duration::from_millis(args.num("hold-ms", 0)?));
    Ok(())
}

fn attach(args: &Args) -> Result<(), String> {
    let r = AudioReader::attach(&args.ns()?, args.num("station", 0)? as u32)
        .map_err(|e| e.to_string())?;
    say(&format!("ok epoch={} cursor={}", r.epoch(), r.cursor()));
    Ok(())
}
