//! The pads, rendered four voices at a time across SIMD lanes.
//!
//! Why: a pad voice is three oscillators and two resonant low-passes, and a filter is a per-frame
//! recursion, so one voice at a time leaves the core waiting on that chain (the pads were half of
//! the render time). Here every per-voice quantity is an `[f32; LANES]` and each frame runs all
//! voices side by side: the recursions of four voices overlap and every operation is one SSE
//! operation on four lanes (`wide`'s portable vectors: the auto-vectoriser left half of the
//! equivalent array loops scalar). The oscillators are
//! arithmetic rather than table lookups, which would need gathers: a differentiated parabolic
//! wave (DPW) saw, `d/dt (ramp^2)`, whose aliasing is far below the filter's stopband at pad
//! pitches, and a plain triangle (harmonics at 1/h^2) for the glass pad.
//!
//! Every state advances per frame in a fixed order and the ramps are functions of the grid offset,
//! so the output does not depend on how the caller cuts the timeline.

use wide::{f32x4, i32x4};

use crate::instruments::Instrument;
use crate::voice::{BLOCK, RAMP_INDEX, Voice};

/// Voices per group.
pub const LANES: usize = 4;

/// Slots of the pad voices to render this segment, split by kind.
#[derive(Debug)]
pub struct PadBank {
    /// Warm pad voice slots.
    warm: [usize; crate::pool::POOL_VOICES + crate::pool::FADE_SLOTS],
    /// Number of warm slots.
    warm_len: usize,
    /// Glass pad voice slots.
    glass: [usize; crate::pool::POOL_VOICES + crate::pool::FADE_SLOTS],
    /// Number of glass slots.
    glass_len: usize,
    /// Per-frame voice vectors of the group being rendered, per channel: kept here so a group
    /// does not zero 2 kB of stack per segment.
    acc: Box<Acc>,
}

/// One segment's per-frame voice vectors, per channel (summed across lanes after the loop).
type Acc = [[f32x4; BLOCK]; 2];

impl Default for PadBank {
    fn default() -> Self {
        Self::new()
    }
}

impl PadBank {
    /// An empty bank.
    pub fn new() -> Self {
        PadBank {
            warm: [0; crate::pool::POOL_VOICES + crate::pool::FADE_SLOTS],
            warm_len: 0,
            glass: [0; crate::pool::POOL_VOICES + crate::pool::FADE_SLOTS],
            glass_len: 0,
            acc: Box::new([[f32x4::ZERO; BLOCK]; 2]),
        }
    }

    /// True if the bank renders this instrument.
    pub fn takes(instrument: Instrument) -> bool {
        matches!(instrument, Instrument::WarmPad | Instrument::GlassPad)
    }

    /// Forgets the previous segment's voices.
    pub fn clear(&mut self) {
        self.warm_len = 0;
        self.glass_len = 0;
    }

    /// Adds the voice in `slot` (its control-rate work for the segment already done).
    pub fn push(&mut self, slot: usize, instrument: Instrument) {
        if instrument == Instrument::GlassPad {
            self.glass[self.glass_len] = slot;
            self.glass_len += 1;
        } else {
            self.warm[self.warm_len] = slot;
            self.warm_len += 1;
        }
    }

    /// Renders every pushed voice over grid offsets `f0..f0 + l.len()`, adding onto the bus.
    pub fn render(&mut self, voices: &mut [Voice], f0: usize, l: &mut [f32], r: &mut [f32]) {
        for group in self.warm[..self.warm_len].chunks(LANES) {
            render_group::<false, true>(voices, group, f0, l, r, &mut self.acc);
        }
        for group in self.glass[..self.glass_len].chunks(LANES) {
            render_group::<true, true>(voices, group, f0, l, r, &mut self.acc);
        }
    }
}

/// `2^-23`: a phase's top 24 bits (signed) to `-1.0..1.0`.
const PHASE_SCALE: f32 = 1.0 / (1u32 << 23) as f32;

/// The oscillator ramp in `-1.0..1.0` of a 32-bit phase: the phase read as a signed number (the
/// ramp's origin is half a cycle from the unsigned phase's, which no oscillator cares about).
#[inline(always)]
fn ramp(phase: u32) -> f32 {
    ((phase as i32) >> 8) as f32 * PHASE_SCALE
}

/// [`ramp`] on four lanes, in units of [`PHASE_SCALE`] (an integer-valued float): the oscillators
/// fold the power-of-two scale into their next constant, which is exact (scaling by a power of
/// two rounds nothing here), so the results are bit-identical to scaling first and one multiply
/// per oscillator and frame cheaper.
#[inline(always)]
fn ramp4_unscaled(phase: i32x4) -> f32x4 {
    (phase >> 8u32).round_float()
}

