//! Compressed feeds: each station's audio encoded ONCE per format (Ogg/Opus, MP3) while somebody
//! listens to that format, and fanned out as the same [`Bytes`] to every listener of it: the
//! `/stream/{station}.opus|.mp3` listeners, the Icecast relay, and the WebSocket `opus` listeners,
//! which get the very packets of the Ogg pages in their own frame ([`FeedUnit::ws_frame_for`]).
//!
//! A feed is created by its first listener and is itself one listener of the station (so it
//! counts as demand). It first encodes ("primes") the station's recent history, at least
//! [`BURST_UNITS`] and back to the first listener's `resume_from` if it asked for one, before
//! anybody joins it; then it encodes each live chunk on the blocking pool. It keeps as many units
//! as the station keeps chunks (the ring's size), so a WebSocket client resumes in Opus as far
//! back as in PCM once the feed has run that long, while HTTP listeners start with the last
//! [`BURST_UNITS`] only. It stops [`IDLE_STOP`] after its last listener left. Joining and
//! stopping both happen under the registry's lock, so a listener never joins a feed that is
//! ending.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::encode::{ChunkEncoder, Codec, EncodeError};
use crate::protocol::{EncodedChunk, ServerMessage};
use crate::station::{Station, StationEvent, Subscription};
use crate::stats::EncodeFormat;

mod unit;

pub use unit::FeedUnit;

/// Units (one per 100 ms chunk) a new HTTP listener gets at once: 1.5 s, so playback starts.
pub const BURST_UNITS: usize = 15;
/// Units sent to HTTP listeners in one write: 0.5 s. What a stream listener costs the gateway
/// is mostly per write (a syscall and a task wake-up each), not per byte, and a media player
/// holding seconds of audio cannot tell 100 ms writes from 500 ms ones; five units per write
/// cut that cost five-fold. The batch is concatenated once per feed, not per listener.
pub const HTTP_BATCH_UNITS: usize = 5;
/// Units queued in a feed's broadcast; a listener further behind skips ahead (as the station's).
const FEED_CAPACITY: usize = crate::config::BROADCAST_CAPACITY;
/// A feed with no listener for this long stops encoding.
pub const IDLE_STOP: Duration = Duration::from_secs(5);

const NO_SEQ: u64 = u64::MAX;

/// Why a feed could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The encoder could not be made.
    #[error("cannot start the encoder: {0}")]
    Encoder(#[from] EncodeError),
    /// The feed ended before it was ready (its encoder failed, or the station went).
    #[error("the feed ended while starting")]
    Ended,
}

/// What a feed broadcasts.
#[derive(Clone, Debug)]
pub enum FeedItem {
    /// The next unit of the stream.
    Unit(Arc<FeedUnit>),
    /// A status of the station's source (stalled, recovered), for the WebSocket listeners.
    Notice(Arc<ServerMessage>),
    /// The station's sequence restarted: listeners forget the seq they expect.
    SequenceReset,
    /// The feed ended: HTTP listeners close, WebSocket listeners are told why.
    End(FeedEnd),
}

/// Why a feed ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedEnd {
    /// Composer removed the station.
    StationRemoved,
    /// The encoder failed (or panicked), or the station's channel closed.
    Failed,
    /// Nobody listened for [`IDLE_STOP`] (so nobody hears this one).
    Idle,
}

/// Where a feed is in its life, watched by the listeners waiting to join it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FeedState {
    /// Encoding the station's recent history; nobody may join yet.
    Priming,
    /// Encoding live chunks.
    Live,
    /// Stopped.
    Ended,
}

/// Every running feed, by station and format.
#[derive(Debug, Default)]
pub struct CompressedStreams {
    /// Running feeds. The lock is held to join or to stop a feed, never while encoding.
    feeds: Mutex<HashMap<(String, Codec), Arc<Feed>>>,
}

