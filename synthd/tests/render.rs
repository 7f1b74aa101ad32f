//! StationRenderer behaviour: block-size independence, finiteness, no clicks at chunk boundaries,
//! silence, stealing, lateness, loudness and peak.

mod common;

use std::time::Instant;

use common::{BAR, BEAT, Extras, focus_phrase, note, params, render};
use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, NoteEvent, Part, SAMPLE_RATE};
use synthd::StationRenderer;
use synthd::loudness::{integrated_lufs, true_peak_dbfs};

const ALL: Extras = Extras {
    texture: true,
    percussion: true,
    alternate: true,
};

#[test]
fn output_does_not_depend_on_block_size() {
    let events = focus_phrase(0, 4, ALL);
    let frames = 4 * BAR as usize;
    let reference = render(&events, frames, CHUNK_FRAMES);
    for block in [1, 7, 64, 100, 1000, 4096] {
        assert!(
            render(&events, frames, block) == reference,
            "block {block} differs"
        );
    }
    // Irregular blocks too.
    let mut r = StationRenderer::new(params(0.5));
    events.iter().for_each(|e| assert!(r.push_event(e)));
    let mut out = vec![0.0f32; frames * 2];
    let mut pos = 0;
    let mut k = 1usize;
    while pos < frames {
        let n = (k * 37 % 3001 + 1).min(frames - pos);
        r.render_f32(&mut out[2 * pos..2 * (pos + n)]);
        pos += n;
        k += 1;
    }
    assert!(out == reference, "irregular blocks differ");
}

#[test]
fn render_chunk_matches_render_f32_and_advances_the_clock() {
    let events = focus_phrase(0, 1, Extras::default());
    let reference = render(&events, 10 * CHUNK_FRAMES, 333);
    let mut r = StationRenderer::new(params(0.5));
    events.iter().for_each(|e| assert!(r.push_event(e)));
    let mut chunk = [0i16; CHUNK_SAMPLES];
    for c in 0..10 {
        r.render_chunk(&mut chunk);
        assert_eq!(r.clock(), (c + 1) * CHUNK_FRAMES as u64);
        for (i, &s) in chunk.iter().enumerate() {
            let want = reference[c as usize * CHUNK_SAMPLES + i] * 32_767.0;
            assert!(
                (f32::from(s) - want).abs() <= 0.5 + 1e-3,
                "chunk {c} sample {i}"
            );
        }
    }
}

#[test]
fn stress_stays_finite_and_under_the_ceiling() {
    let mut r = StationRenderer::new(params(1.0));
    let mut x = 99u32;
    let mut rnd = move |m: u32| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x % m
    };
    let mut out = vec![0.0f32; 2 * CHUNK_FRAMES];
    let ceiling = 10f32.powf(-1.5 / 20.0);
    for c in 0..300u64 {
        for _ in 0..rnd(12) {
            let ev = NoteEvent {
                at_frame: c * CHUNK_FRAMES as u64 + u64::from(rnd(CHUNK_FRAMES as u32)),
                duration_frames: rnd(200_000),
                part: rnd(6) as u8,
                instrument: rnd(3) as u8,
                pitch: rnd(128) as u8,
                velocity: rnd(128) as u8,
                bar: 0,
                _reserved: 0,
            };
            r.push_event(&ev);
        }
        r.render_f32(&mut out);
        for &s in &out {
            assert!(
                s.is_finite() && s.abs() <= ceiling * 1.0001,
                "chunk {c}: {s}"
            );
        }
    }
    assert!(r.steals() > 0, "the stress should have needed stealing");
}

#[test]
fn chunk_boundaries_do_not_click() {
    let events = focus_phrase(0, 4, ALL);
    let out = render(&events, 4 * BAR as usize, CHUNK_FRAMES);
    let (mut boundary, mut interior) = (0.0f32, 0.0f32);
    for ch in 0..2 {
        for n in 1..out.len() / 2 {
            let d = (out[2 * n + ch] - out[2 * (n - 1) + ch]).abs();
            if n % CHUNK_FRAMES == 0 {
                boundary = boundary.max(d);
            } else {
                interior = interior.max(d);
            }
        }
    }
    assert!(
        boundary <= interior,
        "boundary step {boundary} > interior {interior}"
    );
}

