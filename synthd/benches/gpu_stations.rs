//! The torch backend's batched render, through the daemon's route ([`VoiceRoute`]): N stations of
//! the Focus preset (composer's whole Focus song: warm pad, round bass, soft piano, bell and
//! percussion), every routed voice (pads, bass, piano, bell) rendered in one batch per 100 ms
//! chunk, N from 1 doubling to `--max`, then each station's CPU part (pad filter, the
//! percussion, reverb, loudness hold, limiter) in its `StationRenderer`. Reports the batched
//! render's ms per chunk (wall time, including the upload of the voice rows and the copy of the
//! result back to the host), the stations that keeps in real time, the largest N under 50 ms per
//! chunk, and the host part's ms per chunk for all N stations on one thread; then the native
//! engine's stations per core on the same notes (the full native chain: every voice with its
//! filters, reverb and limiter, one thread, thread CPU time).
//!
//! ```text
//! scripts/install-torch.sh   # then export what it prints
//! CARGO_TARGET_DIR=target/torch cargo bench -p synthd --features torch --bench gpu_stations -- \
//!     --device cuda --max 8192
//! ```
//! `--device torch-cpu` runs on libtorch's CPU (default when no GPU is found); `GPU_BATCH_SIZE`
//! sets the stations per device batch (default 1024).

use std::time::Instant;

use composer::{Composer, Params, PresetId};
use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, NoteEvent};
use synthd::StationRenderer;
use synthd::device::{TorchDevice, batch_size};
use synthd::torch::{VoiceEngine, VoiceRoute, cuda_available};

/// Chunks rendered before timing (voices build up: the Focus parts enter within a few seconds).
const WARMUP: usize = 30;
/// Distinct composed stations (seeds); station `s` plays seed `s % SEEDS`, shifted in time.
const SEEDS: u64 = 16;

struct Args {
    device: TorchDevice,
    max: usize,
    chunks: usize,
    /// Stop doubling once a chunk takes longer than this (ms): libtorch's CPU gets slow.
    stop_ms: f64,
}

