//! Percussion: a few soft, unpredictable touches, never a drum-machine grid.
//!
//! Each drum has a probability per sixteenth-note position (the tables below, tunable); the whole
//! bar is also gated by a "does this bar play at all" draw, so some bars are silent. All
//! probabilities scale with intensity (and the preset's percussion amount) and are exactly zero at
//! intensity 0. Velocities stay low, and every hit is nudged late by a few milliseconds so nothing
//! sits mechanically on the grid.

use rand::Rng;

use crate::instruments::drum;

/// Probability (at full intensity) of each drum on each sixteenth of the bar.
struct DrumPattern {
    /// Drum kind (the pitch sent to synthd).
    kind: u8,
    /// Probability per sixteenth position, 0..=1.
    chance: [f32; 16],
    /// Velocity range at full intensity.
    velocity: (u8, u8),
    /// Note length in sixteenths (the synth lets it ring out anyway).
    length: u8,
}

#[rustfmt::skip]
const PATTERNS: &[DrumPattern] = &[
    //                                1     e     &     a     2     e     &     a     3     e     &     a     4     e     &     a
    DrumPattern { kind: drum::SOFT_KICK, chance: [0.55, 0.0,  0.0,  0.0,  0.0,  0.0,  0.12, 0.0,  0.25, 0.0,  0.0,  0.06, 0.0,  0.0,  0.05, 0.0 ], velocity: (30, 48), length: 4 },
    DrumPattern { kind: drum::BRUSH,     chance: [0.0,  0.0,  0.0,  0.0,  0.30, 0.0,  0.0,  0.04, 0.0,  0.0,  0.0,  0.0,  0.30, 0.0,  0.0,  0.06], velocity: (18, 34), length: 2 },
    DrumPattern { kind: drum::SHAKER,    chance: [0.05, 0.06, 0.28, 0.08, 0.05, 0.06, 0.28, 0.08, 0.05, 0.06, 0.28, 0.08, 0.05, 0.06, 0.28, 0.10], velocity: (14, 30), length: 1 },
    DrumPattern { kind: drum::CLICK,     chance: [0.0,  0.0,  0.04, 0.0,  0.0,  0.05, 0.0,  0.0,  0.0,  0.03, 0.0,  0.06, 0.0,  0.0,  0.04, 0.0 ], velocity: (16, 28), length: 1 },
];

/// One percussion hit in a bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Sixteenth of the bar, 0..16.
    pub position: u8,
    /// Extra delay after the grid position, in milliseconds (humanisation).
    pub late_ms: u8,
    /// Drum kind.
    pub kind: u8,
    /// Velocity.
    pub velocity: u8,
    /// Length in sixteenths.
    pub length: u8,
}

/// The hits of one bar. `amount` is the preset's percussion level (0 = never).
pub fn bar<R: Rng>(rng: &mut R, intensity: f32, amount: f32) -> Vec<Hit> {
    let level = (intensity * amount).clamp(0.0, 1.0);
    if level <= 0.0 {
        return Vec::new();
    }
    // Whole bars drop out, more often when calm: the pulse comes and goes.
    if rng.random::<f32>() > 0.25 + 0.7 * level {
        return Vec::new();
    }
    // How busy this particular bar is, so consecutive bars differ in feel.
    let bar_feel = rng.random_range(0.5..1.2);
    let mut hits = Vec::new();
    for pattern in PATTERNS {
        for (position, &chance) in pattern.chance.iter().enumerate() {
            let p = chance * level * bar_feel;
            if p > 0.0 && rng.random::<f32>() < p {
                let (lo, hi) = pattern.velocity;
                let v = f32::from(lo) + (f32::from(hi) - f32::from(lo)) * rng.random::<f32>();
                let v = v * (0.6 + 0.4 * level);
                hits.push(Hit {
                    position: position as u8,
                    late_ms: rng.random_range(0..14),
                    kind: pattern.kind,
                    velocity: v.clamp(1.0, 60.0) as u8,
                    length: pattern.length,
                });
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn silent_at_zero_intensity() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            assert!(bar(&mut rng, 0.0, 1.0).is_empty());
            assert!(bar(&mut rng, 1.0, 0.0).is_empty());
        }
    }

    #[test]
    fn sparse_soft_and_varied() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let bars: Vec<Vec<Hit>> = (0..400).map(|_| bar(&mut rng, 1.0, 1.0)).collect();
        let hits: usize = bars.iter().map(Vec::len).sum();
        assert!(hits / bars.len() <= 6, "{hits} hits in {} bars", bars.len());
        assert!(bars.iter().flatten().all(|h| h.velocity <= 60));
        assert!(bars.iter().any(Vec::is_empty), "some bars should rest");
        // Not a grid: consecutive bars rarely have the same pattern.
        let same = bars
            .windows(2)
            .filter(|w| {
                let a: Vec<_> = w[0].iter().map(|h| (h.position, h.kind)).collect();
                let b: Vec<_> = w[1].iter().map(|h| (h.position, h.kind)).collect();
                a == b && !a.is_empty()
            })
            .count();
        assert!(same < 10, "{same} repeated bars");
    }
}
