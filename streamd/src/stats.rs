//! Counters of the gateway, kept in one place so the metrics endpoint (Prometheus) can read them
//! without touching the streaming code: gateway-wide totals ([`GatewayStats`]), one
//! [`StationStats`] per station and one [`ClientStats`] per connection, all plain atomics updated
//! with `Relaxed` stores (each is an independent counter; no reader needs them mutually
//! consistent).
//!
//! What Prometheus scrapes must be a running total that survives a client leaving, so everything
//! exported per station lives in [`StationStats`] (which lives as long as the station), and the
//! per-client figures only feed `/api/status`. Histograms are fixed arrays of bucket counters
//! ([`AtomicHistogram`]): recording is a search over a dozen bounds and two relaxed adds, with no
//! lock and no allocation, fit for the writer tasks and the ring reader.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::protocol::Tier;

/// Gateway-wide totals and the live connections' counters.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// WebSocket connections accepted since start.
    pub connections_opened: AtomicU64,
    /// Upgrades refused because `WS_MAX_CONNECTIONS` was reached.
    pub connections_refused: AtomicU64,
    /// Upgrades refused because the Origin is not allowed.
    pub origin_rejected: AtomicU64,
    /// Socket writes that failed (client gone mid-send).
    pub send_errors: AtomicU64,
    /// Clients disconnected because their socket accepted nothing for the send timeout.
    pub send_timeouts: AtomicU64,
    /// Control messages refused by a connection's token bucket.
    pub rate_limited: AtomicU64,
    /// Connections closed with 1008 for flooding.
    pub flood_closes: AtomicU64,
    /// Stations created for listeners' parameters.
    pub stations_created: AtomicU64,
    /// Requests refused with `station_limit`.
    pub station_limit_refusals: AtomicU64,
    /// Accepted operator parameter changes.
    pub operator_updates: AtomicU64,
    /// Operator requests refused for a missing or wrong token.
    pub operator_auth_failures: AtomicU64,
    /// The connections open now, by connection id.
    clients: Mutex<BTreeMap<u64, Arc<ClientStats>>>,
}

impl GatewayStats {
    /// Registers a new connection's counters; they are listed until [`Self::unregister`].
    pub fn register(&self, conn_id: u64, initial_tier: Tier) -> Arc<ClientStats> {
        let stats = Arc::new(ClientStats::new(conn_id, initial_tier));
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        self.lock_clients().insert(conn_id, Arc::clone(&stats));
        stats
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, conn_id: u64) {
        self.lock_clients().remove(&conn_id);
    }

    /// The open connections' counters, by connection id.
    pub fn clients(&self) -> Vec<Arc<ClientStats>> {
        self.lock_clients().values().cloned().collect()
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientStats>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A serialisable copy of the totals (for `/api/status`).
    pub fn snapshot(&self) -> GatewaySnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let clients = self.clients();
        let mut tiers = BTreeMap::new();
        for client in &clients {
            *tiers.entry(client.tier().as_str()).or_insert(0u64) += 1;
        }
        GatewaySnapshot {
            connections_opened: get(&self.connections_opened),
            connections_refused: get(&self.connections_refused),
            origin_rejected: get(&self.origin_rejected),
            send_errors: get(&self.send_errors),
            send_timeouts: get(&self.send_timeouts),
            rate_limited: get(&self.rate_limited),
            flood_closes: get(&self.flood_closes),
            stations_created: get(&self.stations_created),
            station_limit_refusals: get(&self.station_limit_refusals),
            operator_updates: get(&self.operator_updates),
            operator_auth_failures: get(&self.operator_auth_failures),
            clients_by_tier: tiers,
        }
    }
}

