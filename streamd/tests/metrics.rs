//! `/metrics` end to end: a synthetic synthd publishes a chunk every 100 ms on a "focus" station,
//! `streamd::run` serves 127.0.0.1:0, a WebSocket client streams a few live chunks and reports
//! underruns, then the test scrapes `/metrics` over HTTP: the per-station counters moved, and they
//! are still there once the client has left. `METRICS_ENABLED=false` answers 404.

use std::time::{Duration, Instant};

use serde_json::json;

mod common;
use common::{Fixture, Server, recv, send};

/// The value of the sample line `series` (name and labels exactly as exported), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

fn require(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[test]
fn scrape_shows_per_station_counters_that_survive_the_client() {
    let fixture = Fixture::new("scrape");
    let server = Server::start(
        &fixture.ns,
        streamd::Args {
            drain_secs: 0.0,
            ..streamd::Args::default()
        },
    );
    let focus = r#"{station="focus"}"#;

    let mut ws = server.connect();
    send(
        &mut ws,
        json!({"type": "control", "action": "start", "params": {"station": "focus"}}),
    );
    // Pre-roll from the history, then live chunks (the only ones timed).
    let mut audio = 0;
    while audio < 12 {
        if recv(&mut ws)["type"] == "audio" {
            audio += 1;
        }
    }
    send(
        &mut ws,
        json!({"type": "control", "action": "report", "params": {"underruns": 2, "buffer_ms": 400}}),
    );
    // The report is handled before the next chunk goes out.
    while recv(&mut ws)["type"] != "audio" {}
    recv(&mut ws);

    let (status, text) = server.http_get("/metrics");
    assert_eq!(status, 200);
    for kind in [
        "# TYPE chunk_delivery_jitter_ms histogram",
        "# TYPE chunk_encoding_duration_seconds histogram",
        "# TYPE buffer_underruns_total counter",
        "# TYPE buffer_depth_chunks gauge",
        "# TYPE streamd_listeners_by_tier gauge",
    ] {
        assert!(text.contains(kind), "missing {kind}:\n{text}");
    }
    assert_eq!(require(&text, "active_websocket_connections"), 1.0);
    assert_eq!(require(&text, "streamd_connections_opened_total"), 1.0);
    assert_eq!(require(&text, "streamd_stations"), 1.0);
    assert_eq!(require(&text, &format!("streamd_listeners{focus}")), 1.0);
    let by_tier: f64 = ["minimal", "normal", "stable", "defensive"]
        .iter()
        .map(|t| require(&text, &format!("streamd_listeners_by_tier{{tier=\"{t}\"}}")))
        .sum();
    assert_eq!(by_tier, 1.0);
    require(&text, &format!("buffer_depth_chunks{focus}"));
    let delivered = require(&text, &format!("chunk_delivery_jitter_ms_count{focus}"));
    assert!(delivered >= 5.0, "live deliveries timed: {delivered}");
    assert!(
        require(
            &text,
            r#"chunk_encoding_duration_seconds_count{format="websocket",station="focus"}"#
        ) >= 12.0
    );
    assert!(require(&text, &format!("streamd_chunks_encoded_total{focus}")) >= 12.0);
    assert_eq!(
        require(&text, &format!("streamd_reported_underruns_total{focus}")),
        2.0
    );
    let underruns = require(&text, &format!("buffer_underruns_total{focus}"));
    assert!(underruns >= 2.0);
    assert!(!text.contains("conn_id"), "nothing per client");

    // The client leaves: the station's totals stay (and only grow).
    ws.close(None).expect("close");
    while ws.read().is_ok() {}
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let (_, text) = server.http_get("/metrics");
        if sample(&text, "active_websocket_connections") == Some(0.0) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(require(&text, "active_websocket_connections"), 0.0);
    assert_eq!(require(&text, &format!("streamd_listeners{focus}")), 0.0);
    assert!(require(&text, &format!("chunk_delivery_jitter_ms_count{focus}")) >= delivered);
    assert!(require(&text, &format!("buffer_underruns_total{focus}")) >= underruns);
    assert_eq!(
        require(&text, &format!("streamd_reported_underruns_total{focus}")),
        2.0
    );
}

#[test]
fn metrics_enabled_false_turns_the_route_off() {
    let fixture = Fixture::new("off");
    let server = Server::start(
        &fixture.ns,
        streamd::Args {
            drain_secs: 0.0,
            metrics_enabled: false,
            ..streamd::Args::default()
        },
    );
    assert_eq!(server.http_get("/metrics").0, 404);
    assert_eq!(server.http_get("/healthz").0, 200);
}
