//! Each instrument alone: it sounds, it stays well inside full scale, it ends.

use shm_proto::NoteEvent;

use super::Instrument;
use crate::osc::Tables;
use crate::voice::{BLOCK, Ctx, Scratch, Voice};

fn event(part: u8, instrument: u8, pitch: u8, velocity: u8) -> NoteEvent {
    NoteEvent {
        at_frame: 0,
        duration_frames: 44_100,
        part,
        instrument,
        pitch,
        velocity,
        bar: 0,
        _reserved: 0,
    }
}

/// Renders one note for 20 s; returns (peak, rms over the first 2 s, active at the end).
fn play(ev: &NoteEvent) -> (f32, f32, bool) {
    let ctx = Ctx {
        tables: Tables::get(),
        brightness: 0.5,
    };
    let mut v = Voice::idle(ctx.tables);
    let inst = Instrument::for_event(ev).unwrap();
    v.start(inst, ev, 0, &ctx);
    let mut scratch = Scratch::new();
    let (mut peak, mut sum) = (0.0f32, 0.0f64);
    let blocks = 20 * 44_100 / BLOCK;
    for b in 0..blocks {
        let mut l = [0.0f32; BLOCK];
        let mut r = [0.0f32; BLOCK];
        if v.is_active() {
            v.render(&ctx, 0, &mut scratch, &mut l, &mut r);
        }
        for (x, y) in l.iter().zip(&r) {
            assert!(x.is_finite() && y.is_finite(), "{inst:?}");
            peak = peak.max(x.abs()).max(y.abs());
            if b * BLOCK < 88_200 {
                sum += f64::from(x * x + y * y);
            }
        }
    }
    (peak, (sum / (2.0 * 88_200.0)).sqrt() as f32, v.is_active())
}

#[test]
fn every_instrument_sounds_quietly_and_ends() {
    let cases = [
        (0, 0, 48),
        (0, 1, 60),
        (1, 0, 72),
        (1, 1, 72),
        (2, 0, 36),
        (3, 0, 84),
        (3, 1, 76),
        (4, 0, 36),
        (4, 0, 38),
        (4, 0, 42),
        (4, 0, 75),
    ];
    for (part, inst, pitch) in cases {
        for velocity in [20, 127] {
            let ev = event(part, inst, pitch, velocity);
            let (peak, rms, active) = play(&ev);
            let name = Instrument::for_event(&ev).unwrap();
            assert!(rms > 1e-4, "{name:?} v{velocity} silent: rms {rms}");
            assert!(peak < 0.6, "{name:?} v{velocity} too loud: peak {peak}");
            assert!(!active, "{name:?} still sounding after 20 s");
        }
    }
}

#[test]
fn extreme_pitches_stay_finite_and_bounded() {
    for (part, inst) in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (3, 0), (3, 1)] {
        for pitch in [0, 127] {
            let (peak, _, _) = play(&event(part, inst, pitch, 127));
            assert!(peak < 1.0, "part {part} inst {inst} pitch {pitch}: {peak}");
        }
    }
}

#[test]
fn unknown_indices_fall_back_to_instrument_zero() {
    assert_eq!(
        Instrument::for_event(&event(0, 9, 60, 1)),
        Some(Instrument::WarmPad)
    );
    assert_eq!(
        Instrument::for_event(&event(1, 200, 60, 1)),
        Some(Instrument::SoftPiano)
    );
    assert_eq!(
        Instrument::for_event(&event(4, 0, 99, 1)),
        Some(Instrument::Kick)
    );
    assert_eq!(Instrument::for_event(&event(9, 0, 60, 1)), None);
}
