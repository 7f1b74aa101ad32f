//! The control block: the station table. streamd writes station parameters (any number of writers,
//! lock-free: a per-station seqlock claimed by CAS, a stale claim from a crashed writer is taken
//! over after a timeout), composer and synthd read them. Each change bumps the station's
//! `generation` so readers apply it exactly once.
//!
//! Each entry is a seqlock (`seq`, odd while written) guarded by a writer claim word holding the
//! claimant's pid and the time of the claim. A claim older than [`CLAIM_TIMEOUT`], or one whose
//! process is gone, is taken over, so a writer that dies mid-update delays the next writer of that
//! station by at most that long and blocks nobody else. Readers never wait: they retry a few
//! times and then report the entry as unavailable.
//!
//! Residual risk, accepted: a writer *stopped* (not dead) for longer than the timeout in the middle
//! of its handful of stores may, on waking, scribble over its successor's update; it notices its
//! lost claim and rewrites the entry whole, so the damage is transient.

use std::time::Duration;

use crate::audio::WriterHealth;
use crate::error::{ShmError, ShmResult};
use crate::header::{self, Geometry, HEADER_LEN, SegmentHeader, SegmentKind, geometry_err};
use crate::mapping::{Mapping, ShmSafe};
use crate::process::{ProcessId, monotonic_ns, pid_running};
use crate::segment::Namespace;
use crate::sync::{AtomicU64, Ordering, Padded, fence};

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
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        std::str::from_utf8(&self.name[..end]).unwrap_or("")
    }
}

/// A writer claim older than this is taken over.
pub const CLAIM_TIMEOUT: Duration = Duration::from_millis(200);

/// Seqlock reads retried this many times before a reader gives up on an entry.
const READ_RETRIES: usize = 16;

const FREE: u64 = 0;
const ACTIVE: u64 = 1;

/// The seqlocked part of a station entry.
#[repr(C)]
#[derive(Debug)]
struct EntryData {
    /// Writer claim: 0 = none, else `pid << 32 | CLOCK_MONOTONIC ms (low 32 bits)`.
    claim: AtomicU64,
    /// Seqlock: odd while a writer is between its first and last store.
    seq: AtomicU64,
    /// FREE or ACTIVE.
    state: AtomicU64,
    /// Station name, 32 bytes, NUL-padded.
    name: [AtomicU64; 4],
    /// `StationParams::seed`.
    seed: AtomicU64,
    /// `bpm` bits | `intensity` bits << 32.
    tempo: AtomicU64,
    /// key | mode << 8 | preset << 16 | reserved << 24.
    pitch: AtomicU64,
    /// Bumped on each parameter change.
    generation: AtomicU64,
}

/// One station entry: seqlocked data written by whoever holds the claim, and the demand stamp
/// that every gateway writes, on its own line.
#[repr(C)]
#[derive(Debug)]
struct StationEntry {
    data: Padded<EntryData>,
    /// CLOCK_MONOTONIC ns of the latest demand (fetch_max by any gateway, outside the seqlock).
    last_demand_ns: Padded<AtomicU64>,
}

// SAFETY: repr(C), only atomics (valid for all zeroes), alignment 128.
unsafe impl ShmSafe for StationEntry {}

#[cfg(not(loom))]
const _: () = assert!(size_of::<StationEntry>() == 256);

pub(crate) fn check_geometry(name: &str, g: &Geometry) -> ShmResult<usize> {
    if g.capacity == 0 || g.capacity > 65_536 {
        return Err(geometry_err(
            name,
            "station capacity (1..=65536)",
            64,
            g.capacity,
        ));
    }
    if g.record_size != size_of::<StationEntry>() as u64 {
        return Err(geometry_err(
            name,
            "station entry size",
            size_of::<StationEntry>() as u64,
            g.record_size,
        ));
    }
    Ok(HEADER_LEN + g.capacity as usize * size_of::<StationEntry>())
}

fn pack_name(name: &str) -> [u64; 4] {
    let mut bytes = [0u8; 32];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    std::array::from_fn(|i| {
        u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or_default())
    })
}

fn claim_word(me: u32) -> u64 {
    (me as u64) << 32 | (monotonic_ns() / 1_000_000) as u32 as u64
}

/// Whether a claim may be taken over: old, or its process gone.
fn claim_stale(claim: u64) -> bool {
    let age_ms = ((monotonic_ns() / 1_000_000) as u32).wrapping_sub(claim as u32);
    age_ms as u128 > CLAIM_TIMEOUT.as_millis() || !pid_running((claim >> 32) as u32)
}

