//! Keys, modes and scales: the pitch material every part draws from.
//!
//! Everything pitched that composer emits is a member of the current [`Scale`]; the other modules
//! work in *scale degrees* and ask the scale for concrete MIDI pitches, so "in the scale" holds by
//! construction rather than by filtering.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Names of the twelve pitch classes as shown to people (flats where musicians usually write them).
const KEY_NAMES: [&str; 12] = [
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
];

/// The tonic of a key as a pitch class, 0 = C .. 11 = B.
///
/// Parsed from note names with an optional sharp or flat (`C`, `d#`, `Eb`, `F♯`, case-insensitive);
/// serialised as the name so JSON stays readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(u8);

impl Key {
    /// The key whose tonic is pitch class `pc` (0..=11), `None` otherwise.
    pub fn from_pitch_class(pc: u8) -> Option<Self> {
        (pc < 12).then_some(Key(pc))
    }

    /// The key on pitch class `pc`, for tables written as constants (`pc` must be below 12).
    pub const fn of(pc: u8) -> Self {
        assert!(pc < 12, "pitch class out of range");
        Key(pc)
    }

    /// The tonic's pitch class, 0 = C.
    pub fn pitch_class(self) -> u8 {
        self.0
    }

    /// Conventional name, e.g. `Eb`.
    pub fn name(self) -> &'static str {
        KEY_NAMES[self.0 as usize]
    }
}

/// A key name that is not a note name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadKeyName;

impl FromStr for Key {
    type Err = BadKeyName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let mut chars = s.chars();
        let letter = chars.next().ok_or(BadKeyName)?;
        let natural: i32 = match letter.to_ascii_uppercase() {
            'C' => 0,
            'D' => 2,
            'E' => 4,
            'F' => 5,
            'G' => 7,
            'A' => 9,
            'B' => 11,
            _ => return Err(BadKeyName),
        };
        let accidental: i32 = match chars.as_str() {
            "" => 0,
            "#" | "♯" | "s" | "sharp" => 1,
            "b" | "B" | "♭" | "flat" => -1,
            _ => return Err(BadKeyName),
        };
        Ok(Key((natural + accidental).rem_euclid(12) as u8))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("not a key name: {s:?}")))
    }
}

/// The modes composer can write in. The discriminant is the mode index stored in
/// [`shm_proto::StationParams::mode`], so the order here is part of the protocol: append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Major.
    Ionian = 0,
    /// Minor with a raised sixth: the warm, unresolved "focus" colour.
    Dorian = 1,
    /// Minor with a flat second: dark.
    Phrygian = 2,
    /// Major with a raised fourth: floating, dreamy.
    Lydian = 3,
    /// Major with a flat seventh: open, folk-like.
    Mixolydian = 4,
    /// Natural minor.
    Aeolian = 5,
    /// Major pentatonic: no semitones at all, so nothing ever rubs; the softest colour.
    Pentatonic = 6,
}

impl Mode {
    /// Every mode, in index order.
    pub const ALL: [Mode; 7] = [
        Mode::Ionian,
        Mode::Dorian,
        Mode::Phrygian,
        Mode::Lydian,
        Mode::Mixolydian,
        Mode::Aeolian,
        Mode::Pentatonic,
    ];

    /// Index stored in shared memory.
    pub fn index(self) -> u8 {
        self as u8
    }

    /// The mode at `index`, `None` when out of range.
    pub fn from_index(index: u8) -> Option<Self> {
        Self::ALL.get(index as usize).copied()
    }

    /// Lower-case name, e.g. `dorian`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ionian => "ionian",
            Mode::Dorian => "dorian",
            Mode::Phrygian => "phrygian",
            Mode::Lydian => "lydian",
            Mode::Mixolydian => "mixolydian",
            Mode::Aeolian => "aeolian",
            Mode::Pentatonic => "pentatonic",
        }
    }

    /// Semitones above the tonic of each scale degree.
    pub fn intervals(self) -> &'static [u8] {
        match self {
            Mode::Ionian => &[0, 2, 4, 5, 7, 9, 11],
            Mode::Dorian => &[0, 2, 3, 5, 7, 9, 10],
            Mode::Phrygian => &[0, 1, 3, 5, 7, 8, 10],
            Mode::Lydian => &[0, 2, 4, 6, 7, 9, 11],
            Mode::Mixolydian => &[0, 2, 4, 5, 7, 9, 10],
            Mode::Aeolian => &[0, 2, 3, 5, 7, 8, 10],
            Mode::Pentatonic => &[0, 2, 4, 7, 9],
        }
    }
}

