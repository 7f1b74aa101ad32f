//! Keys: two-operator FM (phase modulation, ratio 1:1) whose modulation index decays after the
//! strike — bright attack, mellow tail, like a struck string. Velocity and station brightness raise
//! the index; high notes get a smaller index so no sideband approaches Nyquist.

use shm_proto::NoteEvent;

use super::note_rand;
use crate::envelope::{AdsrShape, decay_coef};
use wide::{f32x4, i32x4};

use crate::osc::{cents, cycles_to_phase, lookup, phase_inc, sin_unit};
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

/// Soft piano. amp[0]: modulation index (cycles) decaying to amp_floor[0]; amp[1]: the double decay
/// (prompt sound fading into the aftersound).
pub fn start_piano(v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.inc[0] = phase_inc(v.hz);
    v.inc[1] = phase_inc(v.hz * cents(1.3));
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
/// step, both over grid offsets as `base + (f + 1) * step`).
pub fn control_piano(v: &mut Voice) {
    let from = usize::from(v.ctl_from);
    let m = (BLOCK - from) as i32;
    for (k, ramp) in [(0, 2), (1, 4)] {
        let (now, floor, c) = (v.amp[k], v.amp_floor[k], v.amp_coef[k]);
        let end = floor + (now - floor) * c.powi(m);
        let step = (end - now) / m as f32;
        v.amp[ramp] = now - from as f32 * step;
        v.amp[ramp + 1] = step;
        v.amp[k] = end;
    }
}

/// Renders the soft piano, four frames per step on SIMD lanes (polynomial sines: table lookups
/// would need gathers).
pub fn render_piano(v: &mut Voice, f0: usize, out: &mut [f32]) -> bool {
    let lanes = i32x4::new([0, 1, 2, 3]);
    let (i0, i1) = (v.inc[0] as i32, v.inc[1] as i32);
    let mut p0 = i32x4::splat(v.phase[0] as i32) + lanes * i32x4::splat(i0);
    let mut p1 = i32x4::splat(v.phase[1] as i32) + lanes * i32x4::splat(i1);
    let (s0, s1) = (
        i32x4::splat(i0.wrapping_mul(4)),
        i32x4::splat(i1.wrapping_mul(4)),
    );
    let (ib, is) = (f32x4::splat(v.amp[2]), f32x4::splat(v.amp[3]));
    let (ab, as_) = (f32x4::splat(v.amp[4]), f32x4::splat(v.amp[5]));
    let mut idx = f32x4::splat((f0 + 1) as f32) + lanes.round_float();
    let four = f32x4::splat(4.0);
    let mut chunks = out.chunks_mut(4);
    for o in &mut chunks {
        let m = sin_unit(p0) * (ib + idx * is);
        let pm = ((m * f32x4::splat(16_777_216.0)).trunc_int()) << 8u32;
        let s = (sin_unit(p0 + pm) + sin_unit(p1 + pm)) * f32x4::splat(0.5) * (ab + idx * as_);
        o.copy_from_slice(&s.to_array()[..o.len()]);
        p0 += s0;
        p1 += s1;
        idx += four;
    }
    let n = out.len() as u32;
    v.phase[0] = v.phase[0].wrapping_add(v.inc[0].wrapping_mul(n));
    v.phase[1] = v.phase[1].wrapping_add(v.inc[1].wrapping_mul(n));
    false
}

/// Electric piano. amp[0]: body index; amp[2]: tine index (ratio 14, fast decay); amp[5]: autopan.
pub fn start_electric(v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.inc[0] = phase_inc(v.hz);
    v.inc[2] = phase_inc(v.hz * 14.0);
    let vel = v.velocity;
    let bright = 0.6 + 0.8 * ctx.brightness;
    let index = (0.25 + 1.1 * vel) * bright * key_scale(v.hz) * INV_TAU;
    let ds = decay_scale(ev.pitch);
    v.amp[0] = index;
    v.amp_floor[0] = index * 0.2;
    v.amp_coef[0] = decay_coef(0.5 * ds);
    // The tine partial sits 14x up: leave it out where it would pass 15 kHz.
    let tine_room = ((15_000.0 - 14.0 * v.hz) / 5_000.0).clamp(0.0, 1.0);
    v.amp[2] = 0.35 * vel * bright * tine_room * INV_TAU;
    v.amp_coef[2] = decay_coef(0.05);
    v.lfo_inc = phase_inc(4.2).wrapping_mul(BLOCK as u32);
    v.lfo_phase = (note_rand(ev, 9) * 4.0e9) as u32;
    (
        Voice::shape(0.003, 16.0 * ds, 0.0, 1.5),
        0.22,
        key_pan(ev.pitch),
    )
}

/// Autopan LFO.
pub fn control_electric(v: &mut Voice, ctx: &Ctx) {
    // The tine decays in 50 ms: flush it to zero before it reaches the subnormal range.
    if v.amp[2].abs() < 1e-9 {
        v.amp[2] = 0.0;
    }
    v.amp[5] = 0.22 * lookup(&ctx.tables.sine, v.lfo_phase);
    v.lfo_phase = v.lfo_phase.wrapping_add(v.lfo_inc);
}

/// Renders the electric piano.
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
