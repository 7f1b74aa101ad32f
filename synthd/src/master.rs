//! The master bus: dry mix plus reverb, master gain, limiter.
//!
//! The master gain is what places typical material at about -16 LUFS integrated (measured with the
//! BS.1770 meter in [`crate::loudness`] on a minute of Focus-like material: pad chords, a soft
//! piano melody and a bass); the limiter only catches rare peaks.

use crate::limiter::Limiter;
use crate::reverb::{MAX_BLOCK, Reverb};

/// Reverb decay time (RT60), seconds.
pub const REVERB_RT60: f32 = 3.0;
/// Damping low-pass inside the reverb loop.
pub const REVERB_DAMP_HZ: f32 = 7_000.0;
/// Share of the reverb in the mix (the rest is dry).
pub const REVERB_WET: f32 = 0.2;
/// Reverb output scale: makes the wet signal about as loud as the dry one for sustained material,
/// so `REVERB_WET` reads as an energy share.
const REVERB_NORM: f32 = 1.6;
/// Linear master gain: the test phrase of `tests/common` (pads, piano, bass, texture, percussion)
/// reads -15.6 LUFS; composer's sparser Focus material about -18 (see BENCHMARKS.md).
pub const MASTER_GAIN: f32 = 1.1;
/// Gain applied to the SoundFont synthesizer's output: rustysynth's GM levels sit about 12 dB
/// under the built-in instruments on the same notes (measured with `examples/loudness.rs`).
pub const SOUNDFONT_GAIN: f32 = 8.0;
/// Limiter ceiling in dBFS (sample peak; true peak stays under -1 dBFS).
pub const CEILING_DB: f32 = -1.5;

/// Master bus state.
#[derive(Debug)]
pub struct Master {
    /// The reverb.
    reverb: Reverb,
    /// The limiter.
    limiter: Limiter,
    /// Wet signal of the block.
    wet_l: [f32; MAX_BLOCK],
    /// Wet signal of the block.
    wet_r: [f32; MAX_BLOCK],
    /// Dry gain.
    dry: f32,
    /// Wet gain.
    wet: f32,
}

impl Default for Master {
    fn default() -> Self {
        Self::new()
    }
}

impl Master {
    /// Allocates reverb and limiter buffers.
    pub fn new() -> Self {
        Master {
            reverb: Reverb::new(REVERB_RT60, REVERB_DAMP_HZ),
            limiter: Limiter::new(CEILING_DB, 0.25),
            wet_l: [0.0; MAX_BLOCK],
            wet_r: [0.0; MAX_BLOCK],
            dry: (1.0 - REVERB_WET) * MASTER_GAIN,
            wet: REVERB_WET * REVERB_NORM * MASTER_GAIN,
        }
    }

    /// Processes the dry bus (at most [`MAX_BLOCK`] frames) in place into the final mix.
    pub fn process(&mut self, l: &mut [f32], r: &mut [f32]) {
        let n = l.len();
        let (wl, wr) = (&mut self.wet_l[..n], &mut self.wet_r[..n]);
        self.reverb.process(l, r, wl, wr);
        for (x, w) in l.iter_mut().zip(wl.iter()) {
            *x = self.dry * *x + self.wet * *w;
        }
        for (x, w) in r.iter_mut().zip(wr.iter()) {
            *x = self.dry * *x + self.wet * *w;
        }
        self.limiter.process(l, r);
    }

    /// Only the master gain and the limiter (the SoundFont synthesizer has its own reverb).
    pub fn process_limit_only(&mut self, l: &mut [f32], r: &mut [f32]) {
        for x in l.iter_mut().chain(r.iter_mut()) {
            *x *= SOUNDFONT_GAIN;
        }
        self.limiter.process(l, r);
    }

    /// The reverb (tests inspect its state).
    pub fn reverb(&self) -> &Reverb {
        &self.reverb
    }

    /// Current limiter gain.
    pub fn limiter_gain(&self) -> f32 {
        self.limiter.gain()
    }
}
