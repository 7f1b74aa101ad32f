//! POSIX shared-memory segments: exclusive creation, open, map, unlink; the namespace that names them.

use crate::error::ShmResult;

/// A namespace groups the segments of one deployment: `/auralis-<ns>-...`. Default `default`,
/// from `AURALIS_SHM_NAMESPACE`; tests use a unique one each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Validates `[a-z0-9_]{1,40}`.
    pub fn new(name: &str) -> ShmResult<Self> {
        let _ = name;
        todo!()
    }
    /// `AURALIS_SHM_NAMESPACE` or `default`.
    pub fn from_env() -> ShmResult<Self> {
        todo!()
    }
    /// The namespace's name.
    pub fn as_str(&self) -> &str {
        &self.name
    }
    /// `/auralis-<ns>-control`.
    pub fn control_name(&self) -> String {
        format!("/auralis-{}-control", self.name)
    }
    /// `/auralis-<ns>-events-<station>`.
    pub fn events_name(&self, station: u32) -> String {
        format!("/auralis-{}-events-{station}", self.name)
    }
    /// `/auralis-<ns>-audio-<station>`.
    pub fn audio_name(&self, station: u32) -> String {
        format!("/auralis-{}-audio-{station}", self.name)
    }
    /// Names of this namespace's segments that exist now (from `/dev/shm`).
    pub fn existing_segments(&self) -> Vec<String> {
        todo!()
    }
    /// Unlinks every segment of the namespace (clean shutdown of the whole system).
    pub fn remove_all(&self) -> ShmResult<usize> {
        todo!()
    }
    /// Unlinks the segments whose owner is dead or whose header is invalid (a crashed run's
    /// leftovers); keeps the ones a live process owns. Returns the names removed.
    pub fn remove_stale(&self) -> ShmResult<Vec<String>> {
        todo!()
    }
}
