//! Voicing: which octave each chord tone is played in, chosen for smooth voice leading.
//!
//! The pad plays four voices inside a bounded register. Every voicing of the chord that fits is
//! enumerated (there are only a few dozen) and the cheapest wins: the cost is the total semitone
//! movement from the previous voicing, plus penalties for what sounds bad in a sustained pad
//! (semitone rubs between neighbours, muddy close intervals down low, gaps wider than an octave)
//! and a gentle pull back to the middle of the register so the voicing never drifts off. No
//! randomness: the same chord after the same voicing is always voiced the same way.

use crate::harmony::Chord;

/// Number of pad voices.
pub const VOICES: usize = 4;

/// The register a voicing must stay in, inclusive MIDI pitches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register {
    /// Lowest allowed pitch.
    pub lo: u8,
    /// Highest allowed pitch.
    pub hi: u8,
}

impl Register {
    fn centre(self) -> f32 {
        (f32::from(self.lo) + f32::from(self.hi)) / 2.0
    }
}

/// The pad register: C3..D5, between the bass and the melody so the melody sings on top.
pub const PAD_REGISTER: Register = Register { lo: 48, hi: 74 };

/// Four pitches, ascending.
pub type Voicing = [u8; VOICES];

/// The smoothest voicing of `chord` after `prev` (or the most central one when there is none).
/// `with_colour` adds the chord's colour tone (ninth or seventh) as one of the voices.
pub fn voice_chord(
    chord: &Chord,
    prev: Option<&Voicing>,
    reg: Register,
    with_colour: bool,
) -> Voicing {
    let mut required: Vec<u8> = chord.triad.to_vec();
    if with_colour {
        required.extend(chord.colour);
    }
    let allowed = required.clone();
    let candidates: Vec<u8> = (reg.lo..=reg.hi)
        .filter(|p| allowed.contains(&(p % 12)))
        .collect();
    let mut best: Option<(f32, Voicing)> = None;
    let n = candidates.len();
    for a in 0..n {
        for b in a + 1..n {
            for c in b + 1..n {
                for d in c + 1..n {
                    let v = [candidates[a], candidates[b], candidates[c], candidates[d]];
                    // Every required tone present, except that a colour voicing may drop the fifth.
                    let missing = required
                        .iter()
                        .filter(|pc| !v.iter().any(|p| p % 12 == **pc))
                        .count();
                    let fifth_dropped = with_colour
                        && chord.colour.is_some()
                        && missing == 1
                        && !v.iter().any(|p| p % 12 == chord.triad[2]);
                    if missing > 0 && !fifth_dropped {
                        continue;
                    }
                    let cost = cost(&v, prev, reg);
                    if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                        best = Some((cost, v));
                    }
                }
            }
        }
    }
    best.map(|(_, v)| v).unwrap_or_else(|| fallback(chord, reg))
}

/// What makes a voicing worse; see the module docs.
fn cost(v: &Voicing, prev: Option<&Voicing>, reg: Register) -> f32 {
    let mut c = 0.0;
    if let Some(p) = prev {
        c += v
            .iter()
            .zip(p.iter())
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).unsigned_abs() as f32)
            .sum::<f32>();
    }
    for w in v.windows(2) {
        let gap = w[1] - w[0];
        if gap == 1 {
            c += 4.0;
        }
        if gap > 12 {
            c += 3.0;
        }
        // Seconds below middle C turn to mud in a sustained pad.
        if w[0] < 60 && gap < 3 {
            c += 3.0;
        }
    }
    let mean = v.iter().map(|&p| f32::from(p)).sum::<f32>() / VOICES as f32;
    c += (mean - reg.centre()).abs() * 0.35;
    c
}

/// Close position on the root near the bottom of the register; only used if the register is too
/// narrow for any proper voicing (it never is for [`PAD_REGISTER`]).
fn fallback(chord: &Chord, reg: Register) -> Voicing {
    let mut out = [reg.lo; VOICES];
    let pcs = [
        chord.triad[0],
        chord.triad[1],
        chord.triad[2],
        chord.triad[0],
    ];
    let mut p = reg.lo;
    for (slot, pc) in out.iter_mut().zip(pcs) {
        while p % 12 != pc {
            p += 1;
        }
        *slot = p;
        p += 1;
    }
    out
}

