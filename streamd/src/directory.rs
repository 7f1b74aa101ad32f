//! The stations this gateway serves, discovered from the control block: a thread polls it, starts a
//! [`Station`] (and its ring reader) for every new entry, retires the ones composer removed, and
//! reports demand for the stations that have listeners so composer does not reclaim them.
//! Connections reach the control block through [`StationDirectory::control`] to create stations
//! for their parameters ([`crate::params`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shm_proto::{ControlBlock, Namespace, WriterHealth};

use crate::config::CONTROL_POLL;
use crate::station::Station;

/// The station every client gets when it does not name one (if it exists).
pub const DEFAULT_STATION: &str = "focus";

/// All known stations and the threads that feed them.
#[derive(Debug)]
pub struct StationDirectory {
    /// Shared-memory namespace of the deployment.
    ns: Namespace,
    /// Stations by discovery order; small, read on every `start`, written when one appears.
    stations: RwLock<Vec<Arc<Station>>>,
    /// Tells the poller and the ring readers to finish.
    stop: Arc<AtomicBool>,
    /// Threads to join on shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Whether the control block is mapped now (for status).
    control_attached: AtomicBool,
    /// The control block, once attached (replaced when a restarted composer recreates it).
    control: RwLock<Option<Arc<ControlBlock>>>,
    /// Most stations listeners may occupy (0: the control block's capacity).
    max_stations: AtomicU32,
}

impl StationDirectory {
    /// An empty directory (no thread started).
    pub fn new(ns: Namespace) -> Arc<Self> {
        Arc::new(Self {
            ns,
            stations: RwLock::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
            control_attached: AtomicBool::new(false),
            control: RwLock::new(None),
            max_stations: AtomicU32::new(0),
        })
    }

    /// Caps the stations listeners may occupy below the control block's capacity.
    pub fn set_max_stations(&self, max: Option<u32>) {
        self.max_stations.store(max.unwrap_or(0), Ordering::Relaxed);
    }

    /// The station cap in force: the configured one, never above the control block's capacity.
    pub fn max_stations(&self, control: &ControlBlock) -> u32 {
        match self.max_stations.load(Ordering::Relaxed) {
            0 => control.capacity(),
            max => max.min(control.capacity()),
        }
    }

