//! The master bus: dry mix plus reverb, the loudness hold's gain, limiter.
//!
//! The gain is the [`LoudnessHold`]'s: a slow automatic gain that holds any material at -16 LUFS
//! (BS.1770, the meter of [`crate::loudness`]); the limiter behind it catches the peaks, so true
//! peak stays under -1 dBTP.

use crate::limiter::Limiter;
use crate::loudness_hold::LoudnessHold;
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
/// Nominal linear master gain, the reference for the voices' silence floor (a voice is freed when
/// its output would be under -80 dBFS at this gain). The actual gain is the loudness hold's,
/// within ±12 dB of unity; 1.1 was the fixed gain before it, placing the test phrase of
/// `tests/common` at -15.6 LUFS.
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
    /// The automatic gain that holds the loudness at -16 LUFS.
    hold: LoudnessHold,
    /// The limiter.
    limiter: Limiter,
    /// Wet signal of the block.
    wet_l: [f32; MAX_BLOCK],
    /// Wet signal of the block.
    wet_r: [f32; MAX_BLOCK],
    /// Dry share (before the hold's gain).
    dry: f32,
    /// Wet share (before the hold's gain).
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
            hold: LoudnessHold::new(),
            limiter: Limiter::new(CEILING_DB, 0.25),
            wet_l: [0.0; MAX_BLOCK],
            wet_r: [0.0; MAX_BLOCK],
            dry: 1.0 - REVERB_WET,
            wet: REVERB_WET * REVERB_NORM,
        }
    }

    /// Processes the dry bus in place into the final mix: a segment of at most [`MAX_BLOCK`]
    /// frames starting `f0` frames into its 64-frame block of the station clock (the hold moves
    /// its gain only between those blocks).
    pub fn process(&mut self, f0: usize, l: &mut [f32], r: &mut [f32]) {
        let n = l.len();
        let (wl, wr) = (&mut self.wet_l[..n], &mut self.wet_r[..n]);
        self.reverb.process(l, r, wl, wr);
        let g = self.hold.gain();
        let (dry, wet) = (self.dry * g, self.wet * g);
        for (x, w) in l.iter_mut().zip(wl.iter()) {
            *x = dry * *x + wet * *w;
        }
        for (x, w) in r.iter_mut().zip(wr.iter()) {
            *x = dry * *x + wet * *w;
        }
        self.hold.measure(f0, l, r);
        self.limiter.process(l, r);
    }

    /// The SoundFont synthesizer's path: its level, the hold's gain and the limiter (it has its
    /// own reverb). Segments as in [`Self::process`].
    pub fn process_limit_only(&mut self, f0: usize, l: &mut [f32], r: &mut [f32]) {
        let g = SOUNDFONT_GAIN * self.hold.gain();
        for x in l.iter_mut().chain(r.iter_mut()) {
            *x *= g;
        }
        self.hold.measure(f0, l, r);
        self.limiter.process(l, r);
    }

    /// The reverb (tests inspect its state).
    pub fn reverb(&self) -> &Reverb {
        &self.reverb
    }

    /// The loudness hold's current gain, dB.
    pub fn loudness_gain_db(&self) -> f32 {
        self.hold.gain_db()
    }

    /// Current limiter gain.
    pub fn limiter_gain(&self) -> f32 {
        self.limiter.gain()
    }
}
