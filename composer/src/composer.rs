//! The [`Composer`]: turns parameters and a seed into a deterministic stream of bars of notes.
//!
//! Determinism: all randomness comes from ChaCha8 streams seeded from the seed (one stream per
//! concern, so that, say, a change of percussion amount does not change the melody). Output
//! depends only on the seed, the parameters in force at each bar and the number of bars asked
//! for, never on wall-clock time or on how fast bars are requested.
//!
//! Live changes ([`Composer::set_params`]) apply from the next bar composed: intensity simply
//! changes density and velocity from then on; a new key or mode starts on a pivot chord (the
//! chord of the new scale sharing most tones with the last chord) voiced as close as possible to
//! the last voicing; a new tempo changes the length of the coming bars.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shm_proto::{NoteEvent, Part, SAMPLE_RATE};

use crate::harmony::ChordWalk;
use crate::melody::{EIGHTHS_PER_BAR, MelodyLine};
use crate::params::Params;
use crate::percussion;
use crate::scales::Scale;
use crate::voicing::{PAD_REGISTER, Voicing, bass_answer, bass_note, voice_chord};

/// Beats per bar: composer writes in 4/4.
pub const BEATS_PER_BAR: u32 = 4;

/// Indices of the random streams, one per concern.
const STREAM_HARMONY: u64 = 0;
const STREAM_MELODY: u64 = 1;
const STREAM_TEXTURE: u64 = 2;
const STREAM_PERCUSSION: u64 = 3;
const STREAM_HUMANISE: u64 = 4;

/// Where and how long a composed bar is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BarInfo {
    /// Bar index since the station started.
    pub bar: u32,
    /// First frame of the bar.
    pub start_frame: u64,
    /// Length of the bar in frames.
    pub frames: u64,
    /// Tempo the bar was written at.
    pub bpm: f32,
}

impl BarInfo {
    /// Frames per beat in this bar.
    pub fn frames_per_beat(&self) -> f64 {
        self.frames as f64 / f64::from(BEATS_PER_BAR)
    }
}

/// Independent random streams, so the parts do not disturb each other's choices.
#[derive(Clone, Debug)]
struct Streams {
    harmony: ChaCha8Rng,
    melody: ChaCha8Rng,
    texture: ChaCha8Rng,
    percussion: ChaCha8Rng,
    humanise: ChaCha8Rng,
}

impl Streams {
    fn new(seed: u64) -> Self {
        let stream = |n| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(n);
            rng
        };
        Streams {
            harmony: stream(STREAM_HARMONY),
            melody: stream(STREAM_MELODY),
            texture: stream(STREAM_TEXTURE),
            percussion: stream(STREAM_PERCUSSION),
            humanise: stream(STREAM_HUMANISE),
        }
    }
}

/// A generative composer for one station.
#[derive(Clone, Debug)]
pub struct Composer {
    /// The seed the random streams were last seeded from (a new seed in `set_params` reseeds).
    seed: u64,
    /// Parameters for the next bar.
    params: Params,
    /// Random streams.
    rng: Streams,
    /// Index of the next bar.
    bar: u32,
    /// First frame of the next bar.
    next_frame: u64,
    /// Scale of the last bar composed, to notice modulations.
    last_scale: Option<Scale>,
    /// The chord progression.
    walk: ChordWalk,
    /// Last pad voicing, for voice leading.
    voicing: Option<Voicing>,
    /// Last bass note, so the bass moves by small intervals.
    bass: Option<u8>,
    /// Whether the bass of the current chord walks (root and fifth) or holds.
    bass_moving: bool,
    /// The melody line.
    melody: MelodyLine,
}

impl Composer {
    /// A composer at bar 0, frame 0. `params.seed` is ignored in favour of `seed`.
    pub fn new(seed: u64, params: Params) -> Self {
        Composer {
            seed,
            params: Params { seed, ..params },
            rng: Streams::new(seed),
            bar: 0,
            next_frame: 0,
            last_scale: None,
            walk: ChordWalk::new(),
            voicing: None,
            bass: None,
            bass_moving: false,
            melody: MelodyLine::new(),
        }
    }

