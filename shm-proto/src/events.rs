//! The lossless note-event queue from composer to synthd: one per station, single producer,
//! single consumer, fixed-size records. The producer never overwrites: when the queue is full
//! `push` says so and composer waits. The consumer publishes how far it has rendered
//! (`consumer_clock`, in station frames) so the producer composes only a bounded lead ahead.
//!
//! Layout: header, producer line (`tail`, progress), consumer line (`head`, clock), then
//! `capacity` records of three words. `tail` and `head` count records forever (never wrap in
//! practice); the record of count `i` lives at `i & (capacity - 1)`.

use std::time::Duration;

use crate::audio::WriterHealth;
use crate::error::{ShmError, ShmResult};
use crate::header::{self, Geometry, HEADER_LEN, SegmentHeader, SegmentKind, geometry_err};
use crate::mapping::{Mapping, ShmSafe, unlink};
use crate::process::ProcessId;
use crate::segment::Namespace;
use crate::sync::{AtomicU64, Ordering, Padded};

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

/// Words of one record on the wire.
const RECORD_WORDS: usize = 3;

/// One record: [`NoteEvent`] packed into three words.
#[repr(C)]
#[derive(Debug)]
struct Record([AtomicU64; RECORD_WORDS]);

// SAFETY: repr(C), only atomics (valid for all zeroes); alignment 8.
unsafe impl ShmSafe for Record {}

/// Written only by the producer.
#[repr(C)]
#[derive(Debug)]
struct ProducerLine {
    /// Records pushed so far; Release after the record is written.
    tail: AtomicU64,
    /// Next bar the producer will compose (restart resume point).
    next_bar: AtomicU64,
    /// Station frame where that bar starts.
    bar_frame: AtomicU64,
}

/// Written only by the consumer.
#[repr(C)]
#[derive(Debug)]
struct ConsumerLine {
    /// Records consumed so far; Release after the record was read.
    head: AtomicU64,
    /// Station frames rendered so far.
    clock: AtomicU64,
}

/// The queue's words after the common header.
#[repr(C)]
#[derive(Debug)]
struct QueueHeader {
    producer: Padded<ProducerLine>,
    consumer: Padded<ConsumerLine>,
}

// SAFETY: repr(C), only atomics (valid for all zeroes), alignment 128.
unsafe impl ShmSafe for QueueHeader {}

const QUEUE_OFF: usize = HEADER_LEN;
const RECORDS_OFF: usize = QUEUE_OFF + size_of::<QueueHeader>();

#[cfg(not(loom))]
const _: () =
    assert!(size_of::<NoteEvent>() == 24 && size_of::<Record>() == 24 && RECORDS_OFF == 512);

pub(crate) fn check_geometry(name: &str, g: &Geometry) -> ShmResult<usize> {
    if g.capacity < 2 || !g.capacity.is_power_of_two() || g.capacity > 1 << 24 {
        return Err(geometry_err(
            name,
            "queue capacity (a power of two, 2..=2^24)",
            1024,
            g.capacity,
        ));
    }
    if g.record_size != size_of::<Record>() as u64 {
        return Err(geometry_err(
            name,
            "record size",
            size_of::<Record>() as u64,
            g.record_size,
        ));
    }
    Ok(RECORDS_OFF + g.capacity as usize * size_of::<Record>())
}

/// The mapped queue, shared by both ends.
#[derive(Debug)]
struct Queue {
    map: Mapping,
    capacity: u32,
}

impl Queue {
    fn q(&self) -> &QueueHeader {
        self.map.at(QUEUE_OFF)
    }
    fn record(&self, i: u64) -> &Record {
        let slot = (i & (self.capacity as u64 - 1)) as usize;
        self.map.at(RECORDS_OFF + slot * size_of::<Record>())
    }
    fn header(&self) -> &SegmentHeader {
        SegmentHeader::of(&self.map)
    }
}

