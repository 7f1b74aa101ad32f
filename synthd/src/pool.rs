//! The preallocated voice pool with stealing.
//!
//! When every voice sounds, a new note takes the oldest voice already in release, else the
//! quietest (oldest on ties). The stolen sound is not cut: it is copied into one of a few fade
//! slots and faded out over a few milliseconds, so stealing never clicks.

use crate::envelope::Stage;
use crate::osc::Tables;
use crate::voice::Voice;

/// Voices for notes.
pub const POOL_VOICES: usize = 64;
/// Extra slots where stolen voices fade out.
pub const FADE_SLOTS: usize = 8;

/// All voices of one station, allocated once.
#[derive(Debug)]
pub struct VoicePool {
    /// `POOL_VOICES` note voices followed by `FADE_SLOTS` fade slots.
    voices: Box<[Voice]>,
    /// Slots that have ever held a voice end before this index (the first free slot is always
    /// taken, so a station with a dozen voices scans a dozen slots per segment, not 72; a
    /// steal opens the fade slots for good).
    live_end: usize,
    /// Notes that took a voice from another (for tests and metrics).
    steals: u64,
}

impl VoicePool {
    /// Allocates every voice.
    pub fn new(tables: &'static Tables) -> Self {
        VoicePool {
            voices: vec![Voice::idle(tables); POOL_VOICES + FADE_SLOTS].into_boxed_slice(),
            live_end: 0,
            steals: 0,
        }
    }

    /// Every slot.
    pub fn all_mut(&mut self) -> &mut [Voice] {
        &mut self.voices
    }

    /// The slots that may sound, for rendering: every active voice is in this prefix of
    /// [`Self::all_mut`] (same indices).
    pub fn live_mut(&mut self) -> &mut [Voice] {
        &mut self.voices[..self.live_end]
    }

    /// Sounding voices (fade slots included).
    pub fn active(&self) -> usize {
        self.voices.iter().filter(|v| v.is_active()).count()
    }

    /// Sounding voices of `part` (fade slots excluded).
    pub fn active_in_part(&self, part: u8) -> usize {
        self.voices[..POOL_VOICES]
            .iter()
            .filter(|v| v.is_active() && v.part == part)
            .count()
    }

    /// Notes that had to steal a voice so far.
    pub fn steals(&self) -> u64 {
        self.steals
    }

    /// Silences everything at once (station reset).
    pub fn clear(&mut self, tables: &'static Tables) {
        self.voices
            .iter_mut()
            .for_each(|v| *v = Voice::idle(tables));
    }

    /// A voice for a new note: a free one, else a stolen one (its sound moved to a fade slot).
    pub fn allocate(&mut self) -> &mut Voice {
        let (notes, fades) = self.voices.split_at_mut(POOL_VOICES);
        if let Some(i) = notes.iter().position(|v| !v.is_active()) {
            self.live_end = self.live_end.max(i + 1);
            return &mut self.voices[i];
        }
        self.steals += 1;
        self.live_end = POOL_VOICES + FADE_SLOTS;
        let releasing = notes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.env.stage == Stage::Release)
            .min_by_key(|(_, v)| v.started_at)
            .map(|(i, _)| i);
        let victim = releasing.unwrap_or_else(|| {
            notes
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    a.loudness()
                        .total_cmp(&b.loudness())
                        .then(a.started_at.cmp(&b.started_at))
                })
                .map(|(i, _)| i)
                .unwrap_or(0)
        });
        // Fade slot: a free one, else the quietest fade (cut; it is nearly silent by then).
        let slot = fades
            .iter()
            .position(|v| !v.is_active())
            .unwrap_or_else(|| {
                fades
                    .iter()
                    .enumerate()
                    .min_by(|(_, a), (_, b)| a.loudness().total_cmp(&b.loudness()))
                    .map(|(i, _)| i)
                    .unwrap_or(0)
            });
        fades[slot] = notes[victim];
        fades[slot].fade_out();
        &mut self.voices[victim]
    }
}
