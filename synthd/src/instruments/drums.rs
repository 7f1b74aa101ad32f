//! Soft percussion: a sine kick with a quick downward pitch sweep, and noise bursts shaped by a
//! band-pass state-variable filter (brush, shaker, click). Gentle attacks (2-8 ms) so nothing snaps.

use shm_proto::NoteEvent;

use super::note_rand;
use crate::envelope::{AdsrShape, decay_coef};
use crate::filter::SvfCoefs;
use crate::osc::{Noise, lookup, phase_inc};
use crate::voice::{Ctx, Voice};

/// Noise seed from the event: the same note always sounds the same.
fn seed(ev: &NoteEvent) -> u32 {
    crate::osc::hash32(ev.at_frame as u32 ^ (u32::from(ev.pitch) << 24) ^ u32::from(ev.velocity))
}

/// Kick: 110 Hz falling to 48 Hz with a 35 ms time constant.
pub fn start_kick(v: &mut Voice, _ev: &NoteEvent, _ctx: &Ctx) -> (AdsrShape, f32, f32) {
    let end = phase_inc(48.0) as f32;
    v.sweep_floor = end;
    v.sweep = phase_inc(110.0) as f32 - end;
    v.sweep_coef = decay_coef(0.035);
    (Voice::shape(0.002, 1.2, 0.0, 0.4), 0.55, 0.5)
}

/// Renders the kick.
pub fn render_kick(v: &mut Voice, ctx: &Ctx, out: &mut [f32]) -> bool {
    let sine = &*ctx.tables.sine;
    let mut p = v.phase[0];
    let (mut sweep, fl, c) = (v.sweep, v.sweep_floor, v.sweep_coef);
    for o in out.iter_mut() {
        *o = lookup(sine, p);
        p = p.wrapping_add((fl + sweep) as u32);
        sweep *= c;
    }
    v.phase[0] = p;
    v.sweep = sweep;
    false
}

/// Brush: band-passed noise around 2.2 kHz.
pub fn start_brush(v: &mut Voice, ev: &NoteEvent, _ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.noise = Noise::new(seed(ev));
    v.coefs = SvfCoefs::new(2_200.0, 0.6);
    (
        Voice::shape(0.004, 0.6, 0.0, 0.5),
        0.3,
        0.4 + 0.1 * note_rand(ev, 6),
    )
}

/// Click / rim: narrow noise band at 3 kHz, very short.
pub fn start_click(v: &mut Voice, ev: &NoteEvent, _ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.noise = Noise::new(seed(ev));
    v.coefs = SvfCoefs::new(3_000.0, 4.0);
    (Voice::shape(0.001, 0.12, 0.0, 0.12), 0.35, 0.35)
}

/// Shaker: noise band-passed around 7.5 kHz (not a plain high-pass: the top octave of white noise
/// is what makes hats harsh), soft attack, ~50 ms.
pub fn start_shaker(v: &mut Voice, ev: &NoteEvent, _ctx: &Ctx) -> (AdsrShape, f32, f32) {
    v.noise = Noise::new(seed(ev));
    v.coefs = SvfCoefs::new(7_500.0, 0.9);
    (
        Voice::shape(0.008, 0.3, 0.0, 0.25),
        0.16,
        0.55 + 0.15 * note_rand(ev, 7),
    )
}

/// Fills `out` with noise.
fn noise(v: &mut Voice, out: &mut [f32]) {
    let mut n = v.noise;
    for o in out.iter_mut() {
        *o = n.sample();
    }
    v.noise = n;
}

/// Renders brush, shaker and click.
pub fn render_bandpass(v: &mut Voice, out: &mut [f32]) -> bool {
    noise(v, out);
    let c = v.coefs;
    v.svf[0].bandpass(&c, out);
    false
}
