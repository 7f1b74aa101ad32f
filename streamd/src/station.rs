//! One station as the gateway sees it: a dedicated thread reads its audio ring, encodes every chunk
//! once ([`EncodedChunk`]) and fans it out to all listeners through a broadcast channel, keeping the
//! last ring-full of encoded chunks for clients that resume after a reconnect.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use shm_proto::{AudioReader, CHUNK_SAMPLES, ChunkMeta, Namespace, ReadOutcome, WriterHealth};
use tokio::sync::broadcast;

use crate::config::{ATTACH_RETRY, BROADCAST_CAPACITY, READER_WAIT, STALL_AFTER};
use crate::protocol::{EncodedChunk, ServerMessage, StatusMessage};
use crate::stats::{EncodeFormat, StationStats};

/// What a station broadcasts to its listeners.
#[derive(Clone, Debug)]
pub enum StationEvent {
    /// The next chunk, encoded once for everybody.
    Chunk(Arc<EncodedChunk>),
    /// A status change of the source (stalled, recovered), sent as is to every listener.
    Notice(Arc<ServerMessage>),
    /// The sequence restarted (a replaced ring began again): listeners forget the seq they expect.
    SequenceReset,
    /// Composer removed the station: it will never play again.
    Removed,
}

/// Health of the station's source (synthd), as last seen by the reader thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SourceState {
    /// The ring does not exist (yet) or was never attached.
    Absent = 0,
    /// Heartbeat fresh.
    Alive = 1,
    /// Writer alive but silent for longer than the stall threshold.
    Stalled = 2,
    /// Writer process gone.
    Dead = 3,
}

impl SourceState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Alive,
            2 => Self::Stalled,
            3 => Self::Dead,
            _ => Self::Absent,
        }
    }
    /// Name used in `/api/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Alive => "alive",
            Self::Stalled => "stalled",
            Self::Dead => "dead",
        }
    }
}

const NO_SEQ: u64 = u64::MAX;

/// A station: its fan-out channel, its recent history and counters for `/api/status`.
#[derive(Debug)]
pub struct Station {
    /// Index in the control block; names the audio ring.
    pub index: u32,
    /// Station id clients ask for ("focus").
    pub name: String,
    /// Fan-out to every listener; each gets the same `Arc`s.
    events: broadcast::Sender<StationEvent>,
    /// Recent encoded chunks, for `resume_from` and the pre-roll of a new listener. Pushing to it
    /// and broadcasting happen under its lock, so a subscriber's snapshot joins the live stream
    /// with neither gap nor duplicate.
    history: Mutex<History>,
    /// Connections streaming this station; demand is reported to the control block while > 0.
    listeners: AtomicUsize,
    /// Newest seq in the ring (`NO_SEQ` when none), for status.
    latest_seq: AtomicU64,
    /// Oldest seq still intact in the ring, for status.
    oldest_seq: AtomicU64,
    /// Ring size in chunks (0 until attached).
    ring_slots: AtomicU32,
    /// [`SourceState`] as a byte.
    source: AtomicU8,
    /// Set when composer removed the station: the reader thread ends.
    retired: AtomicBool,
    /// Counters for status and metrics.
    pub stats: StationStats,
}

#[derive(Debug)]
struct History {
    chunks: VecDeque<Arc<EncodedChunk>>,
    capacity: usize,
}

/// A new listener's view: the live channel and the history just before it.
#[derive(Debug)]
pub struct Subscription {
    /// Live events following `history`.
    pub events: broadcast::Receiver<StationEvent>,
    /// Recent chunks, oldest first.
    pub history: Vec<Arc<EncodedChunk>>,
    /// Counts this listener until dropped.
    pub guard: ListenerGuard,
}

