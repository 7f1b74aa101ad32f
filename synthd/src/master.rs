//! The master bus: dry mix plus reverb, master gain, limiter.
//!
//! The master gain is what places typical material at about -16 LUFS integrated (measured with the
//! BS.1770 meter in [`crate::loudness`] on a minute of Focus-like material: pad chords, a soft
//! piano melody and a bass); the limiter only catches rare peaks.

use crate::limiter::Limiter;
use crate::reverb::Reverb;

/// Reverb decay time (RT60), seconds.
pub const REVERB_RT60: f32 = 3.0;
/// Damping low-pass inside the reverb loop.
pub const REVERB_DAMP_HZ: f32 = 7_000.0;
/// Share of the reverb in the mix (the rest is dry).
pub const REVERB_WET: f32 = 0.2;
/// Reverb output scale: makes the wet signal about as loud as the dry one for sustained material,
/// so `REVERB_WET` reads as an energy share.
const REVERB_NORM: f32 = 1.6;
/// Linear master gain (calibrated for -16 LUFS).
pub const MASTER_GAIN: f32 = 1.12;
/// Limiter ceiling in dBFS (sample peak; true peak stays under -1 dBFS).
pub const CEILING_DB: f32 = -1.5;

/// Master bus state.
#[derive(Debug)]
pub struct Master {
    /// The reverb.
    reverb: Reverb,
    /// The limiter.
    limiter: Limiter,
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
            dry: (1.0 - REVERB_WET) * MASTER_GAIN,
            wet: REVERB_WET * REVERB_NORM * MASTER_GAIN,
        }
    }

    /// Processes the dry bus in place into the final mix.
    pub fn process(&mut self, l: &mut [f32], r: &mut [f32]) {
        for (xl, xr) in l.iter_mut().zip(r.iter_mut()) {
            let (wl, wr) = self.reverb.tick(*xl, *xr);
            let ml = self.dry * *xl + self.wet * wl;
            let mr = self.dry * *xr + self.wet * wr;
            let (ol, or) = self.limiter.tick(ml, mr);
            *xl = ol;
            *xr = or;
        }
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