fn args() -> Args {
    let mut a = Args {
        device: if cuda_available() {
            TorchDevice::Cuda
        } else {
            TorchDevice::Cpu
        },
        max: 8192,
        chunks: 20,
        stop_ms: 2_000.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => {
                a.device = match value().as_str() {
                    "cuda" => TorchDevice::Cuda,
                    "torch-cpu" | "cpu" => TorchDevice::Cpu,
                    d => panic!("unknown device {d}"),
                }
            }
            "--max" => a.max = value().parse().expect("--max N"),
            "--chunks" => a.chunks = value().parse().expect("--chunks N"),
            "--stop-ms" => a.stop_ms = value().parse().expect("--stop-ms MS"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    if a.device == TorchDevice::Cuda && !cuda_available() {
        panic!("--device cuda: libtorch finds no CUDA device");
    }
    a
}

/// Every event of one composed Focus station over `chunks` chunks, in time order.
fn focus_song(seed: u64, chunks: usize) -> Vec<NoteEvent> {
    let params = Params::from_preset(PresetId::FOCUS, seed);
    let mut composer = Composer::new(seed, params);
    let end = (chunks * CHUNK_FRAMES) as u64;
    let (mut events, mut bar) = (Vec::new(), Vec::new());
    while composer.composed_until_frame() < end {
        bar.clear();
        composer.next_bar(&mut bar);
        events.extend_from_slice(&bar);
    }
    events.sort_by_key(|e| e.at_frame);
    events
}

fn main() {
    let a = args();
    let total = WARMUP + a.chunks;
    let songs: Vec<Vec<NoteEvent>> = (0..SEEDS).map(|s| focus_song(1000 + s, total)).collect();
    let where_ = match a.device {
        TorchDevice::Cuda => "CUDA",
        TorchDevice::Cpu => "libtorch's CPU (NOT a GPU)",
    };
    println!(
        "torch backend on {where_}, {} stations per batch, {} chunks timed after {WARMUP}",
        batch_size(),
        a.chunks
    );
    println!(
        "stations | device ms per chunk (mean) | p99 | stations in real time | host ms per chunk (mean, one thread)"
    );
    let mut best_under_50 = 0;
    let mut n = 1;
    while n <= a.max {
        let engine = VoiceEngine::new(a.device, n, batch_size()).expect("engine");
        let mut route = VoiceRoute::new(engine, n);
        let mut renderers: Vec<StationRenderer> = (0..n)
            .map(|s| {
                let params = Params::from_preset(PresetId::FOCUS, 1000 + (s as u64 % SEEDS));
                StationRenderer::new(params.to_station())
            })
            .collect();
        let mut next = vec![0usize; n];
        let mut out = [0i16; CHUNK_SAMPLES];
        let mut times = Vec::with_capacity(a.chunks);
        let mut host_ms = 0.0;
        for chunk in 0..total {
            let t0 = Instant::now();
            for (s, r) in renderers.iter_mut().enumerate() {
                let song = &songs[s % SEEDS as usize];
                let end = r.clock() + CHUNK_FRAMES as u64;
                while next[s] < song.len() && song[next[s]].at_frame < end {
                    assert!(route.push_event(s, r, &song[next[s]]), "queue full");
                    next[s] += 1;
                }
                route.stage(s, r.clock());
            }
            route.render().expect("render");
            let t1 = Instant::now();
            for (s, r) in renderers.iter_mut().enumerate() {
                route.render_station(s, r, &mut out);
                std::hint::black_box(&out);
            }
            route.clear();
            if chunk >= WARMUP {
                times.push((t1 - t0).as_secs_f64() * 1e3);
                host_ms += t1.elapsed().as_secs_f64() * 1e3;
            }
        }
        let host_ms = host_ms / a.chunks as f64;
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
        let real_time = if mean < 100.0 {
            format!("{:.0}", n as f64 * 100.0 / mean)
        } else {
            "falls behind".into()
        };
        println!("{n:>8} | {mean:>26.2} | {p99:>7.2} | {real_time:>21} | {host_ms:.2}");
        if p99 < 50.0 {
            best_under_50 = n;
        }
        if mean > a.stop_ms {
            println!("(stopping: over {} ms per chunk)", a.stop_ms);
            break;
        }
        n *= 2;
    }
    println!("largest N under 50 ms per chunk (p99): {best_under_50}");

    // The native engine on the same notes, one thread.
    let stations = 16;
    let mut renderers: Vec<(StationRenderer, usize)> = (0..stations)
        .map(|s| {
            let params = Params::from_preset(PresetId::FOCUS, 1000 + s as u64);
            (StationRenderer::new(params.to_station()), 0)
        })
        .collect();
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let mut cpu_ms = 0.0;
    for c in 0..total {
        let t0 = cpu_now();
        for (s, (r, next)) in renderers.iter_mut().enumerate() {
            let song = &songs[s % SEEDS as usize];
            let end = r.clock() + CHUNK_FRAMES as u64;
            while *next < song.len() && song[*next].at_frame < end {
                r.push_event(&song[*next]);
                *next += 1;
            }
            r.render_chunk(&mut chunk);
        }
        if c >= WARMUP {
            cpu_ms += (cpu_now() - t0).as_secs_f64() * 1e3;
        }
        std::hint::black_box(&chunk);
    }
    let per_station = cpu_ms / (a.chunks * stations) as f64;
    println!(
        "native engine, same notes (every voice with its filters, reverb, limiter): \
         {per_station:.3} ms per station-chunk on one core = {:.0} stations per core",
        100.0 / per_station
    );
}

/// This thread's CPU time (the machine is shared).
fn cpu_now() -> std::time::Duration {
    std::time::Duration::from(
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .expect("thread CPU clock"),
    )
}
