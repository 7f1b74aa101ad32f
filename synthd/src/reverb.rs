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
/// Entries of each line's ring: a power of two above the longest line.
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
    /// The delay lines, one ring each: entry `t` of line `i` is what the line received at frame
    /// `t`, read back `LENGTHS[i]` frames later. `RING` entries plus a mirror of the first
    /// `MAX_BLOCK`, so a block's reads and writes are contiguous (a block is four contiguous
    /// vectors per line, transposed in registers, rather than a gather per frame).
    lines: [Box<[f32]>; LINES],
    /// Entry of the next frame.
    write: usize,
    /// Damping low-pass state per line, times the line's decay gain: the line's output.
    damp_state: [f32; LINES],
    /// Damping coefficient.
    damp: f32,
    /// Decay gain per line for the RT60, folded into the damping's input coefficient
    /// (`y' = (1 - d) y + d g x` is the damped line times `g`: one multiply per line and frame
    /// fewer than damping, then scaling).
    gain: [f32; LINES],
    /// Input high-pass (one-pole low-pass subtracted) state per channel: keeps bass out of the tail.
    hp_state: [f32; 2],
    /// Input high-pass coefficient.
    hp: f32,
    /// Diffusers per channel.
    diffusers: [[Allpass; 2]; 2],
    /// Diffused input of the block per channel.
    input: [[f32; MAX_BLOCK]; 2],
}

/// The block's reads of one line (`n` entries from `read`) and the block's writes (`n` entries
/// from `write`), which never overlap: every line is longer than a block.
#[inline(always)]
fn read_write(line: &mut [f32], read: usize, write: usize, n: usize) -> (&[f32], &mut [f32]) {
    if read < write {
        let (a, b) = line.split_at_mut(write);
        (&a[read..read + n], &mut b[..n])
    } else {
        let (a, b) = line.split_at_mut(read);
        (&b[..n], &mut a[write..write + n])
    }
}

/// Four consecutive entries of a slice as a vector.
#[inline(always)]
fn load4(x: &[f32], f: usize) -> f32x4 {
    let a: [f32; 4] = x[f..f + 4].try_into().expect("four entries");
    f32x4::new(a)
}

impl Reverb {
    /// A reverb with decay time `rt60` seconds and damping low-pass at `damp_hz`.
    pub fn new(rt60: f32, damp_hz: f32) -> Self {
        let mut gain = [0.0; LINES];
        for (g, &d) in gain.iter_mut().zip(&LENGTHS) {
            *g = 10f32.powf(-3.0 * d as f32 / (rt60 * SAMPLE_RATE as f32));
        }
        Reverb {
            lines: [0; LINES].map(|_| vec![0.0f32; RING + MAX_BLOCK].into_boxed_slice()),
            write: 0,
            damp_state: [0.0; LINES],
            damp: one_pole_coef(damp_hz),
            gain,
            hp_state: [0.0; 2],
            hp: one_pole_coef(120.0),
            diffusers: DIFFUSERS.map(|lens| lens.map(Allpass::new)),
            input: [[0.0; MAX_BLOCK]; 2],
        }
    }

