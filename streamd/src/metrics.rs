//! `GET /metrics` on the gateway's own port (Prometheus text format), and its systemd
//! notifications (`READY=1` once listening, `WATCHDOG=1` from the runtime, `STOPPING=1`).
//!
//! Exported now: `active_websocket_connections`, `websocket_send_errors_total`, connection
//! totals, `memory_usage_mb` and the `process_*` family. Low cardinality only: nothing per
//! client. The per-station histograms of the plans (`chunk_encoding_duration_seconds`,
//! `chunk_delivery_jitter_ms`, `buffer_underruns_total`, `buffer_depth_chunks`) are to be read
//! from [`crate::stats`] once it keeps them as monotonic per-station counters and buckets.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use auralis_ops::Notifier;
use auralis_ops::prometheus::{IntCounter, IntGauge};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::server::AppState;

/// `GET /metrics`.
pub async fn serve(State(app): State<AppState>) -> impl IntoResponse {
    // A fresh registry per scrape (every 15 s or so) keeps the counters' single source of truth
    // in `GatewayStats`; building it costs microseconds.
    let registry = auralis_ops::metrics::process_registry();
    let active =
        (app.max_connections as usize).saturating_sub(app.connections.available_permits()) as i64;
    let s = &app.stats;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let gauge = |name: &str, help: &str, v: i64| {
        let g = IntGauge::new(name, help).expect("valid metric");
        g.set(v);
        Box::new(g)
    };
    let counter = |name: &str, help: &str, v: u64| {
        let c = IntCounter::new(name, help).expect("valid metric");
        c.inc_by(v);
        Box::new(c)
    };
    let families: [Box<dyn auralis_ops::prometheus::core::Collector>; 5] = [
        gauge(
            "active_websocket_connections",
            "WebSocket connections open now.",
            active,
        ),
        gauge(
            "streamd_max_connections",
            "Cap on WebSocket connections (WS_MAX_CONNECTIONS).",
            i64::from(app.max_connections),
        ),
        counter(
            "websocket_send_errors_total",
            "Socket writes that failed or timed out.",
            get(&s.send_errors) + get(&s.send_timeouts),
        ),
        counter(
            "streamd_connections_opened_total",
            "WebSocket connections accepted since start.",
            get(&s.connections_opened),
        ),
        counter(
            "streamd_connections_refused_total",
            "WebSocket upgrades refused at the connection cap.",
            get(&s.connections_refused),
        ),
    ];
    for f in families {
        registry.register(f).expect("distinct names");
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        auralis_ops::metrics::encode(&registry),
    )
}

/// Tells systemd the gateway listens, and pings its watchdog from a runtime task for as long as
/// the runtime schedules tasks (a runtime wedged by blocking code stops the pings).
pub fn notify_ready(status: &str) -> Arc<std::sync::Mutex<Notifier>> {
    let mut notifier = Notifier::from_env();
    notifier.ready(status);
    let every = notifier.watchdog_every();
    let notifier = Arc::new(std::sync::Mutex::new(notifier));
    if let Some(every) = every {
        let n = Arc::clone(&notifier);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            loop {
                tick.tick().await;
                n.lock().unwrap_or_else(|e| e.into_inner()).watchdog();
            }
        });
    }
    notifier
}
