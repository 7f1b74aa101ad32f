//! The reader table of an audio ring: one entry per registered reader process, claimed by CAS,
//! freed on drop or reaped when its process is found dead.

use crate::audio::ReaderInfo;
use crate::mapping::ShmSafe;
use crate::process::{ProcessId, monotonic_ns, pid_running};
use crate::sync::{AtomicU64, Ordering};

/// Entries in every ring's reader table.
pub const READER_CAPACITY: u32 = 64;

/// One registration. Written by its reader (and, to free it, by a reaper), so alone on its line.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct ReaderEntry {
    /// Owner pid, 0 = free. Claimed by CAS 0 -> pid, so the claim itself names the claimant.
    pid: AtomicU64,
    /// Owner start time; 0 while the claimant has not written it yet.
    start_time: AtomicU64,
    /// Next seq the reader will read (for operators and the writer's diagnostics).
    cursor: AtomicU64,
    /// CLOCK_MONOTONIC ns of the reader's last read.
    last_seen_ns: AtomicU64,
}

// SAFETY: repr(C), only atomics (valid for all zeroes), alignment 128.
unsafe impl ShmSafe for ReaderEntry {}

impl ReaderEntry {
    fn info(&self) -> Option<ReaderInfo> {
        // SYNC POINT: pairs with the Release CAS in `register` (and the stores that follow it).
        let pid = self.pid.load(Ordering::Acquire);
        (pid != 0).then(|| ReaderInfo {
            pid: pid as u32,
            start_time: self.start_time.load(Ordering::Acquire),
            cursor: self.cursor.load(Ordering::Relaxed),
        })
    }

    /// Records the reader's progress; called on every read.
    pub(crate) fn note_cursor(&self, cursor: u64) {
        // SYNC POINT: read by `info` in the writer / operators; informational, Relaxed.
        self.cursor.store(cursor, Ordering::Relaxed);
        self.last_seen_ns.store(monotonic_ns(), Ordering::Relaxed);
    }
}

/// Claims a free entry for `me`; `None` when all are taken.
pub(crate) fn register(table: &[ReaderEntry], me: ProcessId, cursor: u64) -> Option<usize> {
    for (i, e) in table.iter().enumerate() {
        // SYNC POINT: the CAS claims the entry against other registering readers and reapers.
        if e.pid
            .compare_exchange(0, me.pid as u64, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // SYNC POINT: read by `info` / `reap_dead`.
            e.start_time.store(me.start_time, Ordering::Release);
            e.note_cursor(cursor);
            return Some(i);
        }
    }
    None
}

/// Frees entry `i` if it still belongs to `me`.
pub(crate) fn deregister(table: &[ReaderEntry], i: usize, me: ProcessId) {
    let e = &table[i];
    if e.start_time.load(Ordering::Relaxed) == me.start_time {
        // SYNC POINT: a zero start time tells reapers the entry is mid-(de)registration.
        e.start_time.store(0, Ordering::Release);
        // SYNC POINT: pairs with the claim CAS in `register`.
        let _ = e
            .pid
            .compare_exchange(me.pid as u64, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Frees the entries of dead processes; returns how many.
pub(crate) fn reap_dead(table: &[ReaderEntry]) -> usize {
    let mut freed = 0;
    for e in table {
        let Some(info) = e.info() else { continue };
        let dead = if info.start_time == 0 {
            // Claimed but not yet filled in: only the bare pid can be checked.
            !pid_running(info.pid)
        } else {
            !ProcessId {
                pid: info.pid,
                start_time: info.start_time,
            }
            .is_alive()
        };
        // SYNC POINT: the CAS frees only the registration we judged, not a newer claim.
        if dead
            && e.pid
                .compare_exchange(info.pid as u64, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            freed += 1;
        }
    }
    freed
}

/// Registered readers.
pub(crate) fn list(table: &[ReaderEntry]) -> Vec<ReaderInfo> {
    table.iter().filter_map(ReaderEntry::info).collect()
}
