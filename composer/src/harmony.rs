//! Harmony: a Markov chain over the chords of the current mode, one chord per bar or two.
//!
//! The states are scale degrees; each names the chord built on that degree (stacked thirds in the
//! diatonic modes, open major / minor / sus shapes in the pentatonic). The tables below are written
//! in percent so a musician can read and tune them: row = the chord now, column = the chord next,
//! and every row must add up to 100 (a test checks it). Diminished chords get no incoming weight:
//! they sound tense rather than ambient. Each mode's table leans on its characteristic chord (the
//! major IV of Dorian, the bII of Phrygian, the major II of Lydian, the bVII of Mixolydian).

use rand::Rng;

use crate::scales::{Mode, Scale};

/// Transition percentages of one mode: `TABLE[from][to]`, rows sum to 100. The pentatonic table
/// only uses its first five rows and columns.
type Table = [[u8; 7]; 7];

//                         to:  I   ii  iii  IV   V   vi  vii°
const IONIAN: Table = [
    /* I    */ [6, 14, 8, 30, 16, 26, 0],
    /* ii   */ [14, 4, 8, 20, 34, 20, 0],
    /* iii  */ [10, 8, 4, 32, 6, 40, 0],
    /* IV   */ [36, 14, 8, 4, 20, 18, 0],
    /* V    */ [36, 6, 8, 22, 4, 24, 0],
    /* vi   */ [16, 20, 8, 34, 18, 4, 0],
    /* vii° */ [60, 0, 20, 0, 0, 20, 0],
];

//                         to:  i   ii  bIII  IV  v  vi° bVII
const DORIAN: Table = [
    /* i    */ [8, 14, 12, 30, 12, 0, 24],
    /* ii   */ [22, 4, 14, 20, 18, 0, 22],
    /* bIII */ [18, 10, 4, 32, 10, 0, 26],
    /* IV   */ [40, 10, 12, 4, 14, 0, 20],
    /* v    */ [30, 10, 14, 26, 4, 0, 16],
    /* vi°  */ [60, 0, 0, 20, 0, 0, 20],
    /* bVII */ [36, 8, 16, 30, 8, 0, 2],
];

//                         to:  i  bII bIII  iv  v° bVI bvii
const PHRYGIAN: Table = [
    /* i    */ [6, 26, 14, 18, 0, 20, 16],
    /* bII  */ [48, 4, 12, 10, 0, 12, 14],
    /* bIII */ [24, 16, 4, 20, 0, 20, 16],
    /* iv   */ [32, 14, 12, 4, 0, 24, 14],
    /* v°   */ [60, 20, 0, 0, 0, 20, 0],
    /* bVI  */ [28, 20, 14, 18, 0, 4, 16],
    /* bvii */ [40, 16, 14, 12, 0, 14, 4],
];

//                         to:  I   II  iii #iv°  V   vi  vii
const LYDIAN: Table = [
    /* I    */ [6, 40, 10, 0, 12, 20, 12],
    /* II   */ [44, 6, 10, 0, 12, 16, 12],
    /* iii  */ [20, 22, 4, 0, 12, 30, 12],
    /* #iv° */ [60, 20, 0, 0, 20, 0, 0],
    /* V    */ [34, 24, 10, 0, 4, 20, 8],
    /* vi   */ [24, 30, 10, 0, 16, 4, 16],
    /* vii  */ [34, 20, 16, 0, 10, 16, 4],
];

//                         to:  I   ii iii°  IV   v   vi bVII
const MIXOLYDIAN: Table = [
    /* I    */ [6, 12, 0, 26, 14, 14, 28],
    /* ii   */ [20, 4, 0, 22, 20, 12, 22],
    /* iii° */ [60, 0, 0, 20, 0, 0, 20],
    /* IV   */ [38, 10, 0, 4, 12, 10, 26],
    /* v    */ [30, 12, 0, 24, 4, 14, 16],
    /* vi   */ [20, 18, 0, 28, 14, 4, 16],
    /* bVII */ [40, 8, 0, 30, 8, 12, 2],
];

//                         to:  i  ii° bIII  iv   v  bVI bVII
const AEOLIAN: Table = [
    /* i    */ [6, 0, 14, 22, 12, 26, 20],
    /* ii°  */ [60, 0, 0, 0, 20, 20, 0],
    /* bIII */ [18, 0, 4, 22, 10, 26, 20],
    /* iv   */ [34, 0, 10, 4, 16, 20, 16],
    /* v    */ [34, 0, 10, 20, 4, 24, 8],
    /* bVI  */ [26, 0, 14, 18, 8, 4, 30],
    /* bVII */ [36, 0, 22, 14, 8, 18, 2],
];

// Pentatonic chords (in C): I = C E G, ii = D G A (sus4), iii = E G C (C over E, rare), V = G C D (sus4),
// vi = A C E. Only the first five columns count; the zeros pad the unused 6th and 7th.
//                         to:  I  ii iii   V  vi
const PENTATONIC: Table = [
    /* I    */ [8, 30, 4, 28, 30, 0, 0],
    /* ii   */ [34, 4, 6, 36, 20, 0, 0],
    /* iii  */ [30, 20, 0, 20, 30, 0, 0],
    /* V    */ [40, 20, 6, 4, 30, 0, 0],
    /* vi   */ [30, 30, 4, 32, 4, 0, 0],
    [0; 7],
    [0; 7],
];