/// A mode name that is not one of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadModeName;

impl FromStr for Mode {
    type Err = BadModeName;

    /// Accepts the names above in any case, plus `major` and `minor` as the usual aliases.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "major" => return Ok(Mode::Ionian),
            "minor" => return Ok(Mode::Aeolian),
            _ => {}
        }
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or(BadModeName)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key and a mode: the set of pitches allowed right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    /// Tonic.
    pub key: Key,
    /// Mode.
    pub mode: Mode,
}

impl Scale {
    /// The scale of `mode` on `key`.
    pub fn new(key: Key, mode: Mode) -> Self {
        Scale { key, mode }
    }

    /// Number of degrees per octave (7, or 5 for the pentatonic).
    pub fn degrees(self) -> usize {
        self.mode.intervals().len()
    }

    /// Pitch class of `degree`; degrees wrap, so 7 in a diatonic mode is the tonic again.
    pub fn pitch_class(self, degree: i32) -> u8 {
        let iv = self.mode.intervals();
        let n = iv.len() as i32;
        ((self.key.pitch_class() as i32 + iv[degree.rem_euclid(n) as usize] as i32) % 12) as u8
    }

    /// Whether MIDI `pitch` belongs to the scale.
    pub fn contains(self, pitch: u8) -> bool {
        let rel = (pitch as i32 - self.key.pitch_class() as i32).rem_euclid(12) as u8;
        self.mode.intervals().contains(&rel)
    }

    /// All scale pitches in `lo..=hi`, ascending.
    pub fn pitches_in(self, lo: u8, hi: u8) -> Vec<u8> {
        (lo..=hi).filter(|&p| self.contains(p)).collect()
    }

    /// The scale degree (0-based, within the octave) of `pitch`, if it is in the scale.
    pub fn degree_of(self, pitch: u8) -> Option<usize> {
        let rel = (pitch as i32 - self.key.pitch_class() as i32).rem_euclid(12) as u8;
        self.mode.intervals().iter().position(|&i| i == rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_accept_sharps_and_flats_in_any_case() {
        for (name, pc) in [
            ("C", 0),
            ("c", 0),
            ("D#", 3),
            ("eb", 3),
            ("Eb", 3),
            ("F#", 6),
            ("Gb", 6),
            ("bb", 10),
            ("B", 11),
            ("Cb", 11),
            ("B#", 0),
            ("a♭", 8),
        ] {
            assert_eq!(name.parse::<Key>().unwrap().pitch_class(), pc, "{name}");
        }
        for bad in ["", "H", "C##", "Dx", "10"] {
            assert!(bad.parse::<Key>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_names_round_trip() {
        for pc in 0..12 {
            let k = Key::from_pitch_class(pc).unwrap();
            assert_eq!(k.name().parse::<Key>().unwrap(), k);
        }
    }

    #[test]
    fn mode_names_and_indices_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.name().parse::<Mode>().unwrap(), m);
            assert_eq!(m.name().to_uppercase().parse::<Mode>().unwrap(), m);
            assert_eq!(Mode::from_index(m.index()), Some(m));
        }
        assert_eq!("Minor".parse::<Mode>().unwrap(), Mode::Aeolian);
        assert!(Mode::from_index(7).is_none());
    }

    #[test]
    fn d_dorian_is_the_white_keys() {
        let s = Scale::new("D".parse().unwrap(), Mode::Dorian);
        let pcs: Vec<u8> = (0..7).map(|d| s.pitch_class(d)).collect();
        assert_eq!(pcs, vec![2, 4, 5, 7, 9, 11, 0]);
        assert!(s.contains(60) && !s.contains(61));
        assert_eq!(s.degree_of(62), Some(0));
    }
}
