//! Melody: phrases of two to four bars separated by rests, with pitches chosen under constraints.
//!
//! Rhythm first, then pitch. A phrase is planned as a list of one-bar rhythm *cells* (on an
//! eighth-note grid); intensity decides how busy the cells are and how long the rests between
//! phrases last, and a phrase sometimes reuses the previous phrase's rhythm so the ear hears
//! motifs rather than noise. The last cell of a phrase ends on a long note that rings into the rest.
//!
//! Pitches are then drawn note by note from the scale with these hard constraints:
//! - strong beats (beats 1 and 3) land on a tone of the bar's chord;
//! - no interval wider than a major sixth, and no tritone;
//! - a leap (more than 4 semitones) is followed by a scale step back the other way, and a leap is
//!   only taken where that step is possible (the next note is in the same bar and the step lands
//!   on a chord tone if the next note is on a strong beat);
//! - at most two repeats of a pitch in a row; the line stays in [`LEAD_RANGE`](crate::melody::LEAD_RANGE).
//!
//! and soft preferences as weights: steps over thirds over leaps, an arch-shaped contour over the
//! phrase, phrase endings on the tonic or the chord root.

use rand::Rng;

use crate::harmony::{Chord, pick_weighted};
use crate::scales::Scale;

/// Lowest and highest melody pitch: D4..C6, the singing range of a soft piano above the pad.
pub const LEAD_RANGE: (u8, u8) = (62, 84);

/// Eighth notes per bar (composer writes in 4/4).
pub const EIGHTHS_PER_BAR: u8 = 8;

/// The largest interval a leap resolves with a step of at most this many semitones (a scale step,
/// up to a minor third in the pentatonic).
pub const LEAP: u8 = 4;

/// One rhythm cell: (onset, duration) in eighths within a bar. A duration may run past the bar.
type Cell = &'static [(u8, u8)];

/// Few, long notes.
const SPARSE: &[Cell] = &[
    &[(0, 8)],
    &[(0, 4), (4, 4)],
    &[(0, 6), (6, 2)],
    &[(2, 6)],
    &[(0, 3), (3, 5)],
    &[(4, 4)],
];
/// A walking pace.
const MEDIUM: &[Cell] = &[
    &[(0, 2), (2, 2), (4, 4)],
    &[(0, 3), (3, 1), (4, 4)],
    &[(0, 4), (4, 2), (6, 2)],
    &[(1, 1), (2, 2), (4, 4)],
    &[(0, 2), (2, 4), (6, 2)],
    &[(0, 3), (3, 3), (6, 2)],
];
/// Eighth-note movement, still with a held note in each cell.
const DENSE: &[Cell] = &[
    &[(0, 1), (1, 1), (2, 2), (4, 2), (6, 2)],
    &[(0, 2), (2, 1), (3, 1), (4, 2), (6, 2)],
    &[(0, 1), (1, 1), (2, 1), (3, 1), (4, 4)],
    &[(0, 2), (2, 2), (4, 1), (5, 1), (6, 2)],
];
/// Phrase endings: the last note is long and rings into the following rest.
const ENDINGS: &[Cell] = &[
    &[(0, 12)],
    &[(0, 4), (4, 10)],
    &[(0, 2), (2, 2), (4, 10)],
    &[(0, 3), (3, 1), (4, 10)],
    &[(0, 6), (6, 8)],
];

/// One melody note of a bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MelodyNote {
    /// Onset in eighths from the bar start.
    pub onset: u8,
    /// Length in eighths.
    pub duration: u8,
    /// MIDI pitch.
    pub pitch: u8,
    /// MIDI velocity.
    pub velocity: u8,
}

/// The phrase being played.
#[derive(Clone, Debug)]
struct PhrasePlan {
    /// One cell per bar.
    cells: Vec<Cell>,
    /// Index of the next cell to play.
    next: usize,
    /// Height of the contour's arch above the centre, in semitones.
    peak: f32,
}

/// The state of the melody line between bars.
#[derive(Clone, Debug, Default)]
pub struct MelodyLine {
    /// Last pitch sounded (kept across rests: the next phrase starts near it).
    last_pitch: Option<u8>,
    /// Signed interval into `last_pitch`: a leap here obliges the next note to step back.
    last_interval: i32,
    /// How many times in a row `last_pitch` has sounded.
    repeats: u32,
    /// Phrase in progress.
    phrase: Option<PhrasePlan>,
    /// Rest bars still to wait before the next phrase.
    rest_bars: u32,
    /// Rhythm of the previous phrase, for motif reuse.
    previous_cells: Vec<Cell>,
}

