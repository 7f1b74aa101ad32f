//! `GET /metrics` on the gateway's own port (Prometheus text format), and its systemd
//! notifications (`READY=1` once listening, `WATCHDOG=1` from the runtime, `STOPPING=1`).
//!
//! Nothing here is on the streaming path: the stations' reader threads and the connections'
//! tasks update atomics in [`crate::stats`], and each scrape reads them into freshly built
//! families (like synthd). Labels are low-cardinality only: `station` (bounded by the control
//! block), `tier` (4 values), `format` (3); never a client.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `active_websocket_connections` | gauge | | WebSocket connections open now |
//! | `streamd_max_connections` | gauge | | `WS_MAX_CONNECTIONS` |
//! | `websocket_send_errors_total` | counter | | socket writes failed or timed out |
//! | `streamd_connections_opened_total`, `_refused_total` | counter | | upgrades accepted, refused at the cap |
//! | `streamd_stations` | gauge | | stations served |
//! | `streamd_listeners_by_tier` | gauge | `tier` | open connections per buffer tier (all 4 always present) |
//! | `streamd_listeners` | gauge | `station` | connections streaming the station |
//! | `buffer_depth_chunks` | gauge | `station` | chunks broadcast but not yet taken by the station's slowest listener (0..64; at 64 it skips to live) |
//! | `buffer_underruns_total` | counter | `station` | live chunks written later than the listener's tier absorbs, plus underruns listeners reported |
//! | `streamd_reported_underruns_total` | counter | `station` | the reported part of the above |
//! | `chunk_delivery_jitter_ms` | histogram | `station` | publish-to-socket-write-completion lateness of every live chunk delivered (what the tier trackers see) |
//! | `chunk_encoding_duration_seconds` | histogram | `station`, `format` | time to encode one chunk once (`websocket`: base64 JSON + PCM16 frame; `opus`: resampling and libopus, once for the Ogg pages and the WebSocket `opus` frames; `mp3`: LAME; the last two once a feed has run) |
//! | `streamd_chunks_encoded_total` | counter | `station` | chunks read from the ring and encoded |
//! | `streamd_listener_skips_total` | counter | `station` | times a listener fell behind and skipped to live |
//! | `streamd_lagged_chunks_total` | counter | `station` | chunks listeners skipped doing so |
//! | `streamd_reader_lagged_chunks_total` | counter | `station` | chunks the gateway's ring reader missed (fell a whole ring behind) |
//!
//! Plus `memory_usage_mb` and the `process_*` family. `METRICS_ENABLED=false` answers 404.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use auralis_ops::Notifier;
use auralis_ops::prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use auralis_ops::prometheus::{Encoder as _, TextEncoder};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::protocol::Tier;
use crate::server::AppState;
use crate::station::Station;
use crate::stats::{EncodeFormat, GatewayStats, HistogramSnapshot};

/// `GET /metrics`.
pub async fn serve(State(app): State<AppState>) -> Response {
    if !app.metrics_enabled {
        return (
            StatusCode::NOT_FOUND,
            "metrics disabled (METRICS_ENABLED=false)\n",
        )
            .into_response();
    }
    let active = (app.max_connections as usize).saturating_sub(app.connections.available_permits());
    let gateway = Gateway {
        stats: &app.stats,
        active_connections: active as u64,
        max_connections: app.max_connections,
    };
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&gateway, &app.directory.all()),
    )
        .into_response()
}

/// The gateway-wide figures a scrape reads besides the stations.
#[derive(Clone, Copy, Debug)]
pub struct Gateway<'a> {
    /// Totals and the open connections' counters.
    pub stats: &'a GatewayStats,
    /// Connections open now (permits taken).
    pub active_connections: u64,
    /// `WS_MAX_CONNECTIONS`.
    pub max_connections: u32,
}

/// The whole metrics text: the process metrics, then the gateway's and the stations' families.
pub fn render(gateway: &Gateway<'_>, stations: &[Arc<Station>]) -> String {
    // A fresh process registry per scrape (every 15 s or so) costs microseconds and keeps the
    // single source of truth in the stats atomics.
    let mut all = auralis_ops::metrics::process_registry().gather();
    all.extend(families(gateway, stations));
    all.sort_by(|a, b| a.name().cmp(b.name()));
    let mut text = Vec::new();
    // Encoding only fails on an inconsistent family, which is a bug: keep what was written.
    if let Err(error) = TextEncoder::new().encode(&all, &mut text) {
        tracing::error!(%error, "encoding metrics");
    }
    String::from_utf8(text).unwrap_or_default()
}