fn encode(ev: &NoteEvent) -> [u64; RECORD_WORDS] {
    [
        ev.at_frame,
        ev.duration_frames as u64
            | (u32::from_le_bytes([ev.part, ev.instrument, ev.pitch, ev.velocity]) as u64) << 32,
        ev.bar as u64 | (ev._reserved as u64) << 32,
    ]
}

/// `None` for a record that cannot be a note (unknown part): corrupt, skipped.
fn decode(w: [u64; RECORD_WORDS]) -> Option<NoteEvent> {
    let [part, instrument, pitch, velocity] = ((w[1] >> 32) as u32).to_le_bytes();
    Part::from_u8(part)?;
    Some(NoteEvent {
        at_frame: w[0],
        duration_frames: w[1] as u32,
        part,
        instrument,
        pitch,
        velocity,
        bar: w[2] as u32,
        _reserved: (w[2] >> 32) as u32,
    })
}

/// Composer's end of a station's event queue.
#[derive(Debug)]
pub struct EventProducer {
    queue: Queue,
    me: ProcessId,
}

impl EventProducer {
    /// Creates the queue for `station` with `capacity` records (a power of two), or adopts / replaces
    /// a stale one as described in the crate docs.
    pub fn create_or_adopt(ns: &Namespace, station: u32, capacity: u32) -> ShmResult<Self> {
        let name = ns.events_name(station);
        if capacity < 2 || !capacity.is_power_of_two() || capacity > 1 << 24 {
            let message = format!("queue capacity {capacity} must be a power of two in 2..=2^24");
            return Err(ShmError::Invalid {
                segment: name,
                message,
            });
        }
        let g = Geometry {
            capacity: capacity as u64,
            record_size: size_of::<Record>() as u64,
            aux: 0,
        };
        let (map, _) =
            header::create_or_adopt(&name, SegmentKind::Events, &g, check_geometry, |_| {})?;
        Ok(Self {
            queue: Queue { map, capacity },
            me: ProcessId::current(),
        })
    }
    /// Appends one event; `Ok(false)` when full (nothing written, try again later). An event
    /// with an unknown part is refused with [`ShmError::Invalid`] (the consumer would skip it).
    pub fn push(&mut self, ev: &NoteEvent) -> ShmResult<bool> {
        if Part::from_u8(ev.part).is_none() {
            let message = format!("note event with unknown part {}", ev.part);
            return Err(ShmError::Invalid {
                segment: self.queue.map.name().to_owned(),
                message,
            });
        }
        let q = self.queue.q();
        // SYNC POINT: our own counter; only this process stores it.
        let tail = q.producer.tail.load(Ordering::Relaxed);
        // SYNC POINT: pairs with the consumer's Release store of `head` (it is done with the slot).
        let head = q.consumer.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= self.queue.capacity as u64 {
            return Ok(false);
        }
        for (w, v) in self.queue.record(tail).0.iter().zip(encode(ev)) {
            w.store(v, Ordering::Relaxed);
        }
        // SYNC POINT: Release publishes the record to the consumer's Acquire load of `tail`.
        q.producer.tail.store(tail + 1, Ordering::Release);
        Ok(true)
    }
    /// Records free right now.
    pub fn free(&self) -> u32 {
        let q = self.queue.q();
        // SYNC POINT: as in `push`.
        let used = q
            .producer
            .tail
            .load(Ordering::Relaxed)
            .wrapping_sub(q.consumer.head.load(Ordering::Acquire));
        (self.queue.capacity as u64).saturating_sub(used) as u32
    }
    /// How far synthd has rendered this station, in frames (0 before it attached).
    pub fn consumer_clock(&self) -> u64 {
        // SYNC POINT: pairs with the consumer's store in `set_clock`; a lone counter.
        self.queue.q().consumer.clock.load(Ordering::Relaxed)
    }
    /// Producer progress stored in the segment so a restarted composer can carry on:
    /// (next bar to compose, frame where it starts).
    pub fn progress(&self) -> (u32, u64) {
        let p = &self.queue.q().producer;
        // SYNC POINT: written by the previous producer, which is dead by the time we adopted
        // (the adopt CAS is AcqRel).
        (
            p.next_bar.load(Ordering::Relaxed) as u32,
            p.bar_frame.load(Ordering::Relaxed),
        )
    }
    /// Stores producer progress (call after pushing a whole bar).
    pub fn set_progress(&mut self, next_bar: u32, at_frame: u64) {
        let p = &self.queue.q().producer;
        // SYNC POINT: read back by a restarted producer in `progress`.
        p.next_bar.store(next_bar as u64, Ordering::Relaxed);
        p.bar_frame.store(at_frame, Ordering::Relaxed);
    }
    /// Owner heartbeat.
    pub fn heartbeat(&self) {
        self.queue.header().beat();
    }
    /// Unlinks the segment name (clean shutdown or station reclaimed).
    pub fn unlink(&self) -> ShmResult<()> {
        unlink(self.queue.map.name())
    }
}