    /// The control block, if attached.
    pub fn control(&self) -> Option<Arc<ControlBlock>> {
        self.control
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_control(&self, block: Option<Arc<ControlBlock>>) {
        *self.control.write().unwrap_or_else(|e| e.into_inner()) = block;
    }

    /// The station at control-block `index` named `name`, started (ring reader and all) if this
    /// gateway did not serve it yet. Called by the poller and by a connection that just created
    /// the station, whichever comes first.
    pub fn adopt(&self, index: u32, name: &str) -> Option<Arc<Station>> {
        let mut stations = self.write();
        if let Some(found) = stations.iter().find(|s| s.index == index && s.name == name) {
            return Some(Arc::clone(found));
        }
        let station = Station::new(index, name);
        let (attempted, _attempt) = std::sync::mpsc::channel();
        match station.spawn_reader(self.ns.clone(), Arc::clone(&self.stop), attempted) {
            Ok(handle) => {
                tracing::info!(station = name, index, "serving station");
                self.lock_threads().push(handle);
                stations.push(Arc::clone(&station));
                Some(station)
            }
            Err(error) => {
                tracing::error!(%error, station = name, "cannot start the ring reader thread");
                None
            }
        }
    }

    /// Starts the control-block poller and waits (up to `first_poll_within`) for its first pass,
    /// so stations that exist already are served from the first request.
    pub fn start(self: &Arc<Self>, first_poll_within: Duration) -> std::io::Result<()> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let directory = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("control-poll".into())
            .spawn(move || directory.poll_control(ready_tx))?;
        self.lock_threads().push(handle);
        let _ = ready_rx.recv_timeout(first_poll_within);
        Ok(())
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The station named `name`.
    pub fn find(&self, name: &str) -> Option<Arc<Station>> {
        self.read().iter().find(|s| s.name == name).cloned()
    }

    /// [`DEFAULT_STATION`] if it exists, else the station with the lowest index.
    pub fn default_station(&self) -> Option<Arc<Station>> {
        let stations = self.read();
        stations
            .iter()
            .find(|s| s.name == DEFAULT_STATION)
            .or_else(|| stations.iter().min_by_key(|s| s.index))
            .cloned()
    }

    /// Every station, by index.
    pub fn all(&self) -> Vec<Arc<Station>> {
        let mut all = self.read().clone();
        all.sort_by_key(|s| s.index);
        all
    }

    /// Whether the control block is attached.
    pub fn control_attached(&self) -> bool {
        self.control_attached.load(Ordering::Relaxed)
    }

    /// Adds a station without a reader thread (tests of the protocol layer).
    pub fn insert(&self, station: Arc<Station>) {
        self.write().push(station);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Station>>> {
        self.stations.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Station>>> {
        self.stations.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every thread and waits for them (blocking: call from `spawn_blocking`).
    pub fn stop_and_join(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.lock_threads());
        for handle in threads {
            if handle.join().is_err() {
                tracing::error!("a station thread panicked");
            }
        }
    }

    /// The poller thread: owns the [`ControlBlock`] mapping.
    fn poll_control(self: Arc<Self>, ready: std::sync::mpsc::Sender<()>) {
        let mut control: Option<Arc<ControlBlock>> = None;
        let mut reported_missing = false;
        let mut ready = Some(ready);
        let mut last_owner_check = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let first_pass = ready.is_some();
            if control.is_none() {
                match ControlBlock::attach(&self.ns) {
                    Ok(block) => {
                        tracing::info!(
                            namespace = self.ns.as_str(),
                            "attached to the control block"
                        );
                        control = Some(Arc::new(block));
                        self.set_control(control.clone());
                        reported_missing = false;
                    }
                    Err(error) => {
                        if !reported_missing {
                            tracing::warn!(%error, "control block not available yet (is composer running?); retrying");
                            reported_missing = true;
                        }
                    }
                }
            }
            self.control_attached
                .store(control.is_some(), Ordering::Relaxed);
            if let Some(block) = &control {
                let attempts = self.discover(block);
                self.retire_removed(block);
                if first_pass {
                    // Serve the stations that exist with their history from the first request.
                    let deadline = Instant::now() + Duration::from_millis(800);
                    for attempt in attempts {
                        let _ = attempt
                            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
                    }
                }
                for station in self.read().iter().filter(|s| s.listeners() > 0) {
                    block.touch_demand(station.index);
                }
                // A restarted composer may have replaced the block: re-attach while its owner is
                // not alive (re-attaching to the same block is harmless).
                if last_owner_check.elapsed() >= Duration::from_secs(2) {
                    last_owner_check = Instant::now();
                    if block.owner_health(Duration::from_secs(2)) != WriterHealth::Alive
                        && let Ok(fresh) = ControlBlock::attach(&self.ns)
                    {
                        control = Some(Arc::new(fresh));
                        self.set_control(control.clone());
                    }
                }
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            // Reap the reader threads of retired stations.
            self.lock_threads().retain(|h| !h.is_finished());
            let deadline = Instant::now() + CONTROL_POLL;
            while Instant::now() < deadline && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts a station for every new entry; returns a receiver per new station that hears when
    /// its reader has made its first attach attempt.
    fn discover(&self, block: &ControlBlock) -> Vec<std::sync::mpsc::Receiver<()>> {
        let mut attempts = Vec::new();
        for slot in block.stations() {
            let name = slot.name_str();
            if name.is_empty()
                || self
                    .read()
                    .iter()
                    .any(|s| s.index == slot.index && s.name == name)
            {
                continue;
            }
            let station = Station::new(slot.index, name);
            let (attempted, attempt) = std::sync::mpsc::channel();
            let mut stations = self.write();
            if stations
                .iter()
                .any(|s| s.index == slot.index && s.name == name)
            {
                continue; // a connection adopted it meanwhile
            }
            match station.spawn_reader(self.ns.clone(), Arc::clone(&self.stop), attempted) {
                Ok(handle) => {
                    attempts.push(attempt);
                    tracing::info!(station = name, index = slot.index, "serving station");
                    self.lock_threads().push(handle);
                    stations.push(station);
                }
                Err(error) => {
                    tracing::error!(%error, station = name, "cannot start the ring reader thread")
                }
            }
        }
        attempts
    }

    /// Stops serving the stations composer removed (idle reclamation) or whose entry now holds
    /// another station: their reader thread ends and their listeners are told.
    fn retire_removed(&self, block: &ControlBlock) {
        let gone: Vec<Arc<Station>> = self
            .read()
            .iter()
            .filter(|s| {
                block
                    .station(s.index)
                    .is_none_or(|slot| slot.name_str() != s.name)
            })
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        // An entry being rewritten reads as absent for a moment: confirm by name before retiring.
        let gone: Vec<Arc<Station>> = gone
            .into_iter()
            .filter(|s| block.find(&s.name).is_none_or(|slot| slot.index != s.index))
            .collect();
        self.write()
            .retain(|s| !gone.iter().any(|g| Arc::ptr_eq(g, s)));
        for station in gone {
            tracing::info!(station = %station.name, index = station.index, listeners = station.listeners(), "station removed from the control block; no longer served");
            station.retire();
        }
    }
}