/// streamd's own families, read from the atomics now.
pub fn families(gateway: &Gateway<'_>, stations: &[Arc<Station>]) -> Vec<MetricFamily> {
    let s = gateway.stats;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    let mut by_tier = [0u64; Tier::ALL.len()];
    for client in s.clients() {
        if let Some(i) = Tier::ALL.iter().position(|&t| t == client.tier()) {
            by_tier[i] += 1;
        }
    }
    let per_station = |f: &dyn Fn(&Station) -> Metric| -> Vec<Metric> {
        stations
            .iter()
            .map(|station| {
                let mut m = f(station);
                m.set_label(labels(&[("station", &station.name)]));
                m
            })
            .collect()
    };
    let mut out = vec![
        family(
            "active_websocket_connections",
            "WebSocket connections open now.",
            MetricType::GAUGE,
            vec![gauge(gateway.active_connections as f64)],
        ),
        family(
            "streamd_max_connections",
            "Cap on WebSocket connections (WS_MAX_CONNECTIONS).",
            MetricType::GAUGE,
            vec![gauge(f64::from(gateway.max_connections))],
        ),
        family(
            "websocket_send_errors_total",
            "Socket writes that failed or timed out.",
            MetricType::COUNTER,
            vec![counter(get(&s.send_errors) + get(&s.send_timeouts))],
        ),
        family(
            "streamd_connections_opened_total",
            "WebSocket connections accepted since start.",
            MetricType::COUNTER,
            vec![counter(get(&s.connections_opened))],
        ),
        family(
            "streamd_connections_refused_total",
            "WebSocket upgrades refused at the connection cap.",
            MetricType::COUNTER,
            vec![counter(get(&s.connections_refused))],
        ),
        family(
            "streamd_stations",
            "Stations served.",
            MetricType::GAUGE,
            vec![gauge(stations.len() as f64)],
        ),
        family(
            "streamd_listeners_by_tier",
            "Open WebSocket connections per buffer tier.",
            MetricType::GAUGE,
            Tier::ALL
                .iter()
                .zip(by_tier)
                .map(|(tier, n)| {
                    let mut m = gauge(n as f64);
                    m.set_label(labels(&[("tier", tier.as_str())]));
                    m
                })
                .collect(),
        ),
        family(
            "streamd_listeners",
            "Connections streaming the station.",
            MetricType::GAUGE,
            per_station(&|st| gauge(st.listeners() as f64)),
        ),
        family(
            "buffer_depth_chunks",
            "Chunks broadcast but not yet taken by the station's slowest listener (at 64 it skips \
             to live).",
            MetricType::GAUGE,
            per_station(&|st| gauge(st.queued_for_slowest() as f64)),
        ),
        family(
            "buffer_underruns_total",
            "Live chunks written later than the listener's buffer tier absorbs, plus underruns \
             listeners reported.",
            MetricType::COUNTER,
            per_station(&|st| counter(st.stats.underruns() as f64)),
        ),
        family(
            "streamd_reported_underruns_total",
            "Underruns listeners reported (part of buffer_underruns_total).",
            MetricType::COUNTER,
            per_station(&|st| counter(get(&st.stats.reported_underruns))),
        ),
        family(
            "chunk_delivery_jitter_ms",
            "Lateness of each live chunk delivered, from synthd's publish to the socket write's \
             completion, ms.",
            MetricType::HISTOGRAM,
            per_station(&|st| histogram(&st.stats.delivery_ms.snapshot())),
        ),
        family(
            "streamd_chunks_encoded_total",
            "Chunks read from the ring and encoded (once, whatever the listener count).",
            MetricType::COUNTER,
            per_station(&|st| counter(get(&st.stats.chunks_encoded))),
        ),
        family(
            "streamd_listener_skips_total",
            "Times a listener fell behind and skipped to live.",
            MetricType::COUNTER,
            per_station(&|st| counter(get(&st.stats.listener_skips))),
        ),
        family(
            "streamd_lagged_chunks_total",
            "Chunks listeners skipped to get back to live.",
            MetricType::COUNTER,
            per_station(&|st| counter(get(&st.stats.listener_skipped))),
        ),
        family(
            "streamd_reader_lagged_chunks_total",
            "Chunks the gateway's ring reader missed because it fell a whole ring behind.",
            MetricType::COUNTER,
            per_station(&|st| counter(get(&st.stats.reader_skipped))),
        ),
    ];
    // The WebSocket encoding always; the others once a station has recorded one.
    let encode = stations
        .iter()
        .flat_map(|station| {
            EncodeFormat::ALL.iter().filter_map(move |&format| {
                let h = station.stats.encode_histogram(format);
                if format != EncodeFormat::WebSocket && h.count() == 0 {
                    return None;
                }
                let mut m = histogram(&h.snapshot());
                m.set_label(labels(&[
                    ("format", format.as_str()),
                    ("station", &station.name),
                ]));
                Some(m)
            })
        })
        .collect();
    out.push(family(
        "chunk_encoding_duration_seconds",
        "Time to encode one chunk once, per output format.",
        MetricType::HISTOGRAM,
        encode,
    ));
    out
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

/// Label pairs, in the order given (the text format keeps it; keep them sorted by name).
fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name((*name).into());
            l.set_value((*value).into());
            l
        })
        .collect()
}

