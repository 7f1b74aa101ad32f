//! Compressed feeds: each station's audio encoded ONCE per format (Ogg/Opus, MP3) while somebody
//! listens to that format, and fanned out as the same [`Bytes`] to every listener of it.
//!
//! A feed is created by its first listener and is itself one listener of the station (so it
//! counts as demand). It encodes each chunk on the blocking pool, keeps the last
//! [`BURST_UNITS`] units (100 ms each) so a new listener starts playing at once, and stops
//! [`IDLE_STOP`] after its last listener left. Joining and stopping both happen under the
//! registry's lock, so a listener never joins a feed that is ending.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::encode::{ChunkEncoder, Codec};
use crate::station::{Station, StationEvent};

/// Units (one per 100 ms chunk) kept for a new listener's initial burst: 1.5 s.
pub const BURST_UNITS: usize = 15;
/// Units queued in a feed's broadcast; a listener further behind skips ahead.
const FEED_CAPACITY: usize = 64;
/// A feed with no listener for this long stops encoding.
pub const IDLE_STOP: Duration = Duration::from_secs(5);

/// What a feed broadcasts.
#[derive(Clone, Debug)]
pub enum FeedItem {
    /// The next unit of the stream (an Ogg page, MP3 frames).
    Data(Bytes),
    /// The feed ended (station removed, encoder failed, idle): listeners close.
    End,
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
    /// The stream header every listener gets first (Ogg header pages; empty for MP3).
    header: Bytes,
    /// Fan-out of the units.
    items: broadcast::Sender<FeedItem>,
    /// The last units, for the initial burst. Pushing and broadcasting happen under this lock,
    /// so a joining listener's snapshot meets the live units without gap or duplicate.
    burst: Mutex<VecDeque<Bytes>>,
    /// Listeners of this feed now.
    listeners: AtomicUsize,
    /// Units encoded, for status and benchmarks.
    pub units: AtomicU64,
    /// Bytes encoded.
    pub bytes: AtomicU64,
    /// Nanoseconds spent encoding.
    pub encode_ns: AtomicU64,
}

/// A listener's view of a feed: header, burst, then the live units.
#[derive(Debug)]
pub struct FeedSubscription {
    /// The feed (for its codec); the listener count drops when this is dropped.
    pub feed: Arc<Feed>,
    /// Stream header then burst, to send before `items`.
    pub initial: Vec<Bytes>,
    /// Live units after `initial`.
    pub items: broadcast::Receiver<FeedItem>,
}

impl Drop for FeedSubscription {
    fn drop(&mut self) {
        self.feed.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing is left half-done under these locks; keep serving after a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CompressedStreams {
    /// Joins the feed of `station` in `codec`, starting it if it is not running. Must be called
    /// inside a tokio runtime.
    pub fn subscribe(
        self: &Arc<Self>,
        station: &Arc<Station>,
        codec: Codec,
    ) -> Result<FeedSubscription, crate::encode::EncodeError> {
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
                    burst: Mutex::new(VecDeque::with_capacity(BURST_UNITS)),
                    listeners: AtomicUsize::new(0),
                    units: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    encode_ns: AtomicU64::new(0),
                });
                feeds.insert(key, Arc::clone(&feed));
                tracing::info!(station = %station.name, format = codec.extension(), "compressed feed started");
                tokio::spawn(Arc::clone(self).run_feed(
                    Arc::clone(&feed),
                    Arc::clone(station),
                    encoder,
                ));
                feed
            }
        };
        feed.listeners.fetch_add(1, Ordering::Relaxed);
        let burst = lock(&feed.burst);
        let items = feed.items.subscribe();
        let mut initial = Vec::with_capacity(burst.len() + 1);
        if !feed.header.is_empty() {
            initial.push(feed.header.clone());
        }
        initial.extend(burst.iter().cloned());
        drop(burst);
        Ok(FeedSubscription {
            feed,
            initial,
            items,
        })
    }

    /// Running feeds (for status and benchmarks).
    pub fn feeds(&self) -> Vec<Arc<Feed>> {
        lock(&self.feeds).values().cloned().collect()
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
        encoder: ChunkEncoder,
    ) {
        let mut sub = station.subscribe();
        let mut encoder = Some(encoder);
        // Prime the burst from the station's recent history so the first listener starts at once.
        let skip = sub.history.len().saturating_sub(BURST_UNITS);
        let mut pending: VecDeque<_> = sub.history.drain(..).skip(skip).collect();
        let mut idle_since: Option<Instant> = None;
        let mut check = tokio::time::interval(Duration::from_millis(500));
        let reason = loop {
            let chunk = if let Some(chunk) = pending.pop_front() {
                Some(chunk)
            } else {
                tokio::select! {
                    event = sub.events.recv() => match event {
                        Ok(StationEvent::Chunk(chunk)) => Some(chunk),
                        Ok(StationEvent::Removed) => break "station removed",
                        Ok(StationEvent::Notice(_) | StationEvent::SequenceReset) => None,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(station = %feed.station, missed, "compressed feed fell behind; skipping");
                            None
                        }
                        Err(broadcast::error::RecvError::Closed) => break "station closed",
                    },
                    _ = check.tick() => None,
                }
            };
            if let Some(chunk) = chunk {
                let Some(mut enc) = encoder.take() else {
                    break "encoder lost";
                };
                let started = Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    let unit = enc.encode_le_bytes(chunk.pcm_le());
                    (enc, unit)
                })
                .await;
                let Ok((enc, unit)) = result else {
                    break "encoder panicked";
                };
                encoder = Some(enc);
                match unit {
                    Ok(unit) => {
                        feed.encode_ns
                            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        feed.publish(unit);
                    }
                    Err(error) => {
                        tracing::error!(station = %feed.station, %error, "encoding failed; ending the feed");
                        break "encoding failed";
                    }
                }
            }
            if feed.listeners() == 0 {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= IDLE_STOP && self.stop_if_idle(&feed) {
                    break "idle";
                }
            } else {
                idle_since = None;
            }
        };
        self.remove(&feed);
        let _ = feed.items.send(FeedItem::End);
        tracing::info!(station = %feed.station, format = feed.codec.extension(), reason, "compressed feed stopped");
    }
}

impl Feed {
    /// Listeners now.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    fn publish(&self, unit: Bytes) {
        if unit.is_empty() {
            return;
        }
        self.units.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(unit.len() as u64, Ordering::Relaxed);
        let mut burst = lock(&self.burst);
        while burst.len() >= BURST_UNITS {
            burst.pop_front();
        }
        burst.push_back(unit.clone());
        let _ = self.items.send(FeedItem::Data(unit));
    }
}
