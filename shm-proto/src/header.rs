//! The header every segment starts with, and the creation / attach / adopt protocol built on it.
//!
//! * The creator makes the object exclusively (`O_CREAT|O_EXCL`), sizes it, initialises the body and
//!   every header field, and stores the magic *last* (Release).
//! * An attacher waits briefly for the magic (Acquire), then checks magic, layout version, kind,
//!   geometry and the object's real size against the recorded total length.
//! * An owner that finds the object already there adopts it if the recorded owner is dead and the
//!   header is valid with the same geometry (recording itself, bumping the epoch, keeping the
//!   contents), replaces it if it is invalid or mismatched and the owner is dead, and gives up with
//!   [`ShmError::OwnedByLiveProcess`] if the owner lives.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::audio::WriterHealth;
use crate::error::{ShmError, ShmResult};
use crate::layout::LAYOUT_VERSION;
use crate::mapping::{Mapping, ShmSafe, unlink};
use crate::process::{ProcessId, monotonic_ns};
use crate::sync::{AtomicU32, AtomicU64, Ordering, Padded};

/// `b"AURALSHM"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"AURALSHM");

/// How long an attacher waits for a creator to finish initialising.
pub const INIT_WAIT: Duration = Duration::from_secs(1);

/// Which protocol a segment speaks.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// The station table.
    Control = 1,
    /// A station's note-event queue.
    Events = 2,
    /// A station's audio ring.
    Audio = 3,
}

impl SegmentKind {
    /// Decodes the header value.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Control,
            2 => Self::Events,
            3 => Self::Audio,
            _ => return None,
        })
    }
}

/// Kind-specific sizes recorded in the header so an attacher needs no out-of-band knowledge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Slots (audio), records (events) or stations (control).
    pub(crate) capacity: u64,
    /// Bytes of one slot / record / station entry, as this binary lays it out.
    pub(crate) record_size: u64,
    /// Kind-specific extra: reader-table entries for audio, 0 otherwise.
    pub(crate) aux: u64,
}

/// Validates a geometry for one kind and returns the total length it implies.
pub(crate) type GeometryCheck = fn(&str, &Geometry) -> ShmResult<usize>;

/// The common header at offset 0 of every segment.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct SegmentHeader {
    /// [`MAGIC`] once the creator has finished; stored last so it publishes everything else.
    magic: AtomicU64,
    /// [`LAYOUT_VERSION`] of the creator.
    version: AtomicU32,
    /// [`SegmentKind`] as u32.
    kind: AtomicU32,
    /// See [`Geometry`].
    capacity: AtomicU64,
    /// See [`Geometry`].
    record_size: AtomicU64,
    /// See [`Geometry`].
    aux: AtomicU64,
    /// Bytes of the whole segment, checked against the object's real size.
    total_len: AtomicU64,
    /// Random, set at creation: tells a reader the name now points at a different segment.
    segment_id: AtomicU64,
    /// Owner (creator or adopter) pid; 0 after a clean drop, so the next owner adopts at once.
    owner_pid: AtomicU32,
    /// Keeps the pair 8-byte aligned without implicit padding.
    _pad: AtomicU32,
    /// Owner start time: with the pid it identifies the owner even across pid reuse.
    owner_start: AtomicU64,
    /// Bumped on every adopt, so readers can tell a restarted writer.
    epoch: AtomicU64,
    /// CLOCK_MONOTONIC ns of the owner's last sign of life; alone on its line, written often.
    heartbeat: Padded<AtomicU64>,
}

// SAFETY: repr(C), only atomics, valid for all zeroes, alignment 128.
unsafe impl ShmSafe for SegmentHeader {}

/// Bytes of [`SegmentHeader`]; every body starts here.
pub(crate) const HEADER_LEN: usize = size_of::<SegmentHeader>();

#[cfg(not(loom))]
const _: () = assert!(HEADER_LEN == 256);

impl SegmentHeader {
    pub(crate) fn of(map: &Mapping) -> &SegmentHeader {
        map.at(0)
    }

