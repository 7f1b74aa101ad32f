//! Station parameters: validated values, their wire form in shared memory, and partial updates.
//!
//! [`Params`] is always valid (every constructor validates). The gateway receives a JSON
//! [`ParamUpdate`], applies it with [`Params::apply`] (all or nothing) and publishes the result
//! with [`Params::to_station`]; composer reads it back with [`Params::from_station`].

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use shm_proto::StationParams;
use thiserror::Error;

use crate::presets::{PresetId, preset_names};
use crate::scales::{Key, Mode, Scale};

/// Allowed tempi, beats per minute.
pub const BPM_RANGE: RangeInclusive<f32> = 40.0..=120.0;
/// Allowed intensities.
pub const INTENSITY_RANGE: RangeInclusive<f32> = 0.0..=1.0;

/// The mode names accepted, comma separated.
fn mode_names() -> String {
    let mut names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
    names.extend(["major", "minor"]);
    names.join(", ")
}

/// A parameter that is out of range or unknown. Each message names the field, the allowed
/// values and what was given, e.g. `bpm must be between 40 and 120, got 300`.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum ParamError {
    /// Tempo out of range (or not a number).
    #[error("bpm must be between {lo} and {hi}, got {0}", lo = BPM_RANGE.start(), hi = BPM_RANGE.end())]
    Bpm(f64),
    /// Intensity out of range (or not a number).
    #[error("intensity must be between 0 and 1, got {0}")]
    Intensity(f64),
    /// Not a note name.
    #[error(
        "key must be a note name from A to G with an optional # or b (e.g. C, F#, Eb), got {0:?}"
    )]
    Key(String),
    /// Pitch class out of range in shared memory.
    #[error("key must be a pitch class between 0 and 11, got {0}")]
    KeyIndex(u8),
    /// Not a mode name.
    #[error("mode must be one of {names}, got {0:?}", names = mode_names())]
    Mode(String),
    /// Mode index out of range in shared memory.
    #[error("mode index must be between 0 and {max}, got {0}", max = Mode::ALL.len() - 1)]
    ModeIndex(u8),
    /// Not a preset name.
    #[error("preset must be one of {names}, got {0:?}", names = preset_names())]
    Preset(String),
    /// Preset index out of range in shared memory.
    #[error("preset index must be between 0 and {max}, got {0}", max = crate::presets::PRESETS.len() - 1)]
    PresetIndex(u8),
}

/// Everything that decides what a station plays.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Params {
    /// Tonic.
    pub key: Key,
    /// Mode.
    pub mode: Mode,
    /// Tempo, within [`BPM_RANGE`].
    pub bpm: f32,
    /// Density and loudness, within [`INTENSITY_RANGE`].
    pub intensity: f32,
    /// Instrumentation (and the defaults the other fields were loaded from).
    pub preset: PresetId,
    /// Seed of the composition: the same seed and parameters give the same music.
    pub seed: u64,
}

impl Default for Params {
    /// The Focus preset with seed 0.
    fn default() -> Self {
        Params::from_preset(PresetId::FOCUS, 0)
    }
}

impl Params {
    /// A preset's key, mode, tempo and intensity, with `seed`.
    pub fn from_preset(preset: PresetId, seed: u64) -> Self {
        let p = preset.preset();
        Params {
            key: p.key,
            mode: p.mode,
            bpm: p.bpm,
            intensity: p.intensity,
            preset,
            seed,
        }
    }

    /// The scale these parameters select.
    pub fn scale(&self) -> Scale {
        Scale::new(self.key, self.mode)
    }

    /// Checks the numeric fields (the typed fields are valid by construction).
    pub fn validate(&self) -> Result<(), ParamError> {
        if !BPM_RANGE.contains(&self.bpm) {
            return Err(ParamError::Bpm(f64::from(self.bpm)));
        }
        if !INTENSITY_RANGE.contains(&self.intensity) {
            return Err(ParamError::Intensity(f64::from(self.intensity)));
        }
        Ok(())
    }

    /// The wire form for the control block.
    pub fn to_station(&self) -> StationParams {
        StationParams {
            seed: self.seed,
            bpm: self.bpm,
            intensity: self.intensity,
            key: self.key.pitch_class(),
            mode: self.mode.index(),
            preset: self.preset.index(),
            _reserved: 0,
        }
    }

    /// Reads and validates the wire form.
    pub fn from_station(sp: &StationParams) -> Result<Self, ParamError> {
        let params = Params {
            key: Key::from_pitch_class(sp.key).ok_or(ParamError::KeyIndex(sp.key))?,
            mode: Mode::from_index(sp.mode).ok_or(ParamError::ModeIndex(sp.mode))?,
            bpm: sp.bpm,
            intensity: sp.intensity,
            preset: PresetId::from_index(sp.preset).ok_or(ParamError::PresetIndex(sp.preset))?,
            seed: sp.seed,
        };
        params.validate()?;
        Ok(params)
    }

