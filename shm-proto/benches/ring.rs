//! Audio-ring benchmark: publish-to-read latency and throughput with 1, 8 and 64 reader
//! *processes* (`shm-probe reader`, blocked in `AudioReader::wait` on the futex), paced at the
//! real rate (10 chunks/s) and flat out. Latency runs from the start of `publish` (a
//! CLOCK_MONOTONIC stamp in the slot) to the reader holding the whole chunk. Prints a markdown
//! table. Run: `cargo bench -p shm-proto`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shm_proto::{AudioWriter, CHUNK_BYTES, CHUNK_SAMPLES, Namespace, StationParams};

const PROBE: &str = env!("CARGO_BIN_EXE_shm-probe");
const SLOTS: u32 = 32;

/// Reader processes, killed and reaped on drop.
struct Readers(Vec<(Child, BufReader<std::process::ChildStdout>)>);

impl Drop for Readers {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn next_line(out: &mut BufReader<std::process::ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("reader exited before printing {prefix:?}");
        }
        if line.starts_with(prefix) {
            return line.trim_end().to_owned();
        }
    }
}

struct Row {
    mode: &'static str,
    readers: usize,
    published: u64,
    rate: f64,
    delivered: f64,
    lost: f64,
    lat_us: [f64; 3],
}

fn run(ns: &Namespace, station: u32, readers: usize, paced: bool) -> Row {
    let mut w = AudioWriter::create_or_adopt(ns, station, SLOTS).expect("create ring");
    let count: u64 = match (paced, quick()) {
        (true, false) => 30,
        (false, false) => 20_000,
        (_, true) => 3,
    };
    let mut procs = Readers(Vec::new());
    for _ in 0..readers {
        let args = [
            "reader",
            "--ns",
            ns.as_str(),
            "--station",
            &station.to_string(),
        ];
        let until = (count - 1).to_string();
        let mut child = Command::new(PROBE)
            .args(args)
            .args(["--until-seq", &until, "--timeout-ms", "30000", "--lat"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn shm-probe");
        let out = BufReader::new(child.stdout.take().unwrap());
        procs.0.push((child, out));
    }
    for (_, out) in &mut procs.0 {
        next_line(out, "attached");
    }
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
        // The probe's check pattern (see `shm-probe`), so readers verify every chunk.
        for (i, s) in chunk.iter_mut().enumerate() {
            *s = (k.wrapping_mul(7919).wrapping_add(i as u64 * 31)) as i16;
        }
        w.publish(&chunk, params, 1);
        if paced {
            let due = start + Duration::from_millis(100) * (k as u32 + 1);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (mut lat, mut delivered, mut lost) = (Vec::new(), 0u64, 0u64);
    for (_, out) in &mut procs.0 {
        let result = next_line(out, "result");
        let field = |k: &str| -> u64 {
            result
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0)
        };
        delivered += field("chunks");
        lost += field("lagged");
        assert_eq!(field("bad"), 0, "torn chunk reported: {result}");
        let l = next_line(out, "lat");
        lat.extend(
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse::<u64>().ok()),
        );
    }
    drop(procs);
    let _ = w.unlink();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1e3
    };
    Row {
        mode: if paced { "10 chunks/s" } else { "flat out" },
        readers,
        published: count,
        rate: count as f64 / elapsed,
        delivered: delivered as f64 / readers as f64,
        lost: lost as f64 / readers as f64,
        lat_us: [
            pct(0.5),
            pct(0.99),
            lat.last().copied().unwrap_or(0) as f64 / 1e3,
        ],
    }
}

/// `cargo bench` passes `--bench`; `cargo test --all-targets` does not: then only a smoke run.
fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn main() {
    let ns = Namespace::new(&format!("bench{}", std::process::id())).unwrap();
    let _ = ns.remove_all();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\naudio ring: {SLOTS} slots of {CHUNK_BYTES} B, reader processes blocked in futex wait, {cores} cores\n"
    );
    println!(
        "| mode | reader procs | chunks | writer chunks/s | writer MB/s | delivered/reader | lost/reader | p50 µs | p99 µs | max µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut station = 0;
    for paced in [true, false] {
        let counts: &[usize] = if quick() { &[1] } else { &[1, 8, 64] };
        for &readers in counts {
            let r = run(&ns, station, readers, paced);
            station += 1;
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
                r.mode,
                r.readers,
                r.published,
                r.rate,
                r.rate * CHUNK_BYTES as f64 / 1e6,
                r.delivered,
                r.lost,
                r.lat_us[0],
                r.lat_us[1],
                r.lat_us[2],
            );
        }
    }
    let _ = ns.remove_all();
}
