//! [`PadBus`]: the CPU's share of a station's torch-rendered pads — one stereo low-pass on the
//! station's dry pad sum, standing in for the native per-voice filters.
//!
//! Why one filter per station: native runs two resonant TPT low-passes per pad voice, each with its
//! own cutoff (key-tracked, breathing with a per-voice LFO, opened by its envelope). A filter is a
//! per-frame recursion, which tensor code runs as 4,410 sequential steps per chunk; the device
//! therefore renders the voices dry and the host filters their sum once, per station: a gentle
//! low-pass (Q [`PAD_BUS_Q`]) at [`PAD_BUS_CUTOFF_HZ`] times the station's brightness multiplier
//! (the same curve the voices use), refreshed on the 64-frame grid of the station clock. What is
//! lost: key tracking, the per-voice LFO sweep and resonance, and the envelope's opening.

use crate::filter::{Svf, SvfCoefs};
use crate::instruments::brightness_mul;

/// Cutoff of the pad bus filter at brightness 0.5. Native's warm pad sits at `300 + 1.6 f0` Hz
/// times an envelope opening of about 0.92 at sustain (about 700-1,000 Hz over a Focus chord's
/// range); the glass pad an octave higher. Of 500-1,400 Hz and Q 0.6-0.9 tried, 700 Hz and Q 0.75
/// correlate best with native on a Focus station's final output (0.987; `route::tests`).
pub const PAD_BUS_CUTOFF_HZ: f32 = 700.0;
/// Quality of the pad bus filter: native's resonances (0.9 warm, 1.5 glass) sit at per-voice
/// cutoffs; on a sum of voices a flat, Butterworth-like response is closer.
pub const PAD_BUS_Q: f32 = 0.75;

/// One station's pad bus filter.
#[derive(Debug)]
pub struct PadBus {
    /// Left and right low-passes.
    svf: [Svf; 2],
    /// Their coefficients, refreshed on the station's control grid.
    coefs: SvfCoefs,
}

impl PadBus {
    /// A silent filter set for `brightness`.
    pub fn new(brightness: f32) -> Self {
        PadBus {
            svf: [Svf::default(); 2],
            coefs: coefs(brightness),
        }
    }

    /// Filters interleaved stereo `pads` (as many frames as `l`) and adds it onto `l` and `r`, a
    /// segment starting `f0` frames into its 64-frame control block (at 0 the cutoff follows
    /// `brightness`).
    pub fn mix(&mut self, f0: usize, brightness: f32, pads: &[f32], l: &mut [f32], r: &mut [f32]) {
        if f0 == 0 {
            self.coefs = coefs(brightness);
        }
        let c = self.coefs;
        let [left, right] = &mut self.svf;
        for ((frame, l), r) in pads.chunks_exact(2).zip(l.iter_mut()).zip(r.iter_mut()) {
            *l += left.tick_low(&c, frame[0]);
            *r += right.tick_low(&c, frame[1]);
        }
    }
}

fn coefs(brightness: f32) -> SvfCoefs {
    SvfCoefs::new(PAD_BUS_CUTOFF_HZ * brightness_mul(brightness), PAD_BUS_Q)
}
