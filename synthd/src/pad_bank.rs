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
//! Up to eight voices (two groups of four, see `MAX_GROUPS`) run in one loop. The low-passes
//! run in a seven-operation form of the TPT update whose input and output are scaled by the
//! filter's `g`, folded into the oscillators' scales and the amplitude lines
//! ([`crate::filter::Svf::tick_low_scaled`]). The dry path ([`render_one_dry`], which the torch
//! backend mirrors) keeps the oscillators' and amplitude lines' arithmetic exactly as it was.
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
    /// Per-frame voice vectors of the segment, per channel: kept here so a segment does not
    /// zero 2 kB of stack.
    acc: Box<Acc>,
}

/// Groups of [`LANES`] voices rendered side by side in one loop.
///
/// Why: a group's filters are a recursion several operations deep per frame, which one group at
/// a time leaves the core waiting on; two groups in one loop (eight voices, the phrase's usual
/// count) overlap their chains, and the two groups' vectors are added before the one sum across
/// lanes. Measured on eight voices (a pad-bank loop alone, control work included): 19 ns per
/// frame as two groups in turn, 16.5 as one loop, 14 with the one sum.
const MAX_GROUPS: usize = 2;

/// One segment's per-frame vectors (the groups' voices added lane by lane), per channel; summed
/// across lanes after the loop.
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
        let acc = &mut *self.acc;
        for slots in self.warm[..self.warm_len].chunks(MAX_GROUPS * LANES) {
            render_slots::<false>(voices, slots, f0, l, r, acc);
        }
        for slots in self.glass[..self.glass_len].chunks(MAX_GROUPS * LANES) {
            render_slots::<true>(voices, slots, f0, l, r, acc);
        }
    }
}

/// Renders up to `MAX_GROUPS * LANES` filtered pad voices of one kind, as one group or two.
fn render_slots<const GLASS: bool>(
    voices: &mut [Voice],
    slots: &[usize],
    f0: usize,
    l: &mut [f32],
    r: &mut [f32],
    acc: &mut Acc,
) {
    if slots.len() > LANES {
        render_groups::<GLASS, true, 2>(voices, slots, f0, l, r, acc);
    } else {
        render_groups::<GLASS, true, 1>(voices, slots, f0, l, r, acc);
    }
}

/// [`RAMP_INDEX`] splatted across the lanes: a load per frame rather than a load and a shuffle
/// (the shuffle competing with the loop's arithmetic for the vector ports).
static RAMP_INDEX4: [f32x4; BLOCK] = {
    let mut a = [f32x4::ZERO; BLOCK];
    let mut i = 0;
    while i < BLOCK {
        let x = RAMP_INDEX[i];
        a[i] = f32x4::new([x; LANES]);
        i += 1;
    }
    a
};

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

/// Sets the voice's [`Voice::dpw_scale`] from its increments and centre mix (`amp[2]`): the
/// derivative scale of each oscillator, times `2^-46` for the unscaled ramps.
pub fn set_dpw_scales(v: &mut Voice) {
    for o in 0..3 {
        // d(ramp^2)/dn is about 4 * ramp * inc / 2^32: scale back to the ramp's amplitude.
        v.dpw_scale[o] = 1_073_741_824.0 / v.inc[o].max(1) as f32;
    }
    // The centre oscillator's mix folds into its scale; then the unscaled ramps' 2^-46.
    v.dpw_scale[1] *= v.amp[2];
    for s in &mut v.dpw_scale {
        *s *= PHASE_SCALE_SQ;
    }
}

/// Squared ramp one frame before `phase` (the DPW state of a fresh oscillator).
pub fn dpw_start(phase: u32, inc: u32) -> f32 {
    let s = ramp(phase.wrapping_sub(inc));
    s * s
}

/// The per-lane state of one group of [`LANES`] voices.
#[derive(Clone, Copy)]
struct Lanes {
    /// The three oscillators.
    osc: [Saw4; 3],
    /// The left and right low-passes.
    svf: [Svf4; 2],
    /// Amplitude line per channel: at grid offset `f`, `amp_base + (f + 1) * amp_step`.
    amp_base: [f32x4; 2],
    /// Per-frame step of that line.
    amp_step: [f32x4; 2],
}

impl Lanes {
    /// No voices (zero increments, scales and gains).
    const SILENT: Lanes = Lanes {
        osc: [Saw4::SILENT; 3],
        svf: [Svf4::SILENT; 2],
        amp_base: [f32x4::ZERO; 2],
        amp_step: [f32x4::ZERO; 2],
    };
}

