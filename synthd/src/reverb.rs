//! The ambient reverb: an 8-line feedback delay network (orthogonal Hadamard feedback, a one-pole
//! damping low-pass and a decay gain in every line), fed through short allpass diffusers.
//!
//! Why an FDN: eight lines with mutually prime lengths give a dense, colourless tail for about 60
//! operations per frame, and the decay time is set exactly per line (`g = 10^(-3 d / (T fs))`), so
//! the ~3 s RT60 is a parameter rather than a tuning accident. Damping makes highs die sooner, the
//! way a real room does, so the tail stays soft. A 1e-18 offset injected at the input keeps every
//! recursive state far above the subnormal range during silence (no denormal slowdowns, no
//! platform flags needed).

use shm_proto::SAMPLE_RATE;

use crate::filter::one_pole_coef;

/// Delay lengths in frames (mutually prime, 23..72 ms).
const LENGTHS: [usize; 8] = [1031, 1327, 1523, 1871, 2099, 2467, 2777, 3163];
/// Allpass diffuser lengths (left, right), with feedback `DIFFUSE_G`.
const DIFFUSERS: [[usize; 2]; 2] = [[142, 107], [379, 277]];
/// Allpass coefficient of the diffusers.
const DIFFUSE_G: f32 = 0.6;
/// Anti-denormal offset (far below audibility: -360 dBFS).
const ANTI_DENORMAL: f32 = 1e-18;

/// A Schroeder allpass over a fixed delay.
#[derive(Debug)]
struct Allpass {
    buf: Box<[f32]>,
    pos: usize,
}

impl Allpass {
    fn new(len: usize) -> Self {
        Allpass {
            buf: vec![0.0; len].into_boxed_slice(),
            pos: 0,
        }
    }

    #[inline(always)]
    fn tick(&mut self, x: f32) -> f32 {
        let d = self.buf[self.pos];
        let v = x + DIFFUSE_G * d;
        self.buf[self.pos] = v;
        self.pos += 1;
        if self.pos == self.buf.len() {
            self.pos = 0;
        }
        d - DIFFUSE_G * v
    }
}

/// The reverb state.
#[derive(Debug)]
pub struct Reverb {
    /// The eight delay lines, each exactly its delay long (read the oldest, write the newest).
    lines: [Box<[f32]>; 8],
    /// Read/write position per line.
    pos: [usize; 8],
    /// Damping low-pass state per line.
    damp_state: [f32; 8],
    /// Damping coefficient.
    damp: f32,
    /// Decay gain per line for the RT60.
    gain: [f32; 8],
    /// Input high-pass (one-pole low-pass subtracted) state per channel: keeps bass out of the tail.
    hp_state: [f32; 2],
    /// Input high-pass coefficient.
    hp: f32,
    /// Diffusers per channel.
    diffusers: [[Allpass; 2]; 2],
}

impl Reverb {
    /// A reverb with decay time `rt60` seconds and damping low-pass at `damp_hz`.
    pub fn new(rt60: f32, damp_hz: f32) -> Self {
        let mut gain = [0.0; 8];
        for (g, &d) in gain.iter_mut().zip(&LENGTHS) {
            *g = 10f32.powf(-3.0 * d as f32 / (rt60 * SAMPLE_RATE as f32));
        }
        Reverb {
            lines: LENGTHS.map(|d| vec![0.0f32; d].into_boxed_slice()),
            pos: [0; 8],
            damp_state: [0.0; 8],
            damp: one_pole_coef(damp_hz),
            gain,
            hp_state: [0.0; 2],
            hp: one_pole_coef(120.0),
            diffusers: DIFFUSERS.map(|[l, r]| [Allpass::new(l), Allpass::new(r)]),
        }
    }