/// Decrements the station's listener count when dropped.
#[derive(Debug)]
pub struct ListenerGuard {
    station: Arc<Station>,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.station.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A station's line in `/api/status`.
#[derive(Clone, Debug, Serialize)]
pub struct StationStatus {
    /// Station id.
    pub name: String,
    /// Control-block index.
    pub index: u32,
    /// Newest seq in the ring.
    pub latest_seq: Option<u64>,
    /// Chunks the ring holds now.
    pub ring_depth: u64,
    /// Ring size in chunks.
    pub ring_slots: u32,
    /// Encoded chunks kept for resuming clients.
    pub history: usize,
    /// Connections streaming it.
    pub listeners: usize,
    /// `absent`, `alive`, `stalled` or `dead`.
    pub writer_health: &'static str,
    /// Chunks encoded since start.
    pub chunks_encoded: u64,
    /// Mean encode time per chunk (base64 JSON and binary frame), microseconds.
    pub encode_us_mean: f64,
    /// Chunks listeners skipped because they fell behind live.
    pub listeners_skipped: u64,
    /// A named (operator) station rather than one created for listeners' parameters.
    pub named: bool,
}

impl Station {
    /// A station with no source attached yet.
    pub fn new(index: u32, name: impl Into<String>) -> Arc<Self> {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(Self {
            index,
            name: name.into(),
            events,
            history: Mutex::new(History {
                chunks: VecDeque::new(),
                capacity: 64,
            }),
            listeners: AtomicUsize::new(0),
            latest_seq: AtomicU64::new(NO_SEQ),
            oldest_seq: AtomicU64::new(0),
            ring_slots: AtomicU32::new(0),
            source: AtomicU8::new(SourceState::Absent as u8),
            retired: AtomicBool::new(false),
            stats: StationStats::default(),
        })
    }

    /// Whether the station was created for listeners' parameters (`p-...`) rather than named by
    /// the operator (a preset station such as `focus`).
    pub fn is_named(&self) -> bool {
        !crate::params::is_param_station(&self.name)
    }

    /// Whether audio has been seen (the ring exists and published at least one chunk).
    pub fn is_live(&self) -> bool {
        self.latest_seq().is_some()
    }

    /// Stops the reader thread and tells the listeners the station is gone.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.notify(StationEvent::Removed);
    }