impl MelodyLine {
    /// A silent line that will start a phrase on its first bar.
    pub fn new() -> Self {
        Self::default()
    }

    /// The melody notes of one bar over `chord`.
    pub fn bar<R: Rng>(
        &mut self,
        rng: &mut R,
        scale: Scale,
        chord: &Chord,
        intensity: f32,
    ) -> Vec<MelodyNote> {
        if self.phrase.is_none() {
            if self.rest_bars > 0 {
                self.rest_bars -= 1;
                return Vec::new();
            }
            self.phrase = Some(self.plan_phrase(rng, intensity));
        }
        let Some(plan) = self.phrase.as_mut() else {
            return Vec::new();
        };
        let bar_in_phrase = plan.next;
        let n_bars = plan.cells.len();
        let cell = plan.cells[bar_in_phrase];
        let peak = plan.peak;
        plan.next += 1;
        if plan.next == n_bars {
            self.previous_cells = std::mem::take(&mut plan.cells);
            self.phrase = None;
            self.rest_bars = rest_after_phrase(rng, intensity);
        }
        let last_bar = bar_in_phrase + 1 == n_bars;
        let scale_pitches = scale.pitches_in(LEAD_RANGE.0, LEAD_RANGE.1);
        let mut out = Vec::with_capacity(cell.len());
        for (i, &(onset, duration)) in cell.iter().enumerate() {
            let progress = (bar_in_phrase as f32 * 8.0 + f32::from(onset)) / (n_bars as f32 * 8.0);
            let next_onset = cell.get(i + 1).map(|&(o, _)| o);
            let ctx = NoteContext {
                strong: onset % 4 == 0,
                next_strong: next_onset.map(|o| o % 4 == 0),
                phrase_end: last_bar && i + 1 == cell.len(),
                target: contour_target(progress, peak),
            };
            let pitch = self.choose_pitch(rng, &scale_pitches, scale, chord, &ctx);
            let arch = (progress * std::f32::consts::PI).sin();
            let mut vel = 34.0 + 44.0 * intensity + 8.0 * arch + rng.random_range(-4.0..4.0);
            if ctx.strong {
                vel += 6.0;
            }
            if ctx.phrase_end {
                vel -= 4.0;
            }
            out.push(MelodyNote {
                onset,
                duration,
                pitch,
                velocity: vel.clamp(1.0, 127.0) as u8,
            });
        }
        out
    }

    /// Plans the rhythm of a new phrase.
    fn plan_phrase<R: Rng>(&mut self, rng: &mut R, intensity: f32) -> PhrasePlan {
        let peak = rng.random_range(-2.0..7.0);
        if !self.previous_cells.is_empty() && rng.random::<f32>() < 0.35 {
            return PhrasePlan {
                cells: self.previous_cells.clone(),
                next: 0,
                peak,
            };
        }
        let mut len = 2;
        if rng.random::<f32>() < 0.3 + 0.4 * intensity {
            len += 1;
        }
        if rng.random::<f32>() < 0.2 + 0.3 * intensity {
            len += 1;
        }
        let mut cells = Vec::with_capacity(len);
        for _ in 0..len - 1 {
            let w = [
                (1.0 - intensity) * 1.2 + 0.15,
                0.5 + 0.3 * intensity,
                1.5 * intensity * intensity,
            ];
            let pool = [SPARSE, MEDIUM, DENSE][pick_weighted(rng, &w)];
            cells.push(pool[rng.random_range(0..pool.len())]);
        }
        cells.push(ENDINGS[rng.random_range(0..ENDINGS.len())]);
        PhrasePlan {
            cells,
            next: 0,
            peak,
        }
    }

