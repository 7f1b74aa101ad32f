//! Texture: an additive inharmonic bell (partial ratios of a struck bar, each partial with its own
//! exponential decay, the fundamental doubled slightly sharp for a slow beat) and a shimmer of
//! breathing high partials.

use shm_proto::NoteEvent;

use super::note_rand;
use crate::envelope::{AdsrShape, decay_coef};
use crate::osc::{lookup, phase_inc};
use crate::voice::{BLOCK, Ctx, Voice};

/// Partial ratios of the bell (a free bar's modes, softened).
const BELL_RATIOS: [f32; 5] = [1.0, 1.0017, 2.76, 5.40, 8.93];
/// Relative amplitudes before brightness.
const BELL_AMPS: [f32; 5] = [0.55, 0.45, 0.4, 0.22, 0.1];
/// Decay time constants in seconds (for a note around C5).
const BELL_DECAYS: [f32; 5] = [3.0, 2.6, 1.4, 0.7, 0.35];
/// Partials above this frequency are left out (no aliasing, no harshness).
const PARTIAL_CEILING_HZ: f32 = 16_000.0;

/// Bell.
pub fn start_bell(v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    let ds = ((72.0 - f32::from(ev.pitch)) / 24.0).exp2().clamp(0.4, 2.0);
    let bright = (0.4 + 0.6 * v.velocity) * (0.5 + ctx.brightness);
    for k in 0..5 {
        let hz = v.hz * BELL_RATIOS[k];
        v.inc[k] = phase_inc(hz);
        v.phase[k] = 0;
        let tone = if k >= 2 { bright } else { 1.0 };
        v.amp[k] = if hz < PARTIAL_CEILING_HZ {
            BELL_AMPS[k] * tone
        } else {
            0.0
        };
        v.amp_coef[k] = decay_coef(BELL_DECAYS[k] * ds);
    }
    let pan = 0.2 + 0.6 * note_rand(ev, 4);
    // Sustain 1: the partials decay on their own; note-off only shortens the tail.
    (Voice::shape(0.002, 100.0, 1.0, 6.0), 0.16, pan)
}

/// Frees the voice once the partials have died away.
pub fn control_bell(v: &mut Voice, _ctx: &Ctx) {
    // Ends at -60 dB of the fundamental: the rest is far below the reverb tail.
    if v.amp[0] + v.amp[1] < 1e-3 {
        v.env.force_release(0.05);
    }
    // Flush decayed partials to zero so they never reach the subnormal range.
    for a in &mut v.amp[..5] {
        if *a < 1e-9 {
            *a = 0.0;
        }
    }
}

/// Renders the bell.
pub fn render_bell(v: &mut Voice, ctx: &Ctx, out: &mut [f32]) -> bool {
    let sine = &*ctx.tables.sine;
    let mut p = v.phase;
    let mut a = v.amp;
    let (inc, c) = (v.inc, v.amp_coef);
    for o in out.iter_mut() {
        let mut s = 0.0;
        for k in 0..5 {
            s += lookup(sine, p[k]) * a[k];
            p[k] = p[k].wrapping_add(inc[k]);
            a[k] *= c[k];
        }
        *o = s;
    }
    v.phase = p;
    v.amp = a;
    false
}

/// Shimmer: partials at 1, 2 (slightly sharp) and 3 times the note, each swelling with its own slow
/// LFO; 1 leans left, 2 right. amp[0..3]: current partial gains, amp_coef[0..3]: their ramp steps.
pub fn start_shimmer(v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    let ratios = [1.0, 2.003, 3.0];
    for k in 0..3 {
        let hz = v.hz * ratios[k];
        v.inc[k] = if hz < PARTIAL_CEILING_HZ {
            phase_inc(hz)
        } else {
            0
        };
        v.phase[k] = crate::osc::hash32(ev.at_frame as u32 + k as u32);
    }
    v.lfo_inc = phase_inc(0.21 + 0.1 * note_rand(ev, 5)).wrapping_mul(BLOCK as u32);
    v.lfo_phase = crate::osc::hash32(u32::from(ev.pitch) ^ 0xABCD);
    shimmer_gains(v, ctx);
    for k in 0..3 {
        v.amp[k] = v.amp_floor[k];
        v.amp_coef[k] = 0.0;
    }
    (Voice::shape(1.5, 10.0, 0.7, 6.0), 0.09, 0.5)
}

/// Target partial gains from the LFO (three phases of one slow LFO), into `amp_floor`.
fn shimmer_gains(v: &mut Voice, ctx: &Ctx) {
    let third = u32::MAX / 3;
    let base = [1.0, 0.7, 0.35];
    for (k, b) in base.iter().enumerate() {
        let l = lookup(
            &ctx.tables.sine,
            v.lfo_phase.wrapping_add(third.wrapping_mul(k as u32)),
        );
        v.amp_floor[k] = b * (0.6 + 0.4 * l) * if v.inc[k] == 0 { 0.0 } else { 1.0 };
    }
}

/// Advances the LFO and sets per-frame ramps towards the new partial gains.
pub fn control_shimmer(v: &mut Voice, ctx: &Ctx) {
    v.lfo_phase = v.lfo_phase.wrapping_add(v.lfo_inc);
    shimmer_gains(v, ctx);
    for k in 0..3 {
        v.amp_coef[k] = (v.amp_floor[k] - v.amp[k]) / BLOCK as f32;
    }
}

/// Renders the shimmer (stereo).
pub fn render_shimmer(v: &mut Voice, ctx: &Ctx, l: &mut [f32], r: &mut [f32]) -> bool {
    let sine = &*ctx.tables.sine;
    let mut p = [v.phase[0], v.phase[1], v.phase[2]];
    let inc = [v.inc[0], v.inc[1], v.inc[2]];
    let mut a = [v.amp[0], v.amp[1], v.amp[2]];
    let step = [v.amp_coef[0], v.amp_coef[1], v.amp_coef[2]];
    for (lo, ro) in l.iter_mut().zip(r.iter_mut()) {
        let s0 = lookup(sine, p[0]) * a[0];
        let s1 = lookup(sine, p[1]) * a[1];
        let s2 = lookup(sine, p[2]) * a[2];
        for k in 0..3 {
            p[k] = p[k].wrapping_add(inc[k]);
            a[k] += step[k];
        }
        *lo = s0 + 0.35 * s1 + 0.6 * s2;
        *ro = 0.35 * s0 + s1 + 0.6 * s2;
    }
    v.phase[..3].copy_from_slice(&p);
    v.amp[..3].copy_from_slice(&a);
    true
}