/// `PHASE_SCALE^2 = 2^-46`: squared unscaled ramps to squared ramps (exact).
const PHASE_SCALE_SQ: f32 = PHASE_SCALE * PHASE_SCALE;
/// `2^46`: squared ramps to squared unscaled ramps (exact).
const INV_PHASE_SCALE_SQ: f32 = 1.0 / PHASE_SCALE_SQ;

/// Squared ramp one frame before `phase` (the DPW state of a fresh oscillator).
pub fn dpw_start(phase: u32, inc: u32) -> f32 {
    let s = ramp(phase.wrapping_sub(inc));
    s * s
}

/// One DPW saw oscillator on four lanes.
#[derive(Clone, Copy)]
struct Saw4 {
    phase: i32x4,
    inc: i32x4,
    /// Previous squared ramp, times `2^46` (see [`ramp4_unscaled`]).
    prev: f32x4,
    /// Derivative scale (times the oscillator's mix), times `2^-46`.
    scale: f32x4,
}

impl Saw4 {
    /// `(x^2 - prev) * scale` of the ramp `x`, computed as `(k^2 - prev') * scale'` with
    /// `x = k 2^-23`: every rounding sees the same value times a power of two.
    #[inline(always)]
    fn next(&mut self) -> f32x4 {
        let k = ramp4_unscaled(self.phase);
        self.phase += self.inc;
        let q = k * k;
        let y = (q - self.prev) * self.scale;
        self.prev = q;
        y
    }

    /// The next triangle `1 - 2 |x|` (same phase; `prev` and `scale` unused), with
    /// `2 |x| = |k| 2^-22` exactly.
    #[inline(always)]
    fn next_triangle(&mut self) -> f32x4 {
        let k = ramp4_unscaled(self.phase);
        self.phase += self.inc;
        f32x4::splat(1.0) - k.abs() * f32x4::splat(2.0 * PHASE_SCALE)
    }
}

/// TPT state-variable low-pass on four lanes.
#[derive(Clone, Copy)]
struct Svf4 {
    a1: f32x4,
    a2: f32x4,
    a3: f32x4,
    ic1: f32x4,
    ic2: f32x4,
}

impl Svf4 {
    #[inline(always)]
    fn low(&mut self, x: f32x4) -> f32x4 {
        let v3 = x - self.ic2;
        let v1 = self.a1 * self.ic1 + self.a2 * v3;
        let v2 = self.ic2 + self.a2 * self.ic1 + self.a3 * v3;
        self.ic1 = v1 + v1 - self.ic1;
        self.ic2 = v2 + v2 - self.ic2;
        v2
    }
}

/// Adds each vector's lane sum `((a0 + a1) + a2) + a3` to `out` (the same order for every frame,
/// whether it falls in a group of four or not, so segment lengths cannot change the rounding).
fn add_lane_sums(acc: &[f32x4], out: &mut [f32]) {
    let mut groups = acc.chunks_exact(4);
    let mut outs = out.chunks_exact_mut(4);
    for (g, o) in (&mut groups).zip(&mut outs) {
        let [t0, t1, t2, t3] = f32x4::transpose([g[0], g[1], g[2], g[3]]);
        let sum = ((t0 + t1) + t2) + t3;
        for (o, s) in o.iter_mut().zip(sum.to_array()) {
            *o += s;
        }
    }
    for (a, o) in groups.remainder().iter().zip(outs.into_remainder()) {
        let [a0, a1, a2, a3] = a.to_array();
        *o += ((a0 + a1) + a2) + a3;
    }
}

/// Renders one pad voice alone (tests and single-voice use), adding onto the bus.
pub fn render_one(v: &mut Voice, f0: usize, l: &mut [f32], r: &mut [f32]) {
    render_alone::<true>(v, f0, l, r);
}

/// [`render_one`] without the filters: the oscillators times the envelope and gain lines, the
/// dry path the torch backend mirrors (its parity test compares the two). The filter states
/// do not advance.
pub fn render_one_dry(v: &mut Voice, f0: usize, l: &mut [f32], r: &mut [f32]) {
    render_alone::<false>(v, f0, l, r);
}

/// One voice as a group of one, with or without the filters.
fn render_alone<const FILTERED: bool>(v: &mut Voice, f0: usize, l: &mut [f32], r: &mut [f32]) {
    let slots = [0];
    let acc = &mut [[f32x4::ZERO; BLOCK]; 2];
    if v.instrument == Instrument::GlassPad {
        render_group::<true, FILTERED>(std::slice::from_mut(v), &slots, f0, l, r, acc);
    } else {
        render_group::<false, FILTERED>(std::slice::from_mut(v), &slots, f0, l, r, acc);
    }
}