/// One station encoded in one format.
#[derive(Debug)]
pub struct Feed {
    /// Station id.
    pub station: String,
    /// The format.
    pub codec: Codec,
    /// The stream header every HTTP listener gets first (Ogg header pages; empty for MP3).
    header: Bytes,
    /// Fan-out of the units and the station's notices.
    items: broadcast::Sender<FeedItem>,
    /// Fan-out to HTTP listeners: [`HTTP_BATCH_UNITS`] units' stream bytes at a time.
    http: broadcast::Sender<HttpItem>,
    /// The recent units, for HTTP bursts and WebSocket pre-roll and resume. Pushing and
    /// broadcasting happen under this lock, so a joining listener's snapshot meets the live
    /// units without gap or duplicate.
    history: Mutex<History>,
    /// Priming, live or ended: joiners wait for the end of priming.
    state: watch::Sender<FeedState>,
    /// Listeners of this feed now (HTTP, Icecast and WebSocket alike).
    listeners: AtomicUsize,
    /// Seq of the newest unit (`NO_SEQ` before the first), for the listeners' `buffer_depth`.
    latest_seq: AtomicU64,
    /// Units encoded, for status and benchmarks.
    pub units: AtomicU64,
    /// Bytes encoded (HTTP stream bytes).
    pub bytes: AtomicU64,
    /// Nanoseconds spent encoding.
    pub encode_ns: AtomicU64,
}

/// What a feed sends its HTTP listeners.
#[derive(Clone, Debug)]
pub enum HttpItem {
    /// The stream bytes of the next [`HTTP_BATCH_UNITS`] units.
    Data(Bytes),
    /// The feed ended: the response ends.
    End,
}

/// A feed's recent units and how many of the newest are not yet in an HTTP batch.
#[derive(Debug, Default)]
struct History {
    /// Oldest first.
    units: VecDeque<Arc<FeedUnit>>,
    /// The newest `unbatched` units have gone to the WebSocket listeners but not yet to the HTTP
    /// ones (always fewer than [`HTTP_BATCH_UNITS`]).
    unbatched: usize,
}

impl History {
    /// Sends the unbatched units' stream bytes to the HTTP listeners as one buffer.
    fn flush_http(&mut self, http: &broadcast::Sender<HttpItem>) {
        if self.unbatched == 0 {
            return;
        }
        let pending = self.units.range(self.units.len() - self.unbatched..);
        let mut batch = BytesMut::with_capacity(pending.clone().map(|u| u.stream.len()).sum());
        for unit in pending {
            batch.put_slice(&unit.stream);
        }
        self.unbatched = 0;
        let _ = http.send(HttpItem::Data(batch.freeze()));
    }
}

/// A feed's line in `/api/status` (`feeds`).
#[derive(Clone, Debug, Serialize)]
pub struct FeedStatus {
    /// Station id.
    pub station: String,
    /// `opus` or `mp3`.
    pub format: &'static str,
    /// Listeners of the feed now, whatever the transport.
    pub listeners: usize,
    /// Chunks encoded since the feed started (once each, whatever the listener count).
    pub units: u64,
    /// Bytes of the HTTP stream encoded.
    pub bytes: u64,
    /// Mean encode time per chunk, microseconds.
    pub encode_us_mean: f64,
    /// Units kept for resume and bursts.
    pub history: usize,
}

/// Counts one listener of a feed until dropped.
#[derive(Debug)]
struct FeedListener(Arc<Feed>);

impl FeedListener {
    fn new(feed: Arc<Feed>) -> Self {
        feed.listeners.fetch_add(1, Ordering::Relaxed);
        Self(feed)
    }
}

