//! Round bass: a sine with a little triangle for body, softly saturated (more with velocity and
//! brightness) and smoothed by a one-pole low-pass. Only low odd harmonics result, far below
//! Nyquist at bass pitches (the triangle's 1/h^2 harmonics alias at under -90 dB there).

use shm_proto::NoteEvent;

use crate::envelope::AdsrShape;
use crate::filter::one_pole_coef;
use wide::{f32x4, i32x4};

use crate::osc::{phase_inc, phase_lanes, quarter_fold, sin_unit};
use crate::voice::{BLOCK, Ctx, Voice};

/// Rational tanh approximation, exact slope 1 at 0, saturating near |x| = 3 (input clamped).
#[inline(always)]
pub fn soft_clip(x: f32) -> f32 {
    let x = x.clamp(-3.0, 3.0);
    x * (27.0 + x * x) / (27.0 + 9.0 * x * x)
}

/// amp[0]: drive; amp[1]: output normalisation.
pub fn start(v: &mut Voice, _ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.inc[0] = phase_inc(v.hz);
    let drive = 1.0 + 1.2 * v.velocity * (0.5 + ctx.brightness);
    v.amp[0] = drive;
    v.amp[1] = 1.0 / soft_clip(drive * 1.2);
    v.one_pole_coef = one_pole_coef((v.hz * 6.0 + 250.0).min(4_000.0));
    (Voice::shape(0.012, 5.0, 0.65, 0.9), 0.42, 0.5)
}

/// Control rate: renders the whole control block's raw signal (from the control point to the
/// next grid point) into the voice's block buffer, so the one-pole runs over a known span and
/// can step four frames at a time: its recursion is then one multiply-add per four frames
/// (`y4 = k^4 y0 + ...`) instead of per frame. Segments of the block read the buffer.
pub fn control(v: &mut Voice) {
    let from = usize::from(v.ctl_from);
    let m = BLOCK - from;
    let mut p = phase_lanes(v.phase[0], v.inc[0]);
    let step = i32x4::splat(v.inc[0].wrapping_mul(4) as i32);
    let (drive, norm) = (f32x4::splat(v.amp[0]), f32x4::splat(v.amp[1]));
    let a = v.one_pole_coef;
    // One-pole low-pass y' = k y + u: four frames per step, the inputs' own contributions
    // summed across the lanes in two shifted steps, off the recursion.
    let k = 1.0 - a;
    let (k2, k3, k4) = (k * k, k * k * k, k * k * k * k);
    let (kv, k2v, powers) = (
        f32x4::splat(k),
        f32x4::splat(k2),
        f32x4::new([k, k2, k3, k4]),
    );
    let mut y = v.one_pole;
    // Four frames of the filtered signal from phase lanes `p` and the state `y` before them
    // (`fast_max` and `fast_min` are plain `maxps` and `minps`: no NaN reaches them).
    let frames = |p: i32x4, y: f32| {
        let body = sin_unit(p) + f32x4::splat(0.8) * quarter_fold(p);
        let x = (drive * body)
            .fast_max(f32x4::splat(-3.0))
            .fast_min(f32x4::splat(3.0));
        let x2 = x * x;
        let s = x * (f32x4::splat(27.0) + x2) / (f32x4::splat(27.0) + f32x4::splat(9.0) * x2);
        // The one-pole's input, then its prefix sums over the lanes.
        let u = s * norm * f32x4::splat(a);
        let [u0, u1, u2, _] = u.to_array();
        let t = u + kv * f32x4::new([0.0, u0, u1, u2]);
        let [t0, t1, _, _] = t.to_array();
        let t = t + k2v * f32x4::new([0.0, 0.0, t0, t1]);
        (t + powers * f32x4::splat(y)).to_array()
    };
    let mut chunks = v.block[from..].chunks_exact_mut(4);
    for o in &mut chunks {
        let out = frames(p, y);
        o.copy_from_slice(&out);
        y = out[3];
        p += step;
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let out = frames(p, y);
        rest.copy_from_slice(&out[..rest.len()]);
        y = out[rest.len() - 1];
    }
    v.one_pole = y;
    v.phase[0] = v.phase[0].wrapping_add(v.inc[0].wrapping_mul(m as u32));
}

/// Renders the bass: the control block's buffer.
pub fn render(v: &mut Voice, f0: usize, out: &mut [f32]) -> bool {
    out.copy_from_slice(&v.block[f0..f0 + out.len()]);
    false
}