/// Renders up to [`LANES`] pad voices of one kind (`GLASS`: triangles on oscillators 0 and 2;
/// `FILTERED` false skips the low-passes, for [`render_one_dry`]).
fn render_group<const GLASS: bool, const FILTERED: bool>(
    voices: &mut [Voice],
    slots: &[usize],
    f0: usize,
    out_l: &mut [f32],
    out_r: &mut [f32],
    acc: &mut Acc,
) {
    // Gather the voices into lanes (unused lanes stay silent: zero increment, scale and gain).
    let mut phase = [[0i32; LANES]; 3];
    let mut inc = [[0i32; LANES]; 3];
    let mut prev = [[0.0f32; LANES]; 3];
    let mut scale = [[0.0f32; LANES]; 3];
    let mut tpt = [[0.0f32; LANES]; 3];
    let mut ic = [[[0.0f32; LANES]; 2]; 2];
    let mut amp = [[[0.0f32; LANES]; 2]; 2];
    for (k, &slot) in slots.iter().enumerate() {
        let v = &voices[slot];
        for o in 0..3 {
            phase[o][k] = v.phase[o] as i32;
            inc[o][k] = v.inc[o] as i32;
            prev[o][k] = v.dpw[o] * INV_PHASE_SCALE_SQ;
            // d(ramp^2)/dn is about 4 * ramp * inc / 2^32: scale back to the ramp's amplitude.
            scale[o][k] = 1_073_741_824.0 / v.inc[o].max(1) as f32;
        }
        // The centre oscillator's mix folds into its scale; then the unscaled ramps' 2^-46.
        scale[1][k] *= v.amp[2];
        for s in &mut scale {
            s[k] *= PHASE_SCALE_SQ;
        }
        (tpt[0][k], tpt[1][k], tpt[2][k]) = v.coefs.tpt();
        for ch in 0..2 {
            (ic[ch][0][k], ic[ch][1][k]) = v.svf[ch].state();
            amp[ch][0][k] = v.amp_base[ch];
            amp[ch][1][k] = v.amp_step[ch];
        }
    }
    let mut osc = [0, 1, 2].map(|o| Saw4 {
        phase: i32x4::new(phase[o]),
        inc: i32x4::new(inc[o]),
        prev: f32x4::new(prev[o]),
        scale: f32x4::new(scale[o]),
    });
    let mut svf = [0, 1].map(|ch| Svf4 {
        a1: f32x4::new(tpt[0]),
        a2: f32x4::new(tpt[1]),
        a3: f32x4::new(tpt[2]),
        ic1: f32x4::new(ic[ch][0]),
        ic2: f32x4::new(ic[ch][1]),
    });
    let amp_base = [f32x4::new(amp[0][0]), f32x4::new(amp[1][0])];
    let amp_step = [f32x4::new(amp[0][1]), f32x4::new(amp[1][1])];
    let n = out_l.len();
    debug_assert!(f0 + n <= BLOCK);
    // Each frame's four voices are summed after the loop, four frames at a time by a transpose,
    // out of the recursions' way (every frame of `acc[..][..n]` is written before it is read).
    for i in 0..n {
        let idx = f32x4::splat(RAMP_INDEX[f0 + i]);
        let o1 = osc[1].next();
        let (o0, o2) = if GLASS {
            (osc[0].next_triangle(), osc[2].next_triangle())
        } else {
            (osc[0].next(), osc[2].next())
        };
        let (x0, x1) = if FILTERED {
            (svf[0].low(o0 + o1), svf[1].low(o2 + o1))
        } else {
            (o0 + o1, o2 + o1)
        };
        acc[0][i] = x0 * (amp_base[0] + idx * amp_step[0]);
        acc[1][i] = x1 * (amp_base[1] + idx * amp_step[1]);
    }
    for (ch, out) in [out_l, out_r].into_iter().enumerate() {
        add_lane_sums(&acc[ch][..n], out);
    }
    // Scatter the advanced states back.
    for o in 0..3 {
        phase[o] = osc[o].phase.to_array();
        prev[o] = osc[o].prev.to_array();
    }
    for ch in 0..2 {
        ic[ch] = [svf[ch].ic1.to_array(), svf[ch].ic2.to_array()];
    }
    for (k, &slot) in slots.iter().enumerate() {
        let v = &mut voices[slot];
        for o in 0..3 {
            v.phase[o] = phase[o][k] as u32;
            v.dpw[o] = prev[o][k] * PHASE_SCALE_SQ;
        }
        for ch in 0..2 {
            v.svf[ch].set_state(ic[ch][0][k], ic[ch][1][k]);
        }
    }
}
