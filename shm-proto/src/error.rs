//! Errors of the shared-memory protocol. Each names the segment it is about.

use thiserror::Error;

/// Result alias.
pub type ShmResult<T> = Result<T, ShmError>;

/// What can go wrong with a segment.
#[derive(Debug, Error)]
pub enum ShmError {
    /// shm_open / ftruncate / mmap / unlink failed.
    #[error("shared-memory segment {segment}: {op} failed: {source}")]
    Os {
        /// Segment name.
        segment: String,
        /// The operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// The segment does not exist (yet).
    #[error("shared-memory segment {segment} does not exist")]
    NotFound {
        /// Segment name.
        segment: String,
    },
    /// Wrong magic: not one of ours, or corrupt.
    #[error("shared-memory segment {segment}: bad magic {found:#018x} (expected {expected:#018x})")]
    BadMagic {
        /// Segment name.
        segment: String,
        /// Expected magic.
        expected: u64,
        /// Found magic.
        found: u64,
    },
    /// Layout version mismatch between this binary and the segment.
    #[error(
        "shared-memory segment {segment}: layout version {found} in the segment, this binary speaks version {expected}"
    )]
    VersionMismatch {
        /// Segment name.
        segment: String,
        /// This binary's version.
        expected: u32,
        /// The segment's version.
        found: u32,
    },
    /// Kind, geometry or length disagree with what the header or the caller says.
    #[error("shared-memory segment {segment}: {what}: segment has {found}, expected {expected}")]
    Geometry {
        /// Segment name.
        segment: String,
        /// Which field.
        what: &'static str,
        /// Expected value.
        expected: u64,
        /// Found value.
        found: u64,
    },
    /// The creator never finished initialising (no magic after the wait).
    #[error("shared-memory segment {segment} was never initialised by its creator")]
    Uninitialised {
        /// Segment name.
        segment: String,
    },
    /// A live process already owns the segment.
    #[error("shared-memory segment {segment} is owned by live process {pid}")]
    OwnedByLiveProcess {
        /// Segment name.
        segment: String,
        /// Owner pid.
        pid: u32,
    },
    /// No free entry (reader table or station table full).
    #[error("shared-memory segment {segment}: {what} is full ({capacity} entries)")]
    Full {
        /// Segment name.
        segment: String,
        /// Which table.
        what: &'static str,
        /// Its capacity.
        capacity: u32,
    },
    /// Bad argument (name too long, index out of range, capacity not a power of two...).
    #[error("shared-memory segment {segment}: {message}")]
    Invalid {
        /// Segment name.
        segment: String,
        /// What is wrong.
        message: String,
    },
}
