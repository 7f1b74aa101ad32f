//! Counters of the gateway, kept in one place so the metrics endpoint (Prometheus) can read them
//! without touching the streaming code: gateway-wide totals ([`GatewayStats`]), one
//! [`StationStats`] per station and one [`ClientStats`] per connection, all plain atomics updated
//! with `Relaxed` stores (each is an independent counter; no reader needs them mutually
//! consistent).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// Counters of one station (its reader thread writes them).
#[derive(Debug, Default)]
pub struct StationStats {
    /// Chunks read and encoded (each exactly once, whatever the listener count).
    pub chunks_encoded: AtomicU64,
    /// Total time spent encoding them, nanoseconds.
    pub encode_ns: AtomicU64,
    /// Chunks the reader missed because it fell a whole ring behind.
    pub reader_skipped: AtomicU64,
    /// Chunks listeners skipped because they fell behind live (sum over listeners).
    pub listener_skipped: AtomicU64,
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