    fn history(&self) -> MutexGuard<'_, History> {
        // A panic while holding the lock leaves a consistent deque; keep serving.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the station: live events plus the history right before them.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let history = self.history();
        let events = self.events.subscribe();
        let snapshot = history.chunks.iter().cloned().collect();
        drop(history);
        self.listeners.fetch_add(1, Ordering::Relaxed);
        Subscription {
            events,
            history: snapshot,
            guard: ListenerGuard {
                station: Arc::clone(self),
            },
        }
    }

    /// Counts a listener that takes its audio from elsewhere (the station's Opus feed) until the
    /// guard is dropped: it is demand for the station like any other listener.
    pub fn listen(self: &Arc<Self>) -> ListenerGuard {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        ListenerGuard {
            station: Arc::clone(self),
        }
    }

    /// Chunks the history keeps (the ring's size once attached): how far back `resume_from`
    /// reaches, which the compressed feeds match.
    pub fn history_capacity(&self) -> usize {
        self.history().capacity
    }

    /// Adds a chunk to the history and broadcasts it.
    pub fn publish(&self, chunk: Arc<EncodedChunk>) {
        let mut history = self.history();
        while history.chunks.len() >= history.capacity.max(1) {
            history.chunks.pop_front();
        }
        history.chunks.push_back(Arc::clone(&chunk));
        // No receiver is not an error: nobody listens right now.
        let _ = self.events.send(StationEvent::Chunk(chunk));
    }

    /// Adds chunks read before going live to the history, broadcasting only the newest, all under
    /// one lock.
    pub(crate) fn publish_batch(&self, batch: Vec<Arc<EncodedChunk>>) {
        let mut history = self.history();
        let newest = batch.last().cloned();
        for chunk in batch {
            while history.chunks.len() >= history.capacity.max(1) {
                history.chunks.pop_front();
            }
            history.chunks.push_back(chunk);
        }
        if let Some(newest) = newest {
            let _ = self.events.send(StationEvent::Chunk(newest));
        }
    }

    fn notify(&self, event: StationEvent) {
        let _ = self.events.send(event);
    }

    /// Connections streaming the station now.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Events (nearly all chunks) broadcast but not yet taken by the slowest listener: how far
    /// ahead of it the gateway holds audio (`buffer_depth_chunks`); at most
    /// [`BROADCAST_CAPACITY`], beyond which that listener skips to live. 0 without listeners.
    pub fn queued_for_slowest(&self) -> usize {
        self.events.len()
    }

    /// Source health as last seen.
    pub fn source_state(&self) -> SourceState {
        SourceState::from_u8(self.source.load(Ordering::Relaxed))
    }

    /// Newest seq known, if any.
    pub fn latest_seq(&self) -> Option<u64> {
        match self.latest_seq.load(Ordering::Relaxed) {
            NO_SEQ => None,
            seq => Some(seq),
        }
    }

    /// For `/api/status`.
    pub fn status(&self) -> StationStatus {
        let latest = self.latest_seq();
        let oldest = self.oldest_seq.load(Ordering::Relaxed);
        StationStatus {
            name: self.name.clone(),
            index: self.index,
            latest_seq: latest,
            ring_depth: latest.map_or(0, |l| (l + 1).saturating_sub(oldest)),
            ring_slots: self.ring_slots.load(Ordering::Relaxed),
            history: self.history().chunks.len(),
            listeners: self.listeners(),
            writer_health: self.source_state().as_str(),
            chunks_encoded: self.stats.chunks_encoded.load(Ordering::Relaxed),
            encode_us_mean: {
                let n = self.stats.chunks_encoded.load(Ordering::Relaxed);
                let ns = self.stats.encode_ns.load(Ordering::Relaxed);
                if n == 0 {
                    0.0
                } else {
                    ns as f64 / n as f64 / 1000.0
                }
            },
            listeners_skipped: self.stats.listener_skipped.load(Ordering::Relaxed),
            named: self.is_named(),
        }
    }

    /// Starts the thread that owns this station's [`AudioReader`]. It runs until `stop` is set.
    /// `first_attempt` hears once the thread has tried to attach (and prefilled the history if it
    /// could), so startup can wait for the stations that already exist.
    pub fn spawn_reader(
        self: &Arc<Self>,
        ns: Namespace,
        stop: Arc<AtomicBool>,
        first_attempt: std::sync::mpsc::Sender<()>,
    ) -> std::io::Result<JoinHandle<()>> {
        let station = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("ring-{}", self.index))
            .spawn(move || {
                RingFollower {
                    station,
                    ns,
                    stop,
                    samples: Box::new([0; CHUNK_SAMPLES]),
                    first_attempt: Some(first_attempt),
                }
                .run();
            })
    }
}

/// The reader thread's state.
struct RingFollower {
    station: Arc<Station>,
    ns: Namespace,
    stop: Arc<AtomicBool>,
    /// Where each chunk is copied out of the ring before encoding (allocated once).
    samples: Box<[i16; CHUNK_SAMPLES]>,
    /// Told after the first attach attempt.
    first_attempt: Option<std::sync::mpsc::Sender<()>>,
}

