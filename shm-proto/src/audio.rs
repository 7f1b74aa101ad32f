//! The audio ring of one station: one writer (synthd), any number of reader processes (streamd
//! instances), each registered in the segment with its own cursor. Fixed slots of one 100 ms chunk.
//!
//! Per-slot stamps (a seqlock) tell a reader the state of the slot it wants, for chunk `n`:
//! stamp `2n+1` being written, `2n+2` ready, anything smaller not yet written, anything larger
//! overwritten (the reader lagged and resyncs). The writer never waits for readers.
//!
//! The segment layout is in `ring.rs` (private): header, writer line, waiter line, a reader table
//! of [`READER_CAPACITY`] entries, then the slots.

use std::time::Duration;

use crate::control::StationParams;
use crate::error::{ShmError, ShmResult};
use crate::header::{self, Geometry, Opened, SegmentKind};
use crate::layout::CHUNK_SAMPLES;
use crate::mapping::unlink;
use crate::process::{ProcessId, monotonic_ns, realtime_ns};
use crate::reader_table as table;
use crate::ring::{
    META_WORDS, PAYLOAD_WORDS, Ring, SLOT_WORDS, Slot, check_geometry, futex_wait, futex_wake, pack,
};
use crate::segment::Namespace;
use crate::slot::SlotRead;
use crate::sync::Ordering;

pub use crate::reader_table::READER_CAPACITY;

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
    ring: Ring,
    /// Local copy of the seq the next publish uses (the shared word lags it during a publish).
    next_seq: u64,
    /// Who we recorded as owner, to release it on drop.
    me: ProcessId,
}

impl AudioWriter {
    /// Creates the ring for `station` with `slots` slots (a power of two, >= 8), or adopts a valid
    /// one whose writer is dead (bumping the epoch and continuing its sequence), or replaces an
    /// invalid one. Fails if a live writer owns it.
    pub fn create_or_adopt(ns: &Namespace, station: u32, slots: u32) -> ShmResult<Self> {
        let name = ns.audio_name(station);
        if slots < 8 || !slots.is_power_of_two() || slots > 1 << 16 {
            let message = format!("slot count {slots} must be a power of two in 8..=65536");
            return Err(ShmError::Invalid {
                segment: name,
                message,
            });
        }
        let g = Geometry {
            capacity: slots as u64,
            record_size: size_of::<Slot>() as u64,
            aux: READER_CAPACITY as u64,
        };
        let (map, opened) =
            header::create_or_adopt(&name, SegmentKind::Audio, &g, check_geometry, |_| {})?;
        let ring = Ring { map, slots };
        let mut next_seq = ring.next_seq();
        if opened == Opened::Adopted {
            // The dead writer may have stamped a chunk ready without getting to publish `next_seq`.
            for i in 0..slots as u64 {
                let stamp = ring.slot(i).stamp();
                if stamp >= 2 && stamp % 2 == 0 {
                    next_seq = next_seq.max(stamp / 2);
                }
            }
            // SYNC POINT: pairs with readers' Acquire loads in `Ring::next_seq`.
            ring.ring()
                .writer
                .next_seq
                .store(next_seq, Ordering::Release);
        }
        Ok(Self {
            ring,
            next_seq,
            me: ProcessId::current(),
        })
    }
    /// Sequence number the next `publish` will use.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
    /// Writer epoch (incremented on every adopt).
    pub fn epoch(&self) -> u64 {
        self.ring.header().epoch()
    }
    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.ring.slots
    }
    /// Publishes one chunk (stamps, copies, publishes, wakes waiting readers). Never blocks, never
    /// allocates. Returns the seq used.
    pub fn publish(
        &mut self,
        samples: &[i16; CHUNK_SAMPLES],
        params: StationParams,
        generation: u64,
    ) -> u64 {
        self.publish_inner(samples, params, generation, None)
    }

    /// Test hook for crash tests: like [`AudioWriter::publish`], but calls `pause` with the slot
    /// half written (stamp odd), then finishes. A process killed inside `pause` (or a `pause` that
    /// panics) leaves a half-written slot behind, as a crashed writer would.
    #[doc(hidden)]
    pub fn publish_interrupted(
        &mut self,
        samples: &[i16; CHUNK_SAMPLES],
        params: StationParams,
        generation: u64,
        pause: &mut dyn FnMut(),
    ) -> u64 {
        self.publish_inner(samples, params, generation, Some(pause))
    }

    fn publish_inner(
        &mut self,
        samples: &[i16; CHUNK_SAMPLES],
        params: StationParams,
        generation: u64,
        mut pause: Option<&mut dyn FnMut()>,
    ) -> u64 {
        let seq = self.next_seq;
        let epoch = self.epoch();
        let meta = [
            seq,
            realtime_ns(),
            monotonic_ns(),
            params.seed,
            params.bpm.to_bits() as u64 | (params.intensity.to_bits() as u64) << 32,
            u32::from_le_bytes([params.key, params.mode, params.preset, params._reserved]) as u64,
            generation,
            epoch,
        ];
        self.ring.slot(seq).write(seq, |words| {
            let (head, payload) = words.split_at(META_WORDS);
            for (w, m) in head.iter().zip(meta) {
                w.store(m, Ordering::Relaxed);
            }
            let half = PAYLOAD_WORDS / 2;
            for (k, (w, s)) in payload.iter().zip(samples.chunks_exact(4)).enumerate() {
                if k == half
                    && let Some(pause) = pause.take()
                {
                    pause();
                }
                w.store(pack(s), Ordering::Relaxed);
            }
        });
        let ring = self.ring.ring();
        // SYNC POINT: pairs with readers' Acquire loads of `next_seq` (after the slot is ready).
        ring.writer.next_seq.store(seq + 1, Ordering::Release);
        // SYNC POINT: SeqCst with the waiter count, against readers' SeqCst increment of `waiters`
        // then load of the counter in `wait`: either they see the new count or we see them.
        ring.writer.publish_count.fetch_add(1, Ordering::SeqCst);
        if ring.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(&ring.writer.publish_count);
        }
        self.ring.header().beat();
        self.next_seq = seq + 1;
        seq
    }
    /// Heartbeat without publishing (e.g. while paused).
    pub fn heartbeat(&self) {
        self.ring.header().beat();
    }
    /// Frees registrations of readers whose process is gone; returns how many.
    pub fn reap_dead_readers(&self) -> usize {
        table::reap_dead(self.ring.readers())
    }
    /// Registered readers.
    pub fn readers(&self) -> Vec<ReaderInfo> {
        table::list(self.ring.readers())
    }
    /// Unlinks the segment name (clean shutdown). Mapped readers keep their mapping.
    pub fn unlink(&self) -> ShmResult<()> {
        unlink(self.ring.map.name())
    }
}