    /// A composer that carries on a station at bar `bar` starting at frame `at_frame` (after a
    /// restart): it replays bars `0..bar` with `params` and discards them, so its state (chord,
    /// voicing, melody) is the one an uninterrupted composer with these parameters would have.
    pub fn resume_at(seed: u64, params: Params, bar: u32, at_frame: u64) -> Self {
        let mut c = Composer::new(seed, params);
        let mut scratch = Vec::with_capacity(64);
        for _ in 0..bar {
            scratch.clear();
            c.next_bar(&mut scratch);
        }
        c.next_frame = at_frame;
        c
    }

    /// A composer for a new station that carries on this one's music under `params`: the same
    /// chord walk, voicing, melody line and random streams, its own frame clock starting at 0, and
    /// the new parameters landing on its first bar (a key or mode change there modulates through a
    /// pivot chord, like any change). The gateway moves a listener who changes parameters to a
    /// station of its own; forking lets the music carry on for that listener instead of starting
    /// over from bar 0.
    pub fn fork(&self, params: Params) -> Composer {
        let mut c = self.clone();
        c.next_frame = 0;
        c.set_params(params);
        c
    }

    /// The parameters in force for the next bar.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Index of the next bar to be composed.
    pub fn next_bar_index(&self) -> u32 {
        self.bar
    }

    /// Frame where the next bar starts: everything before it has been composed.
    pub fn composed_until_frame(&self) -> u64 {
        self.next_frame
    }

    /// Changes the parameters from the next bar on (see the module docs). A different seed
    /// reseeds the random streams at that bar; harmony and voice leading carry on smoothly.
    pub fn set_params(&mut self, params: Params) {
        if params.seed != self.seed {
            self.seed = params.seed;
            let mut rng = Streams::new(params.seed);
            // Make the new stream depend on where it starts, so that switching back and forth
            // between two seeds does not replay the same material.
            rng.harmony.set_word_pos(u128::from(self.bar) * 64);
            self.rng = rng;
        }
        self.params = params;
    }