/// One DPW saw oscillator on four lanes (or a triangle: see [`Saw4::next_triangle`]).
#[derive(Clone, Copy)]
struct Saw4 {
    phase: i32x4,
    inc: i32x4,
    /// Previous squared ramp, times `2^46` (see [`ramp4_unscaled`]); a triangle's peak.
    prev: f32x4,
    /// Derivative scale (times the oscillator's mix), times `2^-46`; a triangle's slope.
    scale: f32x4,
}

impl Saw4 {
    /// An unused lane set's oscillator (no voice: zero increment and scale).
    const SILENT: Saw4 = Saw4 {
        phase: i32x4::ZERO,
        inc: i32x4::ZERO,
        prev: f32x4::ZERO,
        scale: f32x4::ZERO,
    };

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

    /// The next triangle `1 - 2 |x|` (same phase), with `2 |x| = |k| 2^-22` exactly: here
    /// `prev` is the peak (1) and `scale` the slope (`2^-22`), both times the filter's `g` when
    /// the filters take a scaled input (see [`gather`]).
    #[inline(always)]
    fn next_triangle(&mut self) -> f32x4 {
        let k = ramp4_unscaled(self.phase);
        self.phase += self.inc;
        self.prev - k.abs() * self.scale
    }
}

/// TPT state-variable low-pass on four lanes, in [`crate::filter::Svf::tick_low_scaled`]'s
/// seven operations per frame (the twelve of the textbook form were a fifth of the pad loop's
/// vector operations): input and output scaled by the filter's `g` (folded into the
/// oscillators' scales and the amplitude lines), the second state kept times `g` in the voice.
#[derive(Clone, Copy)]
struct Svf4 {
    /// `2 a1`, with `a1 = 1 / (1 + g (g + k))`.
    a1x2: f32x4,
    /// `g a2 = g^2 a1`.
    c2: f32x4,
    /// First integrator state.
    ic1: f32x4,
    /// Second integrator state times `g`.
    w: f32x4,
}

impl Svf4 {
    /// An unused lane set's filter.
    const SILENT: Svf4 = Svf4 {
        a1x2: f32x4::ZERO,
        c2: f32x4::ZERO,
        ic1: f32x4::ZERO,
        w: f32x4::ZERO,
    };

    /// `g` times the low-pass output for the input `gx = g x`.
    #[inline(always)]
    fn low(&mut self, gx: f32x4) -> f32x4 {
        let t = (self.ic1 + gx) - self.w;
        let h = self.c2 * t;
        let y = self.w + h;
        self.w = y + h;
        self.ic1 = self.a1x2 * t - self.ic1;
        y
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
        render_groups::<true, FILTERED, 1>(std::slice::from_mut(v), &slots, f0, l, r, acc);
    } else {
        render_groups::<false, FILTERED, 1>(std::slice::from_mut(v), &slots, f0, l, r, acc);
    }
}

/// Renders up to `G * LANES` pad voices of one kind (`GLASS`: triangles on oscillators 0 and 2;
/// `FILTERED` false skips the low-passes, for [`render_one_dry`]) as `G` groups of [`LANES`]
/// lanes, slot `k` in lane `k % LANES` of group `k / LANES`, the groups side by side in one
/// loop (see [`MAX_GROUPS`]), adding onto the bus.
fn render_groups<const GLASS: bool, const FILTERED: bool, const G: usize>(
    voices: &mut [Voice],
    slots: &[usize],
    f0: usize,
    out_l: &mut [f32],
    out_r: &mut [f32],
    acc: &mut Acc,
) {
    debug_assert!(slots.len() <= G * LANES);
    let mut lanes = [Lanes::SILENT; G];
    for (g, slots) in slots.chunks(LANES).enumerate() {
        gather::<GLASS, FILTERED>(voices, slots, &mut lanes[g]);
    }
    let n = out_l.len();
    assert!(f0 + n <= BLOCK && out_r.len() == n);
    // Each frame's voices are summed after the loop, four frames at a time by a transpose, out
    // of the recursions' way (every frame of `acc[..][..n]` is written before it is read).
    for (i, &idx) in RAMP_INDEX4[f0..f0 + n].iter().enumerate() {
        let mut sum = [f32x4::ZERO; 2];
        for lanes in &mut lanes {
            let osc = &mut lanes.osc;
            let o1 = osc[1].next();
            let (o0, o2) = if GLASS {
                (osc[0].next_triangle(), osc[2].next_triangle())
            } else {
                (osc[0].next(), osc[2].next())
            };
            let svf = &mut lanes.svf;
            let (x0, x1) = if FILTERED {
                (svf[0].low(o0 + o1), svf[1].low(o2 + o1))
            } else {
                (o0 + o1, o2 + o1)
            };
            let (base, step) = (&lanes.amp_base, &lanes.amp_step);
            // (`0 + v` is `v` exactly: one group is unchanged by the sum.)
            sum[0] += x0 * (base[0] + idx * step[0]);
            sum[1] += x1 * (base[1] + idx * step[1]);
        }
        acc[0][i] = sum[0];
        acc[1][i] = sum[1];
    }
    add_lane_sums(&acc[0][..n], out_l);
    add_lane_sums(&acc[1][..n], out_r);
    for (g, slots) in slots.chunks(LANES).enumerate() {
        scatter::<GLASS>(voices, slots, &lanes[g]);
    }
}

