//! Layout of an audio-ring segment and the mapped view both ends share; the futex calls.
//!
//! | offset | what |
//! |---|---|
//! | 0 | [`SegmentHeader`] |
//! | 256 | ring header: writer line (`next_seq`, publish counter), waiter line |
//! | 512 | reader table, [`READER_CAPACITY`] entries of 128 bytes |
//! | 8,704 | `slots` slots: stamp + 8 metadata words + the chunk as 2,205 words |

use std::time::Duration;

use crate::error::{ShmError, ShmResult};
use crate::header::{self, Geometry, HEADER_LEN, SegmentHeader, SegmentKind, geometry_err};
use crate::layout::CHUNK_BYTES;
use crate::mapping::{Mapping, ShmSafe};
use crate::process::ProcessId;
use crate::reader_table::{self as table, READER_CAPACITY, ReaderEntry};
use crate::slot::SeqSlot;
use crate::sync::{AtomicU32, AtomicU64, Ordering, Padded};

/// Metadata words at the start of every slot: seq, unix ns, monotonic ns, seed, bpm|intensity,
/// key|mode|preset|reserved, generation, epoch.
pub(crate) const META_WORDS: usize = 8;
pub(crate) const PAYLOAD_WORDS: usize = CHUNK_BYTES / 8;
pub(crate) const SLOT_WORDS: usize = META_WORDS + PAYLOAD_WORDS;
pub(crate) type Slot = SeqSlot<SLOT_WORDS>;

/// The writer's line: only synthd stores here.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WriterLine {
    /// Seq of the next chunk to publish; stored (Release) after each chunk is ready.
    pub(crate) next_seq: AtomicU64,
    /// Incremented on every publish: the futex word readers sleep on.
    pub(crate) publish_count: AtomicU32,
    /// Explicit padding.
    _pad: AtomicU32,
}

/// Ring-wide words after the common header.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RingHeader {
    /// Written by the writer only.
    pub(crate) writer: Padded<WriterLine>,
    /// Readers currently in (or entering) FUTEX_WAIT; lets `publish` skip the wake syscall.
    pub(crate) waiters: Padded<AtomicU32>,
}

// SAFETY: repr(C), only atomics (valid for all zeroes), alignment 128.
unsafe impl ShmSafe for RingHeader {}

pub(crate) const RING_OFF: usize = HEADER_LEN;
pub(crate) const READERS_OFF: usize = RING_OFF + size_of::<RingHeader>();
pub(crate) const SLOTS_OFF: usize =
    READERS_OFF + READER_CAPACITY as usize * size_of::<ReaderEntry>();

#[cfg(not(loom))]
const _: () = {
    assert!(CHUNK_BYTES % 8 == 0 && crate::layout::CHUNK_SAMPLES == PAYLOAD_WORDS * 4);
    assert!(size_of::<RingHeader>() == 256 && size_of::<ReaderEntry>() == 128);
    assert!(SLOTS_OFF == 8704 && size_of::<Slot>() % 128 == 0);
};

/// Attach-side geometry check: power-of-two slot count, this binary's slot and table sizes.
pub(crate) fn check_geometry(name: &str, g: &Geometry) -> ShmResult<usize> {
    if g.capacity < 2 || !g.capacity.is_power_of_two() || g.capacity > 1 << 16 {
        return Err(geometry_err(
            name,
            "slot count (a power of two, 2..=65536)",
            8,
            g.capacity,
        ));
    }
    if g.record_size != size_of::<Slot>() as u64 {
        return Err(geometry_err(
            name,
            "slot size",
            size_of::<Slot>() as u64,
            g.record_size,
        ));
    }
    if g.aux != READER_CAPACITY as u64 {
        return Err(geometry_err(
            name,
            "reader table entries",
            READER_CAPACITY as u64,
            g.aux,
        ));
    }
    Ok(SLOTS_OFF + g.capacity as usize * size_of::<Slot>())
}

/// The mapped ring, shared by both ends.
#[derive(Debug)]
pub(crate) struct Ring {
    pub(crate) map: Mapping,
    pub(crate) slots: u32,
}

impl Ring {
    pub(crate) fn attach(name: &str) -> ShmResult<Self> {
        let (map, g) = header::attach(name, SegmentKind::Audio, check_geometry)?;
        Ok(Self {
            map,
            slots: g.capacity as u32,
        })
    }
    pub(crate) fn header(&self) -> &SegmentHeader {
        SegmentHeader::of(&self.map)
    }
    pub(crate) fn ring(&self) -> &RingHeader {
        self.map.at(RING_OFF)
    }
    pub(crate) fn readers(&self) -> &[ReaderEntry] {
        self.map.slice(READERS_OFF, READER_CAPACITY as usize)
    }
    pub(crate) fn slot(&self, seq: u64) -> &Slot {
        let i = (seq % self.slots as u64) as usize;
        self.map.at(SLOTS_OFF + i * size_of::<Slot>())
    }
    pub(crate) fn next_seq(&self) -> u64 {
        // SYNC POINT: pairs with the Release store in `AudioWriter::publish`.
        self.ring().writer.next_seq.load(Ordering::Acquire)
    }
    /// Oldest chunk surely intact given the writer's progress (the slot after the newest may be
    /// mid-overwrite).
    pub(crate) fn oldest(&self, next: u64) -> u64 {
        (next + 1).saturating_sub(self.slots as u64)
    }
    pub(crate) fn register(&self, me: ProcessId, cursor: u64) -> ShmResult<usize> {
        if let Some(i) = table::register(self.readers(), me, cursor) {
            return Ok(i);
        }
        table::reap_dead(self.readers());
        table::register(self.readers(), me, cursor).ok_or_else(|| ShmError::Full {
            segment: self.map.name().to_owned(),
            what: "reader table",
            capacity: READER_CAPACITY,
        })
    }
}

pub(crate) fn pack(s: &[i16]) -> u64 {
    (s[0] as u16 as u64)
        | (s[1] as u16 as u64) << 16
        | (s[2] as u16 as u64) << 32
        | (s[3] as u16 as u64) << 48
}

/// FUTEX_WAIT (shared: the word lives in memory mapped by several processes).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned 32-bit atomic for the duration of the call; the kernel only
    // reads it and the timespec; EINTR / EAGAIN / ETIMEDOUT are all fine (spurious wake-ups are
    // part of the contract).
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32 as *const u32,
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// FUTEX_WAKE of every waiter.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE neither reads nor writes memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32 as *const u32,
            libc::FUTEX_WAKE,
            i32::MAX,
        );
    }
}