/// Total semitone movement between two voicings (what the voice leading minimises).
pub fn movement(a: &Voicing, b: &Voicing) -> u32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (i32::from(*x) - i32::from(*y)).unsigned_abs())
        .sum()
}

/// The bass register, C2..D3: low enough to sit under the pad, high enough for small speakers.
pub const BASS_RANGE: (u8, u8) = (36, 50);

/// The bass note for a chord: its root, in the octave closest to the previous bass note (so the
/// line moves by small intervals) with a gentle pull towards G2 so it never creeps to an edge.
pub fn bass_note(chord: &Chord, prev: Option<u8>) -> u8 {
    const HOME: i32 = 43;
    let target = i32::from(prev.unwrap_or(HOME as u8));
    (BASS_RANGE.0..=BASS_RANGE.1)
        .filter(|p| p % 12 == chord.root_pc)
        .min_by_key(|&p| {
            let p = i32::from(p);
            2 * (p - target).abs() + (p - HOME).abs()
        })
        .unwrap_or(BASS_RANGE.0 + chord.root_pc % 12)
}

/// A second bass note for a walking bass: the chord's fifth (its third triad tone) closest to
/// `root`, above or below, inside the bass register; the root itself if there is none.
pub fn bass_answer(chord: &Chord, root: u8) -> u8 {
    (BASS_RANGE.0..=BASS_RANGE.1 + 5)
        .filter(|&p| p != root && p % 12 == chord.triad[2])
        .min_by_key(|&p| (i32::from(p) - i32::from(root)).abs())
        .unwrap_or(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scales::{Key, Mode, Scale};

    #[test]
    fn voicings_stay_in_register_and_contain_the_chord() {
        for mode in Mode::ALL {
            for key in 0..12 {
                let s = Scale::new(Key::from_pitch_class(key).unwrap(), mode);
                let mut prev = None;
                for d in (0..s.degrees()).chain(0..s.degrees()) {
                    let ch = Chord::on_degree(s, d);
                    let v = voice_chord(&ch, prev.as_ref(), PAD_REGISTER, d % 2 == 0);
                    assert!(v.windows(2).all(|w| w[0] < w[1]));
                    assert!(
                        v.iter()
                            .all(|&p| (PAD_REGISTER.lo..=PAD_REGISTER.hi).contains(&p))
                    );
                    assert!(v.iter().all(|&p| s.contains(p)));
                    assert!(v.iter().any(|&p| p % 12 == ch.triad[0]));
                    assert!(v.iter().any(|&p| p % 12 == ch.triad[1]));
                    prev = Some(v);
                }
            }
        }
    }

    #[test]
    fn voice_leading_is_smooth() {
        // I -> IV -> V -> I in C: a good voice leading moves each voice by a step or so.
        let s = Scale::new(Key::from_pitch_class(0).unwrap(), Mode::Ionian);
        let mut prev = voice_chord(&Chord::on_degree(s, 0), None, PAD_REGISTER, false);
        let mut total = 0;
        let progression = [3, 4, 0, 5, 1, 4, 0, 2, 5, 3, 1, 4, 0];
        for d in progression {
            let v = voice_chord(&Chord::on_degree(s, d), Some(&prev), PAD_REGISTER, false);
            let m = movement(&prev, &v);
            assert!(m <= 10, "{prev:?} -> {v:?}");
            total += m;
            prev = v;
        }
        // Under two semitones per voice per chord change on average.
        assert!(
            total < 8 * progression.len() as u32,
            "total movement {total}"
        );
    }

    #[test]
    fn bass_follows_roots_closely() {
        let s = Scale::new(Key::from_pitch_class(2).unwrap(), Mode::Dorian);
        let mut prev = None;
        for d in [0, 3, 6, 0, 4, 2, 0] {
            let ch = Chord::on_degree(s, d);
            let b = bass_note(&ch, prev);
            assert_eq!(b % 12, ch.root_pc);
            assert!((BASS_RANGE.0..=BASS_RANGE.1).contains(&b));
            let a = bass_answer(&ch, b);
            assert!(a != b && a % 12 == ch.triad[2]);
            if let Some(p) = prev {
                assert!((i32::from(b) - i32::from(p)).abs() <= 7);
            }
            prev = Some(b);
        }
    }
}