    /// Chooses one pitch under the constraints in the module docs.
    fn choose_pitch<R: Rng>(
        &mut self,
        rng: &mut R,
        pitches: &[u8],
        scale: Scale,
        chord: &Chord,
        ctx: &NoteContext,
    ) -> u8 {
        let Some(last) = self.last_pitch else {
            // The very first note: a chord tone near the contour.
            let p = pitches
                .iter()
                .copied()
                .filter(|&p| chord.is_chord_tone(p))
                .min_by_key(|&p| (f32::from(p) - ctx.target).abs() as i32)
                .unwrap_or(pitches[pitches.len() / 2]);
            self.remember(p);
            return p;
        };
        let last_idx = pitches.iter().position(|&p| p == last);
        let chosen = if self.last_interval.unsigned_abs() > u32::from(LEAP) {
            // Resolve the leap: one scale step back the other way (always possible: the leap was
            // only allowed where it is).
            step_from(pitches, last, -self.last_interval.signum())
        } else {
            let mut weights = Vec::with_capacity(pitches.len());
            for (i, &p) in pitches.iter().enumerate() {
                weights.push(self.weight(p, i, last, last_idx, pitches, scale, chord, ctx));
            }
            if weights.iter().all(|&w| w <= 0.0) {
                // Nothing satisfies everything: drop the repeat limit and take the nearest chord
                // tone (or scale tone) that is not a leap.
                pitches
                    .iter()
                    .copied()
                    .filter(|&p| !ctx.strong || chord.is_chord_tone(p))
                    .filter(|&p| p.abs_diff(last) <= LEAP)
                    .min_by_key(|&p| p.abs_diff(last))
            } else {
                Some(pitches[pick_weighted(rng, &weights)])
            }
        };
        let p = chosen.unwrap_or(last);
        self.remember(p);
        p
    }

    /// The weight of candidate `p` (index `i` in `pitches`); zero where a hard constraint fails.
    #[allow(clippy::too_many_arguments)]
    fn weight(
        &self,
        p: u8,
        i: usize,
        last: u8,
        last_idx: Option<usize>,
        pitches: &[u8],
        scale: Scale,
        chord: &Chord,
        ctx: &NoteContext,
    ) -> f32 {
        let interval = i32::from(p) - i32::from(last);
        let size = interval.unsigned_abs();
        // Nothing wider than a major sixth, and no tritone: both are hard to sing and sound lost.
        if size > 9 || size == 6 {
            return 0.0;
        }
        if ctx.strong && !chord.is_chord_tone(p) {
            return 0.0;
        }
        if size == 0 && self.repeats >= 2 {
            return 0.0;
        }
        if ctx.phrase_end && !chord.is_chord_tone(p) {
            return 0.0;
        }
        if size > u32::from(LEAP) {
            // A leap needs a next note in this bar that can step back onto something legal.
            let Some(next_strong) = ctx.next_strong else {
                return 0.0;
            };
            match step_from(pitches, p, -interval.signum()) {
                Some(r) if !next_strong || chord.is_chord_tone(r) => {}
                _ => return 0.0,
            }
        }
        // Distance in scale steps.
        let steps = match last_idx {
            Some(li) => li.abs_diff(i),
            None => (size as usize).div_ceil(2),
        };
        let mut w = match steps {
            0 => 1.2,
            1 => 6.0,
            2 => 2.5,
            3 => 0.9,
            _ => 0.35,
        };
        let d = (f32::from(p) - ctx.target) / 5.0;
        w *= 1.0 / (1.0 + d * d);
        if chord.is_chord_tone(p) {
            w *= 1.5;
        }
        if ctx.phrase_end {
            if scale.degree_of(p) == Some(0) {
                w *= 3.0;
            } else if p % 12 == chord.root_pc {
                w *= 2.0;
            }
            if interval < 0 {
                w *= 1.5;
            }
        }
        w
    }

    fn remember(&mut self, p: u8) {
        if let Some(last) = self.last_pitch {
            self.last_interval = i32::from(p) - i32::from(last);
            self.repeats = if p == last { self.repeats + 1 } else { 0 };
        }
        self.last_pitch = Some(p);
    }
}

/// What the pitch choice needs to know about the note's place.
#[derive(Clone, Copy, Debug)]
struct NoteContext {
    /// On beat 1 or 3: must be a chord tone.
    strong: bool,
    /// `Some(strong?)` of the next note in this bar, `None` if this is the bar's last note.
    next_strong: Option<bool>,
    /// The final note of the phrase.
    phrase_end: bool,
    /// Where the contour wants the line now.
    target: f32,
}

