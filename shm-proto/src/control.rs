//! The control block: the station table. streamd writes station parameters (any number of writers,
//! lock-free: a per-station seqlock claimed by CAS, a stale claim from a crashed writer is taken
//! over after a timeout), composer and synthd read them. Each change bumps the station's
//! `generation` so readers apply it exactly once.

use crate::error::ShmResult;
use crate::segment::Namespace;

/// Musical parameters of one station, as raw numbers (composer owns their meaning: key 0 = C,
/// mode index into its mode table, preset index into its preset table).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StationParams {
    /// Deterministic seed of the composition.
    pub seed: u64,
    /// Tempo in beats per minute (40..=120 accepted by composer).
    pub bpm: f32,
    /// 0.0..=1.0: density and brightness.
    pub intensity: f32,
    /// Tonic pitch class, 0 = C .. 11 = B.
    pub key: u8,
    /// Index into composer's mode table.
    pub mode: u8,
    /// Index into composer's preset table (instrumentation).
    pub preset: u8,
    /// Reserved, zero.
    pub _reserved: u8,
}

/// A snapshot of one station entry of the control block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StationSlot {
    /// Index of the station in the table; also names its event queue and audio ring.
    pub index: u32,
    /// Station id as text (at most 31 bytes of UTF-8), e.g. "focus".
    pub name: [u8; 32],
    /// Current parameters.
    pub params: StationParams,
    /// Incremented on every parameter change; starts at 1 when the station is created.
    pub generation: u64,
    /// CLOCK_MONOTONIC nanoseconds of the last time a gateway said it has listeners here.
    pub last_demand_ns: u64,
}

impl StationSlot {
    /// The station name as a string slice.
    pub fn name_str(&self) -> &str {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(self.name.len());
        std::str::from_utf8(&self.name[..end]).unwrap_or("")
    }
}

/// A mapped control block. Composer creates it ([`ControlBlock::create_or_adopt`]); streamd and
/// synthd [`ControlBlock::attach`]. All methods take `&self`: the block is shared by design.
#[derive(Debug)]
pub struct ControlBlock {
    _private: (),
}

impl ControlBlock {
    /// Creates the control block of `ns` with room for `capacity` stations, or adopts a valid one
    /// whose owner is dead (bumping its epoch, keeping its stations), or replaces an invalid or
    /// mismatched one whose owner is dead. Fails if a live process owns it.
    pub fn create_or_adopt(ns: &Namespace, capacity: u32) -> ShmResult<Self> {
        let _ = (ns, capacity);
        todo!()
    }
    /// Attaches to an existing control block, validating its header.
    pub fn attach(ns: &Namespace) -> ShmResult<Self> {
        let _ = ns;
        todo!()
    }
    /// Number of station entries.
    pub fn capacity(&self) -> u32 {
        todo!()
    }
    /// Finds an active station by name.
    pub fn find(&self, name: &str) -> Option<StationSlot> {
        let _ = name;
        todo!()
    }
    /// Snapshot of station `index`, `None` if the entry is free or being written.
    pub fn station(&self, index: u32) -> Option<StationSlot> {
        let _ = index;
        todo!()
    }
    /// Snapshots of all active stations.
    pub fn stations(&self) -> Vec<StationSlot> {
        todo!()
    }
    /// Creates (or returns the existing) station `name` with `params`; returns its index.
    /// Errors when the table is full or the name is too long.
    pub fn ensure_station(&self, name: &str, params: StationParams) -> ShmResult<u32> {
        let _ = (name, params);
        todo!()
    }
    /// Publishes new parameters for station `index`; returns the new generation.
    pub fn set_params(&self, index: u32, params: StationParams) -> ShmResult<u64> {
        let _ = (index, params);
        todo!()
    }
    /// Records that a gateway has listeners on station `index` now (for idle reclamation).
    pub fn touch_demand(&self, index: u32) {
        let _ = index;
        todo!()
    }
    /// Frees station `index` (composer reclaims idle stations).
    pub fn remove_station(&self, index: u32) -> ShmResult<()> {
        let _ = index;
        todo!()
    }
    /// Owner heartbeat (composer calls this at least every 100 ms).
    pub fn heartbeat(&self) {
        todo!()
    }
    /// Health of the owner as seen from here.
    pub fn owner_health(&self, stall_after: std::time::Duration) -> crate::WriterHealth {
        let _ = stall_after;
        todo!()
    }
}
