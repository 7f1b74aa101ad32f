//! One mapped POSIX shared-memory object: exclusive creation, opening, unlinking, and typed views
//! into the mapping. Nothing here knows the protocol; [`crate::header`] does.

use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::stat::{Mode, fstat};

use crate::error::{ShmError, ShmResult};

/// Marker for types that may be placed in (and viewed from) shared memory.
///
/// # Safety
///
/// An implementor must be `#[repr(C)]` (or `#[repr(transparent)]`), self-contained and
/// pointer-free (offsets, never addresses: each process maps the segment elsewhere), valid for
/// every bit pattern including all zeroes (a fresh segment is zero-filled and a foreign or corrupt
/// one holds anything), have an alignment of at most 128 bytes (mappings are page-aligned and every
/// offset we use is a multiple of 128), and be mutated only through atomics, so that concurrent
/// access from other processes is never a data race.
pub(crate) unsafe trait ShmSafe: Sync {}

/// Owner and group may read and write: the three daemons run as one user or share a group.
const MODE: u32 = 0o660;

/// A shared mapping of a whole segment. Unmapped on drop; survives the name being unlinked.
pub(crate) struct Mapping {
    /// Start of the mapping (page-aligned).
    ptr: NonNull<u8>,
    /// Length of the mapping: the object's size when it was mapped.
    len: usize,
    /// The segment's name, for errors and re-opening.
    name: String,
}

// SAFETY: the mapping is plain memory owned by this value; every access goes through `ShmSafe`
// types, which are `Sync` and mutated only through atomics, so sharing or moving the mapping
// between threads is as safe as sharing those atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("name", &self.name)
            .field("len", &self.len)
            .finish()
    }
}

pub(crate) fn os_err(segment: &str, op: &'static str, source: Errno) -> ShmError {
    ShmError::Os {
        segment: segment.to_owned(),
        op,
        source,
    }
}

impl Mapping {
    /// Creates `name` exclusively with `len` zeroed bytes and maps it. `Ok(None)` if it exists.
    pub(crate) fn create_exclusive(name: &str, len: usize) -> ShmResult<Option<Self>> {
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR;
        let fd = match shm_open(name, flags, Mode::from_bits_truncate(MODE)) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => return Ok(None),
            Err(e) => return Err(os_err(name, "shm_open(O_CREAT|O_EXCL)", e)),
        };
        let result = nix::unistd::ftruncate(&fd, len as libc::off_t)
            .map_err(|e| os_err(name, "ftruncate", e))
            .and_then(|()| Self::map(name, fd, len));
        if result.is_err() {
            let _ = shm_unlink(name);
        }
        result.map(Some)
    }

    /// Opens an existing `name` and maps all of it. A creator sizes the object right after creating
    /// it, so a size below `min_len` is waited on until `wait` has passed, then reported as
    /// [`ShmError::Uninitialised`].
    pub(crate) fn open(name: &str, min_len: usize, wait: Duration) -> ShmResult<Self> {
        let fd = match shm_open(name, OFlag::O_RDWR, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                return Err(ShmError::NotFound {
                    segment: name.to_owned(),
                });
            }
            Err(e) => return Err(os_err(name, "shm_open", e)),
        };
        let deadline = Instant::now() + wait;
        loop {
            let size = fstat(&fd)
                .map_err(|e| os_err(name, "fstat", e))?
                .st_size
                .max(0) as usize;
            if size >= min_len {
                return Self::map(name, fd, size);
            }
            if Instant::now() >= deadline {
                return Err(ShmError::Uninitialised {
                    segment: name.to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn map(name: &str, fd: OwnedFd, len: usize) -> ShmResult<Self> {
        let nz = NonZeroUsize::new(len).ok_or_else(|| ShmError::Invalid {
            segment: name.to_owned(),
            message: "zero-length segment".into(),
        })?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no fixed address), so it aliases no
        // Rust object; the fd may be closed afterwards, the mapping keeps the object alive.
        let ptr = unsafe {
            mmap(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| os_err(name, "mmap", e))?;
        Ok(Self {
            ptr: ptr.cast(),
            len,
            name: name.to_owned(),
        })
    }

    /// The segment's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A typed view of the `T` at byte `offset`. Offsets come from validated geometry, so an out
    /// of range or misaligned one is a bug in this crate and panics.
    pub(crate) fn at<T: ShmSafe>(&self, offset: usize) -> &T {
        &self.slice::<T>(offset, 1)[0]
    }

    /// A typed view of `count` consecutive `T`s starting at byte `offset` (same rules as [`Mapping::at`]).
    pub(crate) fn slice<T: ShmSafe>(&self, offset: usize, count: usize) -> &[T] {
        let bytes = count
            .checked_mul(size_of::<T>())
            .expect("slice size overflow");
        let end = offset.checked_add(bytes).expect("offset overflow");
        assert!(
            end <= self.len,
            "{}: view {offset}..{end} outside {} bytes",
            self.name,
            self.len
        );
        assert!(
            offset % align_of::<T>() == 0,
            "{}: misaligned view at {offset}",
            self.name
        );
        // SAFETY: in bounds and aligned (checked above; the base is page-aligned); `T: ShmSafe` is
        // valid for any bytes and only mutated through atomics, so a shared slice is sound for as
        // long as the mapping lives, which the borrow of `self` guarantees.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<T>(), count) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; every view borrows `self`, so none
        // outlives this call.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// Removes `name`; a name already gone is fine (someone else cleaned up first).
pub(crate) fn unlink(name: &str) -> ShmResult<()> {
    match shm_unlink(name) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(os_err(name, "shm_unlink", e)),
    }
}
