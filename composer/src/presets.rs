//! The presets: named moods, each a key, a mode, a tempo, an intensity and an instrumentation.
//!
//! This is the file to edit to tune the station sound. The order of [`PRESETS`](crate::presets::PRESETS) is part of the
//! shared-memory protocol ([`shm_proto::StationParams::preset`] is an index into it): append new
//! presets at the end, never reorder. Instrument numbers are explained in `instruments.rs`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::instruments::{
    BASS_ROUND, LEAD_ELECTRIC_PIANO, LEAD_SOFT_PIANO, PAD_GLASS, PAD_WARM, TEXTURE_BELL,
    TEXTURE_SHIMMER,
};
use crate::scales::{Key, Mode};

/// Which instrument plays each part, and how present the optional parts are.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Instrumentation {
    /// Pad instrument index.
    pub pad: u8,
    /// Lead (melody) instrument index.
    pub lead: u8,
    /// Bass instrument index.
    pub bass: u8,
    /// Texture instrument index (bell or shimmer).
    pub texture: u8,
    /// 0..=1: how often the texture part plays (0 = never).
    pub texture_amount: f32,
    /// 0..=1: how much percussion (0 = none, whatever the intensity).
    pub percussion_amount: f32,
    /// 0..=1: how often the pad adds a ninth or seventh to its chord.
    pub colour: f32,
}

/// One preset.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Preset {
    /// Identifier used in the API and as the station name (lower case).
    pub name: &'static str,
    /// Display name.
    pub title: &'static str,
    /// One line for the UI.
    pub description: &'static str,
    /// Default key.
    pub key: Key,
    /// Default mode.
    pub mode: Mode,
    /// Default tempo, beats per minute.
    pub bpm: f32,
    /// Default intensity, 0..=1.
    pub intensity: f32,
    /// Instruments and part levels.
    pub instruments: Instrumentation,
}

/// The preset table. Index = preset index on the wire: append only.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "focus",
        title: "Focus",
        description: "Steady, warm and unobtrusive: D Dorian piano over a soft pad.",
        key: Key::of(2), // D
        mode: Mode::Dorian,
        bpm: 60.0,
        intensity: 0.5,
        instruments: Instrumentation {
            pad: PAD_WARM,
            lead: LEAD_SOFT_PIANO,
            bass: BASS_ROUND,
            texture: TEXTURE_BELL,
            texture_amount: 0.5,
            percussion_amount: 0.6,
            colour: 0.5,
        },
    },
    Preset {
        name: "calm",
        title: "Calm",
        description: "Slow major-key piano with a shimmer above, barely any pulse.",
        key: Key::of(5), // F
        mode: Mode::Ionian,
        bpm: 54.0,
        intensity: 0.35,
        instruments: Instrumentation {
            pad: PAD_WARM,
            lead: LEAD_SOFT_PIANO,
            bass: BASS_ROUND,
            texture: TEXTURE_SHIMMER,
            texture_amount: 0.6,
            percussion_amount: 0.3,
            colour: 0.6,
        },
    },
    Preset {
        name: "sleep",
        title: "Sleep",
        description: "Very slow pentatonic electric piano, no percussion, nothing that rubs.",
        key: Key::of(1), // Db
        mode: Mode::Pentatonic,
        bpm: 44.0,
        intensity: 0.15,
        instruments: Instrumentation {
            pad: PAD_WARM,
            lead: LEAD_ELECTRIC_PIANO,
            bass: BASS_ROUND,
            texture: TEXTURE_SHIMMER,
            texture_amount: 0.4,
            percussion_amount: 0.0,
            colour: 0.3,
        },
    },
    Preset {
        name: "bright",
        title: "Bright",
        description: "Open Mixolydian electric piano, glassy pad, bells and a light pulse.",
        key: Key::of(7), // G
        mode: Mode::Mixolydian,
        bpm: 76.0,
        intensity: 0.7,
        instruments: Instrumentation {
            pad: PAD_GLASS,
            lead: LEAD_ELECTRIC_PIANO,
            bass: BASS_ROUND,
            texture: TEXTURE_BELL,
            texture_amount: 0.8,
            percussion_amount: 0.8,
            colour: 0.5,
        },
    },
    Preset {
        name: "dream",
        title: "Dream",
        description: "Floating Lydian piano over a glass pad and a constant shimmer.",
        key: Key::of(3), // Eb
        mode: Mode::Lydian,
        bpm: 50.0,
        intensity: 0.4,
        instruments: Instrumentation {
            pad: PAD_GLASS,
            lead: LEAD_SOFT_PIANO,
            bass: BASS_ROUND,
            texture: TEXTURE_SHIMMER,
            texture_amount: 0.9,
            percussion_amount: 0.2,
            colour: 0.8,
        },
    },
    Preset {
        name: "night",
        title: "Night",
        description: "A minor, dark and slow: electric piano, warm pad, distant bells.",
        key: Key::of(9), // A
        mode: Mode::Aeolian,
        bpm: 48.0,
        intensity: 0.3,
        instruments: Instrumentation {
            pad: PAD_WARM,
            lead: LEAD_ELECTRIC_PIANO,
            bass: BASS_ROUND,
            texture: TEXTURE_BELL,
            texture_amount: 0.4,
            percussion_amount: 0.3,
            colour: 0.6,
        },
    },
];

