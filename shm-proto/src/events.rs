//! The lossless note-event queue from composer to synthd: one per station, single producer,
//! single consumer, fixed-size records. The producer never overwrites: when the queue is full
//! `push` says so and composer waits. The consumer publishes how far it has rendered
//! (`consumer_clock`, in station frames) so the producer composes only a bounded lead ahead.

use crate::error::ShmResult;
use crate::segment::Namespace;

/// Which part of the arrangement a note belongs to; synthd picks a voice per part.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// Sustained chords.
    Pad = 0,
    /// Melody (piano / electric piano).
    Lead = 1,
    /// Bass following chord roots.
    Bass = 2,
    /// Bell / texture colour.
    Texture = 3,
    /// Soft noise-based percussion.
    Percussion = 4,
}

impl Part {
    /// Decodes the wire value; `None` for anything unknown (treated as a corrupt record).
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Part::Pad,
            1 => Part::Lead,
            2 => Part::Bass,
            3 => Part::Texture,
            4 => Part::Percussion,
            _ => return None,
        })
    }
}

/// One note, timed on the station's frame clock (frames since the station started at 44.1 kHz).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteEvent {
    /// Start, in station frames.
    pub at_frame: u64,
    /// Length in frames until note-off (release follows).
    pub duration_frames: u32,
    /// [`Part`] as u8.
    pub part: u8,
    /// Instrument within the part, chosen by the preset (index into synthd's table for the part).
    pub instrument: u8,
    /// MIDI pitch 0..=127 (for percussion: the drum kind).
    pub pitch: u8,
    /// MIDI velocity 1..=127.
    pub velocity: u8,
    /// Bar index this note was composed in (for resuming a restarted composer).
    pub bar: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// Composer's end of a station's event queue.
#[derive(Debug)]
pub struct EventProducer {
    _private: (),
}

impl EventProducer {
    /// Creates the queue for `station` with `capacity` records (a power of two), or adopts / replaces
    /// a stale one as described in the crate docs.
    pub fn create_or_adopt(ns: &Namespace, station: u32, capacity: u32) -> ShmResult<Self> {
        let _ = (ns, station, capacity);
        todo!()
    }
    /// Appends one event; `Ok(false)` when full (nothing written, try again later).
    pub fn push(&mut self, ev: &NoteEvent) -> ShmResult<bool> {
        let _ = ev;
        todo!()
    }
    /// Records free right now.
    pub fn free(&self) -> u32 {
        todo!()
    }
    /// How far synthd has rendered this station, in frames (0 before it attached).
    pub fn consumer_clock(&self) -> u64 {
        todo!()
    }
    /// Producer progress stored in the segment so a restarted composer can carry on:
    /// (next bar to compose, frame where it starts).
    pub fn progress(&self) -> (u32, u64) {
        todo!()
    }
    /// Stores producer progress (call after pushing a whole bar).
    pub fn set_progress(&mut self, next_bar: u32, at_frame: u64) {
        let _ = (next_bar, at_frame);
        todo!()
    }
    /// Owner heartbeat.
    pub fn heartbeat(&self) {
        todo!()
    }
    /// Unlinks the segment name (clean shutdown or station reclaimed).
    pub fn unlink(&self) -> ShmResult<()> {
        todo!()
    }
}

/// synthd's end of a station's event queue.
#[derive(Debug)]
pub struct EventConsumer {
    _private: (),
}

impl EventConsumer {
    /// Attaches to `station`'s queue, validating the header.
    pub fn attach(ns: &Namespace, station: u32) -> ShmResult<Self> {
        let _ = (ns, station);
        todo!()
    }
    /// Next event if one is queued; never blocks, never allocates.
    pub fn peek(&self) -> Option<NoteEvent> {
        todo!()
    }
    /// Removes and returns the next event.
    pub fn pop(&mut self) -> Option<NoteEvent> {
        todo!()
    }
    /// Publishes how far this station has been rendered, in frames.
    pub fn set_clock(&mut self, frames: u64) {
        let _ = frames;
        todo!()
    }
    /// Health of the producer (composer).
    pub fn producer_health(&self, stall_after: std::time::Duration) -> crate::WriterHealth {
        let _ = stall_after;
        todo!()
    }
}
