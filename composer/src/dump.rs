//! `composer dump`: compose a number of bars offline and print them, to read or listen to the
//! music without the rest of the system.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;
use shm_proto::{NoteEvent, Part, SAMPLE_RATE};

use crate::composer::{BarInfo, Composer};
use crate::instruments::{instrument_name, part_name};
use crate::params::{ParamUpdate, Params};
use crate::presets::PresetId;

/// Output formats of `dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpFormat {
    /// One JSON object per event, one per line.
    Jsonl,
    /// A Standard MIDI File (needs `--out`).
    Midi,
}

/// Arguments of `composer dump`.
#[derive(Clone, Debug, clap::Args)]
pub struct DumpArgs {
    /// Seed of the composition.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Preset to start from.
    #[arg(long, default_value = "focus")]
    pub preset: String,
    /// Key, overriding the preset's (e.g. C, F#, Eb).
    #[arg(long)]
    pub key: Option<String>,
    /// Mode, overriding the preset's (e.g. dorian).
    #[arg(long)]
    pub mode: Option<String>,
    /// Tempo, overriding the preset's (40..=120).
    #[arg(long)]
    pub bpm: Option<f64>,
    /// Intensity, overriding the preset's (0..=1).
    #[arg(long)]
    pub intensity: Option<f64>,
    /// Number of bars to compose.
    #[arg(long, default_value_t = 16)]
    pub bars: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Jsonl)]
    pub format: DumpFormat,
    /// Output file (default: standard output; required for `midi`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl DumpArgs {
    /// The parameters these arguments select (validated).
    pub fn params(&self) -> anyhow::Result<Params> {
        let mut params = Params::from_preset(PresetId::FOCUS, self.seed);
        params.apply(&ParamUpdate {
            preset: Some(self.preset.clone()),
            key: self.key.clone(),
            mode: self.mode.clone(),
            bpm: self.bpm,
            intensity: self.intensity,
            seed: Some(self.seed),
        })?;
        Ok(params)
    }
}

/// One event as `dump --format jsonl` prints it.
#[derive(Debug, Serialize)]
pub struct DumpedEvent {
    /// Bar index, from 0.
    pub bar: u32,
    /// Position in the bar in beats, counted from 1 as musicians do (1.5 = the "and" of one).
    pub beat: f64,
    /// Start in seconds since the station started.
    pub time: f64,
    /// Part name.
    pub part: &'static str,
    /// Instrument index within the part.
    pub instrument: u8,
    /// Instrument name.
    pub instrument_name: &'static str,
    /// MIDI pitch (for percussion: the drum kind).
    pub pitch: u8,
    /// Note name, e.g. `D4` (empty for percussion).
    pub note: String,
    /// MIDI velocity.
    pub velocity: u8,
    /// Length in seconds.
    pub duration: f64,
}

/// Rounds to milliseconds (or thousandths of a beat) for readable output.
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Scientific pitch name, C4 = 60.
pub fn note_name(pitch: u8) -> String {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
    ];
    format!(
        "{}{}",
        NAMES[(pitch % 12) as usize],
        i32::from(pitch / 12) - 1
    )
}

impl DumpedEvent {
    /// The printable form of `e`, composed in the bar described by `info`.
    pub fn new(e: &NoteEvent, info: &BarInfo) -> Self {
        let part = Part::from_u8(e.part).unwrap_or(Part::Pad);
        let sr = f64::from(SAMPLE_RATE);
        DumpedEvent {
            bar: e.bar,
            beat: r3(1.0 + (e.at_frame - info.start_frame) as f64 / info.frames_per_beat()),
            time: r3(e.at_frame as f64 / sr),
            part: part_name(part),
            instrument: e.instrument,
            instrument_name: instrument_name(part, e.instrument),
            pitch: e.pitch,
            note: if part == Part::Percussion {
                String::new()
            } else {
                note_name(e.pitch)
            },
            velocity: e.velocity,
            duration: r3(f64::from(e.duration_frames) / sr),
        }
    }
}

/// Runs `dump`, writing to `stdout` unless `--out` is given.
pub fn run_dump(args: &DumpArgs, stdout: &mut dyn Write) -> anyhow::Result<()> {
    let params = args.params()?;
    let mut composer = Composer::new(params.seed, params);
    match args.format {
        DumpFormat::Jsonl => {
            let mut file;
            let out: &mut dyn Write = match &args.out {
                Some(path) => {
                    file = std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    );
                    &mut file
                }
                None => stdout,
            };
            let mut events = Vec::new();
            for _ in 0..args.bars {
                events.clear();
                let info = composer.next_bar(&mut events);
                for e in &events {
                    serde_json::to_writer(&mut *out, &DumpedEvent::new(e, &info))?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
        }
        DumpFormat::Midi => {
            let Some(path) = &args.out else {
                bail!("--format midi needs --out FILE");
            };
            let mut events = Vec::new();
            for _ in 0..args.bars {
                composer.next_bar(&mut events);
            }
            crate::midi::write_smf_file(path, &events, params.bpm)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DumpArgs {
        DumpArgs {
            seed: 1,
            preset: "focus".into(),
            key: None,
            mode: None,
            bpm: None,
            intensity: None,
            bars: 4,
            format: DumpFormat::Jsonl,
            out: None,
        }
    }

    #[test]
    fn jsonl_has_one_object_per_event_with_the_documented_fields() {
        let mut buf = Vec::new();
        run_dump(&args(), &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.lines().count() > 8);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in [
                "bar",
                "beat",
                "time",
                "part",
                "instrument",
                "pitch",
                "velocity",
                "duration",
            ] {
                assert!(v.get(field).is_some(), "{field} missing in {line}");
            }
            let beat = v["beat"].as_f64().unwrap();
            assert!((1.0..5.0).contains(&beat));
        }
    }

    #[test]
    fn bad_overrides_are_reported() {
        let mut a = args();
        a.bpm = Some(300.0);
        let err = run_dump(&a, &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "bpm must be between 40 and 120, got 300");
    }

    #[test]
    fn note_names() {
        assert_eq!(note_name(60), "C4");
        assert_eq!(note_name(62), "D4");
        assert_eq!(note_name(70), "Bb4");
    }
}