fn gauge(v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::default();
    m.set_gauge(g);
    m
}

fn counter(v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::default();
    m.set_counter(c);
    m
}

fn histogram(s: &HistogramSnapshot) -> Metric {
    // The encoder writes the `+Inf` bucket itself from the count (it would spell ours "inf").
    let buckets = s
        .buckets
        .iter()
        .filter(|(le, _)| le.is_finite())
        .map(|&(le, cumulative)| {
            let mut b = Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(s.count);
    h.set_sample_sum(s.sum);
    let mut m = Metric::default();
    m.set_histogram(h);
    m
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EncodedChunk;
    use shm_proto::CHUNK_SAMPLES;

    #[test]
    fn exports_every_family_with_its_type_and_low_cardinality_labels() {
        let stats = GatewayStats::default();
        let _client = stats.register(7, Tier::Stable);
        stats.send_errors.fetch_add(2, Ordering::Relaxed);
        stats.send_timeouts.fetch_add(1, Ordering::Relaxed);
        let station = Station::new(0, "focus");
        let mut listener = station.subscribe();
        for seq in 0..3 {
            station.publish(Arc::new(EncodedChunk::encode(
                "focus",
                seq,
                0,
                &[0; CHUNK_SAMPLES],
            )));
        }
        let _ = listener.events.try_recv();
        let s = &station.stats;
        s.record_encode(EncodeFormat::WebSocket, Duration::from_micros(40));
        s.record_delivery(3.0, false);
        s.record_delivery(700.0, true);
        s.record_reported_underruns(2);
        s.record_skip(10);
        s.reader_skipped.fetch_add(5, Ordering::Relaxed);
        let gateway = Gateway {
            stats: &stats,
            active_connections: 1,
            max_connections: 100,
        };
        let text = render(&gateway, &[Arc::clone(&station)]);
        let focus = "station=\"focus\"";
        for line in [
            "# TYPE active_websocket_connections gauge".to_owned(),
            "active_websocket_connections 1".to_owned(),
            "# TYPE websocket_send_errors_total counter".to_owned(),
            "websocket_send_errors_total 3".to_owned(),
            "streamd_stations 1".to_owned(),
            "# TYPE streamd_listeners_by_tier gauge".to_owned(),
            "streamd_listeners_by_tier{tier=\"stable\"} 1".to_owned(),
            "streamd_listeners_by_tier{tier=\"minimal\"} 0".to_owned(),
            format!("streamd_listeners{{{focus}}} 1"),
            "# TYPE buffer_depth_chunks gauge".to_owned(),
            format!("buffer_depth_chunks{{{focus}}} 2"),
            "# TYPE buffer_underruns_total counter".to_owned(),
            format!("buffer_underruns_total{{{focus}}} 3"),
            format!("streamd_reported_underruns_total{{{focus}}} 2"),
            "# TYPE chunk_delivery_jitter_ms histogram".to_owned(),
            format!("chunk_delivery_jitter_ms_bucket{{{focus},le=\"5\"}} 1"),
            format!("chunk_delivery_jitter_ms_bucket{{{focus},le=\"+Inf\"}} 2"),
            format!("chunk_delivery_jitter_ms_sum{{{focus}}} 703"),
            format!("chunk_delivery_jitter_ms_count{{{focus}}} 2"),
            "# TYPE chunk_encoding_duration_seconds histogram".to_owned(),
            format!(
                "chunk_encoding_duration_seconds_bucket{{format=\"websocket\",{focus},le=\"0.00005\"}} 1"
            ),
            format!("chunk_encoding_duration_seconds_count{{format=\"websocket\",{focus}}} 1"),
            "# TYPE streamd_listener_skips_total counter".to_owned(),
            format!("streamd_listener_skips_total{{{focus}}} 1"),
            format!("streamd_lagged_chunks_total{{{focus}}} 10"),
            format!("streamd_reader_lagged_chunks_total{{{focus}}} 5"),
            "# TYPE process_cpu_seconds_total counter".to_owned(),
            "# TYPE memory_usage_mb gauge".to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("format=\"opus\""), "no unused formats");
        assert!(!text.contains("conn_id"), "nothing per client");
        // Exactly one +Inf bucket per histogram series.
        assert_eq!(
            text.matches("chunk_delivery_jitter_ms_bucket{station=\"focus\",le=\"+Inf\"}")
                .count(),
            1
        );
    }
}
