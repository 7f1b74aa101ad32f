//! The loudness hold: a slow automatic master gain that keeps a station at -16 LUFS whatever the
//! preset, intensity or seed, the peaks left to the [`crate::limiter`] behind it.
//!
//! Why this design: loudness depends on the material (dense test phrases read -16 LUFS at a fixed
//! gain, composer's sparser Focus about -18, Sleep at intensity 0.15 far less), so a constant
//! cannot hold it. The hold measures the material's short-term loudness the way BS.1770 does —
//! K-weighting (the high shelf and high-pass of [`crate::loudness::k_weighting_coefs`]), mean
//! square per channel summed over both, a 3 s sliding window (EBU "short-term") — and moves the
//! gain toward `TARGET_LUFS - loudness`, at most 1 dB per second, within ±12 dB. It is
//! feed-forward: it measures the *material* (the mix divided by the gain it was given), so the gain
//! is a smoothed function of the music, not a feedback loop that could overshoot or hunt.
//!
//! Gating, after BS.1770's block gating: the window is made of the last 3 s of *counted* 64-frame
//! blocks. A block whose output loudness is under -45 LUFS (silence, the end of a reverb tail, a
//! gap between phrases) is not counted and the gain holds, rather than turning the noise floor and
//! the tails up; a block 20 LU under the window's mean (a tail or a fade still above -45) is not
//! counted either, unless such blocks go on for 6 s (the material itself has changed). So after a
//! gap the window still describes the music before it, and the music comes back at the level it
//! left.
//!
//! Cost: the detector runs on the 4x-decimated stereo signal (a 4-frame sum, so 11 kHz; the shelf at
//! 1.7 kHz is still well inside, and the material's energy above 5 kHz is small), both channels
//! in one SIMD vector: 16 filter steps per 64-frame block. The gain changes only on the 64-frame
//! grid of the station clock (by at most 0.0015 dB, no zipper noise), and every recursion advances
//! frame by frame in a fixed order, so the output does not depend on the caller's block sizes.

use shm_proto::SAMPLE_RATE;
use wide::f32x4;

use crate::loudness::k_weighting_coefs;
use crate::voice::BLOCK;

/// Loudness the hold aims at, LUFS.
pub const TARGET_LUFS: f32 = -16.0;
/// Output loudness of a block under which it is not counted and the gain holds (LUFS).
pub const GATE_LUFS: f32 = -45.0;
/// Lowest gain, dB.
pub const MIN_GAIN_DB: f32 = -12.0;
/// Highest gain, dB.
pub const MAX_GAIN_DB: f32 = 12.0;
/// Gain before anything has been measured, dB: what places composer's Focus material near the
/// target, so a station starts close to where it will settle.
pub const INITIAL_GAIN_DB: f32 = 3.0;
/// Fastest gain change, dB per second.
pub const MAX_SLEW_DB_PER_S: f32 = 1.0;
/// Time constant of the approach to the target gain, seconds: errors under
/// `MAX_SLEW_DB_PER_S * SETTLE_S` dB shrink exponentially rather than at the full slew rate, so
/// the gain drifts gently instead of chasing every phrase.
pub const SETTLE_S: f32 = 4.0;
/// Length of the measuring window, seconds (EBU R128 short-term loudness).
pub const WINDOW_S: f32 = 3.0;