/// All presets, in index order (for `GET /api/presets`: serialise this slice with serde_json).
pub fn presets() -> &'static [Preset] {
    PRESETS
}

/// A preset, by its index in [`PRESETS`]. Serialised as the preset's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PresetId(u8);

impl PresetId {
    /// The Focus preset, the default station.
    pub const FOCUS: PresetId = PresetId(0);

    /// The preset at `index`, `None` when out of range.
    pub fn from_index(index: u8) -> Option<Self> {
        ((index as usize) < PRESETS.len()).then_some(PresetId(index))
    }

    /// The preset called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        PRESETS
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
            .map(|i| PresetId(i as u8))
    }

    /// Index on the wire.
    pub fn index(self) -> u8 {
        self.0
    }

    /// The preset's definition.
    pub fn preset(self) -> &'static Preset {
        &PRESETS[self.0 as usize]
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        self.preset().name
    }
}

impl fmt::Display for PresetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for PresetId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for PresetId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PresetId::from_name(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown preset {s:?}")))
    }
}

/// The preset names, comma separated (for error messages and `--help`).
pub fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_focus_is_d_dorian_60() {
        let focus = PresetId::from_name("Focus").unwrap().preset();
        assert_eq!(
            (focus.key.name(), focus.mode, focus.bpm, focus.intensity),
            ("D", Mode::Dorian, 60.0, 0.5)
        );
        assert_eq!(PresetId::FOCUS.name(), "focus");
        for name in ["focus", "calm", "sleep", "bright", "dream"] {
            assert!(PresetId::from_name(name).is_some(), "{name}");
        }
        for (i, p) in PRESETS.iter().enumerate() {
            assert!((40.0..=120.0).contains(&p.bpm), "{}", p.name);
            assert!((0.0..=1.0).contains(&p.intensity), "{}", p.name);
            assert_eq!(PresetId::from_name(p.name), PresetId::from_index(i as u8));
            assert!(p.name.len() < 32 && p.name.bytes().all(|b| b.is_ascii_lowercase()));
        }
    }

    #[test]
    fn presets_serialise_to_json() {
        let json = serde_json::to_value(presets()).unwrap();
        assert_eq!(json[0]["name"], "focus");
        assert_eq!(json[0]["key"], "D");
        assert_eq!(json[0]["mode"], "dorian");
        assert_eq!(json[0]["instruments"]["lead"], 0);
    }
}