impl Drop for EventProducer {
    fn drop(&mut self) {
        self.queue.header().release_owner(self.me);
    }
}

/// synthd's end of a station's event queue.
#[derive(Debug)]
pub struct EventConsumer {
    queue: Queue,
}

impl EventConsumer {
    /// Attaches to `station`'s queue, validating the header.
    pub fn attach(ns: &Namespace, station: u32) -> ShmResult<Self> {
        let (map, g) = header::attach(
            &ns.events_name(station),
            SegmentKind::Events,
            check_geometry,
        )?;
        Ok(Self {
            queue: Queue {
                map,
                capacity: g.capacity as u32,
            },
        })
    }
    /// Next event if one is queued; never blocks, never allocates. Corrupt records in front of
    /// it are dropped.
    pub fn peek(&self) -> Option<NoteEvent> {
        let q = self.queue.q();
        loop {
            // SYNC POINT: our own counter.
            let head = q.consumer.head.load(Ordering::Relaxed);
            // SYNC POINT: pairs with the producer's Release store of `tail`.
            let tail = q.producer.tail.load(Ordering::Acquire);
            let queued = tail.wrapping_sub(head);
            if queued == 0 {
                return None;
            }
            if queued > self.queue.capacity as u64 {
                // Counters that make no sense (corruption): drop everything queued.
                // SYNC POINT: pairs with the producer's Acquire load of `head`.
                q.consumer.head.store(tail, Ordering::Release);
                return None;
            }
            let words =
                std::array::from_fn(|i| self.queue.record(head).0[i].load(Ordering::Relaxed));
            match decode(words) {
                Some(ev) => return Some(ev),
                // SYNC POINT: as above; skipping frees the slot.
                None => q.consumer.head.store(head + 1, Ordering::Release),
            }
        }
    }
    /// Removes and returns the next event.
    pub fn pop(&mut self) -> Option<NoteEvent> {
        let ev = self.peek()?;
        let head = &self.queue.q().consumer.head;
        // SYNC POINT: Release tells the producer (Acquire load in `push`) the slot is free again.
        head.store(head.load(Ordering::Relaxed) + 1, Ordering::Release);
        Some(ev)
    }
    /// Events queued right now (including any corrupt ones `peek` would skip).
    pub fn len(&self) -> u32 {
        let q = self.queue.q();
        // SYNC POINT: as in `peek`.
        let queued = q
            .producer
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(q.consumer.head.load(Ordering::Relaxed));
        queued.min(self.queue.capacity as u64) as u32
    }
    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Publishes how far this station has been rendered, in frames.
    pub fn set_clock(&mut self, frames: u64) {
        // SYNC POINT: read by the producer's `consumer_clock`.
        self.queue
            .q()
            .consumer
            .clock
            .store(frames, Ordering::Relaxed);
    }
    /// Health of the producer (composer).
    pub fn producer_health(&self, stall_after: Duration) -> WriterHealth {
        self.queue.header().health(stall_after)
    }
}

#[cfg(all(test, not(loom)))]
#[path = "events_tests.rs"]
mod tests;