/// Frames summed into one detector sample.
const DECIMATION: usize = 4;
/// Detector samples per grid block.
const SAMPLES_PER_BLOCK: usize = BLOCK / DECIMATION;
/// Grid blocks in the window.
const WINDOW_BLOCKS: usize = (WINDOW_S * SAMPLE_RATE as f32 / BLOCK as f32) as usize;
/// Block energy to mean square per frame: a block has `SAMPLES_PER_BLOCK` detector samples, and
/// a 4-frame sum has 4x the amplitude of its frames.
const ENERGY_TO_MEAN_SQUARE: f32 = 1.0 / (SAMPLES_PER_BLOCK * DECIMATION * DECIMATION) as f32;
/// Relative gate: blocks this far under the window's mean (10 LU, as in BS.1770) are not counted.
const RELATIVE_GATE: f32 = 0.1;
/// Blocks in a row under the relative gate after which they count again (6 s).
const ESCAPE_BLOCKS: u32 = 2 * WINDOW_BLOCKS as u32;
/// Flush quantum for a detector sample before it is squared: its spacing (2^-57) squared is a
/// normal f32.
const SQUARE_FLUSH: f32 = 1e-10;
/// Anti-denormal quantum: adding and subtracting it flushes filter states under ~1e-22 to zero
/// and leaves larger ones untouched.
const FLUSH: f32 = 1e-15;

/// One K-weighting biquad on both channels (lanes 0 and 1; lanes 2 and 3 stay zero), transposed
/// direct form II.
#[derive(Clone, Copy, Debug)]
struct StereoBiquad {
    /// Feed-forward coefficients.
    b: [f32x4; 3],
    /// Feedback coefficients (a1, a2).
    a: [f32x4; 2],
    /// The two state registers.
    s: [f32x4; 2],
}

impl StereoBiquad {
    fn new((b, a): ([f64; 3], [f64; 2])) -> Self {
        StereoBiquad {
            b: b.map(|v| f32x4::splat(v as f32)),
            a: a.map(|v| f32x4::splat(v as f32)),
            s: [f32x4::ZERO; 2],
        }
    }

    #[inline(always)]
    fn tick(&mut self, x: f32x4) -> f32x4 {
        let y = self.b[0] * x + self.s[0];
        self.s[0] = self.b[1] * x - self.a[0] * y + self.s[1];
        self.s[1] = self.b[2] * x - self.a[1] * y;
        y
    }

    /// Flushes states far under audibility to zero (no subnormals in silence).
    fn flush(&mut self) {
        let q = f32x4::splat(FLUSH);
        for s in &mut self.s {
            *s = (*s + q) - q;
        }
    }
}

/// The loudness hold's state.
#[derive(Debug)]
pub struct LoudnessHold {
    /// K-weighting: high shelf, then high-pass, at the decimated rate.
    filters: [StereoBiquad; 2],
    /// Running 4-frame sum (left, right) feeding the next detector sample.
    acc: [f32; 2],
    /// Sum of squared K-weighted detector samples (both channels) in the current grid block.
    energy: f32x4,
    /// Material energy (output energy over gain squared) of the last `WINDOW_BLOCKS` blocks.
    ring: Box<[f32]>,
    /// Next slot of `ring`.
    pos: usize,
    /// Sum of `ring` (f64, and recomputed from scratch every lap, so it cannot drift).
    sum: f64,
    /// Blocks in `ring` so far (the window is shorter until it has filled).
    filled: usize,
    /// [`GATE_LUFS`] as the output energy of one block.
    gate_energy: f32,
    /// Blocks in a row left out by the relative gate.
    gated_run: u32,
    /// Current gain, dB.
    gain_db: f32,
    /// Current gain, linear: what the master multiplies by for the whole grid block.
    gain: f32,
}

impl Default for LoudnessHold {
    fn default() -> Self {
        Self::new()
    }
}

impl LoudnessHold {
    /// Allocates the window; the gain starts at [`INITIAL_GAIN_DB`].
    pub fn new() -> Self {
        let fs = f64::from(SAMPLE_RATE) / DECIMATION as f64;
        LoudnessHold {
            filters: k_weighting_coefs(fs).map(StereoBiquad::new),
            acc: [0.0; 2],
            energy: f32x4::ZERO,
            ring: vec![0.0; WINDOW_BLOCKS].into_boxed_slice(),
            pos: 0,
            sum: 0.0,
            filled: 0,
            gated_run: 0,
            gate_energy: 10f32.powf((GATE_LUFS + 0.691) / 10.0) / ENERGY_TO_MEAN_SQUARE,
            gain_db: INITIAL_GAIN_DB,
            gain: db_to_gain(INITIAL_GAIN_DB),
        }
    }