    pub(crate) fn segment_id(&self) -> u64 {
        // SYNC POINT: written before the magic (Release), read after validating it (Acquire).
        self.segment_id.load(Ordering::Relaxed)
    }

    pub(crate) fn epoch(&self) -> u64 {
        // SYNC POINT: pairs with the fetch_add in `adopt`; a plain counter, no data hangs off it.
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn owner(&self) -> ProcessId {
        // SYNC POINT: pairs with the stores in `init` / `adopt` / `release_owner`. The pair is not
        // read atomically; a torn pair during an adopt reads as "dead" for an instant.
        ProcessId {
            pid: self.owner_pid.load(Ordering::Acquire),
            start_time: self.owner_start.load(Ordering::Acquire),
        }
    }

    pub(crate) fn beat(&self) {
        // SYNC POINT: read by `health` in other processes; a lone timestamp, Relaxed suffices.
        self.heartbeat.store(monotonic_ns(), Ordering::Relaxed);
    }

    /// Dead if the owner process is gone, Stalled if its heartbeat is older than `stall_after`.
    pub(crate) fn health(&self, stall_after: Duration) -> WriterHealth {
        if !self.owner().is_alive() {
            return WriterHealth::Dead;
        }
        // SYNC POINT: pairs with `beat`.
        let last = self.heartbeat.load(Ordering::Relaxed);
        let silent = Duration::from_nanos(monotonic_ns().saturating_sub(last));
        if silent > stall_after {
            WriterHealth::Stalled { silent_for: silent }
        } else {
            WriterHealth::Alive
        }
    }

    /// Clean drop of the owner: the next owner adopts without waiting for us to die, and readers
    /// see `Dead` at once.
    pub(crate) fn release_owner(&self, me: ProcessId) {
        // SYNC POINT: pairs with the CAS in `adopt` and the loads in `owner`.
        let _ = self
            .owner_pid
            .compare_exchange(me.pid, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            capacity: self.capacity.load(Ordering::Relaxed),
            record_size: self.record_size.load(Ordering::Relaxed),
            aux: self.aux.load(Ordering::Relaxed),
        }
    }

    /// Initialises a freshly created header; the magic goes last.
    fn init(&self, kind: SegmentKind, g: &Geometry, total_len: usize, me: ProcessId) {
        self.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.kind.store(kind as u32, Ordering::Relaxed);
        self.capacity.store(g.capacity, Ordering::Relaxed);
        self.record_size.store(g.record_size, Ordering::Relaxed);
        self.aux.store(g.aux, Ordering::Relaxed);
        self.total_len.store(total_len as u64, Ordering::Relaxed);
        self.segment_id.store(random_id(), Ordering::Relaxed);
        self.owner_pid.store(me.pid, Ordering::Relaxed);
        self.owner_start.store(me.start_time, Ordering::Relaxed);
        self.epoch.store(1, Ordering::Relaxed);
        self.beat();
        // SYNC POINT: Release publishes every store above (and the body) to the Acquire load of
        // the magic in `validate`.
        self.magic.store(MAGIC, Ordering::Release);
    }

    /// Takes over a valid segment whose owner `prev` is dead. False if another process won.
    fn adopt(&self, prev: ProcessId, me: ProcessId) -> bool {
        // SYNC POINT: the CAS serialises concurrent adopters; AcqRel so the winner sees the dead
        // owner's last stores to the body.
        if self
            .owner_pid
            .compare_exchange(prev.pid, me.pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SYNC POINT: read by `owner` in other processes.
        self.owner_start.store(me.start_time, Ordering::Release);
        // SYNC POINT: read by `epoch` in readers.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.beat();
        true
    }
}

/// Waits up to [`INIT_WAIT`] for the magic, then checks version, kind, geometry and size.
pub(crate) fn validate(
    map: &Mapping,
    kind: SegmentKind,
    check: GeometryCheck,
) -> ShmResult<Geometry> {
    let name = map.name();
    let h = SegmentHeader::of(map);
    let deadline = std::time::Instant::now() + INIT_WAIT;
    let magic = loop {
        // SYNC POINT: pairs with the Release store of the magic in `init`.
        let m = h.magic.load(Ordering::Acquire);
        if m != 0 || std::time::Instant::now() >= deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if magic == 0 {
        return Err(ShmError::Uninitialised {
            segment: name.to_owned(),
        });
    }
    if magic != MAGIC {
        return Err(ShmError::BadMagic {
            segment: name.to_owned(),
            expected: MAGIC,
            found: magic,
        });
    }
    let version = h.version.load(Ordering::Relaxed);
    if version != LAYOUT_VERSION {
        return Err(ShmError::VersionMismatch {
            segment: name.to_owned(),
            expected: LAYOUT_VERSION,
            found: version,
        });
    }
    let found_kind = h.kind.load(Ordering::Relaxed);
    if found_kind != kind as u32 {
        return Err(geometry_err(
            name,
            "segment kind",
            kind as u64,
            found_kind as u64,
        ));
    }
    let g = h.geometry();
    let expected_len = check(name, &g)? as u64;
    let total = h.total_len.load(Ordering::Relaxed);
    if total != expected_len {
        return Err(geometry_err(
            name,
            "total length for its geometry",
            expected_len,
            total,
        ));
    }
    if map.len() as u64 != total {
        return Err(geometry_err(name, "file size", total, map.len() as u64));
    }
    Ok(g)
}

pub(crate) fn geometry_err(
    segment: &str,
    what: &'static str,
    expected: u64,
    found: u64,
) -> ShmError {
    ShmError::Geometry {
        segment: segment.to_owned(),
        what,
        expected,
        found,
    }
}

/// Opens `name` and validates it as a `kind` segment.
pub(crate) fn attach(
    name: &str,
    kind: SegmentKind,
    check: GeometryCheck,
) -> ShmResult<(Mapping, Geometry)> {
    let map = Mapping::open(name, HEADER_LEN, INIT_WAIT)?;
    let g = validate(&map, kind, check)?;
    Ok((map, g))
}

/// How an owner came by its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Freshly created (body zeroed, then `init_body` ran).
    Created,
    /// Adopted from a dead owner; contents kept, epoch bumped.
    Adopted,
}

/// The owner's side of the protocol; see the module docs. `init_body` runs on a fresh segment
/// before the magic is stored.
pub(crate) fn create_or_adopt(
    name: &str,
    kind: SegmentKind,
    g: &Geometry,
    check: GeometryCheck,
    init_body: impl Fn(&Mapping),
) -> ShmResult<(Mapping, Opened)> {
    let total_len = check(name, g)?;
    let me = ProcessId::current();
    // Each round either returns or removes / loses a segment that someone else changed; a handful
    // of rounds only fails if other processes keep racing us.
    for _ in 0..8 {
        if let Some(map) = Mapping::create_exclusive(name, total_len)? {
            init_body(&map);
            SegmentHeader::of(&map).init(kind, g, total_len, me);
            return Ok((map, Opened::Created));
        }
        let map = match Mapping::open(name, HEADER_LEN, INIT_WAIT) {
            Ok(map) => map,
            Err(ShmError::NotFound { .. }) => continue,
            // Never sized: its creator died between shm_open and ftruncate.
            Err(ShmError::Uninitialised { .. }) => {
                unlink(name)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let valid = validate(&map, kind, check).is_ok_and(|found| found == *g);
        let h = SegmentHeader::of(&map);
        let owner = h.owner();
        if owner.pid != 0 && owner != me && owner.is_alive() {
            return Err(ShmError::OwnedByLiveProcess {
                segment: name.to_owned(),
                pid: owner.pid,
            });
        }
        if valid {
            if h.adopt(owner, me) {
                return Ok((map, Opened::Adopted));
            }
        } else {
            unlink(name)?;
        }
    }
    Err(ShmError::Invalid {
        segment: name.to_owned(),
        message: "segment kept changing while being created or adopted".into(),
    })
}

/// Random, nonzero: std's per-process random hasher keys mixed with the clock and pid.
fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(monotonic_ns());
    h.write_u32(std::process::id());
    h.finish() | 1
}