impl Drop for AudioWriter {
    fn drop(&mut self) {
        self.ring.header().release_owner(self.me);
    }
}

/// A reader's end of a station ring, registered in the segment by pid + start time.
#[derive(Debug)]
pub struct AudioReader {
    ring: Ring,
    /// Our entry in the reader table.
    entry: usize,
    me: ProcessId,
    cursor: u64,
    /// Whole-slot copy buffer: `out` is written only once a copy is known whole.
    scratch: Box<[u64]>,
    /// CLOCK_MONOTONIC ns at which the last chunk read was published.
    last_publish_mono_ns: u64,
}

impl AudioReader {
    /// Attaches to `station`'s ring, validates the header, registers this process as a reader and
    /// places the cursor at the latest published chunk (or 0 on an empty ring).
    pub fn attach(ns: &Namespace, station: u32) -> ShmResult<Self> {
        let ring = Ring::attach(&ns.audio_name(station))?;
        let me = ProcessId::current();
        let cursor = ring.next_seq().saturating_sub(1);
        let entry = ring.register(me, cursor)?;
        let scratch = vec![0u64; SLOT_WORDS].into_boxed_slice();
        Ok(Self {
            ring,
            entry,
            me,
            cursor,
            scratch,
            last_publish_mono_ns: 0,
        })
    }
    /// Next seq this reader will read.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }
    /// Moves the cursor (clamped to what the ring still holds on the next read).
    pub fn seek(&mut self, seq: u64) {
        self.cursor = seq;
    }
    /// Seq of the newest published chunk, `None` on an empty ring.
    pub fn latest_seq(&self) -> Option<u64> {
        self.ring.next_seq().checked_sub(1)
    }
    /// Seq of the oldest chunk still intact in the ring.
    pub fn oldest_seq(&self) -> u64 {
        self.ring.oldest(self.ring.next_seq())
    }
    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.ring.slots
    }
    /// CLOCK_MONOTONIC ns at which the writer published the last chunk this reader got (latency
    /// measurements; 0 before the first chunk).
    pub fn last_publish_mono_ns(&self) -> u64 {
        self.last_publish_mono_ns
    }
    /// Copies the chunk at the cursor into `out` if it is ready and whole (seqlock read).
    pub fn read_next(&mut self, out: &mut [i16; CHUNK_SAMPLES]) -> ReadOutcome {
        let seq = self.cursor;
        let scratch = &mut self.scratch;
        let got = self.ring.slot(seq).read(seq, |words| {
            for (d, w) in scratch.iter_mut().zip(words) {
                *d = w.load(Ordering::Relaxed);
            }
        });
        match got {
            // The meta seq always matches a whole copy; checked anyway so a corrupt segment can
            // never hand out the wrong chunk.
            SlotRead::Ready if self.scratch[0] == seq => {
                let m = &self.scratch[..META_WORDS];
                let [key, mode, preset, reserved] = (m[5] as u32).to_le_bytes();
                let meta = ChunkMeta {
                    seq,
                    publish_unix_ns: m[1],
                    params: StationParams {
                        seed: m[3],
                        bpm: f32::from_bits(m[4] as u32),
                        intensity: f32::from_bits((m[4] >> 32) as u32),
                        key,
                        mode,
                        preset,
                        _reserved: reserved,
                    },
                    generation: m[6],
                    epoch: m[7],
                };
                self.last_publish_mono_ns = m[2];
                for (o, w) in out.chunks_exact_mut(4).zip(&self.scratch[META_WORDS..]) {
                    for (k, s) in o.iter_mut().enumerate() {
                        *s = (w >> (16 * k)) as u16 as i16;
                    }
                }
                self.cursor = seq + 1;
                self.ring.readers()[self.entry].note_cursor(self.cursor);
                ReadOutcome::Chunk(meta)
            }
            SlotRead::Ready | SlotRead::NotYet => ReadOutcome::NotYet,
            SlotRead::Overwritten { by_seq } => {
                let resume_at = self
                    .ring
                    .oldest(self.ring.next_seq())
                    .max((by_seq + 1).saturating_sub(self.ring.slots as u64))
                    .max(seq + 1);
                self.cursor = resume_at;
                self.ring.readers()[self.entry].note_cursor(resume_at);
                ReadOutcome::Lagged {
                    missed: resume_at - seq,
                    resume_at,
                }
            }
        }
    }
    /// Blocks up to `timeout` until a chunk newer than the cursor may be ready (futex on a publish
    /// counter; spurious wake-ups possible). Returns immediately if one is ready.
    pub fn wait(&self, timeout: Duration) {
        let ring = self.ring.ring();
        if self.ring.next_seq() > self.cursor {
            return;
        }
        // SYNC POINT: SeqCst against `publish`'s counter increment then waiter load.
        ring.waiters.fetch_add(1, Ordering::SeqCst);
        // SYNC POINT: the futex compares against this value, so a publish after it wakes us or
        // makes FUTEX_WAIT return at once.
        let seen = ring.writer.publish_count.load(Ordering::SeqCst);
        if self.ring.next_seq() <= self.cursor {
            futex_wait(&ring.writer.publish_count, seen, timeout);
        }
        // SYNC POINT: pairs with the increment above.
        ring.waiters.fetch_sub(1, Ordering::SeqCst);
    }
    /// Health of the writer.
    pub fn writer_health(&self, stall_after: Duration) -> WriterHealth {
        self.ring.header().health(stall_after)
    }
    /// Writer epoch as seen in the mapped segment.
    pub fn epoch(&self) -> u64 {
        self.ring.header().epoch()
    }
    /// Random id of the mapped segment (changes when the name is replaced by a new segment).
    pub fn segment_id(&self) -> u64 {
        self.ring.header().segment_id()
    }
    /// Re-opens the segment by name; if it is a different segment from the mapped one (a restarted
    /// writer replaced it), switches to it, re-registers, keeps the cursor, returns `Ok(true)`.
    /// `Ok(false)` if the name still points at our segment or at nothing. The cursor is kept
    /// unless the new ring has not got that far (a fresh ring restarts at 0), then it moves to
    /// the new ring's next chunk.
    pub fn reattach_if_replaced(&mut self) -> ShmResult<bool> {
        let ring = match Ring::attach(self.ring.map.name()) {
            Ok(ring) => ring,
            Err(ShmError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if ring.header().segment_id() == self.segment_id() {
            return Ok(false);
        }
        let next = ring.next_seq();
        if self.cursor > next {
            self.cursor = next;
        }
        let entry = ring.register(self.me, self.cursor)?;
        table::deregister(self.ring.readers(), self.entry, self.me);
        self.ring = ring;
        self.entry = entry;
        Ok(true)
    }
}

impl Drop for AudioReader {
    fn drop(&mut self) {
        table::deregister(self.ring.readers(), self.entry, self.me);
    }
}

#[cfg(all(test, not(loom)))]
#[path = "audio_tests.rs"]
mod tests;
