//! The torch backend's tick allocates nothing on the Rust side: after warm-up, the daemon's path
//! for several stations — [`VoiceRoute::push_event`] (notes of every device family, percussion,
//! a burst that steals), [`VoiceRoute::stage`], one [`VoiceRoute::render`] and
//! [`VoiceRoute::render_station`] for each — runs under `assert_no_alloc` with its allocator
//! installed (the mechanism of `no_alloc.rs`; it counts per thread, so only this test's thread is
//! measured), and the violation count stays zero.
//!
//! What this proves and what it does not: Rust's global allocator sees every Rust heap
//! allocation — the host staging of the voice rows, the upload of those rows, the copy of the
//! engine's output back, the tensor handles and lists the render builds, and each station's CPU
//! work (pad filter, percussion, reverb, limiter) — so zero here means none of that allocates
//! per chunk. libtorch's own C++ allocator (its CPU and CUDA caching allocators, behind the FFI)
//! is outside Rust's global allocator and is not counted: device memory is bounded by the
//! pre-allocated batch instead (`VoiceEngine::memory_bytes`, tested in the crate's unit tests).
//! It runs on libtorch's CPU (`AURALIS_DEVICE=torch-cpu`), as the parity tests do.
#![cfg(feature = "torch")]

mod common;

use assert_no_alloc::{AllocDisabler, assert_no_alloc, reset_violation_count, violation_count};
use common::{BAR, Extras, focus_phrase, note, params};
use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, Part};
use synthd::StationRenderer;
use synthd::device::TorchDevice;
use synthd::torch::{VoiceEngine, VoiceRoute};

#[global_allocator]
static A: AllocDisabler = AllocDisabler;

/// Stations on the route (two device batches of two).
const STATIONS: usize = 4;
/// Chunks rendered before measuring: the renderers' and the route's first chunks.
const WARM_UP: u64 = 20;
/// Chunks rendered in all (about 26 s: pads, piano, bass, bells, shimmer and percussion sound).
const CHUNKS: u64 = 260;

#[test]
fn a_torch_tick_of_several_stations_never_allocates() {
    let extras = Extras {
        texture: true,
        percussion: true,
        alternate: true,
    };
    // Each station its own phrase, a third of a bar after the previous one, and its own intensity.
    let phrases: Vec<_> = (0..STATIONS as u64)
        .map(|s| focus_phrase(s * BAR / 3, 8, extras))
        .collect();
    let mut renderers: Vec<StationRenderer> = (0..STATIONS)
        .map(|s| StationRenderer::new(params(0.3 + 0.15 * s as f32)))
        .collect();
    let engine = VoiceEngine::new(TorchDevice::Cpu, STATIONS, 2).expect("engine");
    let mut route = VoiceRoute::new(engine, STATIONS);
    for (s, r) in renderers.iter().enumerate() {
        route.open(s, 0);
        assert!(route.routes(s, r));
    }
    let mut queued: Vec<_> = phrases.iter().map(|p| p.iter().peekable()).collect();
    let mut chunks = vec![[0i16; CHUNK_SAMPLES]; STATIONS];
    let mut sounded = false;
    for c in 0..CHUNKS {
        if c == WARM_UP {
            reset_violation_count();
        }
        let end = (c + 1) * CHUNK_FRAMES as u64;
        assert_no_alloc(|| {
            for (s, (r, q)) in renderers.iter_mut().zip(queued.iter_mut()).enumerate() {
                while let Some(e) = q.next_if(|e| e.at_frame < end) {
                    assert!(route.push_event(s, r, e), "pending queue full");
                }
                if c == 120 && s == 1 {
                    // More pad notes than device slots: stealing on the render path.
                    for i in 0..40u8 {
                        let at = end - 1000 + u64::from(i);
                        route.push_event(s, r, &note(at, 20_000, Part::Pad, 0, 40 + i, 80));
                    }
                }
                route.stage(s, r.clock());
            }
            route.render().expect("torch render");
            for (k, (r, chunk)) in renderers.iter_mut().zip(chunks.iter_mut()).enumerate() {
                route.render_station(k, r, chunk);
            }
            route.clear();
        });
        sounded |= chunks.iter().all(|ch| ch.iter().any(|&x| x != 0));
    }
    assert!(sounded, "every station sounds");
    assert!(
        route.engine().voices().steals() > 0,
        "the burst stole voices"
    );
    assert_eq!(violation_count(), 0, "the torch tick allocated");
}
