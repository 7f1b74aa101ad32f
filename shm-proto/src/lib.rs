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
pub mod process;
pub mod segment;
mod sync;

pub use audio::{AudioReader, AudioWriter, ChunkMeta, ReadOutcome, WriterHealth};
pub use control::{ControlBlock, StationParams, StationSlot};
pub use error::{ShmError, ShmResult};
pub use events::{EventConsumer, EventProducer, NoteEvent, Part};
pub use layout::{
    CHANNELS, CHUNK_BYTES, CHUNK_FRAMES, CHUNK_MS, CHUNK_SAMPLES, LAYOUT_VERSION, SAMPLE_RATE,
};
pub use segment::Namespace;
