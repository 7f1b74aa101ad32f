//! The instrument indices composer writes into [`shm_proto::NoteEvent::instrument`], in one place.
//!
//! synthd keeps one instrument list per [`shm_proto::Part`]; a note's `instrument` byte is an index
//! into the list of its part. Presets choose among these (see `presets.rs`). Percussion is the
//! exception: it has a single kit (instrument 0) and the note's *pitch* names the drum, using the
//! General MIDI drum numbers so a MIDI export plays the same kit.
//!
//! | part | index | sound | GM program used by the MIDI export |
//! |---|---|---|---|
//! | Pad | 0 | warm pad | 89 Pad 2 (warm) |
//! | Pad | 1 | glass pad | 94 Pad 7 (halo) |
//! | Lead | 0 | soft piano | 0 Acoustic Grand Piano |
//! | Lead | 1 | electric piano | 4 Electric Piano 1 |
//! | Bass | 0 | round bass | 32 Acoustic Bass |
//! | Texture | 0 | bell | 8 Celesta |
//! | Texture | 1 | shimmer | 95 Pad 8 (sweep) |
//! | Percussion | 0 | soft kit; pitch 36 soft kick, 38 brush, 42 shaker, 75 click | channel 10 kit |

use shm_proto::Part;

/// Pad instrument 0: a warm, slow pad.
pub const PAD_WARM: u8 = 0;
/// Pad instrument 1: a brighter, glassy pad.
pub const PAD_GLASS: u8 = 1;
/// Lead instrument 0: a soft piano.
pub const LEAD_SOFT_PIANO: u8 = 0;
/// Lead instrument 1: an electric piano.
pub const LEAD_ELECTRIC_PIANO: u8 = 1;
/// Bass instrument 0: a round, sine-like bass.
pub const BASS_ROUND: u8 = 0;
/// Texture instrument 0: a bell.
pub const TEXTURE_BELL: u8 = 0;
/// Texture instrument 1: a sustained shimmer.
pub const TEXTURE_SHIMMER: u8 = 1;
/// Percussion has one kit; the pitch chooses the drum.
pub const PERCUSSION_KIT: u8 = 0;

/// Drum kinds, sent as the pitch of a [`Part::Percussion`] note (General MIDI numbers).
pub mod drum {
    /// A soft, low kick.
    pub const SOFT_KICK: u8 = 36;
    /// A brushed snare / filtered noise.
    pub const BRUSH: u8 = 38;
    /// A shaker or closed hat.
    pub const SHAKER: u8 = 42;
    /// A wooden click / rim.
    pub const CLICK: u8 = 75;
}

/// Human-readable name of an instrument, for logs, the dump output and the presets listing.
pub fn instrument_name(part: Part, instrument: u8) -> &'static str {
    match (part, instrument) {
        (Part::Pad, PAD_WARM) => "warm pad",
        (Part::Pad, PAD_GLASS) => "glass pad",
        (Part::Lead, LEAD_SOFT_PIANO) => "soft piano",
        (Part::Lead, LEAD_ELECTRIC_PIANO) => "electric piano",
        (Part::Bass, BASS_ROUND) => "round bass",
        (Part::Texture, TEXTURE_BELL) => "bell",
        (Part::Texture, TEXTURE_SHIMMER) => "shimmer",
        (Part::Percussion, PERCUSSION_KIT) => "soft kit",
        _ => "unknown",
    }
}

/// General MIDI program (0-based) closest to an instrument, for the MIDI export.
pub fn gm_program(part: Part, instrument: u8) -> u8 {
    match (part, instrument) {
        (Part::Pad, PAD_GLASS) => 94,
        (Part::Pad, _) => 89,
        (Part::Lead, LEAD_ELECTRIC_PIANO) => 4,
        (Part::Lead, _) => 0,
        (Part::Bass, _) => 32,
        (Part::Texture, TEXTURE_SHIMMER) => 95,
        (Part::Texture, _) => 8,
        (Part::Percussion, _) => 0,
    }
}

/// Lower-case name of a part, as used in the dump output.
pub fn part_name(part: Part) -> &'static str {
    match part {
        Part::Pad => "pad",
        Part::Lead => "lead",
        Part::Bass => "bass",
        Part::Texture => "texture",
        Part::Percussion => "percussion",
    }
}
