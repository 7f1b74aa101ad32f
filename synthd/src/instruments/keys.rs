//! Keys: two-operator FM (phase modulation, ratio 1:1) whose modulation index decays after the
//! strike — bright attack, mellow tail, like a struck string. Velocity and station brightness raise
//! the index; high notes get a smaller index so no sideband approaches Nyquist.

use shm_proto::NoteEvent;

use super::note_rand;
use crate::envelope::{AdsrShape, decay_coef, pow_frames};
use wide::{f32x4, i32x4};

use crate::osc::{cents, cycles_to_phase, lookup, phase_inc, phase_lanes, sin_unit};
use crate::voice::{BLOCK, Ctx, Voice};

/// Radians to cycles.
const INV_TAU: f32 = 1.0 / std::f32::consts::TAU;

/// Index scale that keeps sidebands low for high notes.
fn key_scale(hz: f32) -> f32 {
    (1500.0 / hz).clamp(0.25, 1.0)
}

/// Decay time scale: higher notes die faster, as on a piano.
fn decay_scale(pitch: u8) -> f32 {
    ((60.0 - f32::from(pitch)) / 30.0).exp2().clamp(0.35, 2.0)
}

/// Pan spread across the keyboard.
fn key_pan(pitch: u8) -> f32 {
    (0.5 + (f32::from(pitch) - 64.0) / 127.0 * 0.5).clamp(0.2, 0.8)
}

/// Soft piano: a sine modulator at phase 0 driving two carriers, at phase 0 and 1.3 cents up.
/// amp[0]: modulation index (cycles) decaying to amp_floor[0]; amp[1]: the double decay (prompt
/// sound fading into the aftersound).
///
/// The two carriers are rendered as one: `sin a + sin b = 2 sin((a + b) / 2) cos((a - b) / 2)`,
/// with the mean phase in `phase[2]` (set from the two exact phases at every control point, then
/// advancing by the mean increment `inc[2]`) and the slow beat `cos((a - b) / 2)` (under 0.4 Hz,
/// at most 0.003 of change per control block) folded into the level line at control rate: a
/// third of the piano's vector work less, for a difference of a few parts per million.
pub fn start_piano(v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.inc[0] = phase_inc(v.hz);
    v.inc[1] = phase_inc(v.hz * cents(1.3));
    v.inc[2] = ((u64::from(v.inc[0]) + u64::from(v.inc[1])) / 2) as u32;
    let vel = v.velocity;
    let bright = 0.6 + 0.8 * ctx.brightness;
    let index = (0.35 + 1.6 * vel * vel) * bright * key_scale(v.hz) * INV_TAU;
    let ds = decay_scale(ev.pitch);
    v.amp[0] = index;
    v.amp_floor[0] = index * 0.15;
    v.amp_coef[0] = decay_coef(0.25 * ds);
    v.amp[1] = 1.0;
    v.amp_floor[1] = 0.45;
    v.amp_coef[1] = decay_coef(0.6 * ds);
    (
        Voice::shape(0.004, 10.0 * ds, 0.0, 1.2),
        0.24,
        key_pan(ev.pitch),
    )
}

/// Control rate: the modulation index and the double decay as straight lines to their exact
/// values at the next grid point (amp[2..4]: index base and step; amp[4..6]: level base and
/// step, both over grid offsets as `base + (f + 1) * step`). The level line carries the
/// carriers' beat `cos((a - b) / 2)` too (see [`start_piano`]), exact at both ends. Then the
/// modulator for the whole control block, into the voice's block buffer (see [`modulator`]).
pub fn control_piano(v: &mut Voice) {
    let from = usize::from(v.ctl_from);
    let m = (BLOCK - from) as i32;
    // The carriers' mean phase, halfway from carrier 1 to carrier 0 (either way round the
    // circle: sine and beat change sign together).
    let diff = v.phase[0].wrapping_sub(v.phase[1]) as i32;
    v.phase[2] = v.phase[1].wrapping_add((diff >> 1) as u32);
    // Half the carriers' phase difference (carrier 0 minus the mean) one frame before the
    // control point (where the lines start, `f + 1 = from`) and at the block's last frame; and
    // the modulator's rotation over four frames, as a cosine and a sine.
    let dinc = v.inc[0].wrapping_sub(v.inc[2]);
    let half = v.phase[0].wrapping_sub(v.phase[2]);
    let turn = v.inc[0].wrapping_mul(4);
    let [beat0, beat1, turn_cos, turn_sin] = sin_unit(i32x4::new([
        half.wrapping_sub(dinc).wrapping_add(QUARTER) as i32,
        half.wrapping_add(dinc.wrapping_mul((BLOCK - 1 - from) as u32))
            .wrapping_add(QUARTER) as i32,
        turn.wrapping_add(QUARTER) as i32,
        turn as i32,
    ]))
    .to_array();
    for (k, ramp, beat) in [(0, 2, [1.0, 1.0]), (1, 4, [beat0, beat1])] {
        let (now, floor, c) = (v.amp[k], v.amp_floor[k], v.amp_coef[k]);
        let end = floor + (now - floor) * pow_frames(c, m as u64);
        let (a0, a1) = (now * beat[0], end * beat[1]);
        let step = (a1 - a0) / m as f32;
        v.amp[ramp] = a0 - from as f32 * step;
        v.amp[ramp + 1] = step;
        v.amp[k] = end;
    }
    modulator(v, from, turn_cos, turn_sin);
}