/// [`GatewayStats`] as numbers.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct GatewaySnapshot {
    pub connections_opened: u64,
    pub connections_refused: u64,
    pub origin_rejected: u64,
    pub send_errors: u64,
    pub send_timeouts: u64,
    pub rate_limited: u64,
    pub flood_closes: u64,
    pub stations_created: u64,
    pub station_limit_refusals: u64,
    pub operator_updates: u64,
    pub operator_auth_failures: u64,
    /// Open connections per buffer tier.
    pub clients_by_tier: BTreeMap<&'static str, u64>,
}

/// Upper bounds, seconds, of `chunk_encoding_duration_seconds` (the plans' buckets, widened at
/// both ends): encoding a 100 ms chunk normally takes tens of microseconds; the alert is at 5 ms.
pub const ENCODE_BUCKETS: [f64; 12] = [
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    f64::INFINITY,
];

/// Upper bounds, milliseconds, of `chunk_delivery_jitter_ms` (the plans' buckets, extended up to
/// the 5 s send timeout: a client that stops reading makes writes complete seconds late).
pub const JITTER_BUCKETS_MS: [f64; 15] = [
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    30.0,
    50.0,
    75.0,
    100.0,
    200.0,
    500.0,
    1_000.0,
    2_000.0,
    5_000.0,
    f64::INFINITY,
];

/// A Prometheus histogram as atomics: per-bucket counts (not cumulative; the last bound is
/// `+Inf`, so every observation lands in one) and the sum of the observations, kept as an integer
/// in a finer unit (`sum_scale` per observed unit) so it can be a `fetch_add`.
#[derive(Debug)]
pub struct AtomicHistogram<const N: usize> {
    /// Upper bounds, increasing, the last `+Inf`.
    bounds: &'static [f64; N],
    /// Multiplier from the observed unit to the unit of `sum` (1e9: seconds kept as ns).
    sum_scale: f64,
    /// Observations per bucket.
    counts: [AtomicU64; N],
    /// Sum of the observations, times `sum_scale`.
    sum: AtomicU64,
}

/// A histogram read at scrape time.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, cumulative count), the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations (the `+Inf` bucket's count).
    pub count: u64,
    /// Sum of the observations, in the observed unit.
    pub sum: f64,
}

impl<const N: usize> AtomicHistogram<N> {
    /// An empty histogram over `bounds` (increasing, ending with `+Inf`).
    pub const fn new(bounds: &'static [f64; N], sum_scale: f64) -> Self {
        Self {
            bounds,
            sum_scale,
            counts: [const { AtomicU64::new(0) }; N],
            sum: AtomicU64::new(0),
        }
    }

    /// Records one observation (negative or NaN counts as 0). Lock-free, allocation-free.
    pub fn observe(&self, value: f64) {
        let value = if value > 0.0 { value } else { 0.0 };
        let bucket = self
            .bounds
            .iter()
            .position(|&le| value <= le)
            .unwrap_or(N - 1);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // `as` saturates: an absurd value cannot wrap the sum.
        self.sum
            .fetch_add((value * self.sum_scale) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Cumulative buckets, count and sum, for the metrics endpoint.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&le, c)| {
                cumulative += c.load(Ordering::Relaxed);
                (le, cumulative)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: cumulative,
            sum: self.sum.load(Ordering::Relaxed) as f64 / self.sum_scale,
        }
    }
}

/// What a station encodes a chunk into (label `format` of `chunk_encoding_duration_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeFormat {
    /// The WebSocket encodings, made together once per chunk: base64 JSON and the PCM16 frame.
    WebSocket,
    /// Opus, once for the HTTP `.opus` stream and the WebSocket `opus` listeners together.
    Opus,
    /// MP3 for the HTTP stream.
    Mp3,
}

impl EncodeFormat {
    /// Every format, in label order.
    pub const ALL: [EncodeFormat; 3] = [Self::WebSocket, Self::Opus, Self::Mp3];