/// How much more likely the tonic becomes on the first bar of every 8-bar phrase, so the music
/// keeps coming home without a fixed loop.
const PHRASE_HOME_PULL: f32 = 3.0;

/// The transition table of `mode`.
fn table(mode: Mode) -> &'static Table {
    match mode {
        Mode::Ionian => &IONIAN,
        Mode::Dorian => &DORIAN,
        Mode::Phrygian => &PHRYGIAN,
        Mode::Lydian => &LYDIAN,
        Mode::Mixolydian => &MIXOLYDIAN,
        Mode::Aeolian => &AEOLIAN,
        Mode::Pentatonic => &PENTATONIC,
    }
}

/// Probability of moving from the chord on degree `from` to the chord on degree `to` in `mode`.
pub fn transition_probability(mode: Mode, from: usize, to: usize) -> f32 {
    f32::from(table(mode)[from][to]) / 100.0
}

/// One chord: its root degree and its pitch classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chord {
    /// Scale degree of the root (the Markov state).
    pub degree: usize,
    /// Pitch class of the root, which the bass plays.
    pub root_pc: u8,
    /// The triad (or sus shape), root first.
    pub triad: [u8; 3],
    /// An optional colour tone (added ninth or seventh) the pad may add.
    pub colour: Option<u8>,
}

impl Chord {
    /// The chord on `degree` of `scale`.
    pub fn on_degree(scale: Scale, degree: usize) -> Self {
        let d = degree as i32;
        let offsets: [i32; 3] = match scale.mode {
            Mode::Pentatonic => match degree {
                // E G C (C over E) and A C E (minor) need a different stack in five notes.
                2 | 4 => [0, 1, 3],
                _ => [0, 2, 3],
            },
            _ => [0, 2, 4],
        };
        let triad = offsets.map(|o| scale.pitch_class(d + o));
        let root_pc = triad[0];
        let interval = |pc: u8| (pc as i32 - root_pc as i32).rem_euclid(12);
        let diminished = interval(triad[2]) == 6;
        // Colour: an added ninth if the scale has a whole tone above the root, else a seventh
        // (minor or major) if the scale has one; never on a diminished chord.
        let colour = if diminished {
            None
        } else {
            let candidates = (0..scale.degrees() as i32)
                .map(|k| scale.pitch_class(k))
                .filter(|pc| !triad.contains(pc));
            let mut ninth = None;
            let mut seventh = None;
            for pc in candidates {
                match interval(pc) {
                    2 => ninth = Some(pc),
                    10 | 11 => seventh = Some(pc),
                    _ => {}
                }
            }
            ninth.or(seventh)
        };
        Chord {
            degree,
            root_pc,
            triad,
            colour,
        }
    }

    /// Every pitch class the chord may sound (triad plus colour).
    pub fn pitch_classes(&self) -> Vec<u8> {
        let mut v = self.triad.to_vec();
        v.extend(self.colour);
        v
    }

    /// Whether `pitch` is one of the triad's tones (what melody lands on at strong beats).
    pub fn is_chord_tone(&self, pitch: u8) -> bool {
        self.triad.contains(&(pitch % 12))
    }
}

/// The walk through a mode's chords: which chord sounds now and how long it stays.
#[derive(Clone, Debug)]
pub struct ChordWalk {
    /// The chord sounding now; `None` before the first bar.
    current: Option<Chord>,
    /// Bars the current chord still has to run, including the coming one.
    bars_left: u32,
}

/// What [`ChordWalk::advance`] decided for a bar.
#[derive(Clone, Debug)]
pub struct BarHarmony {
    /// The chord of this bar.
    pub chord: Chord,
    /// True on the first bar of a chord: the pad and bass strike.
    pub is_new: bool,
    /// How many bars this chord will last (counted from its first bar).
    pub length_bars: u32,
}

impl Default for ChordWalk {
    fn default() -> Self {
        Self::new()
    }
}

impl ChordWalk {
    /// A walk that starts on the tonic.
    pub fn new() -> Self {
        ChordWalk {
            current: None,
            bars_left: 0,
        }
    }

    /// The chord sounding now.
    pub fn current(&self) -> Option<&Chord> {
        self.current.as_ref()
    }