    /// The gain for the current grid block (linear).
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// The gain for the current grid block, dB.
    pub fn gain_db(&self) -> f32 {
        self.gain_db
    }

    /// Measures a segment of the output (already multiplied by [`Self::gain`]) that starts `f0`
    /// frames into its grid block; at the end of a grid block, moves the gain for the next one.
    pub fn measure(&mut self, f0: usize, l: &[f32], r: &[f32]) {
        let n = l.len();
        assert!(f0 + n <= BLOCK && r.len() == n);
        // Frames up to the first detector-sample boundary, then whole 4-frame sums (one
        // detector sample each, its frames added in the same order), then what is left: the
        // same additions a frame-by-frame loop makes, without its per-frame branch.
        let head = ((DECIMATION - f0 % DECIMATION) % DECIMATION).min(n);
        for (&xl, &xr) in l[..head].iter().zip(&r[..head]) {
            self.acc[0] += xl;
            self.acc[1] += xr;
        }
        if head > 0 && (f0 + head) % DECIMATION == 0 {
            self.detect();
        }
        let (l, r) = (&l[head..], &r[head..]);
        let (gl, gr) = (l.chunks_exact(DECIMATION), r.chunks_exact(DECIMATION));
        let (tl, tr) = (gl.remainder(), gr.remainder());
        for (gl, gr) in gl.zip(gr) {
            let [mut al, mut ar] = self.acc;
            for (&xl, &xr) in gl.iter().zip(gr) {
                al += xl;
                ar += xr;
            }
            self.acc = [al, ar];
            self.detect();
        }
        for (&xl, &xr) in tl.iter().zip(tr) {
            self.acc[0] += xl;
            self.acc[1] += xr;
        }
        if f0 + n == BLOCK {
            self.end_block();
        }
    }

    /// One detector sample: K-weights the 4-frame sums and adds their squares to the block.
    #[inline(always)]
    fn detect(&mut self) {
        let mut y = f32x4::from([self.acc[0], self.acc[1], 0.0, 0.0]);
        for f in &mut self.filters {
            y = f.tick(y);
        }
        // Flush under ~3e-18 (-350 dBFS, the reverb's anti-denormal floor) to zero, so the
        // square below cannot be subnormal in silence.
        let q = f32x4::splat(SQUARE_FLUSH);
        y = (y + q) - q;
        self.energy += y * y;
        self.acc = [0.0; 2];
    }

    /// Closes a grid block: counts its material energy into the window unless gated, and steps the
    /// gain.
    fn end_block(&mut self) {
        for f in &mut self.filters {
            f.flush();
        }
        let lanes = self.energy.to_array();
        self.energy = f32x4::ZERO;
        let out = lanes[0] + lanes[1];
        let e = out / (self.gain * self.gain);
        // Gates, as BS.1770 gates its 400 ms blocks (our blocks are 64 frames; the reverb keeps
        // ambient material continuous, so only silence and dying tails fall under them).
        if !(out >= self.gate_energy && e.is_finite()) {
            return; // Silence: not counted, the gain holds.
        }
        let mean = (self.sum / self.filled.max(1) as f64) as f32;
        if self.filled > 0 && e < mean * RELATIVE_GATE {
            // A tail or a fade: not counted. After `ESCAPE_BLOCKS` in a row the material itself
            // has changed, and such blocks count until the window has followed it.
            if self.gated_run < ESCAPE_BLOCKS {
                self.gated_run += 1;
                return;
            }
        } else {
            self.gated_run = 0;
        }
        self.sum += f64::from(e) - f64::from(self.ring[self.pos]);
        self.ring[self.pos] = e;
        self.pos += 1;
        if self.pos == WINDOW_BLOCKS {
            self.pos = 0;
            self.sum = self.ring.iter().map(|&v| f64::from(v)).sum();
        }
        self.filled = (self.filled + 1).min(WINDOW_BLOCKS);
        let ms = (self.sum / self.filled as f64) as f32 * ENERGY_TO_MEAN_SQUARE;
        if ms <= 0.0 {
            return; // Counted blocks carry energy: this only guards the logarithm.
        }
        let material = -0.691 + 10.0 * ms.log10();
        let want = (TARGET_LUFS - material).clamp(MIN_GAIN_DB, MAX_GAIN_DB);
        let per_block = BLOCK as f32 / SAMPLE_RATE as f32;
        let max_step = MAX_SLEW_DB_PER_S * per_block;
        let step = ((want - self.gain_db) * (per_block / SETTLE_S)).clamp(-max_step, max_step);
        if step != 0.0 {
            self.gain_db += step;
            self.gain = db_to_gain(self.gain_db);
        }
    }
}