#[test]
fn silent_station_stays_silent_and_fast() {
    let mut r = StationRenderer::new(params(0.5));
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let t0 = Instant::now();
    for _ in 0..100 {
        r.render_chunk(&mut chunk);
        assert!(chunk.iter().all(|&s| s == 0));
    }
    let silent = t0.elapsed();
    // Sound, then two minutes of silence: the tail must not leave subnormal state behind.
    r.push_event(&note(r.clock(), BEAT, Part::Pad, 0, 60, 100));
    r.push_event(&note(r.clock(), BEAT, Part::Texture, 0, 84, 100));
    r.push_event(&note(r.clock(), BEAT, Part::Percussion, 0, 36, 100));
    for _ in 0..1200 {
        r.render_chunk(&mut chunk);
    }
    assert!(chunk.iter().all(|&s| s == 0), "tail gone after two minutes");
    assert_eq!(r.voices_active(), 0);
    assert!(!r.has_subnormal_state());
    let t1 = Instant::now();
    for _ in 0..100 {
        r.render_chunk(&mut chunk);
    }
    let after = t1.elapsed();
    assert!(
        after < silent * 4 + std::time::Duration::from_millis(50),
        "{after:?} vs {silent:?}"
    );
}

#[test]
fn stealing_keeps_the_pool_bounded() {
    let mut r = StationRenderer::new(params(0.5));
    for i in 0..100u8 {
        assert!(r.push_event(&note(
            u64::from(i) * 10,
            10 * BEAT,
            Part::Pad,
            0,
            30 + i % 60,
            80
        )));
    }
    let mut out = vec![0.0f32; 2 * CHUNK_FRAMES];
    r.render_f32(&mut out);
    assert!(r.voices_active() <= 72, "{}", r.voices_active());
    assert!(r.voices_active() >= 64);
    assert_eq!(r.steals(), 36);
    assert!(out.iter().all(|s| s.is_finite()));
}

#[test]
fn late_events_start_at_once_or_are_dropped() {
    let mut r = StationRenderer::new(params(0.5));
    r.set_clock(10 * SAMPLE_RATE as u64);
    let now = r.clock();
    r.push_event(&note(
        now - SAMPLE_RATE as u64 / 2,
        BEAT,
        Part::Lead,
        0,
        60,
        90,
    ));
    r.push_event(&note(
        now - 2 * SAMPLE_RATE as u64,
        BEAT,
        Part::Lead,
        0,
        64,
        90,
    ));
    let mut chunk = [0i16; CHUNK_SAMPLES];
    r.render_chunk(&mut chunk);
    assert_eq!(r.voices_active(), 1);
    assert_eq!(r.dropped_events(), 1);
    assert!(chunk.iter().any(|&s| s != 0));
}

#[test]
fn events_start_at_their_exact_frame() {
    let at = 12_345;
    let out = render(
        &[note(at, BEAT, Part::Percussion, 0, 38, 127)],
        20_000,
        4410,
    );
    // (The reverb's 1e-18 anti-denormal offset is not sound: look for anything above -180 dB.)
    let first = out
        .chunks(2)
        .position(|f| f[0].abs() > 1e-9 || f[1].abs() > 1e-9)
        .unwrap();
    // The limiter's look-ahead delays everything by 63 frames.
    assert_eq!(first as u64, at + synthd::limiter::LOOKAHEAD as u64 - 1);
}

#[test]
fn intensity_brightens_smoothly() {
    let band_energy = |intensity: f32| {
        let mut r = StationRenderer::new(params(intensity));
        for p in [48, 55, 60, 64] {
            r.push_event(&note(0, 4 * BEAT, Part::Pad, 0, p, 90));
        }
        let mut out = vec![0.0f32; 2 * 3 * SAMPLE_RATE as usize];
        r.render_f32(&mut out);
        // First difference emphasises highs; normalise by the level.
        let diff: f32 = out
            .windows(3)
            .step_by(2)
            .map(|w| (w[2] - w[0]).powi(2))
            .sum();
        let level: f32 = out.iter().map(|s| s * s).sum();
        diff / level
    };
    assert!(band_energy(1.0) > 1.5 * band_energy(0.0));
    // A jump in intensity produces no jump in the output.
    let mut r = StationRenderer::new(params(0.0));
    r.push_event(&note(0, 8 * BEAT, Part::Pad, 0, 48, 100));
    let mut out = vec![0.0f32; 2 * 2 * SAMPLE_RATE as usize];
    r.render_f32(&mut out);
    r.set_params(params(1.0));
    let mut after = vec![0.0f32; 2 * 4410];
    r.render_f32(&mut after);
    let step = (after[0] - out[out.len() - 2]).abs();
    let typical = out
        .windows(2)
        .step_by(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max);
    assert!(step <= typical, "{step} > {typical}");
}

#[test]
fn a_minute_of_focus_material_is_near_minus_16_lufs_with_true_peak_under_minus_1() {
    let events = focus_phrase(0, 15, ALL);
    let out = render(&events, 60 * SAMPLE_RATE as usize, CHUNK_FRAMES);
    let lufs = integrated_lufs(&out);
    let tp = true_peak_dbfs(&out);
    assert!((lufs + 16.0).abs() < 1.0, "{lufs:.2} LUFS");
    assert!(tp < -1.0, "true peak {tp:.2} dBFS");
}
