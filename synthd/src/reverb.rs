//! The ambient reverb: a 4-line feedback delay network (orthogonal Householder feedback, a
//! one-pole damping low-pass and a decay gain in every line), fed through short allpass diffusers,
//! processed a block at a time.
//!
//! Why an FDN: four long lines with mutually prime lengths behind two allpass diffusers per
//! channel give a dense, colourless tail for a few vector operations per frame, and the
//! decay time is set exactly per line (`g = 10^(-3 d / (T fs))`), so
//! the ~3 s RT60 is a parameter rather than a tuning accident. Damping makes highs die sooner, the
//! way a real room does, so the tail stays soft. Why Householder (`x - (2/8) sum(x)`) rather than
//! Hadamard: it is as orthogonal, costs one sum instead of 24 cross-lane additions, and the input
//! diffusers already provide the early density. Why blocks: every delay is longer than a block, so
//! a block reads all its line outputs at once and the per-frame work runs on four lanes
//! together. A 1e-18 offset injected at the input keeps every
//! recursive state far above the subnormal range during silence (no denormal slowdowns, no
//! platform flags needed).

use shm_proto::SAMPLE_RATE;
use wide::f32x4;

use crate::filter::one_pole_coef;

/// Lines in the network: one SSE vector.
const LINES: usize = 4;
/// Delay lengths in frames (mutually prime, 44..80 ms: long enough that four lines still give a
/// dense set of modes).
const LENGTHS: [usize; LINES] = [1931, 2473, 3001, 3541];
/// Rows of the line ring: a power of two above the longest line.
const RING: usize = 4096;
/// Allpass diffuser lengths (left channel, right channel), with feedback `DIFFUSE_G`.
const DIFFUSERS: [[usize; 2]; 2] = [[142, 379], [107, 277]];
/// Allpass coefficient of the diffusers.
const DIFFUSE_G: f32 = 0.6;
/// Output scale: two lines summed per channel.
const OUT_SCALE: f32 = 0.85;
/// Anti-denormal offset (far below audibility: -360 dBFS).
const ANTI_DENORMAL: f32 = 1e-18;

/// Most frames one [`Reverb::process`] call may take: no longer than the shortest delay anywhere
/// in the reverb, so every sample a block reads was written before the block began.
pub const MAX_BLOCK: usize = 64;

/// A Schroeder allpass over a fixed delay, processed a block at a time.
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

    /// Filters `x` in place (`x.len()` at most the delay). Each frame reads the sample written one
    /// delay earlier — before this block — so the loop has no recursion and vectorises.
    fn process(&mut self, x: &mut [f32]) {
        let len = self.buf.len();
        let first = x.len().min(len - self.pos);
        let (a, b) = x.split_at_mut(first);
        allpass_run(&mut self.buf[self.pos..self.pos + first], a);
        allpass_run(&mut self.buf[..b.len()], b);
        self.pos = (self.pos + x.len()) % len;
    }
}

/// One contiguous run of an allpass: `buf` holds the delayed samples and receives the new ones.
#[inline(always)]
fn allpass_run(buf: &mut [f32], x: &mut [f32]) {
    for (d, x) in buf.iter_mut().zip(x.iter_mut()) {
        let v = *x + DIFFUSE_G * *d;
        *x = *d - DIFFUSE_G * v;
        *d = v;
    }
}

/// The reverb state.
#[derive(Debug)]
pub struct Reverb {
    /// The delay lines in one ring of frames: row `t` holds what every line received at
    /// frame `t` (one contiguous write per frame), and line `i` reads row `t - LENGTHS[i]`.
    /// `RING` rows plus a mirror of the first `MAX_BLOCK`, so a block's reads never wrap.
    ring: Box<[[f32; LINES]]>,
    /// Row of the next frame.
    write: usize,
    /// Damping low-pass state per line.
    damp_state: [f32; LINES],
    /// Damping coefficient.
    damp: f32,
    /// Decay gain per line for the RT60.
    gain: [f32; LINES],
    /// Output scale (four lines per channel).
    out_scale: f32,
    /// Input high-pass (one-pole low-pass subtracted) state per channel: keeps bass out of the tail.
    hp_state: [f32; 2],
    /// Input high-pass coefficient.
    hp: f32,
    /// Diffusers per channel.
    diffusers: [[Allpass; 2]; 2],
    /// Diffused input of the block per channel.
    input: [[f32; MAX_BLOCK]; 2],
}

impl Reverb {
    /// A reverb with decay time `rt60` seconds and damping low-pass at `damp_hz`.
    pub fn new(rt60: f32, damp_hz: f32) -> Self {
        let mut gain = [0.0; LINES];
        for (g, &d) in gain.iter_mut().zip(&LENGTHS) {
            *g = 10f32.powf(-3.0 * d as f32 / (rt60 * SAMPLE_RATE as f32));
        }
        Reverb {
            ring: vec![[0.0f32; LINES]; RING + MAX_BLOCK].into_boxed_slice(),
            write: 0,
            damp_state: [0.0; LINES],
            damp: one_pole_coef(damp_hz),
            gain,
            out_scale: OUT_SCALE,
            hp_state: [0.0; 2],
            hp: one_pole_coef(120.0),
            diffusers: DIFFUSERS.map(|lens| lens.map(Allpass::new)),
            input: [[0.0; MAX_BLOCK]; 2],
        }
    }

