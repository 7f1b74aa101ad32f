//! Pads: three detuned oscillators (DPW saws; triangles and an octave saw for the glass pad),
//! spread left/right, each side through its own resonant TPT low-pass whose cutoff breathes with a
//! slow per-voice LFO and the station brightness. Slow attack and release so chord changes
//! cross-fade. Note-on and control rate live here; the audio loop is [`crate::pad_bank`], which
//! renders eight pad voices at once.

use shm_proto::NoteEvent;

use super::{brightness_octaves, note_rand};
use crate::envelope::AdsrShape;
use crate::filter::SvfCoefs;
use crate::osc::{cents, lookup, phase_inc};
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
        v.dpw[i] = crate::pad_bank::dpw_start(v.phase[i], v.inc[i]);
    }
    let rate = 0.06 + 0.06 * note_rand(ev, 2);
    // Advanced at every cutoff refresh: every other control block.
    v.lfo_inc = phase_inc(rate).wrapping_mul(2 * BLOCK as u32);
    v.lfo_phase = crate::osc::hash32(u32::from(ev.pitch) * 31 + ev.at_frame as u32);
}

/// Warm pad.
pub fn start_warm(v: &mut Voice, ev: &NoteEvent, _ctx: &Ctx) -> (AdsrShape, f32, f32) {
    start_common(v, ev, [-7.0, 0.0, 7.0], [1.0; 3]);
    // amp[0]: cutoff base in Hz; amp[1]: resonance Q; amp[2]: mix of the centre oscillator.
    v.amp[0] = 300.0 + 1.6 * v.hz;
    v.amp[1] = 0.9;
    v.amp[2] = 0.6;
    crate::pad_bank::set_dpw_scales(v);
    let pan = 0.5 + (note_rand(ev, 3) - 0.5) * 0.3;
    (Voice::shape(1.8, 6.0, 0.8, 3.0), PAD_LEVEL, pan)
}

/// Glass pad: triangles detuned +-5 cents and a quiet saw an octave up, a more open, slightly
/// resonant filter.
pub fn start_glass(v: &mut Voice, ev: &NoteEvent, _ctx: &Ctx) -> (AdsrShape, f32, f32) {
    start_common(v, ev, [-5.0, 3.0, 5.0], [1.0, 2.0, 1.0]);
    v.amp[0] = 700.0 + 3.0 * v.hz;
    v.amp[1] = 1.5;
    v.amp[2] = 0.25;
    crate::pad_bank::set_dpw_scales(v);
    let pan = 0.5 + (note_rand(ev, 3) - 0.5) * 0.4;
    (Voice::shape(1.2, 6.0, 0.75, 3.5), PAD_LEVEL * 1.25, pan)
}

/// Control rate: LFO and brightness move the cutoff; the envelope opens it a little.
///
/// The cutoff moves slowly (a 0.06-0.12 Hz LFO, brightness smoothed over 80 ms), so it is
/// refreshed every other control block (2.9 ms): the `exp2`s and the coefficient maths were a
/// visible share of the render when run for every pad voice every block.
pub fn control(v: &mut Voice, ctx: &Ctx) {
    let count = v.control_count;
    v.control_count = count.wrapping_add(1);
    if count % 2 == 1 {
        return;
    }
    let lfo = lookup(&ctx.tables.sine, v.lfo_phase);
    v.lfo_phase = v.lfo_phase.wrapping_add(v.lfo_inc);
    let open = 0.6 + 0.4 * v.env.level;
    // The brightness's octaves and the LFO's in one `exp2`.
    let cutoff = v.amp[0] * (brightness_octaves(ctx.brightness) + 0.3 * lfo).exp2() * open;
    let g_old = v.coefs.scaled().0;
    v.coefs = SvfCoefs::new(cutoff.min(14_000.0), v.amp[1]);
    // The pad bank keeps each filter's second state times `g` (see `Svf::tick_low_scaled`):
    // rescale it to the new `g`, here on the control grid, so that segment boundaries never
    // round it.
    let rescale = v.coefs.scaled().0 / g_old;
    for f in &mut v.svf {
        let (ic1, w) = f.state();
        f.set_state(ic1, w * rescale);
    }
}
