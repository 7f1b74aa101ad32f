//! SoundFont instruments: the station's notes played by rustysynth (a pure-Rust SF2 synthesizer)
//! instead of the built-in instruments, chosen with `--soundfont PATH`.
//!
//! Each part plays on its own MIDI channel (percussion on channel 10, whose GM drum numbers
//! composer already uses) with the General MIDI program composer names for the note's instrument
//! (`composer::instruments::gm_program`). The SoundFont is loaded and checked once, up front
//! ([`SoundFontBank::load`]); a station then owns a [`SoundFontVoices`] whose synthesizer,
//! note-off table and buffers are all allocated at creation, so rendering never allocates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};
use shm_proto::{NoteEvent, Part, SAMPLE_RATE};

/// Notes whose note-off can be pending at once; beyond that the oldest note is released early.
pub const MAX_HELD: usize = 256;

/// Why a SoundFont could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SoundFontError {
    /// The file could not be opened or read.
    #[error("cannot read SoundFont {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a usable SF2 SoundFont.
    #[error("cannot load SoundFont {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What rustysynth reported.
        reason: String,
    },
}

/// A loaded, validated SoundFont, shared read-only by every station.
#[derive(Clone)]
pub struct SoundFontBank {
    /// The parsed font (samples included).
    font: Arc<SoundFont>,
    /// Where it came from, for logs.
    path: PathBuf,
}

impl std::fmt::Debug for SoundFontBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoundFontBank")
            .field("path", &self.path)
            .field("presets", &self.font.get_presets().len())
            .finish()
    }
}

impl SoundFontBank {
    /// Reads and parses `path`, and builds one synthesizer from it, so every error shows here
    /// (at start-up) rather than when a station opens.
    pub fn load(path: &Path) -> Result<Self, SoundFontError> {
        let mut file = std::fs::File::open(path).map_err(|source| SoundFontError::Read {
            path: path.to_owned(),
            source,
        })?;
        let font = SoundFont::new(&mut file).map_err(|e| SoundFontError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if font.get_presets().is_empty() {
            return Err(SoundFontError::Invalid {
                path: path.to_owned(),
                reason: "it holds no presets".into(),
            });
        }
        let bank = SoundFontBank {
            font: Arc::new(font),
            path: path.to_owned(),
        };
        bank.synthesizer()?;
        Ok(bank)
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A synthesizer at the system rate, reverb and chorus on.
    fn synthesizer(&self) -> Result<Synthesizer, SoundFontError> {
        let mut settings = SynthesizerSettings::new(SAMPLE_RATE as i32);
        settings.enable_reverb_and_chorus = true;
        Synthesizer::new(&self.font, &settings).map_err(|e| SoundFontError::Invalid {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }
}

/// MIDI channel of a part (0-based; 9 is the GM drum channel), as in composer's MIDI export.
pub fn channel_of(part: Part) -> u8 {
    match part {
        Part::Pad => 0,
        Part::Lead => 1,
        Part::Bass => 2,
        Part::Texture => 3,
        Part::Percussion => 9,
    }
}

/// A note waiting for its note-off.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Station frame of the note-off.
    off_at: u64,
    /// MIDI channel.
    channel: u8,
    /// MIDI key.
    key: u8,
}

/// One station's SoundFont synthesizer.
pub struct SoundFontVoices {
    /// rustysynth's synthesizer (its voices, reverb and chorus).
    synth: Synthesizer,
    /// Pending note-offs (unordered; `held` of them are valid).
    held: Box<[Held; MAX_HELD]>,
    /// Valid entries of `held`.
    held_len: usize,
    /// Program last sent per channel (-1: none yet).
    program: [i16; 16],
    /// Notes that had to be released early because `held` was full.
    forced_offs: u64,
}

impl std::fmt::Debug for SoundFontVoices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoundFontVoices")
            .field("held", &self.held_len)
            .field("forced_offs", &self.forced_offs)
            .finish()
    }
}

impl SoundFontVoices {
    /// A synthesizer for one station (allocates everything it will use).
    pub fn new(bank: &SoundFontBank) -> Self {
        let synth = bank
            .synthesizer()
            .expect("settings were validated when the SoundFont was loaded");
        SoundFontVoices {
            synth,
            held: Box::new(
                [Held {
                    off_at: 0,
                    channel: 0,
                    key: 0,
                }; MAX_HELD],
            ),
            held_len: 0,
            program: [-1; 16],
            forced_offs: 0,
        }
    }

    /// Starts `ev` now (`now` is the station frame); its note-off is scheduled.
    pub fn note_on(&mut self, ev: &NoteEvent, now: u64) {
        let Some(part) = Part::from_u8(ev.part) else {
            return;
        };
        let ch = channel_of(part);
        if part != Part::Percussion {
            let p = composer::instruments::gm_program(part, ev.instrument);
            if self.program[ch as usize] != i16::from(p) {
                self.program[ch as usize] = i16::from(p);
                self.synth
                    .process_midi_message(i32::from(ch), 0xC0, i32::from(p), 0);
            }
        }
        if self.held_len == MAX_HELD {
            // Release the note that would end first to make room.
            let i = self.next_off_index().unwrap_or(0);
            let h = self.held[i];
            self.synth.note_off(i32::from(h.channel), i32::from(h.key));
            self.held[i] = self.held[self.held_len - 1];
            self.held_len -= 1;
            self.forced_offs += 1;
        }
        let key = ev.pitch.min(127);
        self.synth.note_on(
            i32::from(ch),
            i32::from(key),
            i32::from(ev.velocity.clamp(1, 127)),
        );
        self.held[self.held_len] = Held {
            off_at: now + u64::from(ev.duration_frames.max(1)),
            channel: ch,
            key,
        };
        self.held_len += 1;
    }

    fn next_off_index(&self) -> Option<usize> {
        self.held[..self.held_len]
            .iter()
            .enumerate()
            .min_by_key(|(_, h)| h.off_at)
            .map(|(i, _)| i)
    }

    /// Station frame of the next pending note-off.
    pub fn next_off(&self) -> Option<u64> {
        self.next_off_index().map(|i| self.held[i].off_at)
    }

    /// Sends every note-off due at or before `now`.
    pub fn release_due(&mut self, now: u64) {
        let mut i = 0;
        while i < self.held_len {
            let h = self.held[i];
            if h.off_at <= now {
                self.synth.note_off(i32::from(h.channel), i32::from(h.key));
                self.held[i] = self.held[self.held_len - 1];
                self.held_len -= 1;
            } else {
                i += 1;
            }
        }
    }

    /// Renders `l.len()` frames (reverb and chorus included) into `l` and `r`.
    pub fn render(&mut self, l: &mut [f32], r: &mut [f32]) {
        self.synth.render(l, r);
    }

    /// Notes released early because too many were held.
    pub fn forced_offs(&self) -> u64 {
        self.forced_offs
    }
}
