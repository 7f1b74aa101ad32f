//! Round bass: a sine with a little band-limited triangle for body, softly saturated (more with
//! velocity and brightness) and smoothed by a one-pole low-pass. Only low odd harmonics result, far
//! below Nyquist at bass pitches.

use shm_proto::NoteEvent;

use crate::envelope::AdsrShape;
use crate::filter::one_pole_coef;
use crate::osc::{Wave, lookup, phase_inc};
use crate::voice::{Ctx, Voice};

/// Rational tanh approximation, exact slope 1 at 0, saturating near |x| = 3 (input clamped).
#[inline(always)]
pub fn soft_clip(x: f32) -> f32 {
    let x = x.clamp(-3.0, 3.0);
    x * (27.0 + x * x) / (27.0 + 9.0 * x * x)
}

/// amp[0]: drive; amp[1]: output normalisation.
pub fn start(v: &mut Voice, _ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.inc[0] = phase_inc(v.hz);
    v.table[0] = ctx.tables.wave(Wave::Triangle, v.hz);
    let drive = 1.0 + 1.2 * v.velocity * (0.5 + ctx.brightness);
    v.amp[0] = drive;
    v.amp[1] = 1.0 / soft_clip(drive * 1.2);
    v.one_pole_coef = one_pole_coef((v.hz * 6.0 + 250.0).min(4_000.0));
    (Voice::shape(0.012, 5.0, 0.65, 0.9), 0.32, 0.5)
}

/// Renders the bass.
pub fn render(v: &mut Voice, ctx: &Ctx, out: &mut [f32]) -> bool {
    let sine = &*ctx.tables.sine;
    let tri = v.table[0];
    let mut p = v.phase[0];
    let inc = v.inc[0];
    let (drive, norm, a) = (v.amp[0], v.amp[1], v.one_pole_coef);
    let mut y = v.one_pole;
    for o in out.iter_mut() {
        let x = lookup(sine, p) + 0.2 * lookup(tri, p);
        p = p.wrapping_add(inc);
        let s = soft_clip(drive * x) * norm;
        y += a * (s - y);
        *o = y;
    }
    v.phase[0] = p;
    v.one_pole = y;
    false
}
