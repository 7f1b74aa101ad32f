//! Standard MIDI File input: any SMF turned into the station's note events, so `auralis render
//! --midi-in` (and the FluidSynth comparison bench) can play a file through the engine.
//!
//! Parts come from each channel's current program (General MIDI): pianos (0-7) play the lead,
//! basses (32-39) the bass, pads (88-95) the pad, chromatic percussion (8-15) the texture, channel
//! 10 the percussion kit (its keys are GM drum numbers, as composer uses them), everything else
//! the lead. The tempo map is honoured (every tempo change, from any track), and SMPTE time
//! division is supported too.

use std::path::{Path, PathBuf};

use midly::{MetaMessage, MidiMessage, Smf, Timing, TrackEventKind};
use shm_proto::{NoteEvent, Part, SAMPLE_RATE};

/// Why a MIDI file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MidiInError {
    /// The file could not be read.
    #[error("cannot read MIDI file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a Standard MIDI File.
    #[error("cannot parse MIDI file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
}

/// The notes of a file, in time order.
#[derive(Clone, Debug, Default)]
pub struct MidiNotes {
    /// Note events on the station timeline (frame 0 = the file's start).
    pub events: Vec<NoteEvent>,
    /// Frame of the file's last event (note-off or end of track).
    pub end_frame: u64,
}

/// The part and built-in instrument index for a note on `channel` (0-based) with GM `program`.
pub fn part_for(channel: u8, program: u8) -> (Part, u8) {
    if channel == 9 {
        return (Part::Percussion, 0);
    }
    match program {
        0..=3 => (Part::Lead, 0),
        4..=7 => (Part::Lead, 1),
        8..=15 => (Part::Texture, 0),
        32..=39 => (Part::Bass, 0),
        94 => (Part::Pad, 1),
        88..=95 => (Part::Pad, 0),
        _ => (Part::Lead, 0),
    }
}

/// Reads and converts `path`.
pub fn read_midi_file(path: &Path) -> Result<MidiNotes, MidiInError> {
    let bytes = std::fs::read(path).map_err(|source| MidiInError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_midi(&bytes).map_err(|reason| MidiInError::Parse {
        path: path.to_owned(),
        reason,
    })
}

/// One timed event of any track, for merging the tracks.
struct Timed<'a> {
    tick: u64,
    track: usize,
    kind: TrackEventKind<'a>,
}