    /// Processes up to [`MAX_BLOCK`] stereo frames; writes the wet signal into `wet_l`/`wet_r`.
    ///
    /// Every delay in the loop is longer than the block, so the block reads all the line outputs
    /// it needs at once and runs the network four frames at a time: the damping recursion on a
    /// vector of the four lines per frame (the only serial chain, with the input high-pass beside
    /// it), everything else on vectors of four frames per line (outputs, Householder mixing, the
    /// lines' new inputs). Each frame computes exactly what a frame-by-frame loop would, with the
    /// same operations in the same order, so block boundaries never change the output.
    pub fn process(&mut self, l: &[f32], r: &[f32], wet_l: &mut [f32], wet_r: &mut [f32]) {
        let n = l.len();
        assert!(n <= MAX_BLOCK && r.len() == n && wet_l.len() == n && wet_r.len() == n);
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
        // Each line's outputs for the block, and where its new inputs go: the mirrored tail
        // makes both contiguous (writes past `RING` are copied to the front below).
        let w0 = self.write;
        let [l0, l1, l2, l3] = &mut self.lines;
        let (x0, o0) = read_write(l0, (w0 + RING - LENGTHS[0]) & (RING - 1), w0, n);
        let (x1, o1) = read_write(l1, (w0 + RING - LENGTHS[1]) & (RING - 1), w0, n);
        let (x2, o2) = read_write(l2, (w0 + RING - LENGTHS[2]) & (RING - 1), w0, n);
        let (x3, o3) = read_write(l3, (w0 + RING - LENGTHS[3]) & (RING - 1), w0, n);
        let (in_l, in_r) = (&self.input[0][..n], &self.input[1][..n]);
        let (keep_s, damp_s, os, hk, hc) = (
            1.0 - self.damp,
            self.damp,
            OUT_SCALE,
            1.0 - self.hp,
            self.hp,
        );
        let keep = f32x4::splat(keep_s);
        let damp_gain = f32x4::splat(damp_s) * f32x4::new(self.gain);
        let out_scale = f32x4::splat(os);
        let half = f32x4::splat(0.5);
        let tiny = f32x4::splat(ANTI_DENORMAL);
        let mut ds = f32x4::new(self.damp_state);
        let [mut hl, mut hr] = self.hp_state;
        let full = n - n % 4;
        for f in (0..full).step_by(4) {
            // Lane i = line i, one vector per frame, for the damping recursion...
            let xs = f32x4::transpose([load4(x0, f), load4(x1, f), load4(x2, f), load4(x3, f)]);
            let mut ys = [f32x4::ZERO; 4];
            for (y, x) in ys.iter_mut().zip(xs) {
                ds = keep * ds + damp_gain * x;
                *y = ds;
            }
            // ...then lane k = frame f + k, one vector per line, for the rest.
            let [y0, y1, y2, y3] = f32x4::transpose(ys);
            // Lines 0-1 feed the left output, 2-3 the right; their sums also give the
            // Householder reflection `x - (2/4) sum(x)` (orthogonal, and only one reduction).
            let (sum_l, sum_r) = (y0 + y1, y2 + y3);
            wet_l[f..f + 4].copy_from_slice(&(out_scale * sum_l).to_array());
            wet_r[f..f + 4].copy_from_slice(&(out_scale * sum_r).to_array());
            let reflect = half * (sum_l + sum_r);
            // The input high-pass (one-pole low-pass subtracted), left and right (the input
            // carries the anti-denormal offset already; the high-pass removes it, so it is
            // added again behind).
            let (vl, vr) = (load4(in_l, f), load4(in_r, f));
            let (va, vb) = (vl.to_array(), vr.to_array());
            let (mut pl, mut pr) = ([0.0f32; 4], [0.0f32; 4]);
            for k in 0..4 {
                hl = hk * hl + hc * va[k];
                hr = hk * hr + hc * vb[k];
                pl[k] = hl;
                pr[k] = hr;
            }
            let dl = (vl - f32x4::new(pl)) + tiny;
            let dr = (vr - f32x4::new(pr)) + tiny;
            // The lines' new inputs.
            o0[f..f + 4].copy_from_slice(&((y0 - reflect) + dl).to_array());
            o1[f..f + 4].copy_from_slice(&((y1 - reflect) + dl).to_array());
            o2[f..f + 4].copy_from_slice(&((y2 - reflect) + dr).to_array());
            o3[f..f + 4].copy_from_slice(&((y3 - reflect) + dr).to_array());
        }
        // The last frames of a block that is not a multiple of four: the same operations, one
        // frame at a time.
        let tiny_s = ANTI_DENORMAL;
        for f in full..n {
            let x = f32x4::new([x0[f], x1[f], x2[f], x3[f]]);
            ds = keep * ds + damp_gain * x;
            let [y0, y1, y2, y3] = ds.to_array();
            let (sum_l, sum_r) = (y0 + y1, y2 + y3);
            wet_l[f] = os * sum_l;
            wet_r[f] = os * sum_r;
            let reflect = 0.5 * (sum_l + sum_r);
            let (vl, vr) = (in_l[f], in_r[f]);
            hl = hk * hl + hc * vl;
            hr = hk * hr + hc * vr;
            let (dl, dr) = ((vl - hl) + tiny_s, (vr - hr) + tiny_s);
            o0[f] = (y0 - reflect) + dl;
            o1[f] = (y1 - reflect) + dl;
            o2[f] = (y2 - reflect) + dr;
            o3[f] = (y3 - reflect) + dr;
        }
        self.damp_state = ds.to_array();
        self.hp_state = [hl, hr];
        // Keep the mirror: entries written past `RING` belong at the front, and entries written
        // at the front are mirrored past `RING`.
        for line in &mut self.lines {
            if w0 + n > RING {
                line.copy_within(RING..w0 + n, 0);
            } else if w0 < MAX_BLOCK {
                let end = (w0 + n).min(MAX_BLOCK);
                line.copy_within(w0..end, RING + w0);
            }
        }
        self.write = (w0 + n) & (RING - 1);
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