    /// Processes one stereo frame; returns the wet signal.
    #[inline]
    pub fn tick(&mut self, l: f32, r: f32) -> (f32, f32) {
        // Input: high-pass, then diffuse.
        let mut input = [l + ANTI_DENORMAL, r + ANTI_DENORMAL];
        for (ch, x) in input.iter_mut().enumerate() {
            self.hp_state[ch] += self.hp * (*x - self.hp_state[ch]);
            let mut y = *x - self.hp_state[ch] + ANTI_DENORMAL;
            for ap in &mut self.diffusers[ch] {
                y = ap.tick(y);
            }
            *x = y;
        }
        // Read the line outputs, damp and scale them.
        let mut x = [0.0f32; 8];
        for i in 0..8 {
            let v = self.lines[i][self.pos[i]];
            self.damp_state[i] += self.damp * (v - self.damp_state[i]);
            x[i] = self.damp_state[i] * self.gain[i];
        }
        let out_l = 0.5 * (x[0] + x[2] + x[4] + x[6]);
        let out_r = 0.5 * (x[1] + x[3] + x[5] + x[7]);
        hadamard8(&mut x);
        for i in 0..8 {
            let v = x[i] + input[i & 1];
            self.lines[i][self.pos[i]] = v;
            self.pos[i] += 1;
            if self.pos[i] == LENGTHS[i] {
                self.pos[i] = 0;
            }
        }
        (out_l, out_r)
    }

    /// True if any recursive state holds a subnormal number (tests use this to prove the
    /// anti-denormal offset works).
    pub fn has_subnormal_state(&self) -> bool {
        let sub = |v: &f32| v.is_subnormal();
        self.lines.iter().any(|l| l.iter().any(sub))
            || self.damp_state.iter().any(sub)
            || self.hp_state.iter().any(sub)
            || self
                .diffusers
                .iter()
                .flatten()
                .any(|a| a.buf.iter().any(sub))
    }
}

/// In-place fast Walsh-Hadamard transform of 8 values, normalised to be orthogonal (energy
/// preserving), so the loop gain is set by the decay gains alone.
#[inline(always)]
fn hadamard8(x: &mut [f32; 8]) {
    let mut h = 1;
    while h < 8 {
        let mut i = 0;
        while i < 8 {
            for j in i..i + h {
                let (a, b) = (x[j], x[j + h]);
                x[j] = a + b;
                x[j + h] = a - b;
            }
            i += 2 * h;
        }
        h *= 2;
    }
    let norm = 1.0 / 8f32.sqrt();
    for v in x.iter_mut() {
        *v *= norm;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schroeder backward integration of the impulse response; time for the energy to fall from
    /// -5 dB to -35 dB, times two (T30), as acousticians measure RT60.
    fn rt60(rev: &mut Reverb) -> f32 {
        let n = 8 * SAMPLE_RATE as usize;
        let mut ir = Vec::with_capacity(n);
        for i in 0..n {
            let x = if i == 0 { 1.0 } else { 0.0 };
            let (l, r) = rev.tick(x, x);
            ir.push(f64::from(l * l + r * r));
        }
        let mut edc = vec![0.0f64; n];
        let mut acc = 0.0;
        for i in (0..n).rev() {
            acc += ir[i];
            edc[i] = acc;
        }
        let db = |i: usize| 10.0 * (edc[i] / edc[0]).log10();
        let t5 = (0..n).find(|&i| db(i) < -5.0).unwrap();
        let t35 = (0..n).find(|&i| db(i) < -35.0).unwrap();
        2.0 * (t35 - t5) as f32 / SAMPLE_RATE as f32
    }

    #[test]
    fn impulse_decays_60_db_in_about_three_seconds() {
        let mut rev = Reverb::new(3.0, 9_000.0);
        let t = rt60(&mut rev);
        assert!((2.3..=3.6).contains(&t), "RT60 {t} s");
    }

    #[test]
    fn hadamard_preserves_energy() {
        let mut x = [1.0, -2.0, 0.5, 3.0, 0.0, 1.0, -1.0, 2.0];
        let before: f32 = x.iter().map(|v| v * v).sum();
        hadamard8(&mut x);
        let after: f32 = x.iter().map(|v| v * v).sum();
        assert!((before - after).abs() < 1e-4);
    }

    #[test]
    fn silence_after_sound_never_goes_subnormal() {
        let mut rev = Reverb::new(3.0, 9_000.0);
        for i in 0..1000 {
            rev.tick(((i as f32) * 0.1).sin(), 0.0);
        }
        for _ in 0..120 * SAMPLE_RATE as usize {
            rev.tick(0.0, 0.0);
        }
        assert!(!rev.has_subnormal_state());
    }
}
