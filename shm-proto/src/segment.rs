//! POSIX shared-memory segments: exclusive creation, open, map, unlink; the namespace that names them.

use std::time::Duration;

use crate::error::{ShmError, ShmResult};
use crate::header::{self, GeometryCheck, HEADER_LEN, SegmentHeader, SegmentKind};
use crate::mapping::{Mapping, unlink};

/// Where Linux exposes POSIX shared-memory objects.
const SHM_DIR: &str = "/dev/shm";

/// Environment variable naming the namespace.
pub const NAMESPACE_ENV: &str = "AURALIS_SHM_NAMESPACE";

/// A namespace groups the segments of one deployment: `/auralis-<ns>-...`. Default `default`,
/// from `AURALIS_SHM_NAMESPACE`; tests use a unique one each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Validates `[a-z0-9_]{1,40}`.
    pub fn new(name: &str) -> ShmResult<Self> {
        let ok = (1..=40).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            let message = format!("namespace {name:?} must match [a-z0-9_]{{1,40}}");
            return Err(ShmError::Invalid {
                segment: format!("/auralis-{name}-*"),
                message,
            });
        }
        Ok(Self {
            name: name.to_owned(),
        })
    }
    /// `AURALIS_SHM_NAMESPACE` or `default`.
    pub fn from_env() -> ShmResult<Self> {
        match std::env::var(NAMESPACE_ENV) {
            Ok(v) if !v.is_empty() => Self::new(&v),
            _ => Self::new("default"),
        }
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
        let prefix = format!("auralis-{}-", self.name);
        let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix))
            .map(|n| format!("/{n}"))
            .collect();
        names.sort();
        names
    }
    /// Unlinks every segment of the namespace (clean shutdown of the whole system).
    pub fn remove_all(&self) -> ShmResult<usize> {
        let names = self.existing_segments();
        for name in &names {
            unlink(name)?;
        }
        Ok(names.len())
    }
    /// Unlinks the segments whose owner is dead or whose header is invalid (a crashed run's
    /// leftovers); keeps the ones a live process owns. Returns the names removed.
    pub fn remove_stale(&self) -> ShmResult<Vec<String>> {
        let mut removed = Vec::new();
        for name in self.existing_segments() {
            if is_stale(&name) {
                unlink(&name)?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

/// A segment nobody will use again: never initialised, invalid for its kind, or owned by a dead
/// process. A segment that vanished meanwhile is not stale (nothing to remove).
fn is_stale(name: &str) -> bool {
    let map = match Mapping::open(name, HEADER_LEN, Duration::from_millis(100)) {
        Ok(map) => map,
        Err(ShmError::NotFound { .. }) => return false,
        Err(_) => return true,
    };
    let kind = if name.contains("-audio-") {
        SegmentKind::Audio
    } else if name.contains("-events-") {
        SegmentKind::Events
    } else {
        SegmentKind::Control
    };
    let check: GeometryCheck = match kind {
        SegmentKind::Audio => crate::ring::check_geometry,
        SegmentKind::Events => crate::events::check_geometry,
        SegmentKind::Control => crate::control::check_geometry,
    };
    header::validate(&map, kind, check).is_err() || !SegmentHeader::of(&map).owner().is_alive()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn namespace_validation() {
        assert!(Namespace::new("default").is_ok());
        assert!(Namespace::new("a_b_9").is_ok());
        assert!(Namespace::new("").is_err());
        assert!(Namespace::new("Upper").is_err());
        assert!(Namespace::new("with-dash").is_err());
        assert!(Namespace::new(&"x".repeat(41)).is_err());
        assert!(Namespace::new(&"x".repeat(40)).is_ok());
        let ns = Namespace::new("t").unwrap();
        assert_eq!(ns.audio_name(3), "/auralis-t-audio-3");
    }
}