impl EntryData {
    /// Seqlock read; `None` if free, or if writers kept it busy for every retry.
    fn snapshot(&self, index: u32) -> Option<(u64, StationSlot)> {
        for _ in 0..READ_RETRIES {
            // SYNC POINT: pairs with the Release store of the even seq in `update`.
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let state = self.state.load(Ordering::Relaxed);
            let mut name = [0u8; 32];
            for (i, w) in self.name.iter().enumerate() {
                name[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            let tempo = self.tempo.load(Ordering::Relaxed);
            let [key, mode, preset, reserved] =
                (self.pitch.load(Ordering::Relaxed) as u32).to_le_bytes();
            let params = StationParams {
                seed: self.seed.load(Ordering::Relaxed),
                bpm: f32::from_bits(tempo as u32),
                intensity: f32::from_bits((tempo >> 32) as u32),
                key,
                mode,
                preset,
                _reserved: reserved,
            };
            let generation = self.generation.load(Ordering::Relaxed);
            // SYNC POINT: pairs with the Release fence in `update`.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != before {
                continue;
            }
            let slot = StationSlot {
                index,
                name,
                params,
                generation,
                last_demand_ns: 0,
            };
            return Some((state, slot));
        }
        None
    }

    /// Claims the entry for writing (taking over a stale claim), waiting while a live writer holds
    /// it; returns our claim word.
    fn claim(&self, me: u32) -> u64 {
        loop {
            let mine = claim_word(me);
            // SYNC POINT: Acquire pairs with the Release that frees the claim in `update`, so we
            // see the previous writer's stores.
            match self
                .claim
                .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return mine,
                Err(held) if claim_stale(held) => {
                    // SYNC POINT: same pairing; the CAS makes sure one taker wins.
                    if self
                        .claim
                        .compare_exchange(held, mine, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return mine;
                    }
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    /// Runs `write` under the claim and the seqlock. `write` returns false to abandon the update
    /// (nothing changed); the return value is what `write` decided.
    fn update(&self, me: u32, mut write: impl FnMut(&Self) -> bool) -> bool {
        loop {
            let mine = self.claim(me);
            // A writer that died mid-update left `seq` odd: we continue its write.
            let start = self.seq.load(Ordering::Relaxed);
            let odd = start | 1;
            // SYNC POINT: readers that see any store below re-load `seq` after their Acquire fence
            // and find it odd or changed.
            self.seq.store(odd, Ordering::Relaxed);
            fence(Ordering::Release);
            let changed = write(self);
            // SYNC POINT: Release publishes the data to readers' Acquire load of `seq`.
            self.seq.store(odd + 1, Ordering::Release);
            // SYNC POINT: Release hands our stores to the next claimant's Acquire CAS.
            if self
                .claim
                .compare_exchange(mine, 0, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return changed;
            }
            // Our claim was taken over while we were stopped: redo the update whole.
        }
    }
}

/// A mapped control block. Composer creates it ([`ControlBlock::create_or_adopt`]); streamd and
/// synthd [`ControlBlock::attach`]. All methods take `&self`: the block is shared by design.
#[derive(Debug)]
pub struct ControlBlock {
    map: Mapping,
    capacity: u32,
    /// Set when we are the owner, to release ownership on drop.
    owner: Option<ProcessId>,
}

impl ControlBlock {
    /// Creates the control block of `ns` with room for `capacity` stations, or adopts a valid one
    /// whose owner is dead (bumping its epoch, keeping its stations), or replaces an invalid or
    /// mismatched one whose owner is dead. Fails if a live process owns it.
    pub fn create_or_adopt(ns: &Namespace, capacity: u32) -> ShmResult<Self> {
        let name = ns.control_name();
        if capacity == 0 || capacity > 65_536 {
            let message = format!("station capacity {capacity} must be in 1..=65536");
            return Err(ShmError::Invalid {
                segment: name,
                message,
            });
        }
        let g = Geometry {
            capacity: capacity as u64,
            record_size: size_of::<StationEntry>() as u64,
            aux: 0,
        };
        let (map, _) =
            header::create_or_adopt(&name, SegmentKind::Control, &g, check_geometry, |_| {})?;
        Ok(Self {
            map,
            capacity,
            owner: Some(ProcessId::current()),
        })
    }
    /// Attaches to an existing control block, validating its header.
    pub fn attach(ns: &Namespace) -> ShmResult<Self> {
        let (map, g) = header::attach(&ns.control_name(), SegmentKind::Control, check_geometry)?;
        Ok(Self {
            map,
            capacity: g.capacity as u32,
            owner: None,
        })
    }
    fn entry(&self, index: u32) -> ShmResult<&StationEntry> {
        if index >= self.capacity {
            let message = format!(
                "station index {index} out of range (capacity {})",
                self.capacity
            );
            return Err(ShmError::Invalid {
                segment: self.map.name().to_owned(),
                message,
            });
        }
        Ok(self
            .map
            .at(HEADER_LEN + index as usize * size_of::<StationEntry>()))
    }
    /// Number of station entries.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    /// Finds an active station by name.
    pub fn find(&self, name: &str) -> Option<StationSlot> {
        (0..self.capacity)
            .filter_map(|i| self.station(i))
            .find(|s| s.name_str() == name)
    }
    /// Snapshot of station `index`, `None` if the entry is free or being written.
    pub fn station(&self, index: u32) -> Option<StationSlot> {
        let entry = self.entry(index).ok()?;
        let (state, mut slot) = entry.data.snapshot(index)?;
        if state != ACTIVE {
            return None;
        }
        // SYNC POINT: pairs with the fetch_max in `touch_demand`; a lone timestamp.
        slot.last_demand_ns = entry.last_demand_ns.load(Ordering::Relaxed);
        Some(slot)
    }
    /// Snapshots of all active stations.
    pub fn stations(&self) -> Vec<StationSlot> {
        (0..self.capacity).filter_map(|i| self.station(i)).collect()
    }
    /// Creates (or returns the existing) station `name` with `params`; returns its index.
    /// Errors when the table is full or the name is too long.
    ///
    /// Probing starts at a hash of the name, so two processes creating the same station at once
    /// race for the same entry and the loser finds the winner's name there.
    pub fn ensure_station(&self, name: &str, params: StationParams) -> ShmResult<u32> {
        if name.is_empty() || name.len() > 31 || name.contains('\0') {
            let message = format!("station name {name:?} must be 1..=31 bytes without NUL");
            return Err(ShmError::Invalid {
                segment: self.map.name().to_owned(),
                message,
            });
        }
        if let Some(found) = self.find(name) {
            return Ok(found.index);
        }
        let packed = pack_name(name);
        let me = std::process::id();
        let start = name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
            % self.capacity;
        for k in 0..self.capacity {
            let index = (start + k) % self.capacity;
            let data = &self.entry(index)?.data;
            let mut mine = false;
            let same = data.update(me, |d| {
                let state = d.state.load(Ordering::Relaxed);
                let theirs: [u64; 4] = std::array::from_fn(|i| d.name[i].load(Ordering::Relaxed));
                if state == ACTIVE {
                    return theirs == packed;
                }
                for (w, v) in d.name.iter().zip(packed) {
                    w.store(v, Ordering::Relaxed);
                }
                store_params(d, &params);
                d.generation.store(1, Ordering::Relaxed);
                d.state.store(ACTIVE, Ordering::Relaxed);
                mine = true;
                true
            });
            if same || mine {
                if mine {
                    self.touch_demand(index);
                }
                return Ok(index);
            }
        }
        Err(ShmError::Full {
            segment: self.map.name().to_owned(),
            what: "station table",
            capacity: self.capacity,
        })
    }
    /// Publishes new parameters for station `index`; returns the new generation.
    pub fn set_params(&self, index: u32, params: StationParams) -> ShmResult<u64> {
        let data = &self.entry(index)?.data;
        let mut generation = 0;
        let active = data.update(std::process::id(), |d| {
            if d.state.load(Ordering::Relaxed) != ACTIVE {
                return false;
            }
            store_params(d, &params);
            generation = d.generation.load(Ordering::Relaxed) + 1;
            d.generation.store(generation, Ordering::Relaxed);
            true
        });
        if !active {
            let message = format!("station {index} is not active");
            return Err(ShmError::Invalid {
                segment: self.map.name().to_owned(),
                message,
            });
        }
        Ok(generation)
    }
    /// Records that a gateway has listeners on station `index` now (for idle reclamation).
    pub fn touch_demand(&self, index: u32) {
        if let Ok(entry) = self.entry(index) {
            // SYNC POINT: read by `station`; fetch_max so concurrent gateways never move it back.
            entry
                .last_demand_ns
                .fetch_max(monotonic_ns(), Ordering::Relaxed);
        }
    }
    /// Frees station `index` (composer reclaims idle stations).
    pub fn remove_station(&self, index: u32) -> ShmResult<()> {
        let data = &self.entry(index)?.data;
        data.update(std::process::id(), |d| {
            d.state.store(FREE, Ordering::Relaxed);
            for w in &d.name {
                w.store(0, Ordering::Relaxed);
            }
            true
        });
        Ok(())
    }
    /// Owner heartbeat (composer calls this at least every 100 ms).
    pub fn heartbeat(&self) {
        SegmentHeader::of(&self.map).beat();
    }
    /// Health of the owner as seen from here.
    pub fn owner_health(&self, stall_after: Duration) -> WriterHealth {
        SegmentHeader::of(&self.map).health(stall_after)
    }
    /// Owner epoch (bumped each time a restarted composer adopts the block).
    pub fn epoch(&self) -> u64 {
        SegmentHeader::of(&self.map).epoch()
    }
}

impl Drop for ControlBlock {
    fn drop(&mut self) {
        if let Some(me) = self.owner {
            SegmentHeader::of(&self.map).release_owner(me);
        }
    }
}

fn store_params(d: &EntryData, p: &StationParams) {
    d.seed.store(p.seed, Ordering::Relaxed);
    d.tempo.store(
        p.bpm.to_bits() as u64 | (p.intensity.to_bits() as u64) << 32,
        Ordering::Relaxed,
    );
    let pitch = u32::from_le_bytes([p.key, p.mode, p.preset, p._reserved]);
    d.pitch.store(pitch as u64, Ordering::Relaxed);
}

#[cfg(all(test, not(loom)))]
#[path = "control_tests.rs"]
mod tests;
