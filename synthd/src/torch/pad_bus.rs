//! The CPU's share of a station's torch-rendered voices: [`PadFilter`], one stereo low-pass on the
//! station's dry pad sum standing in for the native per-voice pad filters (run by the route), and
//! [`PadBus`], which adds the finished torch bus onto the station's dry bus (held by the
//! station's renderer).
//!
//! Why one filter per station: native runs two resonant TPT low-passes per pad voice, each with its
//! own cutoff (key-tracked, breathing with a per-voice LFO, opened by its envelope). A filter is a
//! per-frame recursion, which tensor code runs as 4,410 sequential steps per chunk; the device
//! therefore renders the pads dry and the host filters their sum once, per station: a gentle
//! low-pass (Q [`PAD_BUS_Q`]) at [`PAD_BUS_CUTOFF_HZ`] times the station's brightness multiplier
//! (the same curve the voices use), refreshed on the 64-frame grid of the station clock. What is
//! lost: key tracking, the per-voice LFO sweep and resonance, and the envelope's opening.
//!
//! Why the route filters and not the renderer: the engine renders the pads and the other melodic
//! voices (bass, pianos, bell, shimmer: no per-voice filter left, the bass one-pole runs on the
//! device) in one pass, and only the pads want the low-pass, while the renderer takes one stereo
//! block from the torch backend. The route keeps the station's smoothed brightness itself, with
//! the renderer's rule (the same step towards the intensity at every grid point).

use crate::filter::{Svf, SvfCoefs};
use crate::instruments::brightness_mul;

use super::engine::OUT_CHANNELS;

/// Cutoff of the pad bus filter at brightness 0.5. Native's warm pad sits at `300 + 1.6 f0` Hz
/// times an envelope opening of about 0.92 at sustain (about 700-1,000 Hz over a Focus chord's
/// range); the glass pad an octave higher. Of 500-1,400 Hz and Q 0.6-0.9 tried, 700 Hz and Q 0.75
/// correlate best with native on a Focus station's final output (0.987; `route::tests`).
pub const PAD_BUS_CUTOFF_HZ: f32 = 700.0;
/// Quality of the pad bus filter: native's resonances (0.9 warm, 1.5 glass) sit at per-voice
/// cutoffs; on a sum of voices a flat, Butterworth-like response is closer.
pub const PAD_BUS_Q: f32 = 0.75;
/// The renderer's brightness smoothing per control block (`renderer.rs`,
/// `BRIGHTNESS_SMOOTHING`): the route mirrors the station's smoothed brightness with it.
const BRIGHTNESS_SMOOTHING: f32 = 0.018;

/// What a station's renderer holds for the torch backend: it adds the torch bus (the route's
/// filtered pads plus the other device voices) onto the station's dry bus, before the reverb.
#[derive(Debug, Default)]
pub struct PadBus;

impl PadBus {
    /// The bus of a station starting at `brightness` (the route keeps the brightness).
    pub fn new(_brightness: f32) -> Self {
        PadBus
    }

    /// Adds interleaved stereo `bus` (as many frames as `l`) onto `l` and `r`. The grid offset
    /// and the renderer's brightness are not needed: the route filtered the pads already.
    pub fn mix(&mut self, _f0: usize, _brightness: f32, bus: &[f32], l: &mut [f32], r: &mut [f32]) {
        for ((frame, l), r) in bus.chunks_exact(2).zip(l.iter_mut()).zip(r.iter_mut()) {
            *l += frame[0];
            *r += frame[1];
        }
    }
}

/// One station's pad low-pass and smoothed brightness, kept by the route.
#[derive(Debug)]
pub struct PadFilter {
    /// Left and right low-passes.
    svf: [Svf; 2],
    /// Their coefficients, refreshed on the station's control grid.
    coefs: SvfCoefs,
    /// The station's smoothed brightness (as its renderer has it); `None` until the first
    /// chunk, which starts it at the station's intensity as a new renderer does.
    brightness: Option<f32>,
}

impl Default for PadFilter {
    fn default() -> Self {
        PadFilter {
            svf: [Svf::default(); 2],
            coefs: coefs(0.5),
            brightness: None,
        }
    }
}

impl PadFilter {
    /// The station's smoothed brightness, starting at `target` on a fresh station.
    pub fn brightness(&mut self, target: f32) -> f32 {
        *self.brightness.get_or_insert(target)
    }

    /// Mixes one chunk of the engine's output for this station (`OUT_CHANNELS` per frame: dry
    /// pads, then the other voices) into interleaved stereo `out`: the pads through the filter,
    /// the rest as they are. `clock` is the chunk's first frame, `target` the brightness the
    /// station's intensity asks for.
    pub fn mix(&mut self, clock: u64, target: f32, dev: &[f32], out: &mut [f32]) {
        if self.brightness.is_none() {
            self.coefs = coefs(target);
        }
        let mut b = self.brightness(target);
        let [left, right] = &mut self.svf;
        for (j, (x, o)) in dev
            .chunks_exact(OUT_CHANNELS)
            .zip(out.chunks_exact_mut(2))
            .enumerate()
        {
            if (clock + j as u64) % crate::voice::BLOCK as u64 == 0 {
                b += (target - b) * BRIGHTNESS_SMOOTHING;
                self.coefs = coefs(b);
            }
            o[0] = left.tick_low(&self.coefs, x[0]) + x[2];
            o[1] = right.tick_low(&self.coefs, x[1]) + x[3];
        }
        self.brightness = Some(b);
    }
}

fn coefs(brightness: f32) -> SvfCoefs {
    SvfCoefs::new(PAD_BUS_CUTOFF_HZ * brightness_mul(brightness), PAD_BUS_Q)
}