/// A quarter cycle of phase.
const QUARTER: u32 = 1 << 30;

/// Fills `v.block[from..]` with the modulator `sin(phase 0)` times the index line, in units of
/// `2^-24` cycles (what [`render_piano`] offsets the carrier phase by). The sine and cosine are
/// exact (polynomial) at the control point and then rotate four frames per step by
/// `(turn_cos, turn_sin)`: six operations per four frames instead of a polynomial sine's
/// eighteen, with errors far under the polynomial's own over at most sixteen steps.
fn modulator(v: &mut Voice, from: usize, turn_cos: f32, turn_sin: f32) {
    let p = phase_lanes(v.phase[0], v.inc[0]);
    let (mut sin, mut cos) = (sin_unit(p), sin_unit(p + i32x4::splat(QUARTER as i32)));
    let (tc, ts) = (f32x4::splat(turn_cos), f32x4::splat(turn_sin));
    let (ib, is) = (f32x4::splat(v.amp[2]), f32x4::splat(v.amp[3]));
    let scale = f32x4::splat(16_777_216.0);
    let mut idx = f32x4::splat((from + 1) as f32) + f32x4::new([0.0, 1.0, 2.0, 3.0]);
    let mut chunks = v.block[from..].chunks_exact_mut(4);
    for o in &mut chunks {
        o.copy_from_slice(&(sin * (ib + idx * is) * scale).to_array());
        (sin, cos) = (sin * tc + cos * ts, cos * tc - sin * ts);
        idx += f32x4::splat(4.0);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let m = (sin * (ib + idx * is) * scale).to_array();
        rest.copy_from_slice(&m[..rest.len()]);
    }
}

/// Renders the soft piano, four frames per step on SIMD lanes (polynomial sines: table lookups
/// would need gathers), the modulator read from the block buffer [`modulator`] filled.
pub fn render_piano(v: &mut Voice, f0: usize, out: &mut [f32]) -> bool {
    let n = out.len();
    // The carriers' mean at phase 2 (carrier 0 and the modulator at phase 0, carrier 1 at
    // phase 1).
    let inc = v.inc[2] as i32;
    let mut p = phase_lanes(v.phase[2], v.inc[2]);
    let step = i32x4::splat(inc.wrapping_mul(4));
    let (ab, as_) = (f32x4::splat(v.amp[4]), f32x4::splat(v.amp[5]));
    let mut idx = f32x4::splat((f0 + 1) as f32) + f32x4::new([0.0, 1.0, 2.0, 3.0]);
    // Four frames of the piano from the modulator `m` (in `2^-24` cycles). `fast_trunc_int` is a
    // plain `cvttps2dq`: the offset is under 1 cycle, far inside i32 range, and never NaN, where
    // `trunc_int`'s guards would cost three more operations.
    let frames = |p: i32x4, m: f32x4, idx: f32x4| {
        let pm = m.fast_trunc_int() << 8u32;
        sin_unit(p + pm) * (ab + idx * as_)
    };
    // Whole groups of four stored directly (a copy of a variable length would be a `memcpy`
    // call per group, spilling every vector around it), then the last one to three frames.
    let (mods, mut tail) = (&v.block[f0..f0 + n], [0.0f32; 4]);
    let mut chunks = out.chunks_exact_mut(4);
    let mut mod_chunks = mods.chunks_exact(4);
    for (o, m) in (&mut chunks).zip(&mut mod_chunks) {
        let m = f32x4::new(m.try_into().expect("four frames"));
        o.copy_from_slice(&frames(p, m, idx).to_array());
        p += step;
        idx += f32x4::splat(4.0);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let m = mod_chunks.remainder();
        tail[..m.len()].copy_from_slice(m);
        let s = frames(p, f32x4::new(tail), idx).to_array();
        rest.copy_from_slice(&s[..rest.len()]);
    }
    for o in 0..3 {
        v.phase[o] = v.phase[o].wrapping_add(v.inc[o].wrapping_mul(n as u32));
    }
    false
}

