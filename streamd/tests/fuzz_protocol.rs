//! Property-based fuzzing of the control-message parser (`protocol::parse_client_message`), the
//! first code every client frame reaches: whatever a client sends, the parser returns a request or
//! a precise error, never panics; valid JSON is never reported as `invalid_json`; a well-formed
//! `start` always parses to what was asked. Each property prints how many inputs it ran.
//!
//! `PROPTEST_CASES=100000 cargo test -p streamd --test fuzz_protocol -- --nocapture` for a long run.

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use streamd::protocol::{ClientRequest, ErrorCode, Format, parse_client_message};

/// Cases per property in the default (CI) run; `PROPTEST_CASES` overrides.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        prop::sample::select(vec![
            "focus", "calm", "json", "pcm16", "binary", "C", "minor", "", "start", "control"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Object keys: mostly the protocol's own names, so the interesting branches are reached.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "type", "action", "params", "station", "format", "resume_from", "ack", "key", "mode",
            "bpm", "intensity", "seed", "preset", "underruns", "buffer_ms", "tier",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

/// A control message with random action and parameters.
fn control_message() -> impl Strategy<Value = Value> {
    let action = prop_oneof![
        4 => prop::sample::select(vec!["start", "set", "stop", "report", "ping"]).prop_map(Value::from),
        1 => json_value(),
    ];
    let params = prop_oneof![
        4 => prop::collection::btree_map(key(), json_value(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => json_value(),
    ];
    let kind = prop_oneof![
        6 => Just(Value::from("control")),
        1 => Just(Value::from("ping")),
        1 => json_value(),
    ];
    (kind, action, params, prop::option::of(json_value())).prop_map(
        |(kind, action, params, extra)| {
            let mut m = Map::new();
            m.insert("type".into(), kind);
            m.insert("action".into(), action);
            m.insert("params".into(), params);
            if let Some(extra) = extra {
                m.insert("extra".into(), extra);
            }
            Value::Object(m)
        },
    )
}

static RUNS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

fn count(i: usize) {
    RUNS[i].fetch_add(1, Ordering::Relaxed);
}

fn report(i: usize, name: &str) {
    println!(
        "fuzz_protocol {name}: {} executions, 0 crashes",
        RUNS[i].load(Ordering::Relaxed)
    );
}

#[test]
fn arbitrary_text_never_panics() {
    proptest!(config(), |(text in prop_oneof![".{0,300}", prop::collection::vec(any::<u8>(), 0..600)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())])| {
        count(0);
        let valid_json = serde_json::from_str::<Value>(&text).is_ok();
        match parse_client_message(&text) {
            Ok(_) => prop_assert!(valid_json),
            Err(e) => prop_assert_eq!(e.code == ErrorCode::InvalidJson, !valid_json),
        }
    });
    report(0, "arbitrary text");
}

#[test]
fn arbitrary_json_is_never_called_invalid_json() {
    proptest!(config(), |(value in prop_oneof![json_value(), control_message()])| {
        count(1);
        let text = value.to_string();
        if let Err(e) = parse_client_message(&text) {
            prop_assert_ne!(e.code, ErrorCode::InvalidJson, "{} -> {:?}", text, e);
            prop_assert!(!e.message.is_empty());
        }
    });
    report(1, "arbitrary JSON / control messages");
}

#[test]
fn well_formed_start_parses_to_what_was_asked() {
    proptest!(config(), |(
        station in "[a-z0-9_-]{1,31}",
        format in prop::sample::select(vec![("json", Format::Json), ("pcm16", Format::Pcm16), ("binary", Format::Pcm16)]),
        resume in prop::option::of(any::<u64>()),
    )| {
        count(2);
        let mut params = json!({"station": station, "format": format.0});
        if let Some(seq) = resume {
            params["resume_from"] = json!(seq);
        }
        let text = json!({"type": "control", "action": "start", "params": params}).to_string();
        match parse_client_message(&text) {
            Ok(ClientRequest::Start(start)) => {
                prop_assert_eq!(start.station.as_deref(), Some(station.as_str()));
                prop_assert_eq!(start.format, Some(format.1));
                prop_assert_eq!(start.resume_from, resume);
            }
            other => prop_assert!(false, "{} -> {:?}", text, other),
        }
    });
    report(2, "well-formed start");
}

#[test]
fn mutated_valid_messages_never_panic() {
    let seeds = [
        r#"{"type":"control","action":"start","params":{"station":"focus","format":"pcm16","resume_from":17}}"#,
        r#"{"type":"control","action":"start","params":{"key":"C","bpm":70,"intensity":0.5}}"#,
        r#"{"type":"control","action":"set","params":{"format":"json","preset":"calm","mode":"minor"}}"#,
        r#"{"type":"control","action":"report","params":{"underruns":3,"buffer_ms":420.5}}"#,
        r#"{"type":"ping"}"#,
    ];
    proptest!(config(), |(
        which in 0..seeds.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    )| {
        count(3);
        let mut bytes = seeds[which].as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if !bytes.is_empty() => {
                    let j = i.min(bytes.len() - 1);
                    bytes[j] = byte;
                }
                1 => {
                    let j = i.min(bytes.len());
                    bytes.insert(j, byte);
                }
                _ if !bytes.is_empty() => {
                    let j = i.min(bytes.len() - 1);
                    bytes.remove(j);
                }
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_client_message(&text);
    });
    report(3, "mutated valid messages");
}

#[test]
fn pathological_inputs_are_errors_not_crashes() {
    // Deep nesting (a stack overflow would abort the process), huge numbers, huge strings.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        parse_client_message(&deep).unwrap_err().code,
        ErrorCode::InvalidJson
    );
    let deep_obj = format!(
        r#"{{"type":"control","action":"start","params":{{"station":{}1{}}}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(parse_client_message(&deep_obj).is_err());
    for number in ["1e400", "-1e400", "18446744073709551616", "-0", "0.0000001"] {
        for field in [
            "resume_from",
            "bpm",
            "intensity",
            "seed",
            "underruns",
            "buffer_ms",
        ] {
            let text =
                format!(r#"{{"type":"control","action":"start","params":{{"{field}":{number}}}}}"#);
            let _ = parse_client_message(&text);
        }
    }
    let long = format!(
        r#"{{"type":"control","action":"start","params":{{"station":"{}"}}}}"#,
        "x".repeat(60_000)
    );
    assert_eq!(
        parse_client_message(&long).unwrap_err().code,
        ErrorCode::InvalidParam
    );
    assert!(parse_client_message("\u{0}").is_err());
    assert!(parse_client_message("").is_err());
}
