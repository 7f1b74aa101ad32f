//! One 8-bar phrase at 60 BPM (32 s of stereo: four-note pad chords, a piano melody, a bass line,
//! with reverb and limiter), rendered in 4,410-frame chunks on one core.
//! `cargo bench -p synthd --bench phrase`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{BAR, Extras, focus_phrase, params};
use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, SAMPLE_RATE};
use synthd::StationRenderer;

fn main() {
    let events = focus_phrase(0, 8, Extras::default());
    let frames = 8 * BAR as usize;
    let chunks = frames.div_ceil(CHUNK_FRAMES);
    let seconds = (chunks * CHUNK_FRAMES) as f64 / f64::from(SAMPLE_RATE);
    let mut best = f64::INFINITY;
    let mut max_voices = 0;
    for _ in 0..10 {
        let mut r = StationRenderer::new(params(0.5));
        let mut chunk = [0i16; CHUNK_SAMPLES];
        let mut queued = events.iter().peekable();
        let t0 = Instant::now();
        for _ in 0..chunks {
            let end = r.clock() + CHUNK_FRAMES as u64;
            while let Some(e) = queued.next_if(|e| e.at_frame < end) {
                r.push_event(e);
            }
            r.render_chunk(&mut chunk);
            max_voices = max_voices.max(r.voices_active());
        }
        best = best.min(t0.elapsed().as_secs_f64());
        std::hint::black_box(&chunk);
    }
    // The master bus alone (reverb + limiter on silence).
    let mut r = StationRenderer::new(params(0.5));
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let t0 = Instant::now();
    for _ in 0..chunks {
        r.render_chunk(&mut chunk);
    }
    let master = t0.elapsed().as_secs_f64();
    println!("master bus alone: {:.1} ms", master * 1e3);
    println!(
        "phrase: {} notes, {seconds:.1} s stereo, up to {max_voices} voices: {:.1} ms (best of 10), {:.0}x real time",
        events.len(),
        best * 1e3,
        seconds / best
    );
}
