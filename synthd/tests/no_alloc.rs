//! The render path allocates nothing: every render (notes starting, stealing, reverb, limiter) runs
//! under `assert_no_alloc` with its allocator installed, and the violation count stays zero.

mod common;

use assert_no_alloc::{AllocDisabler, assert_no_alloc, reset_violation_count, violation_count};
use common::{Extras, focus_phrase, note, params};
use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, Part};
use synthd::StationRenderer;

#[global_allocator]
static A: AllocDisabler = AllocDisabler;

#[test]
fn render_chunk_and_push_event_never_allocate() {
    let extras = Extras {
        texture: true,
        percussion: true,
        alternate: true,
    };
    let events = focus_phrase(0, 16, extras);
    let mut r = StationRenderer::new(params(0.5));
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let mut f32_out = [0.0f32; 2 * 333];
    reset_violation_count();
    let mut queued = events.iter().peekable();
    for c in 0..300u64 {
        let end = (c + 1) * CHUNK_FRAMES as u64;
        assert_no_alloc(|| {
            while let Some(e) = queued.next_if(|e| e.at_frame < end) {
                assert!(r.push_event(e));
            }
            if c == 100 {
                // More notes than voices: stealing on the render path.
                for i in 0..80u8 {
                    r.push_event(&note(
                        end - 1000 + u64::from(i),
                        20_000,
                        Part::Lead,
                        1,
                        40 + i % 48,
                        90,
                    ));
                }
            }
            if c % 3 == 0 {
                r.render_f32(&mut f32_out);
            }
            r.render_chunk(&mut chunk);
            r.set_params(params((c % 10) as f32 / 10.0));
        });
    }
    assert!(r.steals() > 0);
    assert_eq!(violation_count(), 0, "the render path allocated");
}

#[test]
fn the_soundfont_path_never_allocates_while_rendering() {
    // Debian's fluid-soundfont-gm; without it there is nothing to test here.
    let path = std::path::Path::new("/usr/share/sounds/sf2/FluidR3_GM.sf2");
    if !path.exists() {
        eprintln!("skipped: {} is missing", path.display());
        return;
    }
    let bank = synthd::SoundFontBank::load(path).unwrap();
    let events = focus_phrase(0, 8, Extras::default());
    let mut r = StationRenderer::with_soundfont(params(0.5), &bank);
    let mut chunk = [0i16; CHUNK_SAMPLES];
    reset_violation_count();
    let mut queued = events.iter().peekable();
    for c in 0..120u64 {
        let end = (c + 1) * CHUNK_FRAMES as u64;
        assert_no_alloc(|| {
            while let Some(e) = queued.next_if(|e| e.at_frame < end) {
                assert!(r.push_event(e));
            }
            r.render_chunk(&mut chunk);
        });
    }
    assert!(chunk.iter().any(|&s| s != 0), "the SoundFont sounds");
    assert_eq!(violation_count(), 0, "the SoundFont render path allocated");
}
