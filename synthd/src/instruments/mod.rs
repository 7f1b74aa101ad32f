//! The built-in instruments: which one an event asks for, and dispatch to each family's code.
//!
//! Each instrument provides three functions over a [`Voice`]: `start` (note-on: oscillators,
//! envelope shape, level, pan), `control` (once per 64-frame control block: filter cutoff, LFOs)
//! and `render` (fill one block of raw signal). Levels are set so that a typical mix of four-note
//! pad chords, a melody and a bass sits around -16 LUFS after the master gain.

mod bass;
mod drums;
mod keys;
mod pads;
mod texture;

use shm_proto::{NoteEvent, Part};

use crate::envelope::AdsrShape;
use crate::voice::{Ctx, Voice};

/// Every instrument synthd can play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instrument {
    /// Pad 0: detuned band-limited saws through a slowly moving resonant low-pass.
    WarmPad,
    /// Pad 1: triangles plus a quiet octave saw, more open and slightly resonant.
    GlassPad,
    /// Lead 0: two-operator FM piano, velocity opens the brightness.
    SoftPiano,
    /// Lead 1: FM electric piano with a tine transient and gentle autopan.
    ElectricPiano,
    /// Bass 0: sine plus triangle body through soft saturation.
    RoundBass,
    /// Texture 0: inharmonic additive bell with long decay.
    Bell,
    /// Texture 1: slowly breathing high partials.
    Shimmer,
    /// Percussion 36: soft sine kick with a pitch drop.
    Kick,
    /// Percussion 38: band-passed noise brush.
    Brush,
    /// Percussion 42: band-passed high noise shaker.
    Shaker,
    /// Percussion 75: short resonant noise click.
    Click,
}

impl Instrument {
    /// The instrument an event asks for; unknown instrument indices fall back to instrument 0 of
    /// the part, an unknown part gives `None` (the event is dropped).
    pub fn for_event(ev: &NoteEvent) -> Option<Instrument> {
        Some(match Part::from_u8(ev.part)? {
            Part::Pad => match ev.instrument {
                1 => Instrument::GlassPad,
                _ => Instrument::WarmPad,
            },
            Part::Lead => match ev.instrument {
                1 => Instrument::ElectricPiano,
                _ => Instrument::SoftPiano,
            },
            Part::Bass => Instrument::RoundBass,
            Part::Texture => match ev.instrument {
                1 => Instrument::Shimmer,
                _ => Instrument::Bell,
            },
            Part::Percussion => match ev.pitch {
                37..=40 => Instrument::Brush,
                42 | 44 | 46 | 54 | 69 | 70 | 82 => Instrument::Shaker,
                75 | 76 | 77 | 31 | 33 => Instrument::Click,
                _ => Instrument::Kick,
            },
        })
    }

    /// Note-on: sets up oscillators; returns the envelope shape, the level and the pan (0..=1).
    pub fn start(self, v: &mut Voice, ev: &NoteEvent, ctx: &Ctx) -> (AdsrShape, f32, f32) {
        match self {
            Instrument::WarmPad => pads::start_warm(v, ev, ctx),
            Instrument::GlassPad => pads::start_glass(v, ev, ctx),
            Instrument::SoftPiano => keys::start_piano(v, ev, ctx),
            Instrument::ElectricPiano => keys::start_electric(v, ev, ctx),
            Instrument::RoundBass => bass::start(v, ev, ctx),
            Instrument::Bell => texture::start_bell(v, ev, ctx),
            Instrument::Shimmer => texture::start_shimmer(v, ev, ctx),
            Instrument::Kick => drums::start_kick(v, ev, ctx),
            Instrument::Brush => drums::start_brush(v, ev, ctx),
            Instrument::Shaker => drums::start_shaker(v, ev, ctx),
            Instrument::Click => drums::start_click(v, ev, ctx),
        }
    }

    /// Control-rate update at the start of each 64-frame block.
    pub fn control(self, v: &mut Voice, ctx: &Ctx) {
        match self {
            Instrument::WarmPad | Instrument::GlassPad => pads::control(v, ctx),
            Instrument::SoftPiano => keys::control_piano(v),
            Instrument::RoundBass => bass::control(v),
            Instrument::ElectricPiano => keys::control_electric(v, ctx),
            Instrument::Bell => texture::control_bell(v, ctx),
            Instrument::Shimmer => texture::control_shimmer(v, ctx),
            _ => {}
        }
    }

    /// Amplitude modulation applied through the pan gains (+ left, - right): the electric piano's
    /// autopan. Zero for the others.
    pub fn tremolo(self, v: &Voice) -> f32 {
        match self {
            Instrument::ElectricPiano => v.amp[5],
            _ => 0.0,
        }
    }

    /// Fills `l` (and `r` when it returns true) with raw signal for grid offsets `f0..`.
    pub fn render(self, v: &mut Voice, ctx: &Ctx, f0: usize, l: &mut [f32], r: &mut [f32]) -> bool {
        match self {
            // Rendered by `pad_bank`, eight voices at a time.
            Instrument::WarmPad | Instrument::GlassPad => false,
            Instrument::SoftPiano => keys::render_piano(v, f0, l),
            Instrument::ElectricPiano => keys::render_electric(v, ctx, l),
            Instrument::RoundBass => bass::render(v, f0, l),
            Instrument::Bell => texture::render_bell(v, ctx, l),
            Instrument::Shimmer => texture::render_shimmer(v, ctx, l, r),
            Instrument::Kick => drums::render_kick(v, ctx, l),
            Instrument::Brush | Instrument::Shaker | Instrument::Click => {
                drums::render_bandpass(v, l)
            }
        }
    }
}

/// A per-note pseudo-random number in 0..1, from the event and a salt (deterministic).
pub(crate) fn note_rand(ev: &NoteEvent, salt: u32) -> f32 {
    crate::osc::hash_unit(
        (ev.at_frame as u32)
            ^ (u32::from(ev.pitch) << 8)
            ^ (u32::from(ev.part) << 16)
            ^ salt.wrapping_mul(0x9E37_79B9),
    )
}

/// Station brightness mapped to octaves of cutoff: 0 -> -1.15, 0.5 -> 0, 1 -> +1.15 (the pads
/// add their LFO's octaves before the one `exp2`).
pub(crate) fn brightness_octaves(b: f32) -> f32 {
    (b - 0.5) * 2.3
}

/// Station brightness mapped to a cutoff multiplier: 0 -> 0.45x, 0.5 -> 1x, 1 -> 2.2x (the torch
/// backend's pad bus).
#[cfg(feature = "torch")]
pub(crate) fn brightness_mul(b: f32) -> f32 {
    brightness_octaves(b).exp2()
}

#[cfg(test)]
mod tests;