    /// Processes up to [`MAX_BLOCK`] stereo frames; writes the wet signal into `wet_l`/`wet_r`.
    ///
    /// Every delay in the loop is longer than the block, so the block first reads all the line
    /// outputs it needs, runs the per-frame network on all lines at once (damping, Householder
    /// mixing), and writes the new line inputs back. Each frame computes exactly what a
    /// frame-by-frame loop would, so block boundaries never change the output.
    pub fn process(&mut self, l: &[f32], r: &[f32], wet_l: &mut [f32], wet_r: &mut [f32]) {
        let n = l.len();
        debug_assert!(n <= MAX_BLOCK && r.len() == n && wet_l.len() == n && wet_r.len() == n);
        // Input: diffuse (the high-pass, being linear and time-invariant too, runs in the loop).
        for (ch, x) in [l, r].into_iter().enumerate() {
            let buf = &mut self.input[ch][..n];
            for (b, x) in buf.iter_mut().zip(x) {
                *b = x + ANTI_DENORMAL;
            }
            for ap in &mut self.diffusers[ch] {
                ap.process(buf);
            }
        }
        // Where each line's outputs for the block start: the ring's mirrored tail makes every
        // read of up to a block contiguous.
        let starts = LENGTHS.map(|len| (self.write + RING - len) & (RING - 1));
        // One SSE vector per frame: lane i is line i. The input high-pass runs in lanes too
        // (left in lanes 0-1, right in 2-3, the lines each channel feeds), so its recursion
        // overlaps the damping's instead of adding to it.
        let keep = f32x4::splat(1.0 - self.damp);
        let damp = f32x4::splat(self.damp);
        let gain = f32x4::new(self.gain);
        let hp_keep = f32x4::splat(1.0 - self.hp);
        let hp_c = f32x4::splat(self.hp);
        let tiny = f32x4::splat(ANTI_DENORMAL);
        let mut ds = f32x4::new(self.damp_state);
        let [hl, hr] = self.hp_state;
        let mut hp = f32x4::new([hl, hl, hr, hr]);
        for f in 0..n {
            let x = f32x4::new([
                self.ring[starts[0] + f][0],
                self.ring[starts[1] + f][1],
                self.ring[starts[2] + f][2],
                self.ring[starts[3] + f][3],
            ]);
            ds = keep * ds + damp * x;
            let y = ds * gain;
            // Lines 0-1 feed the left output, 2-3 the right; their sums also give the
            // Householder reflection `x - (2/4) sum(x)` (orthogonal, and only one reduction).
            let [y0, y1, y2, y3] = y.to_array();
            let (sum_l, sum_r) = (y0 + y1, y2 + y3);
            wet_l[f] = self.out_scale * sum_l;
            wet_r[f] = self.out_scale * sum_r;
            let (il, ir) = (self.input[0][f], self.input[1][f]);
            let v = f32x4::new([il, il, ir, ir]) + tiny;
            hp = hp_keep * hp + hp_c * v;
            let reflect = f32x4::splat(0.5 * (sum_l + sum_r));
            // The lines' new inputs: one row, written where the block's rows go (and into the
            // mirror when it is one of the first `MAX_BLOCK`).
            let row = (y - reflect + (v - hp + tiny)).to_array();
            let w = (self.write + f) & (RING - 1);
            self.ring[w] = row;
            if w < MAX_BLOCK {
                self.ring[w + RING] = row;
            }
        }
        self.damp_state = ds.to_array();
        let h = hp.to_array();
        self.hp_state = [h[0], h[2]];
        self.write = (self.write + n) & (RING - 1);
    }

    /// True if any recursive state holds a subnormal number (tests use this to prove the
    /// anti-denormal offset works).
    pub fn has_subnormal_state(&self) -> bool {
        let sub = |v: &f32| v.is_subnormal();
        self.ring.iter().flatten().any(sub)
            || self.damp_state.iter().any(sub)
            || self.hp_state.iter().any(sub)
            || self
                .diffusers
                .iter()
                .flatten()
                .any(|a| a.buf.iter().any(sub))
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
        let mut x = [0.0f32; MAX_BLOCK];
        x[0] = 1.0;
        let (mut l, mut r) = ([0.0f32; MAX_BLOCK], [0.0f32; MAX_BLOCK]);
        for _ in 0..n / MAX_BLOCK {
            rev.process(&x, &x, &mut l, &mut r);
            x[0] = 0.0;
            ir.extend(l.iter().zip(&r).map(|(l, r)| f64::from(l * l + r * r)));
        }
        let n = ir.len();
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
    fn silence_after_sound_never_goes_subnormal() {
        let mut rev = Reverb::new(3.0, 9_000.0);
        let (mut wl, mut wr) = ([0.0f32; 50], [0.0f32; 50]);
        let sound: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.1).sin()).collect();
        for x in sound.chunks(50) {
            rev.process(x, &[0.0; 50], &mut wl, &mut wr);
        }
        for _ in 0..120 * SAMPLE_RATE as usize / 50 {
            rev.process(&[0.0; 50], &[0.0; 50], &mut wl, &mut wr);
        }
        assert!(!rev.has_subnormal_state());
    }

    #[test]
    fn block_size_does_not_change_the_output() {
        let input: Vec<f32> = (0..20_000)
            .map(|i| ((i * i % 977) as f32 / 977.0) - 0.5)
            .collect();
        let run = |block: usize| {
            let mut rev = Reverb::new(3.0, 7_000.0);
            let mut out = vec![0.0f32; 2 * input.len()];
            let (ol, or) = out.split_at_mut(input.len());
            for ((x, l), r) in input
                .chunks(block)
                .zip(ol.chunks_mut(block))
                .zip(or.chunks_mut(block))
            {
                rev.process(x, x, l, r);
            }
            out
        };
        let a = run(64);
        assert!(a == run(1));
        assert!(a == run(37));
    }
}