    /// Applies a partial update: first the preset (which reloads key, mode, tempo and intensity
    /// from it), then every explicit field. All or nothing: on error `self` is unchanged.
    pub fn apply(&mut self, update: &ParamUpdate) -> Result<(), ParamError> {
        let mut next = *self;
        if let Some(name) = &update.preset {
            let id = PresetId::from_name(name).ok_or_else(|| ParamError::Preset(name.clone()))?;
            next = Params::from_preset(id, self.seed);
        }
        if let Some(key) = &update.key {
            next.key = key.parse().map_err(|_| ParamError::Key(key.clone()))?;
        }
        if let Some(mode) = &update.mode {
            next.mode = mode.parse().map_err(|_| ParamError::Mode(mode.clone()))?;
        }
        if let Some(bpm) = update.bpm {
            if !BPM_RANGE.contains(&(bpm as f32)) || !bpm.is_finite() {
                return Err(ParamError::Bpm(bpm));
            }
            next.bpm = bpm as f32;
        }
        if let Some(intensity) = update.intensity {
            if !INTENSITY_RANGE.contains(&(intensity as f32)) || !intensity.is_finite() {
                return Err(ParamError::Intensity(intensity));
            }
            next.intensity = intensity as f32;
        }
        if let Some(seed) = update.seed {
            next.seed = seed;
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

impl From<&Params> for StationParams {
    fn from(p: &Params) -> Self {
        p.to_station()
    }
}

impl TryFrom<&StationParams> for Params {
    type Error = ParamError;
    fn try_from(sp: &StationParams) -> Result<Self, ParamError> {
        Params::from_station(sp)
    }
}

/// A partial change of parameters, as the gateway receives it, e.g.
/// `{"preset":"focus","key":"D","mode":"dorian","bpm":60,"intensity":0.5,"seed":42}`.
/// Absent fields are left as they are; unknown fields are rejected so typos do not pass silently.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamUpdate {
    /// Preset name; loads its key, mode, tempo and intensity before the other fields apply.
    pub preset: Option<String>,
    /// Key name, e.g. `Eb`.
    pub key: Option<String>,
    /// Mode name, e.g. `dorian`.
    pub mode: Option<String>,
    /// Tempo.
    pub bpm: Option<f64>,
    /// Intensity.
    pub intensity: Option<f64>,
    /// Seed.
    pub seed: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: &str) -> ParamUpdate {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn full_update_from_json() {
        let mut p = Params::from_preset(PresetId::from_name("bright").unwrap(), 1);
        p.apply(&update(
            r#"{"preset":"focus","key":"D","mode":"dorian","bpm":60,"intensity":0.5,"seed":42}"#,
        ))
        .unwrap();
        assert_eq!(p, Params::from_preset(PresetId::FOCUS, 42));
    }

    #[test]
    fn explicit_fields_override_the_preset() {
        let mut p = Params::default();
        p.apply(&update(r#"{"preset":"sleep","key":"eb","bpm":50}"#))
            .unwrap();
        assert_eq!(p.preset.name(), "sleep");
        assert_eq!(p.key.name(), "Eb");
        assert_eq!(p.bpm, 50.0);
        assert_eq!(p.mode, Mode::Pentatonic);
    }

    #[test]
    fn errors_name_the_field_and_range_and_change_nothing() {
        let before = Params::default();
        let cases = [
            (r#"{"bpm":300}"#, "bpm must be between 40 and 120, got 300"),
            (
                r#"{"bpm":39.5}"#,
                "bpm must be between 40 and 120, got 39.5",
            ),
            (
                r#"{"intensity":1.5}"#,
                "intensity must be between 0 and 1, got 1.5",
            ),
            (
                r#"{"key":"H"}"#,
                r#"key must be a note name from A to G with an optional # or b (e.g. C, F#, Eb), got "H""#,
            ),
            (
                r#"{"mode":"locrian"}"#,
                r#"mode must be one of ionian, dorian, phrygian, lydian, mixolydian, aeolian, pentatonic, major, minor, got "locrian""#,
            ),
            (
                r#"{"preset":"party"}"#,
                r#"preset must be one of focus, calm, sleep, bright, dream, night, got "party""#,
            ),
            // All or nothing: the valid key must not land when the bpm is wrong.
            (
                r#"{"key":"F#","bpm":10}"#,
                "bpm must be between 40 and 120, got 10",
            ),
        ];
        for (json, msg) in cases {
            let mut p = before;
            let err = p.apply(&update(json)).unwrap_err();
            assert_eq!(err.to_string(), msg);
            assert_eq!(p, before, "{json}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<ParamUpdate>(r#"{"tempo":60}"#).is_err());
    }

    #[test]
    fn station_params_round_trip_and_validate() {
        for preset in crate::presets::presets() {
            let p = Params::from_preset(PresetId::from_name(preset.name).unwrap(), 7);
            let sp = StationParams::from(&p);
            assert_eq!(Params::try_from(&sp).unwrap(), p);
        }
        let mut sp = Params::default().to_station();
        sp.mode = 9;
        assert_eq!(
            Params::from_station(&sp).unwrap_err().to_string(),
            "mode index must be between 0 and 6, got 9"
        );
        sp.mode = 0;
        sp.bpm = 300.0;
        assert_eq!(
            Params::from_station(&sp).unwrap_err(),
            ParamError::Bpm(300.0)
        );
        sp.bpm = f32::NAN;
        assert!(Params::from_station(&sp).is_err());
    }

    #[test]
    fn params_serialise_with_names() {
        let json = serde_json::to_value(Params::default()).unwrap();
        assert_eq!(json["key"], "D");
        assert_eq!(json["mode"], "dorian");
        assert_eq!(json["preset"], "focus");
    }
}