/// The oscillators, filters and amplitude lines (base, step per channel) of up to [`LANES`]
/// voices, one per lane (unused lanes stay silent: zero increment, scale and gain). Written in
/// place: arrays of vectors returned by value were copied with `memcpy` calls.
fn gather<const GLASS: bool, const FILTERED: bool>(
    voices: &[Voice],
    slots: &[usize],
    lanes: &mut Lanes,
) {
    let mut phase = [[0i32; LANES]; 3];
    let mut inc = [[0i32; LANES]; 3];
    let mut prev = [[0.0f32; LANES]; 3];
    let mut scale = [[0.0f32; LANES]; 3];
    let mut coefs = [[0.0f32; LANES]; 2];
    let mut ic = [[[0.0f32; LANES]; 2]; 2];
    let mut amp = [[[0.0f32; LANES]; 2]; 2];
    for (k, &slot) in slots.iter().enumerate() {
        let v = &voices[slot];
        // The filters take their input times `g` and give their output times `g`: `g` folds
        // into the oscillators' scales, `1 / g` into the amplitude lines (the dry path keeps both
        // exactly as they are).
        let (g, a1x2, c2) = v.coefs.scaled();
        let (into, out) = if FILTERED { (g, 1.0 / g) } else { (1.0, 1.0) };
        for o in 0..3 {
            phase[o][k] = v.phase[o] as i32;
            inc[o][k] = v.inc[o] as i32;
            (prev[o][k], scale[o][k]) = if GLASS && o != 1 {
                // A triangle: its peak and slope (see `Saw4::next_triangle`).
                (into, 2.0 * PHASE_SCALE * into)
            } else {
                let scale = if FILTERED {
                    v.dpw_scale[o] * into
                } else {
                    v.dpw_scale[o]
                };
                (v.dpw[o] * INV_PHASE_SCALE_SQ, scale)
            };
        }
        (coefs[0][k], coefs[1][k]) = (a1x2, c2);
        for ch in 0..2 {
            (ic[ch][0][k], ic[ch][1][k]) = v.svf[ch].state();
            (amp[ch][0][k], amp[ch][1][k]) = if FILTERED {
                (v.amp_base[ch] * out, v.amp_step[ch] * out)
            } else {
                (v.amp_base[ch], v.amp_step[ch])
            };
        }
    }
    for o in 0..3 {
        lanes.osc[o] = Saw4 {
            phase: i32x4::new(phase[o]),
            inc: i32x4::new(inc[o]),
            prev: f32x4::new(prev[o]),
            scale: f32x4::new(scale[o]),
        };
    }
    for ch in 0..2 {
        lanes.svf[ch] = Svf4 {
            a1x2: f32x4::new(coefs[0]),
            c2: f32x4::new(coefs[1]),
            ic1: f32x4::new(ic[ch][0]),
            w: f32x4::new(ic[ch][1]),
        };
        lanes.amp_base[ch] = f32x4::new(amp[ch][0]);
        lanes.amp_step[ch] = f32x4::new(amp[ch][1]);
    }
}

/// Stores the advanced oscillator and filter states of [`gather`]'s voices back.
fn scatter<const GLASS: bool>(voices: &mut [Voice], slots: &[usize], lanes: &Lanes) {
    for (k, &slot) in slots.iter().enumerate() {
        let v = &mut voices[slot];
        for (o, osc) in lanes.osc.iter().enumerate() {
            v.phase[o] = osc.phase.to_array()[k] as u32;
            // (A triangle has no DPW state: its `prev` is its peak.)
            if !(GLASS && o != 1) {
                v.dpw[o] = osc.prev.to_array()[k] * PHASE_SCALE_SQ;
            }
        }
        for (ch, svf) in lanes.svf.iter().enumerate() {
            v.svf[ch].set_state(svf.ic1.to_array()[k], svf.w.to_array()[k]);
        }
    }
}