/// The arch: rises from below the centre to `peak` above it mid-phrase and falls back.
fn contour_target(progress: f32, peak: f32) -> f32 {
    let centre = (f32::from(LEAD_RANGE.0) + f32::from(LEAD_RANGE.1)) / 2.0;
    centre - 3.0 + (peak + 3.0) * (progress * std::f32::consts::PI).sin()
}

/// The adjacent scale pitch from `from` in direction `dir` (+1 up, -1 down), if in range.
fn step_from(pitches: &[u8], from: u8, dir: i32) -> Option<u8> {
    if dir > 0 {
        pitches.iter().copied().find(|&p| p > from)
    } else {
        pitches.iter().rev().copied().find(|&p| p < from)
    }
}

/// Rest bars after a phrase: longer when calm; at high intensity phrases may follow at once
/// (the ending's long note still leaves a breath).
fn rest_after_phrase<R: Rng>(rng: &mut R, intensity: f32) -> u32 {
    if intensity > 0.7 && rng.random::<f32>() < 0.3 {
        return 0;
    }
    let mut rest = 1;
    if rng.random::<f32>() < 0.7 - 0.5 * intensity {
        rest += 1;
    }
    if rng.random::<f32>() < 0.4 - 0.4 * intensity {
        rest += 1;
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harmony::ChordWalk;
    use crate::scales::{Key, Mode};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Runs a melody over a chord walk: (bar, chord, note) for every note.
    fn melody(mode: Mode, key: u8, intensity: f32, bars: u32) -> Vec<(Chord, MelodyNote)> {
        let mut rng = ChaCha8Rng::seed_from_u64(u64::from(key) * 31 + mode.index() as u64);
        let scale = Scale::new(Key::from_pitch_class(key).unwrap(), mode);
        let mut walk = ChordWalk::new();
        let mut line = MelodyLine::new();
        let mut out = Vec::new();
        for bar in 0..bars {
            let h = walk.advance(&mut rng, scale, bar, intensity, false);
            for n in line.bar(&mut rng, scale, &h.chord, intensity) {
                out.push((h.chord.clone(), n));
            }
        }
        out
    }

    #[test]
    fn strong_beats_are_chord_tones_and_range_is_bounded() {
        for mode in Mode::ALL {
            for key in [0, 2, 7, 10] {
                for (chord, n) in melody(mode, key, 0.6, 300) {
                    assert!((LEAD_RANGE.0..=LEAD_RANGE.1).contains(&n.pitch));
                    if n.onset % 4 == 0 {
                        assert!(chord.is_chord_tone(n.pitch), "{mode} {key} {n:?} {chord:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn leaps_resolve_by_step_in_the_opposite_direction() {
        let mut leaps = 0;
        for mode in Mode::ALL {
            for key in 0..12 {
                for intensity in [0.0, 0.5, 1.0] {
                    let notes = melody(mode, key, intensity, 200);
                    for w in notes.windows(3) {
                        let a = i32::from(w[0].1.pitch);
                        let b = i32::from(w[1].1.pitch);
                        let c = i32::from(w[2].1.pitch);
                        assert!((b - a).abs() <= 9, "interval too wide");
                        if (b - a).abs() > i32::from(LEAP) {
                            leaps += 1;
                            let back = c - b;
                            assert!(
                                back.signum() == -(b - a).signum() && back.abs() <= 3,
                                "{mode} {key}: {a} -> {b} -> {c}"
                            );
                        }
                    }
                }
            }
        }
        assert!(leaps > 20, "the test should see some leaps, saw {leaps}");
    }

    #[test]
    fn mostly_stepwise_with_rests() {
        let notes = melody(Mode::Dorian, 2, 0.5, 400);
        let steps = notes
            .windows(2)
            .filter(|w| w[0].1.pitch.abs_diff(w[1].1.pitch) <= 2)
            .count();
        assert!(steps * 2 > notes.len(), "{steps} steps of {}", notes.len());
    }

    #[test]
    fn density_follows_intensity() {
        let calm = melody(Mode::Ionian, 0, 0.0, 400).len();
        let busy = melody(Mode::Ionian, 0, 1.0, 400).len();
        assert!(busy > calm * 2, "calm {calm}, busy {busy}");
    }
}
