//! Atomics shim: `std` normally, `loom` under `--cfg loom` for model checking.
//!
//! Every atomic that lives in shared memory is named through this module, so the seqlock of the
//! audio slots ([`crate::slot`]) can be model-checked by loom on an in-memory slot. Under loom the
//! shared-memory structures still compile but are never mapped: only the loom tests run.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Pads and aligns a value to 128 bytes, so fields written by different processes never share a
/// cache line (nor the adjacent-line prefetch pair on x86).
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