    /// The `format` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Opus => "opus",
            Self::Mp3 => "mp3",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one station: its reader thread records encodings, the listeners' tasks record
/// deliveries, skips and underruns. They live as long as the station, so they are running totals
/// whatever the listeners do.
#[derive(Debug)]
pub struct StationStats {
    /// Chunks read and encoded (each exactly once, whatever the listener count).
    pub chunks_encoded: AtomicU64,
    /// Total time spent encoding them, nanoseconds.
    pub encode_ns: AtomicU64,
    /// Chunks the reader missed because it fell a whole ring behind.
    pub reader_skipped: AtomicU64,
    /// Chunks listeners skipped because they fell behind live (sum over listeners).
    pub listener_skipped: AtomicU64,
    /// Times a listener fell a whole broadcast queue behind and skipped to live.
    pub listener_skips: AtomicU64,
    /// Live chunks delivered later than the listener's tier could absorb (the tier logic's
    /// server-side underruns).
    pub late_deliveries: AtomicU64,
    /// Underruns the listeners reported (new ones only, per report).
    pub reported_underruns: AtomicU64,
    /// Publish-to-socket-write-completion lateness of every live chunk delivered, ms: the samples
    /// the listeners' jitter trackers see (`chunk_delivery_jitter_ms`).
    pub delivery_ms: AtomicHistogram<{ JITTER_BUCKETS_MS.len() }>,
    /// Time to encode one chunk, per [`EncodeFormat`] (`chunk_encoding_duration_seconds`).
    encode_seconds: [AtomicHistogram<{ ENCODE_BUCKETS.len() }>; EncodeFormat::ALL.len()],
}

impl Default for StationStats {
    fn default() -> Self {
        Self {
            chunks_encoded: AtomicU64::new(0),
            encode_ns: AtomicU64::new(0),
            reader_skipped: AtomicU64::new(0),
            listener_skipped: AtomicU64::new(0),
            listener_skips: AtomicU64::new(0),
            late_deliveries: AtomicU64::new(0),
            reported_underruns: AtomicU64::new(0),
            delivery_ms: AtomicHistogram::new(&JITTER_BUCKETS_MS, 1e3),
            encode_seconds: [const { AtomicHistogram::new(&ENCODE_BUCKETS, 1e9) };
                EncodeFormat::ALL.len()],
        }
    }
}

impl StationStats {
    /// Records the time one chunk took to encode into `format`.
    pub fn record_encode(&self, format: EncodeFormat, elapsed: Duration) {
        self.encode_seconds[format.index()].observe(elapsed.as_secs_f64());
    }

    /// The encode-time histogram of `format`.
    pub fn encode_histogram(
        &self,
        format: EncodeFormat,
    ) -> &AtomicHistogram<{ ENCODE_BUCKETS.len() }> {
        &self.encode_seconds[format.index()]
    }