    /// Decides the harmony of bar `bar`. `modulated` says the scale changed since the last bar:
    /// then a pivot chord is chosen (the chord of the new scale sharing most tones with the old
    /// one) instead of a Markov step, and it starts at once.
    pub fn advance<R: Rng>(
        &mut self,
        rng: &mut R,
        scale: Scale,
        bar: u32,
        intensity: f32,
        modulated: bool,
    ) -> BarHarmony {
        let prev = self.current.clone();
        if self.bars_left > 0 && !modulated {
            if let Some(chord) = prev {
                self.bars_left -= 1;
                return BarHarmony {
                    chord,
                    is_new: false,
                    length_bars: 0,
                };
            }
        }
        let degree = match (&prev, modulated) {
            (None, _) => 0,
            (Some(p), true) => pivot_degree(scale, p),
            (Some(p), false) => {
                let row = &table(scale.mode)[p.degree.min(scale.degrees() - 1)];
                let weights: Vec<f32> = (0..scale.degrees())
                    .map(|to| {
                        let w = f32::from(row[to]);
                        if to == 0 && bar % 8 == 0 {
                            w * PHRASE_HOME_PULL
                        } else {
                            w
                        }
                    })
                    .collect();
                pick_weighted(rng, &weights)
            }
        };
        // Slower harmonic rhythm when calm: two bars per chord is likelier at low intensity.
        let two_bars = rng.random::<f32>() < 0.65 - 0.3 * intensity;
        let length_bars = if two_bars { 2 } else { 1 };
        let chord = Chord::on_degree(scale, degree);
        self.current = Some(chord.clone());
        self.bars_left = length_bars - 1;
        BarHarmony {
            chord,
            is_new: true,
            length_bars,
        }
    }
}

/// The degree of the new scale whose chord shares most pitch classes with `prev`; ties go to the
/// tonic, then to the lowest degree. Only chords the mode's table can reach are candidates.
fn pivot_degree(scale: Scale, prev: &Chord) -> usize {
    let old = prev.triad;
    let reachable = |d: usize| (0..scale.degrees()).any(|from| table(scale.mode)[from][d] > 0);
    (0..scale.degrees())
        .filter(|&d| reachable(d))
        .max_by_key(|&d| {
            let c = Chord::on_degree(scale, d);
            let shared = c.triad.iter().filter(|pc| old.contains(pc)).count();
            (shared, d == 0, std::cmp::Reverse(d))
        })
        .unwrap_or(0)
}

/// Index drawn with probability proportional to `weights` (all zero: index 0).
pub fn pick_weighted<R: Rng>(rng: &mut R, weights: &[f32]) -> usize {
    let total: f32 = weights.iter().sum();
    if total <= 0.0 {
        return 0;
    }
    let mut x = rng.random::<f32>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scales::Key;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn every_transition_row_is_a_probability_distribution() {
        for mode in Mode::ALL {
            let n = mode.intervals().len();
            for from in 0..n {
                let sum: f32 = (0..n)
                    .map(|to| transition_probability(mode, from, to))
                    .sum();
                assert!((sum - 1.0).abs() < 1e-6, "{mode} row {from} sums to {sum}");
                for to in n..7 {
                    assert_eq!(table(mode)[from][to], 0, "{mode} row {from} col {to}");
                }
            }
        }
    }

    #[test]
    fn diminished_chords_are_never_entered() {
        for mode in Mode::ALL {
            let scale = Scale::new(Key::from_pitch_class(0).unwrap(), mode);
            for to in 0..scale.degrees() {
                let c = Chord::on_degree(scale, to);
                let fifth = (c.triad[2] as i32 - c.root_pc as i32).rem_euclid(12);
                if fifth == 6 {
                    for from in 0..scale.degrees() {
                        assert_eq!(transition_probability(mode, from, to), 0.0, "{mode}");
                    }
                }
            }
        }
    }

    #[test]
    fn chords_are_in_the_scale_and_characteristic() {
        let d_dorian = Scale::new("D".parse().unwrap(), Mode::Dorian);
        // IV of D Dorian is G major.
        assert_eq!(Chord::on_degree(d_dorian, 3).triad, [7, 11, 2]);
        let c_penta = Scale::new("C".parse().unwrap(), Mode::Pentatonic);
        assert_eq!(Chord::on_degree(c_penta, 0).triad, [0, 4, 7]);
        assert_eq!(Chord::on_degree(c_penta, 4).triad, [9, 0, 4]);
        for mode in Mode::ALL {
            for key in 0..12 {
                let s = Scale::new(Key::from_pitch_class(key).unwrap(), mode);
                for d in 0..s.degrees() {
                    for pc in Chord::on_degree(s, d).pitch_classes() {
                        assert!(s.contains(pc + 60), "{mode} {key} {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn harmonic_rhythm_is_one_or_two_bars() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let scale = Scale::new(Key::from_pitch_class(2).unwrap(), Mode::Dorian);
        let mut walk = ChordWalk::new();
        let mut run = 0;
        for bar in 0..500 {
            let h = walk.advance(&mut rng, scale, bar, 0.5, false);
            if h.is_new {
                assert!((1..=2).contains(&h.length_bars));
                run = 1;
            } else {
                run += 1;
                assert!(run <= 2);
            }
        }
    }

    #[test]
    fn pivot_shares_tones() {
        let old = Chord::on_degree(
            Scale::new(Key::from_pitch_class(2).unwrap(), Mode::Dorian),
            0,
        );
        // D minor -> into A Aeolian: D minor is iv there.
        let new_scale = Scale::new(Key::from_pitch_class(9).unwrap(), Mode::Aeolian);
        let d = pivot_degree(new_scale, &old);
        assert_eq!(Chord::on_degree(new_scale, d).triad, old.triad);
    }
}