impl Drop for FeedListener {
    fn drop(&mut self) {
        self.0.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A listener's view of a feed: its recent units, then the live items.
#[derive(Debug)]
pub struct FeedSubscription {
    /// The feed's recent units at the time of joining, oldest first.
    pub history: Vec<Arc<FeedUnit>>,
    /// Live items after `history`.
    pub items: broadcast::Receiver<FeedItem>,
    /// Keeps the listener counted.
    listener: FeedListener,
}

impl FeedSubscription {
    /// The feed.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.listener.0
    }
}

/// An HTTP listener's view of a feed: the burst, then batches.
#[derive(Debug)]
pub struct HttpSubscription {
    /// The stream header, then the last [`BURST_UNITS`] units before the first batch, as one
    /// buffer (one write).
    pub burst: Bytes,
    /// Live batches after `burst`.
    pub batches: broadcast::Receiver<HttpItem>,
    /// Keeps the listener counted.
    listener: FeedListener,
}

impl HttpSubscription {
    /// The feed.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.listener.0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing is left half-done under these locks; keep serving after a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn encode_format(codec: Codec) -> EncodeFormat {
    match codec {
        Codec::Opus => EncodeFormat::Opus,
        Codec::Mp3 => EncodeFormat::Mp3,
    }
}

impl CompressedStreams {
    /// Joins the feed of `station` in `codec`, starting it if it is not running (a new feed first
    /// encodes the station's history back to `resume_from`, or the last [`BURST_UNITS`] chunks),
    /// and returns once the feed is live. Must be called inside a tokio runtime.
    pub async fn subscribe(
        self: &Arc<Self>,
        station: &Arc<Station>,
        codec: Codec,
        resume_from: Option<u64>,
    ) -> Result<FeedSubscription, FeedError> {
        let listener = self.join(station, codec, resume_from).await?;
        let history = lock(&listener.0.history);
        let items = listener.0.items.subscribe();
        let snapshot = history.units.iter().cloned().collect();
        drop(history);
        Ok(FeedSubscription {
            history: snapshot,
            items,
            listener,
        })
    }

    /// Joins the feed of `station` in `codec` as an HTTP listener (see [`Self::subscribe`]).
    pub async fn subscribe_http(
        self: &Arc<Self>,
        station: &Arc<Station>,
        codec: Codec,
    ) -> Result<HttpSubscription, FeedError> {
        let listener = self.join(station, codec, None).await?;
        let feed = &listener.0;
        let history = lock(&feed.history);
        let batches = feed.http.subscribe();
        // The burst ends where the next batch starts: before the unbatched units.
        let end = history.units.len() - history.unbatched;
        let units = history.units.range(end.saturating_sub(BURST_UNITS)..end);
        let mut burst = BytesMut::with_capacity(
            feed.header.len() + units.clone().map(|u| u.stream.len()).sum::<usize>(),
        );
        burst.put_slice(&feed.header);
        for unit in units {
            burst.put_slice(&unit.stream);
        }
        drop(history);
        Ok(HttpSubscription {
            burst: burst.freeze(),
            batches,
            listener,
        })
    }

    /// Counts a listener in the feed of `station` in `codec`, starting the feed if needed, once
    /// the feed is live.
    async fn join(
        self: &Arc<Self>,
        station: &Arc<Station>,
        codec: Codec,
        resume_from: Option<u64>,
    ) -> Result<FeedListener, FeedError> {
        let listener = {
            let mut feeds = lock(&self.feeds);
            let key = (station.name.clone(), codec);
            let feed = match feeds.get(&key) {
                Some(feed) => Arc::clone(feed),
                None => {
                    let encoder = ChunkEncoder::new(codec)?;
                    let feed = Arc::new(Feed {
                        station: station.name.clone(),
                        codec,
                        header: encoder.header(),
                        items: broadcast::channel(FEED_CAPACITY).0,
                        http: broadcast::channel(FEED_CAPACITY.div_ceil(HTTP_BATCH_UNITS).max(4)).0,
                        history: Mutex::new(History::default()),
                        state: watch::channel(FeedState::Priming).0,
                        listeners: AtomicUsize::new(0),
                        latest_seq: AtomicU64::new(NO_SEQ),
                        units: AtomicU64::new(0),
                        bytes: AtomicU64::new(0),
                        encode_ns: AtomicU64::new(0),
                    });
                    feeds.insert(key, Arc::clone(&feed));
                    tracing::info!(station = %station.name, format = codec.extension(), "compressed feed started");
                    // Subscribed here, under the registry lock: the history it primes from and
                    // the live chunks that follow meet without a gap.
                    let source = station.subscribe();
                    tokio::spawn(Arc::clone(self).run_feed(
                        Arc::clone(&feed),
                        Arc::clone(station),
                        source,
                        encoder,
                        resume_from,
                    ));
                    feed
                }
            };
            FeedListener::new(feed)
        };
        let feed = &listener.0;
        let state = feed
            .state
            .subscribe()
            .wait_for(|s| *s != FeedState::Priming)
            .await
            .map(|s| *s);
        if !matches!(state, Ok(FeedState::Live)) {
            return Err(FeedError::Ended);
        }
        Ok(listener)
    }