impl RingFollower {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.station.retired.load(Ordering::Relaxed)
    }

    fn run(mut self) {
        let mut reported_absent = false;
        while !self.stopped() {
            match AudioReader::attach(&self.ns, self.station.index) {
                Ok(mut reader) => {
                    tracing::info!(station = %self.station.name, slots = reader.slots(), "attached to audio ring");
                    self.prefill(&mut reader);
                    self.first_attempt_done();
                    self.follow(&mut reader);
                }
                Err(error) => {
                    if !reported_absent {
                        tracing::info!(station = %self.station.name, %error, "audio ring not available yet; retrying");
                        reported_absent = true;
                    }
                    self.first_attempt_done();
                    std::thread::sleep(ATTACH_RETRY);
                }
            }
        }
    }

    fn first_attempt_done(&mut self) {
        if let Some(tx) = self.first_attempt.take() {
            let _ = tx.send(());
        }
    }

    /// Fills the history with what the ring already holds (without broadcasting it), so a client
    /// reconnecting to this instance can resume; broadcasts from the newest chunk on.
    fn prefill(&mut self, reader: &mut AudioReader) {
        let station = Arc::clone(&self.station);
        let slots = reader.slots();
        station.ring_slots.store(slots, Ordering::Relaxed);
        station.history().capacity = slots as usize;
        let Some(latest) = reader.latest_seq() else {
            return;
        };
        reader.seek(reader.oldest_seq());
        let mut batch = Vec::with_capacity(slots as usize);
        for _ in 0..=slots {
            match reader.read_next(&mut self.samples) {
                ReadOutcome::Chunk(meta) => {
                    batch.push(self.encode(&meta));
                    if meta.seq >= latest {
                        break;
                    }
                }
                ReadOutcome::Lagged { .. } => continue,
                ReadOutcome::NotYet => break,
            }
        }
        // One batch under the history lock: a listener that subscribed meanwhile sees either
        // none of it or all of it, never a gap.
        station.publish_batch(batch);
        station
            .oldest_seq
            .store(reader.oldest_seq(), Ordering::Relaxed);
    }

    fn follow(&mut self, reader: &mut AudioReader) {
        const HEALTH_EVERY: Duration = Duration::from_millis(100);
        const REATTACH_EVERY: Duration = Duration::from_millis(250);
        let mut last_health = Instant::now();
        let mut last_reattach = Instant::now();
        self.set_source(SourceState::Alive, None);
        while !self.stopped() {
            match reader.read_next(&mut self.samples) {
                ReadOutcome::Chunk(meta) => {
                    self.on_chunk(&meta);
                    self.set_source(SourceState::Alive, None);
                    self.station
                        .oldest_seq
                        .store(reader.oldest_seq(), Ordering::Relaxed);
                }
                ReadOutcome::Lagged { missed, resume_at } => {
                    self.station
                        .stats
                        .reader_skipped
                        .fetch_add(missed, Ordering::Relaxed);
                    tracing::warn!(station = %self.station.name, missed, resume_at, "gateway fell behind the ring; skipping");
                }
                ReadOutcome::NotYet => {
                    if last_health.elapsed() >= HEALTH_EVERY {
                        last_health = Instant::now();
                        let health = reader.writer_health(STALL_AFTER);
                        match health {
                            WriterHealth::Alive => self.set_source(SourceState::Alive, None),
                            WriterHealth::Stalled { silent_for } => {
                                self.set_source(SourceState::Stalled, Some(silent_for));
                            }
                            WriterHealth::Dead => self.set_source(SourceState::Dead, None),
                        }
                        if health != WriterHealth::Alive
                            && last_reattach.elapsed() >= REATTACH_EVERY
                        {
                            last_reattach = Instant::now();
                            self.try_reattach(reader);
                        }
                    }
                    reader.wait(READER_WAIT);
                }
            }
        }
    }

    /// A restarted synthd may have replaced the ring: switch to the new segment.
    fn try_reattach(&mut self, reader: &mut AudioReader) {
        let cursor_before = reader.cursor();
        match reader.reattach_if_replaced() {
            Ok(true) => {
                tracing::info!(station = %self.station.name, epoch = reader.epoch(), "audio ring replaced by a restarted writer; re-attached");
                let slots = reader.slots();
                self.station.ring_slots.store(slots, Ordering::Relaxed);
                if reader.cursor() < cursor_before {
                    // The new ring started its sequence again (shm-proto moved our cursor back to
                    // its next chunk): nothing we hold precedes it.
                    tracing::warn!(station = %self.station.name, from = cursor_before, to = reader.cursor(), "sequence restarted");
                    let mut history = self.station.history();
                    history.chunks.clear();
                    history.capacity = slots as usize;
                    self.station.notify(StationEvent::SequenceReset);
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(station = %self.station.name, %error, "re-attach failed; will retry");
            }
        }
    }

    fn encode(&self, meta: &ChunkMeta) -> Arc<EncodedChunk> {
        let started = Instant::now();
        let chunk = EncodedChunk::encode(
            &self.station.name,
            meta.seq,
            meta.publish_unix_ns,
            &self.samples,
        );
        let elapsed = started.elapsed();
        let stats = &self.station.stats;
        stats.record_encode(EncodeFormat::WebSocket, elapsed);
        stats
            .encode_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        stats.chunks_encoded.fetch_add(1, Ordering::Relaxed);
        self.station.latest_seq.store(meta.seq, Ordering::Relaxed);
        Arc::new(chunk)
    }

    fn on_chunk(&mut self, meta: &ChunkMeta) {
        let chunk = self.encode(meta);
        self.station.publish(chunk);
    }

    /// Records the source state and tells the listeners when it crosses alive <-> not alive.
    fn set_source(&self, state: SourceState, silent_for: Option<Duration>) {
        let previous =
            SourceState::from_u8(self.station.source.swap(state as u8, Ordering::Relaxed));
        let was_up = matches!(previous, SourceState::Alive | SourceState::Absent);
        let is_up = state == SourceState::Alive;
        if was_up && !is_up {
            let reason = if state == SourceState::Dead {
                "dead"
            } else {
                "stalled"
            };
            tracing::warn!(station = %self.station.name, reason, ?silent_for, "source stalled");
            self.station
                .notify(StationEvent::Notice(Arc::new(ServerMessage::Status(
                    StatusMessage {
                        state: "source_stalled",
                        station: Some(self.station.name.clone()),
                        reason: Some(reason),
                        ..StatusMessage::default()
                    },
                ))));
        } else if !was_up && is_up {
            tracing::info!(station = %self.station.name, "source recovered");
            self.station
                .notify(StationEvent::Notice(Arc::new(ServerMessage::Status(
                    StatusMessage {
                        state: "source_recovered",
                        station: Some(self.station.name.clone()),
                        ..StatusMessage::default()
                    },
                ))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64) -> Arc<EncodedChunk> {
        Arc::new(EncodedChunk::encode("focus", seq, 0, &[0; CHUNK_SAMPLES]))
    }

    #[test]
    fn subscription_joins_history_and_live_without_gap() {
        let station = Station::new(0, "focus");
        station.publish(chunk(0));
        station.publish(chunk(1));
        let mut sub = station.subscribe();
        assert_eq!(station.listeners(), 1);
        station.publish(chunk(2));
        let seqs: Vec<u64> = sub.history.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [0, 1]);
        match sub.events.try_recv().unwrap() {
            StationEvent::Chunk(c) => assert_eq!(c.seq, 2),
            other => panic!("unexpected {other:?}"),
        }
        drop(sub);
        assert_eq!(station.listeners(), 0);
    }

    #[test]
    fn history_is_bounded_and_every_listener_shares_the_encoding() {
        let station = Station::new(0, "focus");
        station.history().capacity = 8;
        let mut a = station.subscribe();
        let mut b = station.subscribe();
        for seq in 0..20 {
            station.publish(chunk(seq));
        }
        assert_eq!(station.status().history, 8);
        let (StationEvent::Chunk(x), StationEvent::Chunk(y)) =
            (a.events.try_recv().unwrap(), b.events.try_recv().unwrap())
        else {
            panic!("expected chunks");
        };
        assert!(Arc::ptr_eq(&x, &y));
    }

    #[test]
    fn a_prefill_batch_broadcasts_only_its_newest_chunk() {
        let station = Station::new(0, "focus");
        let mut sub = station.subscribe();
        station.publish_batch(vec![chunk(0), chunk(1), chunk(2)]);
        let StationEvent::Chunk(c) = sub.events.try_recv().unwrap() else {
            panic!("expected a chunk");
        };
        assert_eq!(c.seq, 2);
        assert!(sub.events.try_recv().is_err());
        assert_eq!(station.subscribe().history.len(), 3);
    }
}
