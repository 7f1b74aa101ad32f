//! Keys: two-operator FM (phase modulation, ratio 1:1) whose modulation index decays after the
//! strike — bright attack, mellow tail, like a struck string. Velocity and station brightness raise
//! the index; high notes get a smaller index so no sideband approaches Nyquist.

use shm_proto::NoteEvent;

use super::note_rand;
use crate::envelope::{AdsrShape, decay_coef};
use crate::osc::{cents, cycles_to_phase, lookup, phase_inc};
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
        Voice::shape(0.004, 14.0 * ds, 0.0, 1.2),
        0.24,
        key_pan(ev.pitch),
    )
}

/// Renders the soft piano.
pub fn render_piano(v: &mut Voice, ctx: &Ctx, out: &mut [f32]) -> bool {
    let sine = &*ctx.tables.sine;
    let [mut p0, mut p1] = [v.phase[0], v.phase[1]];
    let [i0, i1] = [v.inc[0], v.inc[1]];
    let (mut idx, fl, c) = (v.amp[0], v.amp_floor[0], v.amp_coef[0]);
    let (mut a, afl, ac) = (v.amp[1], v.amp_floor[1], v.amp_coef[1]);
    for o in out.iter_mut() {
        let m = lookup(sine, p0) * idx;
        let pm = cycles_to_phase(m);
        let s = lookup(sine, p0.wrapping_add(pm)) + lookup(sine, p1.wrapping_add(pm));
        *o = 0.5 * s * a;
        p0 = p0.wrapping_add(i0);
        p1 = p1.wrapping_add(i1);
        idx = fl + (idx - fl) * c;
        a = afl + (a - afl) * ac;
    }
    v.phase[0] = p0;
    v.phase[1] = p1;
    v.amp[0] = idx;
    v.amp[1] = a;
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