    /// Composes the next bar, appending its events to `out` in time order.
    pub fn next_bar(&mut self, out: &mut Vec<NoteEvent>) -> BarInfo {
        let params = self.params;
        let preset = params.preset.preset();
        let inst = preset.instruments;
        let intensity = params.intensity.clamp(0.0, 1.0);
        let beat = f64::from(SAMPLE_RATE) * 60.0 / f64::from(params.bpm);
        let bar_frames = (beat * f64::from(BEATS_PER_BAR)).round() as u64;
        let info = BarInfo {
            bar: self.bar,
            start_frame: self.next_frame,
            frames: bar_frames,
            bpm: params.bpm,
        };
        let start = out.len();
        let scale = params.scale();
        let modulated = self.last_scale.is_some_and(|s| s != scale);
        self.last_scale = Some(scale);

        let mut emit = |at_beats: f64,
                        late_frames: u64,
                        dur_beats: f64,
                        part: Part,
                        instrument: u8,
                        pitch: u8,
                        velocity: f32| {
            let offset = ((at_beats * beat).round() as u64 + late_frames).min(bar_frames - 1);
            out.push(NoteEvent {
                at_frame: info.start_frame + offset,
                duration_frames: (dur_beats * beat).round().max(1.0) as u32,
                part: part as u8,
                instrument,
                pitch,
                velocity: velocity.clamp(1.0, 127.0) as u8,
                bar: info.bar,
                _reserved: 0,
            });
        };
        let ms = |ms: u32| u64::from(ms) * u64::from(SAMPLE_RATE) / 1000;
        let rng = &mut self.rng;

        // Harmony: pad and bass strike when the chord changes.
        let h = self
            .walk
            .advance(&mut rng.harmony, scale, info.bar, intensity, modulated);
        let chord = h.chord;
        let chord_beats = f64::from(h.length_bars * BEATS_PER_BAR);
        if h.is_new {
            let with_colour = rng.harmony.random::<f32>() < inst.colour;
            let v = voice_chord(&chord, self.voicing.as_ref(), PAD_REGISTER, with_colour);
            self.voicing = Some(v);
            // A slight legato overlap into the next chord; synthd's pad release does the rest.
            let dur = chord_beats + 0.25;
            for (i, &p) in v.iter().enumerate() {
                let spread = ms(rng.humanise.random_range(0..12) + 6 * i as u32);
                let vel = 38.0 + 18.0 * intensity + rng.humanise.random_range(-3.0..3.0);
                emit(0.0, spread, dur, Part::Pad, inst.pad, p, vel);
            }
            let b = bass_note(&chord, self.bass);
            self.bass = Some(b);
            self.bass_moving = rng.harmony.random::<f32>() < 0.15 + 0.55 * intensity;
        }
        let bass = self.bass.unwrap_or(43);
        let bass_vel = 46.0 + 22.0 * intensity;
        if self.bass_moving {
            // Root on beat 1 of every bar of the chord, sometimes the fifth (or octave) on beat 3.
            let answer = rng.harmony.random::<f32>() < 0.5;
            let root_len = if answer { 2.0 } else { 3.75 };
            emit(0.0, 0, root_len, Part::Bass, inst.bass, bass, bass_vel);
            if answer {
                let fifth = bass_answer(&chord, bass);
                emit(
                    2.0,
                    ms(10),
                    1.75,
                    Part::Bass,
                    inst.bass,
                    fifth,
                    bass_vel - 8.0,
                );
            }
        } else if h.is_new {
            emit(
                0.0,
                0,
                chord_beats - 0.1,
                Part::Bass,
                inst.bass,
                bass,
                bass_vel,
            );
        }

        // Melody.
        let eighth = f64::from(BEATS_PER_BAR) / f64::from(EIGHTHS_PER_BAR);
        for n in self.melody.bar(&mut rng.melody, scale, &chord, intensity) {
            let late = ms(rng.humanise.random_range(0..9));
            let dur = f64::from(n.duration) * eighth * 0.92;
            emit(
                f64::from(n.onset) * eighth,
                late,
                dur,
                Part::Lead,
                inst.lead,
                n.pitch,
                f32::from(n.velocity),
            );
        }

        // Texture: bells here and there, or a high shimmer held over a chord.
        let amount = inst.texture_amount;
        if amount > 0.0 {
            let tones: Vec<u8> = (74..=93u8)
                .filter(|p| chord.pitch_classes().contains(&(p % 12)))
                .collect();
            let t = &mut rng.texture;
            if inst.texture == crate::instruments::TEXTURE_SHIMMER {
                if h.is_new && t.random::<f32>() < amount * (0.35 + 0.4 * intensity) {
                    let p = tones[t.random_range(0..tones.len())];
                    let vel = 22.0 + 14.0 * intensity;
                    emit(
                        t.random_range(0..4) as f64,
                        0,
                        chord_beats,
                        Part::Texture,
                        inst.texture,
                        p,
                        vel,
                    );
                }
            } else if t.random::<f32>() < amount * (0.2 + 0.5 * intensity) {
                let count = 1
                    + usize::from(t.random::<f32>() < intensity)
                    + usize::from(t.random::<f32>() < 0.2);
                for _ in 0..count {
                    let at = f64::from(t.random_range(0..EIGHTHS_PER_BAR)) * eighth;
                    let p = tones[t.random_range(0..tones.len())];
                    let vel = 24.0 + 22.0 * intensity + t.random_range(-4.0..4.0);
                    emit(
                        at,
                        ms(t.random_range(0..20)),
                        3.0,
                        Part::Texture,
                        inst.texture,
                        p,
                        vel,
                    );
                }
            }
        }

        // Percussion.
        let sixteenth = f64::from(BEATS_PER_BAR) / 16.0;
        for hit in percussion::bar(&mut rng.percussion, intensity, inst.percussion_amount) {
            emit(
                f64::from(hit.position) * sixteenth,
                ms(u32::from(hit.late_ms)),
                f64::from(hit.length) * sixteenth,
                Part::Percussion,
                crate::instruments::PERCUSSION_KIT,
                hit.kind,
                f32::from(hit.velocity),
            );
        }

        out[start..].sort_by_key(|e| (e.at_frame, e.part, e.pitch));
        self.bar += 1;
        self.next_frame += bar_frames;
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::{PresetId, presets};
    use crate::scales::{Key, Mode};
    use std::collections::HashSet;
    use std::hash::{DefaultHasher, Hash, Hasher};

    fn compose(seed: u64, params: Params, bars: u32) -> Vec<NoteEvent> {
        let mut c = Composer::new(seed, params);
        let mut out = Vec::new();
        for _ in 0..bars {
            c.next_bar(&mut out);
        }
        out
    }

    #[test]
    fn every_pitched_note_is_in_the_scale_for_every_mode_and_key() {
        for mode in Mode::ALL {
            for key in 0..12 {
                let params = Params {
                    key: Key::from_pitch_class(key).unwrap(),
                    mode,
                    intensity: 0.8,
                    ..Params::default()
                };
                let scale = params.scale();
                for e in compose(u64::from(key), params, 64) {
                    if e.part != Part::Percussion as u8 {
                        assert!(scale.contains(e.pitch), "{mode} {key}: {e:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn same_seed_same_music_different_seed_different_music() {
        let p = Params::default();
        assert_eq!(compose(42, p, 100), compose(42, p, 100));
        assert_ne!(compose(42, p, 100), compose(43, p, 100));
    }

    #[test]
    fn pacing_does_not_matter_and_resume_continues_the_stream() {
        let p = Params::from_preset(PresetId::from_name("bright").unwrap(), 5);
        let all = compose(5, p, 60);
        let mut c = Composer::new(5, p);
        let mut first = Vec::new();
        for _ in 0..20 {
            c.next_bar(&mut first);
        }
        let at = c.composed_until_frame();
        let mut resumed = Composer::resume_at(5, p, 20, at);
        let mut rest = Vec::new();
        for _ in 20..60 {
            resumed.next_bar(&mut rest);
        }
        first.extend(rest);
        assert_eq!(first, all);
    }

    #[test]
    fn events_are_in_time_order_and_inside_their_bar() {
        for preset in presets() {
            let p = Params::from_preset(PresetId::from_name(preset.name).unwrap(), 9);
            let mut c = Composer::new(9, p);
            let mut last = 0;
            for _ in 0..200 {
                let mut out = Vec::new();
                let info = c.next_bar(&mut out);
                for e in &out {
                    assert!(e.at_frame >= last);
                    assert!(
                        e.at_frame >= info.start_frame
                            && e.at_frame < info.start_frame + info.frames
                    );
                    assert_eq!(e.bar, info.bar);
                    assert!((1..=127).contains(&e.velocity));
                    last = e.at_frame;
                }
            }
        }
    }

    #[test]
    fn a_fork_carries_the_music_on_in_the_new_key_from_frame_zero() {
        let p = Params {
            seed: 5,
            ..Params::default() // D Dorian
        };
        let mut parent = Composer::new(5, p);
        let mut out = Vec::new();
        for _ in 0..9 {
            out.clear();
            parent.next_bar(&mut out);
        }
        let last_pad: Vec<u8> = out
            .iter()
            .filter(|e| e.part == Part::Pad as u8)
            .map(|e| e.pitch)
            .collect();
        let new = Params {
            key: "E".parse().unwrap(),
            ..p
        };
        let mut child = parent.fork(new);
        assert_eq!(child.composed_until_frame(), 0);
        assert_eq!(child.next_bar_index(), parent.next_bar_index());
        let mut first = Vec::new();
        child.next_bar(&mut first);
        assert!(first.iter().all(|e| e.at_frame < first_bar_frames(&new)));
        let pad: Vec<u8> = first
            .iter()
            .filter(|e| e.part == Part::Pad as u8)
            .map(|e| e.pitch)
            .collect();
        assert!(
            !pad.is_empty(),
            "the fork strikes a pad chord on its first bar"
        );
        for e in &first {
            if e.part != Part::Percussion as u8 {
                assert!(new.scale().contains(e.pitch), "{e:?}");
            }
        }
        // Voice leading carries across the fork: the new chord sits near the parent's last one.
        let centre = |v: &[u8]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        if !last_pad.is_empty() {
            assert!(
                (centre(&pad) - centre(&last_pad)).abs() <= 7.0,
                "{last_pad:?} -> {pad:?}"
            );
        }
        // The parent is untouched.
        assert_eq!(parent.params(), &p);
    }

    fn first_bar_frames(p: &Params) -> u64 {
        (f64::from(SAMPLE_RATE) * 60.0 / f64::from(p.bpm) * f64::from(BEATS_PER_BAR)).round() as u64
    }

    #[test]
    fn key_change_lands_on_the_next_bar_boundary() {
        let p = Params::default(); // D Dorian
        let mut c = Composer::new(1, p);
        let mut out = Vec::new();
        for _ in 0..7 {
            c.next_bar(&mut out);
        }
        let boundary = c.composed_until_frame();
        let new = Params {
            key: "Eb".parse().unwrap(),
            mode: Mode::Lydian,
            ..p
        };
        c.set_params(new);
        let before = out.len();
        for _ in 0..16 {
            c.next_bar(&mut out);
        }
        assert!(out[..before].iter().all(|e| e.at_frame < boundary));
        for e in &out[before..] {
            assert!(e.at_frame >= boundary);
            if e.part != Part::Percussion as u8 {
                assert!(new.scale().contains(e.pitch), "{e:?}");
            }
        }
        // The first pad chord after the change is a new strike at the boundary.
        assert!(
            out[before..]
                .iter()
                .any(|e| e.part == Part::Pad as u8 && e.at_frame < boundary + 1000)
        );
    }

    #[test]
    fn tempo_change_lands_on_the_next_bar() {
        let p = Params::default();
        let mut c = Composer::new(1, p);
        let mut out = Vec::new();
        let a = c.next_bar(&mut out);
        c.set_params(Params { bpm: 120.0, ..p });
        let b = c.next_bar(&mut out);
        assert_eq!(a.frames, 4 * 44_100);
        assert_eq!(b.start_frame, a.frames);
        assert_eq!(b.frames, 2 * 44_100);
    }

    #[test]
    fn no_percussion_at_intensity_zero() {
        for preset in presets() {
            let mut p = Params::from_preset(PresetId::from_name(preset.name).unwrap(), 3);
            p.intensity = 0.0;
            let events = compose(3, p, 300);
            assert!(
                !events.iter().any(|e| e.part == Part::Percussion as u8),
                "{}",
                preset.name
            );
            assert!(events.iter().any(|e| e.part == Part::Lead as u8));
        }
    }

    #[test]
    fn intensity_applies_from_the_next_bar() {
        let p = Params {
            intensity: 0.0,
            ..Params::default()
        };
        let mut c = Composer::new(4, p);
        let mut quiet = Vec::new();
        for _ in 0..64 {
            c.next_bar(&mut quiet);
        }
        c.set_params(Params {
            intensity: 1.0,
            ..p
        });
        let mut loud = Vec::new();
        for _ in 0..64 {
            c.next_bar(&mut loud);
        }
        assert!(
            loud.len() > quiet.len() * 2,
            "{} vs {}",
            loud.len(),
            quiet.len()
        );
        assert!(loud.iter().any(|e| e.part == Part::Percussion as u8));
    }

    /// Hash of what a listener would recognise in a bar: which pitches, on which sixteenth
    /// (humanisation and velocity left out).
    fn bar_fingerprint(events: &[NoteEvent], info: &BarInfo) -> u64 {
        let mut h = DefaultHasher::new();
        for e in events {
            let sixteenth = (e.at_frame - info.start_frame) * 16 / info.frames;
            (e.part, e.pitch, sixteenth).hash(&mut h);
        }
        h.finish()
    }

    /// Composes `hours` of `params` and checks that no 8-bar window repeats exactly.
    fn assert_no_repeated_window(params: Params, hours: u64) {
        let mut c = Composer::new(params.seed, params);
        let end = hours * 3600 * u64::from(SAMPLE_RATE);
        let mut bars = Vec::new();
        let mut out = Vec::new();
        while c.composed_until_frame() < end {
            out.clear();
            let info = c.next_bar(&mut out);
            bars.push(bar_fingerprint(&out, &info));
        }
        let mut seen = HashSet::with_capacity(bars.len());
        for (i, w) in bars.windows(8).enumerate() {
            assert!(
                seen.insert(w.to_vec()),
                "{params:?}: the 8 bars from bar {i} repeat earlier material"
            );
        }
    }

    /// Eight hours of every preset, at its own intensity and at intensity 0 (the sparsest, so
    /// the likeliest to repeat), for two seeds. Composition is fast enough (a few microseconds a
    /// bar) that this runs in well under a second even in a debug build.
    #[test]
    fn no_8_bar_window_repeats_within_8_hours() {
        for preset in presets() {
            for seed in [1, 2] {
                let p = Params::from_preset(PresetId::from_name(preset.name).unwrap(), seed);
                assert_no_repeated_window(p, 8);
                assert_no_repeated_window(
                    Params {
                        intensity: 0.0,
                        ..p
                    },
                    8,
                );
            }
        }
    }
}
