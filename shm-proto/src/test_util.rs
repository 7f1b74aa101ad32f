//! Helpers for this crate's unit tests.

use crate::segment::Namespace;

/// A namespace unique to this process and test, removed on drop.
#[derive(Debug)]
pub(crate) struct TestNs(pub(crate) Namespace);

impl TestNs {
    pub(crate) fn new(test: &str) -> Self {
        let ns = Namespace::new(&format!("u{}_{test}", std::process::id())).unwrap();
        let _ = ns.remove_all();
        Self(ns)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

impl std::ops::Deref for TestNs {
    type Target = Namespace;
    fn deref(&self) -> &Namespace {
        &self.0
    }
}

/// Path of a segment's file.
pub(crate) fn shm_path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// Overwrites bytes of a segment's file at `offset`.
pub(crate) fn poke(name: &str, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}