    /// Running feeds (for status and benchmarks).
    pub fn feeds(&self) -> Vec<Arc<Feed>> {
        lock(&self.feeds).values().cloned().collect()
    }

    /// Every running feed's status line, by station then format.
    pub fn status(&self) -> Vec<FeedStatus> {
        let mut lines: Vec<FeedStatus> = self.feeds().iter().map(|f| f.status()).collect();
        lines.sort_by(|a, b| (&a.station, a.format).cmp(&(&b.station, b.format)));
        lines
    }

    /// Removes `feed` if nobody listens; false when a listener joined meanwhile.
    fn stop_if_idle(&self, feed: &Arc<Feed>) -> bool {
        let mut feeds = lock(&self.feeds);
        if feed.listeners() > 0 {
            return false;
        }
        feeds.remove(&(feed.station.clone(), feed.codec));
        true
    }

    fn remove(&self, feed: &Arc<Feed>) {
        let mut feeds = lock(&self.feeds);
        if feeds
            .get(&(feed.station.clone(), feed.codec))
            .is_some_and(|f| Arc::ptr_eq(f, feed))
        {
            feeds.remove(&(feed.station.clone(), feed.codec));
        }
    }

    async fn run_feed(
        self: Arc<Self>,
        feed: Arc<Feed>,
        station: Arc<Station>,
        mut source: Subscription,
        encoder: ChunkEncoder,
        resume_from: Option<u64>,
    ) {
        let mut encoder = Some(encoder);
        let history = std::mem::take(&mut source.history);
        let start = prime_start(&history, resume_from);
        let reason = match encode(&feed, &station, &mut encoder, history[start..].to_vec()).await {
            Ok(units) => {
                for unit in units {
                    feed.publish(unit, &station, false);
                }
                feed.state.send_replace(FeedState::Live);
                self.follow(&feed, &station, &mut source, &mut encoder)
                    .await
            }
            Err(end) => end,
        };
        self.remove(&feed);
        feed.state.send_replace(FeedState::Ended);
        lock(&feed.history).flush_http(&feed.http);
        let _ = feed.items.send(FeedItem::End(reason));
        let _ = feed.http.send(HttpItem::End);
        tracing::info!(station = %feed.station, format = feed.codec.extension(), ?reason, "compressed feed stopped");
    }

    /// Encodes the station's live chunks until the feed ends; returns why.
    async fn follow(
        &self,
        feed: &Arc<Feed>,
        station: &Arc<Station>,
        source: &mut Subscription,
        encoder: &mut Option<ChunkEncoder>,
    ) -> FeedEnd {
        let mut idle_since: Option<Instant> = None;
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                event = source.events.recv() => match event {
                    Ok(StationEvent::Chunk(chunk)) => {
                        if feed.latest_seq().is_some_and(|latest| chunk.seq <= latest) {
                            continue; // already primed
                        }
                        match encode(feed, station, encoder, vec![chunk]).await {
                            Ok(units) => {
                                for unit in units {
                                    feed.publish(unit, station, true);
                                }
                            }
                            Err(end) => return end,
                        }
                    }
                    Ok(StationEvent::Notice(message)) => {
                        let _ = feed.items.send(FeedItem::Notice(message));
                    }
                    Ok(StationEvent::SequenceReset) => feed.reset(),
                    Ok(StationEvent::Removed) => return FeedEnd::StationRemoved,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(station = %feed.station, missed, "compressed feed fell behind; skipping");
                    }
                    Err(broadcast::error::RecvError::Closed) => return FeedEnd::Failed,
                },
                _ = check.tick() => {}
            }
            if feed.listeners() == 0 {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= IDLE_STOP && self.stop_if_idle(feed) {
                    return FeedEnd::Idle;
                }
            } else {
                idle_since = None;
            }
        }
    }
}

