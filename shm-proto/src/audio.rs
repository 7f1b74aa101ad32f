//! The audio ring of one station: one writer (synthd), any number of reader processes (streamd
//! instances), each registered in the segment with its own cursor. Fixed slots of one 100 ms chunk.
//!
//! Per-slot stamps (a seqlock) tell a reader the state of the slot it wants, for chunk `n`:
//! stamp `2n+1` being written, `2n+2` ready, anything smaller not yet written, anything larger
//! overwritten (the reader lagged and resyncs). The writer never waits for readers.

use std::time::Duration;

use crate::control::StationParams;
use crate::error::ShmResult;
use crate::layout::CHUNK_SAMPLES;
use crate::segment::Namespace;

/// What a slot header carries besides the samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkMeta {
    /// Contiguous per station, continued across writer restarts.
    pub seq: u64,
    /// CLOCK_REALTIME nanoseconds since the Unix epoch when synthd published the chunk.
    pub publish_unix_ns: u64,
    /// Parameters the chunk was rendered with.
    pub params: StationParams,
    /// Control-block generation of those parameters.
    pub generation: u64,
    /// Writer epoch that produced the chunk.
    pub epoch: u64,
}

/// Result of one non-blocking read attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadOutcome {
    /// The chunk at the cursor was copied out whole; the cursor advanced.
    Chunk(ChunkMeta),
    /// The chunk at the cursor is not published yet (or is being written).
    NotYet,
    /// The chunk at the cursor was overwritten before it was read: `missed` chunks are gone and the
    /// cursor moved to `resume_at`, the oldest chunk still intact.
    Lagged {
        /// Chunks lost.
        missed: u64,
        /// New cursor.
        resume_at: u64,
    },
}

/// How a peer process looks from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterHealth {
    /// Heartbeat fresh.
    Alive,
    /// Process exists but its heartbeat is older than the threshold (e.g. SIGSTOP).
    Stalled {
        /// Time since the last heartbeat.
        silent_for: Duration,
    },
    /// The owning process is gone (pid + start time no longer match a live process).
    Dead,
}

/// One registered reader as seen in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderInfo {
    /// Process id.
    pub pid: u32,
    /// Its start time (clock ticks since boot), with the pid identifying the process uniquely.
    pub start_time: u64,
    /// Next chunk seq this reader will read.
    pub cursor: u64,
}

/// synthd's end of a station ring.
#[derive(Debug)]
pub struct AudioWriter {
    _private: (),
}

impl AudioWriter {
    /// Creates the ring for `station` with `slots` slots (a power of two, >= 8), or adopts a valid
    /// one whose writer is dead (bumping the epoch and continuing its sequence), or replaces an
    /// invalid one. Fails if a live writer owns it.
    pub fn create_or_adopt(ns: &Namespace, station: u32, slots: u32) -> ShmResult<Self> {
        let _ = (ns, station, slots);
        todo!()
    }
    /// Sequence number the next `publish` will use.
    pub fn next_seq(&self) -> u64 {
        todo!()
    }
    /// Writer epoch (incremented on every adopt).
    pub fn epoch(&self) -> u64 {
        todo!()
    }
    /// Publishes one chunk (stamps, copies, publishes, wakes waiting readers). Never blocks, never
    /// allocates. Returns the seq used.
    pub fn publish(
        &mut self,
        samples: &[i16; CHUNK_SAMPLES],
        params: StationParams,
        generation: u64,
    ) -> u64 {
        let _ = (samples, params, generation);
        todo!()
    }
    /// Heartbeat without publishing (e.g. while paused).
    pub fn heartbeat(&self) {
        todo!()
    }
    /// Frees registrations of readers whose process is gone; returns how many.
    pub fn reap_dead_readers(&self) -> usize {
        todo!()
    }
    /// Registered readers.
    pub fn readers(&self) -> Vec<ReaderInfo> {
        todo!()
    }
    /// Unlinks the segment name (clean shutdown). Mapped readers keep their mapping.
    pub fn unlink(&self) -> ShmResult<()> {
        todo!()
    }
}

/// A reader's end of a station ring, registered in the segment by pid + start time.
#[derive(Debug)]
pub struct AudioReader {
    _private: (),
}

impl AudioReader {
    /// Attaches to `station`'s ring, validates the header, registers this process as a reader and
    /// places the cursor at the latest published chunk (or 0 on an empty ring).
    pub fn attach(ns: &Namespace, station: u32) -> ShmResult<Self> {
        let _ = (ns, station);
        todo!()
    }
    /// Next seq this reader will read.
    pub fn cursor(&self) -> u64 {
        todo!()
    }
    /// Moves the cursor (clamped to what the ring still holds on the next read).
    pub fn seek(&mut self, seq: u64) {
        let _ = seq;
        todo!()
    }
    /// Seq of the newest published chunk, `None` on an empty ring.
    pub fn latest_seq(&self) -> Option<u64> {
        todo!()
    }
    /// Seq of the oldest chunk still intact in the ring.
    pub fn oldest_seq(&self) -> u64 {
        todo!()
    }
    /// Number of slots.
    pub fn slots(&self) -> u32 {
        todo!()
    }
    /// Copies the chunk at the cursor into `out` if it is ready and whole (seqlock read).
    pub fn read_next(&mut self, out: &mut [i16; CHUNK_SAMPLES]) -> ReadOutcome {
        let _ = out;
        todo!()
    }
    /// Blocks up to `timeout` until a chunk newer than the cursor may be ready (futex on a publish
    /// counter; spurious wake-ups possible). Returns immediately if one is ready.
    pub fn wait(&self, timeout: Duration) {
        let _ = timeout;
        todo!()
    }
    /// Health of the writer.
    pub fn writer_health(&self, stall_after: Duration) -> WriterHealth {
        let _ = stall_after;
        todo!()
    }
    /// Writer epoch as seen in the mapped segment.
    pub fn epoch(&self) -> u64 {
        todo!()
    }
    /// Re-opens the segment by name; if it is a different segment from the mapped one (a restarted
    /// writer replaced it), switches to it, re-registers, keeps the cursor, returns `Ok(true)`.
    pub fn reattach_if_replaced(&mut self) -> ShmResult<bool> {
        todo!()
    }
}