/// Electric piano. amp[0]: body index, decaying to amp_floor[0] by amp_coef[0] per frame
/// (amp_coef[1]: its ln) from its note-on value amp[1]; amp[2]: tine index (ratio 14, fast decay
/// by amp_coef[2], ln amp_coef[3], from amp[3]); amp[5]: autopan.
///
/// The decays are exact at every control point ([`control_electric`] sets them from the note's
/// age in closed form) and step per frame only within the control block: an f32 recursion
/// carried over the whole note drifts (its rounding is biased: the index fell some 6.6e-4 faster
/// in rate than the exponential it stands for), one restarted every 64 frames stays within a few
/// parts per million of it, and the torch backend evaluates the same exponential.
pub fn start_electric(v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.inc[0] = phase_inc(v.hz);
    v.inc[2] = phase_inc(v.hz * 14.0);
    let vel = v.velocity;
    let bright = 0.6 + 0.8 * ctx.brightness;
    let index = (0.25 + 1.1 * vel) * bright * key_scale(v.hz) * INV_TAU;
    let ds = decay_scale(ev.pitch);
    v.amp[0] = index;
    v.amp[1] = index;
    v.amp_floor[0] = index * 0.2;
    v.amp_coef[0] = decay_coef(0.5 * ds);
    v.amp_coef[1] = ln_coef(v.amp_coef[0]);
    // The tine partial sits 14x up: leave it out where it would pass 15 kHz.
    let tine_room = ((15_000.0 - 14.0 * v.hz) / 5_000.0).clamp(0.0, 1.0);
    v.amp[2] = 0.35 * vel * bright * tine_room * INV_TAU;
    v.amp[3] = v.amp[2];
    v.amp_coef[2] = decay_coef(0.05);
    v.amp_coef[3] = ln_coef(v.amp_coef[2]);
    v.lfo_inc = phase_inc(4.2).wrapping_mul(BLOCK as u32);
    v.lfo_phase = (note_rand(ev, 9) * 4.0e9) as u32;
    (
        Voice::shape(0.003, 16.0 * ds, 0.0, 1.5),
        0.22,
        key_pan(ev.pitch),
    )
}

/// Frames from the note's start to its `k`-th control point (0 is the start itself; the later
/// ones are the station clock's grid points).
fn control_age(v: &Voice, k: u32) -> u64 {
    (u64::from(k) * BLOCK as u64).saturating_sub(v.started_at % BLOCK as u64)
}

/// `v0 c^age` for a per-frame multiplier `c` with `ln_c = ln c`: one `exp` per control block (the
/// torch backend's very expression; its error is under 1e-6 while the decay still matters, where
/// f32 powers of `c` would drift as the recursion does). Held at `e^-80` (far under any audible
/// change) so that neither the `exp` nor the product reaches the subnormal range.
fn decayed(v0: f32, ln_c: f32, age: u64) -> f32 {
    v0 * (age as f32 * ln_c).max(-80.0).exp()
}

/// `ln c` of an f32 multiplier, computed in f64.
fn ln_coef(c: f32) -> f32 {
    f64::from(c).ln() as f32
}

/// Control rate: the body and tine indices set to their exact values at the note's age (see
/// [`start_electric`]), and the autopan LFO.
pub fn control_electric(v: &mut Voice, ctx: &Ctx) {
    let age = control_age(v, v.control_count);
    v.control_count = v.control_count.wrapping_add(1);
    let floor = v.amp_floor[0];
    v.amp[0] = floor + decayed(v.amp[1] - floor, v.amp_coef[1], age);
    // The tine decays in 50 ms: flush it to zero before it reaches the subnormal range.
    if v.amp[3] != 0.0 {
        v.amp[2] = decayed(v.amp[3], v.amp_coef[3], age);
        if v.amp[2].abs() < 1e-9 {
            v.amp[2] = 0.0;
            v.amp[3] = 0.0;
        }
    }
    v.amp[5] = 0.22 * lookup(&ctx.tables.sine, v.lfo_phase);
    v.lfo_phase = v.lfo_phase.wrapping_add(v.lfo_inc);
}

/// Renders the electric piano: the decays step per frame from their values at the control
/// point (or where the last render in this block left them).
pub fn render_electric(v: &mut Voice, ctx: &Ctx, out: &mut [f32]) -> bool {
    let sine = &*ctx.tables.sine;
    let [mut p0, mut p2] = [v.phase[0], v.phase[2]];
    let [i0, i2] = [v.inc[0], v.inc[2]];
    let (mut idx, fl, c) = (v.amp[0], v.amp_floor[0], v.amp_coef[0]);
    let (mut tine, tc) = (v.amp[2], v.amp_coef[2]);
    for o in out.iter_mut() {
        let m = lookup(sine, p0) * idx + lookup(sine, p2) * tine;
        *o = lookup(sine, p0.wrapping_add(cycles_to_phase(m)));
        p0 = p0.wrapping_add(i0);
        p2 = p2.wrapping_add(i2);
        idx = fl + (idx - fl) * c;
        tine *= tc;
    }
    v.phase[0] = p0;
    v.phase[2] = p2;
    v.amp[0] = idx;
    v.amp[2] = tine;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomial_sine_is_accurate() {
        for k in 0..4000u32 {
            let phase = k.wrapping_mul(1_073_807);
            let got = sin_unit(i32x4::splat(phase as i32)).to_array()[0];
            let want = (f64::from(phase) / 4_294_967_296.0 * std::f64::consts::TAU).sin();
            assert!(
                (f64::from(got) - want).abs() < 1e-5,
                "{phase}: {got} vs {want}"
            );
        }
    }
}