    /// Records one live chunk written to a listener `lateness_ms` after synthd published it;
    /// `late` when the tier logic counted it as an underrun.
    pub fn record_delivery(&self, lateness_ms: f64, late: bool) {
        self.delivery_ms.observe(lateness_ms);
        if late {
            self.late_deliveries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records underruns a listener reported (the new ones since its previous report).
    pub fn record_reported_underruns(&self, new: u64) {
        self.reported_underruns.fetch_add(new, Ordering::Relaxed);
    }

    /// Records a listener skipping `missed` chunks to get back to live.
    pub fn record_skip(&self, missed: u64) {
        self.listener_skips.fetch_add(1, Ordering::Relaxed);
        self.listener_skipped.fetch_add(missed, Ordering::Relaxed);
    }

    /// `buffer_underruns_total`: late deliveries plus reported underruns.
    pub fn underruns(&self) -> u64 {
        self.late_deliveries.load(Ordering::Relaxed)
            + self.reported_underruns.load(Ordering::Relaxed)
    }
}

/// Counters of one connection. The tier and jitter figures are copies of the connection's
/// [`crate::tiers::TierController`], refreshed on every chunk sent.
#[derive(Debug)]
pub struct ClientStats {
    /// Connection id (also in the logs).
    pub conn_id: u64,
    /// Audio messages written to the socket.
    pub chunks_sent: AtomicU64,
    /// Bytes of audio messages written.
    pub bytes_sent: AtomicU64,
    /// Chunks skipped because the client fell behind live.
    pub chunks_skipped: AtomicU64,
    /// Underruns the client reported.
    pub underruns_reported: AtomicU64,
    /// Chunks delivered later than the client's tier could absorb (server-side underruns).
    pub late_chunks: AtomicU64,
    /// Control messages refused by the token bucket.
    pub rate_limited: AtomicU64,
    /// Mean send lateness (EMA), microseconds.
    pub jitter_mean_us: AtomicU64,
    /// Standard deviation of the send lateness (EMA), microseconds.
    pub jitter_std_us: AtomicU64,
    /// Current [`Tier`] code.
    tier: AtomicU8,
}

impl ClientStats {
    fn new(conn_id: u64, tier: Tier) -> Self {
        Self {
            conn_id,
            chunks_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            chunks_skipped: AtomicU64::new(0),
            underruns_reported: AtomicU64::new(0),
            late_chunks: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            jitter_mean_us: AtomicU64::new(0),
            jitter_std_us: AtomicU64::new(0),
            tier: AtomicU8::new(tier.code()),
        }
    }

    /// The connection's buffer tier now.
    pub fn tier(&self) -> Tier {
        Tier::from_code(self.tier.load(Ordering::Relaxed))
    }

    /// Records the tier and jitter figures.
    pub fn set_tier(&self, tier: Tier, mean_ms: f64, std_ms: f64) {
        self.tier.store(tier.code(), Ordering::Relaxed);
        self.jitter_mean_us
            .store((mean_ms * 1000.0) as u64, Ordering::Relaxed);
        self.jitter_std_us
            .store((std_ms * 1000.0) as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_keeps_the_unit() {
        let h = AtomicHistogram::new(&JITTER_BUCKETS_MS, 1e3);
        for ms in [0.5, 1.0, 3.0, 60.0, 9_000.0, -2.0, f64::NAN] {
            h.observe(ms);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 7);
        assert_eq!(h.count(), 7);
        assert_eq!(s.buckets[0], (1.0, 4), "0.5, 1, -2 and NaN are <= 1 ms");
        assert_eq!(s.buckets[2], (5.0, 5));
        assert_eq!(s.buckets[7], (75.0, 6));
        assert_eq!(s.buckets[13], (5_000.0, 6));
        assert_eq!(*s.buckets.last().unwrap(), (f64::INFINITY, 7));
        assert!((s.sum - 9_064.5).abs() < 1e-6, "{}", s.sum);
    }

    #[test]
    fn station_counters_add_up() {
        let s = StationStats::default();
        s.record_encode(EncodeFormat::WebSocket, Duration::from_micros(30));
        s.record_encode(EncodeFormat::Opus, Duration::from_millis(3));
        assert_eq!(s.encode_histogram(EncodeFormat::WebSocket).count(), 1);
        assert_eq!(s.encode_histogram(EncodeFormat::Mp3).count(), 0);
        let opus = s.encode_histogram(EncodeFormat::Opus).snapshot();
        assert_eq!(opus.buckets[5], (0.002, 0));
        assert_eq!(opus.buckets[6], (0.005, 1));
        s.record_delivery(2.0, false);
        s.record_delivery(900.0, true);
        s.record_reported_underruns(3);
        s.record_skip(40);
        s.record_skip(2);
        assert_eq!(s.underruns(), 4);
        assert_eq!(s.delivery_ms.count(), 2);
        assert_eq!(s.listener_skips.load(Ordering::Relaxed), 2);
        assert_eq!(s.listener_skipped.load(Ordering::Relaxed), 42);
    }
}
