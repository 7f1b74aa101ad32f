//! Pads: several detuned band-limited oscillators, spread left/right, each side through its own
//! resonant TPT low-pass whose cutoff breathes with a slow per-voice LFO and the station
//! brightness. Slow attack and release so chord changes cross-fade.

use shm_proto::NoteEvent;

use super::{brightness_mul, note_rand};
use crate::envelope::AdsrShape;
use crate::filter::SvfCoefs;
use crate::osc::{Wave, cents, lookup, phase_inc};
use crate::voice::{BLOCK, Ctx, Voice};

/// Level of one pad note (a chord stacks four).
const PAD_LEVEL: f32 = 0.13;

/// Shared set-up: three oscillators with `detune` cents around the note, random start phases
/// (so notes never begin phase-locked), a 0.06..0.12 Hz LFO.
fn start_common(v: &mut Voice, ev: &NoteEvent, detune: [f32; 3], ratio: [f32; 3]) {
    let wobble = (note_rand(ev, 1) - 0.5) * 3.0;
    for i in 0..3 {
        v.inc[i] = phase_inc(v.hz * ratio[i] * cents(detune[i] + wobble));
        v.phase[i] =
            crate::osc::hash32(ev.at_frame as u32 ^ (i as u32 * 7919) ^ u32::from(ev.pitch));
    }
    let rate = 0.06 + 0.06 * note_rand(ev, 2);
    v.lfo_inc = phase_inc(rate).wrapping_mul(BLOCK as u32);
    v.lfo_phase = crate::osc::hash32(u32::from(ev.pitch) * 31 + ev.at_frame as u32);
}

/// Warm pad.
pub fn start_warm(v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    start_common(v, ev, [-7.0, 0.0, 7.0], [1.0; 3]);
    let t = ctx.tables.wave(Wave::Saw, v.hz * 1.02);
    v.table = [t, t, t];
    // amp[0]: cutoff base in Hz; amp[1]: resonance Q; amp[2]: mix of the centre oscillator.
    v.amp[0] = 300.0 + 1.6 * v.hz;
    v.amp[1] = 0.9;
    v.amp[2] = 0.6;
    let pan = 0.5 + (note_rand(ev, 3) - 0.5) * 0.3;
    (Voice::shape(1.8, 6.0, 0.8, 5.0), PAD_LEVEL, pan)
}

/// Glass pad: triangles detuned +-5 cents and a quiet saw an octave up, a more open, slightly
/// resonant filter.
pub fn start_glass(v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
    start_common(v, ev, [-5.0, 3.0, 5.0], [1.0, 2.0, 1.0]);
    let tri = ctx.tables.wave(Wave::Triangle, v.hz * 1.02);
    let saw = ctx.tables.wave(Wave::Saw, v.hz * 2.04);
    v.table = [tri, saw, tri];
    v.amp[0] = 700.0 + 3.0 * v.hz;
    v.amp[1] = 1.5;
    v.amp[2] = 0.25;
    let pan = 0.5 + (note_rand(ev, 3) - 0.5) * 0.4;
    (Voice::shape(1.2, 6.0, 0.75, 6.0), PAD_LEVEL * 1.25, pan)
}

/// Control rate: LFO and brightness move the cutoff; the envelope opens it a little.
pub fn control(v: &mut Voice, ctx: &Ctx) {
    let lfo = lookup(&ctx.tables.sine, v.lfo_phase);
    v.lfo_phase = v.lfo_phase.wrapping_add(v.lfo_inc);
    let open = 0.6 + 0.4 * v.env.level;
    let cutoff = v.amp[0] * brightness_mul(ctx.brightness) * (0.3 * lfo).exp2() * open;
    v.coefs = SvfCoefs::new(cutoff.min(14_000.0), v.amp[1]);
}

/// Three oscillators, left = osc0 + mix*osc1, right = osc2 + mix*osc1, each side low-passed.
pub fn render(v: &mut Voice, l: &mut [f32], r: &mut [f32]) -> bool {
    let [t0, t1, t2] = v.table;
    let [mut p0, mut p1, mut p2] = [v.phase[0], v.phase[1], v.phase[2]];
    let [i0, i1, i2] = [v.inc[0], v.inc[1], v.inc[2]];
    let mix = v.amp[2];
    let c = v.coefs;
    let [mut fl, mut fr] = v.svf;
    // Both filters in one loop: their recursions are independent, so they overlap in the pipeline.
    for (lo, ro) in l.iter_mut().zip(r.iter_mut()) {
        let s0 = lookup(t0, p0);
        let s1 = lookup(t1, p1) * mix;
        let s2 = lookup(t2, p2);
        p0 = p0.wrapping_add(i0);
        p1 = p1.wrapping_add(i1);
        p2 = p2.wrapping_add(i2);
        *lo = fl.tick(&c, s0 + s1).low;
        *ro = fr.tick(&c, s2 + s1).low;
    }
    v.phase[0] = p0;
    v.phase[1] = p1;
    v.phase[2] = p2;
    v.svf = [fl, fr];
    true
}