/// dB to a linear gain: `10^(db / 20)` as a power of two (`exp2` costs about half of `powf`,
/// which was a visible share of the master bus at one call per grid block).
fn db_to_gain(db: f32) -> f32 {
    (db * (std::f32::consts::LOG2_10 / 20.0)).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `seconds` of a stereo 1 kHz sine at `dbfs` through the hold the way the master does
    /// (multiplied by the gain), in `block`-frame segments; returns the last gain (dB).
    fn run(hold: &mut LoudnessHold, dbfs: f32, seconds: f32) -> f32 {
        let amp = 10f32.powf(dbfs / 20.0);
        let frames = (seconds * SAMPLE_RATE as f32) as usize / BLOCK;
        let mut n = 0usize;
        for _ in 0..frames {
            let g = hold.gain();
            let mut l = [0.0f32; BLOCK];
            for x in &mut l {
                *x = g * amp * (std::f32::consts::TAU * 1000.0 * n as f32 / 44_100.0).sin();
                n += 1;
            }
            hold.measure(0, &l, &l);
        }
        hold.gain_db()
    }

    #[test]
    fn a_steady_tone_settles_at_the_target() {
        // A stereo 1 kHz sine at -26 dBFS reads -26 LUFS: the hold should add 10 dB.
        let mut hold = LoudnessHold::new();
        let g = run(&mut hold, -26.0, 40.0);
        assert!((g - 10.0).abs() < 0.3, "{g}");
    }

    #[test]
    fn the_gain_moves_at_most_one_db_per_second_and_stays_in_range() {
        let mut hold = LoudnessHold::new();
        let g = run(&mut hold, -50.0 + 6.0, 5.0);
        assert!(g <= INITIAL_GAIN_DB + 5.0 * MAX_SLEW_DB_PER_S + 0.01, "{g}");
        let g = run(&mut hold, -44.0, 60.0);
        assert!(g <= MAX_GAIN_DB, "{g}");
        let g = run(&mut hold, 0.0, 60.0);
        assert!(g >= MIN_GAIN_DB, "{g}");
    }

    #[test]
    fn a_lasting_drop_of_more_than_10_lu_is_followed() {
        // The relative gate leaves the quieter material out for 6 s only.
        let mut hold = LoudnessHold::new();
        let g0 = run(&mut hold, -14.0, 30.0);
        assert!((g0 + 2.0).abs() < 0.3, "{g0}");
        let g1 = run(&mut hold, -26.0, 60.0);
        assert!((g1 - 10.0).abs() < 0.3, "{g1}");
    }

    #[test]
    fn silence_holds_the_gain() {
        let mut hold = LoudnessHold::new();
        let g0 = run(&mut hold, -20.0, 20.0);
        let g1 = run(&mut hold, -200.0, 30.0);
        assert!((g1 - g0).abs() < 0.1, "{g0} -> {g1}");
    }
}
