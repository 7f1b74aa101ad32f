//! How many stations one core renders in real time with the built-in instruments: N independent
//! stations (different seeds, composer's Focus preset) rendered chunk by chunk, round-robin, on
//! one thread, as the daemon does. A count keeps up when the whole round (one 100 ms chunk of
//! every station) takes less than 100 ms on average and its 99th percentile stays under 100 ms;
//! the bench reports the largest such N.
//!
//! Round times are the thread's CPU time, so the count means "one core's worth" even while other
//! processes share the machine.
//!
//! `cargo bench -p synthd --bench stations`

use composer::{Composer, Params, PresetId};
use shm_proto::{CHUNK_FRAMES, CHUNK_MS, CHUNK_SAMPLES, NoteEvent};
use synthd::StationRenderer;

/// Rounds rendered before timing (voices build up).
const WARMUP: usize = 20;
/// Rounds timed per count.
const MEASURED: usize = 40;

/// One station's composed notes for the whole run.
fn compose(seed: u64) -> (StationRenderer, Vec<NoteEvent>) {
    let params = Params::from_preset(PresetId::FOCUS, seed);
    let mut composer = Composer::new(seed, params);
    let end = ((WARMUP + MEASURED + 1) * CHUNK_FRAMES) as u64;
    let mut events = Vec::new();
    let mut bar = Vec::new();
    while composer.composed_until_frame() < end {
        bar.clear();
        composer.next_bar(&mut bar);
        events.extend_from_slice(&bar);
    }
    (StationRenderer::new(params.to_station()), events)
}

/// Mean and 99th-percentile round time (ms) for `n` stations.
fn measure(n: usize) -> (f64, f64) {
    let mut stations: Vec<(StationRenderer, Vec<NoteEvent>, usize)> = (0..n)
        .map(|i| {
            let (r, e) = compose(1000 + i as u64);
            (r, e, 0)
        })
        .collect();
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let mut rounds = Vec::with_capacity(MEASURED);
    for round in 0..WARMUP + MEASURED {
        let t0 = cpu_now();
        for (r, events, next) in &mut stations {
            let end = r.clock() + CHUNK_FRAMES as u64;
            while *next < events.len() && events[*next].at_frame < end {
                r.push_event(&events[*next]);
                *next += 1;
            }
            r.render_chunk(&mut chunk);
        }
        if round >= WARMUP {
            rounds.push((cpu_now() - t0).as_secs_f64() * 1e3);
        }
        std::hint::black_box(&chunk);
    }
    rounds.sort_by(f64::total_cmp);
    let mean = rounds.iter().sum::<f64>() / rounds.len() as f64;
    let p99 = rounds[(rounds.len() * 99 / 100).min(rounds.len() - 1)];
    (mean, p99)
}

/// This thread's CPU clock: the time it ran, not the time it waited for the core while other
/// processes used it (this VM is shared).
fn cpu_now() -> std::time::Duration {
    std::time::Duration::from(
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .expect("thread CPU clock"),
    )
}

fn keeps_up((mean, p99): (f64, f64)) -> bool {
    mean < CHUNK_MS as f64 && p99 < CHUNK_MS as f64
}

fn main() {
    // Estimate from a small count, then search around the estimate.
    let probe = 16;
    let (mean, _) = measure(probe);
    let per_station = mean / probe as f64;
    println!(
        "{probe} stations: {mean:.2} ms per 100 ms round ({per_station:.3} ms per station-chunk)"
    );
    let mut lo = 0usize; // keeps up
    let mut hi = usize::MAX; // does not
    let mut n = ((CHUNK_MS as f64 / per_station) as usize).max(1);
    for _ in 0..8 {
        let m = measure(n);
        println!(
            "{n} stations: mean {:.1} ms, p99 {:.1} ms per 100 ms round: {}",
            m.0,
            m.1,
            if keeps_up(m) {
                "keeps up"
            } else {
                "falls behind"
            }
        );
        if keeps_up(m) {
            lo = n;
        } else {
            hi = n;
        }
        if hi != usize::MAX && hi - lo <= (lo / 50).max(1) {
            break;
        }
        n = if hi == usize::MAX {
            n + n / 10 + 1
        } else {
            (lo + hi) / 2
        };
        if n == lo {
            break;
        }
    }
    println!("stations one core renders in real time (built-in instruments, Focus material): {lo}");
}
