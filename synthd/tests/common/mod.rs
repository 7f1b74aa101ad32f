//! Test material shared by the integration tests, the demo example and the bench: a Focus-like
//! phrase (slow pad chords, a sparse piano melody, a bass on the roots, optional bells, shimmer
//! and soft percussion) at 60 BPM.
#![allow(dead_code)]

use shm_proto::{NoteEvent, Part, SAMPLE_RATE};

/// Frames per beat at 60 BPM.
pub const BEAT: u64 = SAMPLE_RATE as u64;
/// Frames per 4/4 bar.
pub const BAR: u64 = 4 * BEAT;

/// What to include besides pads, melody and bass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// Bells and shimmer on the texture part.
    pub texture: bool,
    /// Soft kick and shaker.
    pub percussion: bool,
    /// Alternate instruments (glass pad, electric piano) on odd 8-bar sections.
    pub alternate: bool,
}

/// A note event.
pub fn note(at: u64, dur: u64, part: Part, instrument: u8, pitch: u8, velocity: u8) -> NoteEvent {
    NoteEvent {
        at_frame: at,
        duration_frames: dur as u32,
        part: part as u8,
        instrument,
        pitch,
        velocity,
        bar: (at / BAR) as u32,
        _reserved: 0,
    }
}

/// `bars` bars of the phrase starting at frame `start`, in time order.
pub fn focus_phrase(start: u64, bars: u32, extras: Extras) -> Vec<NoteEvent> {
    const CHORDS: [([u8; 4], u8); 4] = [
        ([57, 60, 64, 67], 45), // Am7
        ([57, 60, 64, 65], 41), // Fmaj7
        ([55, 59, 60, 64], 48), // Cmaj7
        ([55, 59, 62, 64], 43), // G6
    ];
    const MELODY: [u8; 8] = [69, 72, 74, 76, 79, 81, 76, 72];
    let mut rng = 0x1234_5678u32;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let mut out = Vec::new();
    for bar in 0..bars {
        let t = start + u64::from(bar) * BAR;
        let (pad, bass) = CHORDS[bar as usize % 4];
        let alt = u8::from(extras.alternate && (bar / 8) % 2 == 1);
        for p in pad {
            out.push(note(t, BAR, Part::Pad, alt, p, 62));
        }
        out.push(note(t, BAR - BEAT / 4, Part::Bass, 0, bass, 70));
        // Melody: one or two notes per bar on beats 1..3.
        let count = 1 + (next() % 2) as u64;
        for k in 0..count {
            let beat = 1 + k + (next() % 2) as u64;
            let pitch = MELODY[(next() % 8) as usize];
            let vel = 50 + (next() % 30) as u8;
            out.push(note(
                t + beat * BEAT,
                BEAT + BEAT / 2,
                Part::Lead,
                alt,
                pitch,
                vel,
            ));
        }
        if extras.texture && bar % 4 == 2 {
            out.push(note(
                t + 2 * BEAT,
                2 * BEAT,
                Part::Texture,
                0,
                pad[3] + 24,
                45,
            ));
        }
        if extras.texture && bar % 8 == 4 {
            out.push(note(t, 4 * BAR, Part::Texture, 1, pad[0] + 12, 40));
        }
        if extras.percussion {
            if bar % 2 == 0 {
                out.push(note(t, BEAT / 2, Part::Percussion, 0, 36, 60));
            }
            for beat in 0..4 {
                out.push(note(
                    t + beat * BEAT + BEAT / 2,
                    BEAT / 4,
                    Part::Percussion,
                    0,
                    42,
                    35,
                ));
            }
            if bar % 4 == 3 {
                out.push(note(t + 3 * BEAT, BEAT / 2, Part::Percussion, 0, 38, 40));
                out.push(note(
                    t + 3 * BEAT + 3 * BEAT / 4,
                    BEAT / 4,
                    Part::Percussion,
                    0,
                    75,
                    30,
                ));
            }
        }
    }
    out.sort_by_key(|e| e.at_frame);
    out
}

/// Renders `frames` frames of `events` with fresh renderer, in blocks of `block` frames.
pub fn render(events: &[NoteEvent], frames: usize, block: usize) -> Vec<f32> {
    let mut r = synthd::StationRenderer::new(params(0.5));
    for e in events {
        assert!(r.push_event(e));
    }
    let mut out = vec![0.0f32; frames * 2];
    for chunk in out.chunks_mut(block * 2) {
        r.render_f32(chunk);
    }
    out
}

/// Station parameters with `intensity`.
pub fn params(intensity: f32) -> shm_proto::StationParams {
    shm_proto::StationParams {
        seed: 1,
        bpm: 60.0,
        intensity,
        key: 9,
        mode: 0,
        preset: 0,
        _reserved: 0,
    }
}