/// Converts SMF bytes.
pub fn parse_midi(bytes: &[u8]) -> Result<MidiNotes, String> {
    let smf = Smf::parse(bytes).map_err(|e| e.to_string())?;
    // Seconds per tick: metrical timing follows the tempo map, SMPTE timing is fixed.
    let (ticks_per_quarter, smpte_tick_s) = match smf.header.timing {
        Timing::Metrical(tpq) => (f64::from(tpq.as_int().max(1)), None),
        Timing::Timecode(fps, sub) => (
            1.0,
            Some(1.0 / (f64::from(fps.as_f32()) * f64::from(sub.max(1)))),
        ),
    };
    let mut all: Vec<Timed> = Vec::new();
    for (track, events) in smf.tracks.iter().enumerate() {
        let mut tick = 0u64;
        for e in events {
            tick += u64::from(e.delta.as_int());
            all.push(Timed {
                tick,
                track,
                kind: e.kind,
            });
        }
    }
    // Stable: events at one tick keep their track order.
    all.sort_by_key(|t| (t.tick, t.track));

    let sr = f64::from(SAMPLE_RATE);
    let mut us_per_quarter = 500_000.0f64;
    let (mut anchor_tick, mut anchor_s) = (0u64, 0.0f64);
    let seconds_at =
        |tick: u64, anchor_tick: u64, anchor_s: f64, us_per_quarter: f64| match smpte_tick_s {
            Some(s) => tick as f64 * s,
            None => {
                anchor_s + (tick - anchor_tick) as f64 * us_per_quarter * 1e-6 / ticks_per_quarter
            }
        };
    let mut program = [0u8; 16];
    // Sounding note per (channel, key): start frame and velocity.
    let mut sounding = vec![[None::<(u64, u8, Part, u8)>; 128]; 16];
    let mut out = MidiNotes::default();
    let bar_frames = 4 * SAMPLE_RATE as u64;
    for t in &all {
        let frame = (seconds_at(t.tick, anchor_tick, anchor_s, us_per_quarter) * sr).round() as u64;
        out.end_frame = out.end_frame.max(frame);
        match t.kind {
            TrackEventKind::Meta(MetaMessage::Tempo(us)) => {
                anchor_s = seconds_at(t.tick, anchor_tick, anchor_s, us_per_quarter);
                anchor_tick = t.tick;
                us_per_quarter = f64::from(us.as_int().max(1));
            }
            TrackEventKind::Midi { channel, message } => {
                let ch = channel.as_int() as usize;
                let mut end = |key: usize, out: &mut MidiNotes| {
                    if let Some((at, velocity, part, instrument)) = sounding[ch][key].take() {
                        out.events.push(NoteEvent {
                            at_frame: at,
                            duration_frames: (frame - at).clamp(1, u64::from(u32::MAX)) as u32,
                            part: part as u8,
                            instrument,
                            pitch: key as u8,
                            velocity,
                            bar: (at / bar_frames) as u32,
                            _reserved: 0,
                        });
                    }
                };
                match message {
                    MidiMessage::ProgramChange { program: p } => program[ch] = p.as_int(),
                    MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                        let key = key.as_int() as usize;
                        end(key, &mut out);
                        let (part, instrument) = part_for(ch as u8, program[ch]);
                        sounding[ch][key] = Some((frame, vel.as_int(), part, instrument));
                    }
                    MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                        end(key.as_int() as usize, &mut out);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // Notes never switched off end with the file.
    let end_frame = out.end_frame;
    for keys in sounding.iter_mut() {
        for (key, slot) in keys.iter_mut().enumerate() {
            if let Some((at, velocity, part, instrument)) = slot.take() {
                out.events.push(NoteEvent {
                    at_frame: at,
                    duration_frames: (end_frame - at).clamp(1, u64::from(u32::MAX)) as u32,
                    part: part as u8,
                    instrument,
                    pitch: key as u8,
                    velocity,
                    bar: (at / bar_frames) as u32,
                    _reserved: 0,
                });
            }
        }
    }
    out.events.sort_by_key(|e| e.at_frame);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(at: u64, dur: u32, part: Part, instrument: u8, pitch: u8) -> NoteEvent {
        NoteEvent {
            at_frame: at,
            duration_frames: dur,
            part: part as u8,
            instrument,
            pitch,
            velocity: 80,
            bar: 0,
            _reserved: 0,
        }
    }

    #[test]
    fn composer_export_round_trips() {
        let sr = u64::from(SAMPLE_RATE);
        let events = vec![
            note(0, 4 * sr as u32, Part::Pad, 0, 57),
            note(0, 4 * sr as u32, Part::Pad, 1, 60),
            note(sr, sr as u32, Part::Lead, 1, 72),
            note(sr / 2, (sr / 4) as u32, Part::Percussion, 0, 42),
            note(2 * sr, sr as u32, Part::Bass, 0, 45),
        ];
        // 90 BPM: ticks and frames are not in a whole ratio, so this checks the tempo maths.
        let smf = composer::midi::write_smf(&events, 90.0);
        let got = parse_midi(&smf).unwrap();
        assert_eq!(got.events.len(), events.len());
        for want in &events {
            let g = got
                .events
                .iter()
                .find(|g| g.pitch == want.pitch && g.part == want.part)
                .unwrap_or_else(|| panic!("missing {want:?}"));
            assert!(
                g.at_frame.abs_diff(want.at_frame) <= 100,
                "{g:?} vs {want:?}"
            );
            assert!(u64::from(g.duration_frames).abs_diff(u64::from(want.duration_frames)) <= 100);
            assert_eq!(g.instrument, want.instrument);
        }
    }

    #[test]
    fn programs_map_to_parts() {
        assert_eq!(part_for(0, 0), (Part::Lead, 0));
        assert_eq!(part_for(1, 33), (Part::Bass, 0));
        assert_eq!(part_for(2, 89), (Part::Pad, 0));
        assert_eq!(part_for(3, 11), (Part::Texture, 0));
        assert_eq!(part_for(9, 0), (Part::Percussion, 0));
        assert_eq!(part_for(4, 48), (Part::Lead, 0));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_midi(b"not a midi file").is_err());
    }
}
