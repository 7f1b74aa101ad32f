//! Renders a minute of Focus-like material to `/tmp/synthd_demo.wav` (or the path given) and
//! prints its loudness and true peak: `cargo run -p synthd --release --example demo [OUT.wav]`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Extras, focus_phrase};
use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, SAMPLE_RATE};
use synthd::StationRenderer;
use synthd::loudness::{integrated_lufs, true_peak_dbfs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/synthd_demo.wav".into());
    let extras = Extras {
        texture: true,
        percussion: true,
        alternate: true,
    };
    let events = focus_phrase(0, 16, extras);
    let mut r = StationRenderer::new(common::params(0.5));
    let chunks = 60 * SAMPLE_RATE as usize / CHUNK_FRAMES;
    let mut spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    spec.bits_per_sample = 16;
    let mut wav = hound::WavWriter::create(&path, spec)?;
    let mut pcm = Vec::with_capacity(chunks * CHUNK_SAMPLES);
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let mut queued = events.iter().peekable();
    let mut max_voices = 0;
    for _ in 0..chunks {
        let end = r.clock() + CHUNK_FRAMES as u64;
        while let Some(e) = queued.next_if(|e| e.at_frame < end) {
            r.push_event(e);
        }
        r.render_chunk(&mut chunk);
        max_voices = max_voices.max(r.voices_active());
        for &s in &chunk {
            wav.write_sample(s)?;
        }
        pcm.extend(chunk.iter().map(|&s| f32::from(s) / 32_768.0));
    }
    wav.finalize()?;
    println!(
        "{path}: {} events, {:.2} LUFS integrated, true peak {:.2} dBFS, max voices {max_voices}",
        events.len(),
        integrated_lufs(&pcm),
        true_peak_dbfs(&pcm)
    );
    Ok(())
}