/// Index in `history` (a station's recent chunks, oldest first) of the first chunk a new feed
/// encodes: back to `resume_from` when the history has it, and at least the last
/// [`BURST_UNITS`].
fn prime_start(history: &[Arc<EncodedChunk>], resume_from: Option<u64>) -> usize {
    let burst = history.len().saturating_sub(BURST_UNITS);
    let wanted = resume_from
        .and_then(|from| history.iter().position(|c| c.seq >= from))
        .unwrap_or(burst);
    wanted.min(burst)
}

/// Encodes `chunks` in order on the blocking pool (one task for the lot), recording each one's
/// time in the station's `chunk_encoding_duration_seconds`. The encoder is moved there and back;
/// `None` afterwards means it was lost to a panic.
async fn encode(
    feed: &Arc<Feed>,
    station: &Arc<Station>,
    encoder: &mut Option<ChunkEncoder>,
    chunks: Vec<Arc<EncodedChunk>>,
) -> Result<Vec<Arc<FeedUnit>>, FeedEnd> {
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let Some(mut enc) = encoder.take() else {
        return Err(FeedEnd::Failed);
    };
    let (feed, station) = (Arc::clone(feed), Arc::clone(station));
    let result = tokio::task::spawn_blocking(move || {
        let mut units = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            let started = Instant::now();
            let encoded = match enc.encode_unit(chunk.pcm_le()) {
                Ok(encoded) => encoded,
                Err(error) => return (enc, Err((feed, error))),
            };
            let unit = FeedUnit::new(chunk.seq, chunk.publish_unix_ns, encoded);
            let elapsed = started.elapsed();
            station
                .stats
                .record_encode(encode_format(feed.codec), elapsed);
            feed.encode_ns
                .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
            units.push(Arc::new(unit));
        }
        (enc, Ok(units))
    })
    .await;
    let Ok((enc, units)) = result else {
        return Err(FeedEnd::Failed); // the encoder panicked
    };
    *encoder = Some(enc);
    units.map_err(|(feed, error)| {
        tracing::error!(station = %feed.station, %error, "encoding failed; ending the feed");
        FeedEnd::Failed
    })
}

impl Feed {
    /// Listeners now.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Seq of the newest unit, if any.
    pub fn latest_seq(&self) -> Option<u64> {
        match self.latest_seq.load(Ordering::Relaxed) {
            NO_SEQ => None,
            seq => Some(seq),
        }
    }

    /// For `/api/status`.
    pub fn status(&self) -> FeedStatus {
        let units = self.units.load(Ordering::Relaxed);
        let ns = self.encode_ns.load(Ordering::Relaxed);
        FeedStatus {
            station: self.station.clone(),
            format: self.codec.extension(),
            listeners: self.listeners(),
            units,
            bytes: self.bytes.load(Ordering::Relaxed),
            encode_us_mean: if units == 0 {
                0.0
            } else {
                ns as f64 / units as f64 / 1000.0
            },
            history: lock(&self.history).units.len(),
        }
    }

    /// Adds a unit to the history (as long as the station's) and, when live, broadcasts it.
    fn publish(&self, unit: Arc<FeedUnit>, station: &Station, live: bool) {
        self.units.fetch_add(1, Ordering::Relaxed);
        if unit.stream.is_empty() {
            return; // LAME still filling its first frame: nothing to send yet
        }
        self.bytes
            .fetch_add(unit.stream.len() as u64, Ordering::Relaxed);
        let capacity = station
            .history_capacity()
            .max(BURST_UNITS)
            .max(HTTP_BATCH_UNITS);
        let mut history = lock(&self.history);
        while history.units.len() >= capacity {
            history.units.pop_front();
        }
        history.units.push_back(Arc::clone(&unit));
        self.latest_seq.store(unit.seq, Ordering::Relaxed);
        if live {
            let _ = self.items.send(FeedItem::Unit(unit));
            history.unbatched += 1;
            if history.unbatched >= HTTP_BATCH_UNITS {
                history.flush_http(&self.http);
            }
        }
    }

    /// The station's sequence restarted: nothing kept precedes it.
    fn reset(&self) {
        let mut history = lock(&self.history);
        history.flush_http(&self.http);
        history.units.clear();
        self.latest_seq.store(NO_SEQ, Ordering::Relaxed);
        let _ = self.items.send(FeedItem::SequenceReset);
    }
}

#[cfg(test)]
mod tests;
