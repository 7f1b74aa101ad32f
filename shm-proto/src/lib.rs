//! The shared-memory protocol that joins composer, synthd and streamd.
//!
//! Three kinds of segment live under one *namespace* (so tests and several deployments can share a host):
//!
//! | segment | name | owner (creator, sole writer) | other users |
//! |---|---|---|---|
//! | control block | `/auralis-<ns>-control` | composer | streamd writes station parameters, synthd reads |
//! | event queue | `/auralis-<ns>-events-<station>` | composer (producer) | synthd (consumer) |
//! | audio ring | `/auralis-<ns>-audio-<station>` | synthd (writer) | streamd instances (readers) |
//!
//! Every segment starts with a [`header::SegmentHeader`] (magic, layout version, kind, geometry,
//! total length, owner pid + start time, writer epoch, heartbeat). The owner creates a segment
//! exclusively and stores the magic *last*; everyone else validates on attach. A restarted owner
//! adopts a valid segment whose previous owner is dead (bumping the epoch) and replaces an invalid
//! one. No lock lives in shared memory: every protocol is lock-free, so a crashed process can never
//! block another.
//!
//! Failure modes, and what each process sees:
//!
//! * **A writer dies** (even mid-chunk): readers never get a torn chunk (per-slot seqlock stamps);
//!   `writer_health` turns `Dead` (pid + start time, zombies count as dead); the restarted writer
//!   adopts the segment, bumps the epoch and continues the sequence, rewriting a half-written slot.
//! * **A reader dies**: its reader-table entry stays until `reap_dead_readers` (or a full table on
//!   attach) frees it. A reader killed inside `wait` leaves the waiter count high, which only costs
//!   the writer a needless FUTEX_WAKE per chunk.
//! * **A control-block writer dies mid-update**: the next writer of that station takes its claim
//!   over after at most [`control::CLAIM_TIMEOUT`]; readers meanwhile get `None` for that entry.
//! * **Stale segments** from a crashed run: `Namespace::remove_stale` (owner dead or header
//!   invalid), or simply the next owner, which adopts or replaces them.
//! * **Truncating a mapped segment** from outside (e.g. `truncate /dev/shm/auralis-...`) makes the
//!   mappings that extend past the new end fault with SIGBUS: don't; remove segments with
//!   `shm_unlink` (`Namespace::remove_all`), which keeps existing mappings valid.
//! * systemd's `RemoveIPC=` deletes the segments when a unit stops; run the units as one fixed user.
//!
//! This is the only crate of the workspace allowed `unsafe`; each block carries a `// SAFETY:` note
//! and each atomic access that pairs with another process carries a `// SYNC POINT` note.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod audio;
pub mod control;
pub mod error;
pub mod events;
pub mod header;
pub mod layout;
mod mapping;
pub mod process;
mod reader_table;
mod ring;
pub mod segment;
mod slot;
mod sync;
#[cfg(all(test, not(loom)))]
mod test_util;

pub use audio::{
    AudioReader, AudioWriter, ChunkMeta, READER_CAPACITY, ReadOutcome, ReaderInfo, WriterHealth,
};
pub use control::{ControlBlock, StationParams, StationSlot};
pub use error::{ShmError, ShmResult};
pub use events::{EventConsumer, EventProducer, NoteEvent, Part};
pub use layout::{
    CHANNELS, CHUNK_BYTES, CHUNK_FRAMES, CHUNK_MS, CHUNK_SAMPLES, LAYOUT_VERSION, SAMPLE_RATE,
};
pub use process::ProcessId;
pub use segment::Namespace;
