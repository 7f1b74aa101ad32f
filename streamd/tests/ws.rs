//! End-to-end tests of the gateway over real shared memory and a real port: a fixture plays
//! synthd (an `AudioWriter` publishing a synthetic chunk every 100 ms) and composer (the control
//! block with a "focus" station); `streamd::run` serves 127.0.0.1:0; a tungstenite client talks to
//! it. Each test uses its own namespace and removes it at the end.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use shm_proto::{ControlBlock, Namespace};
use tungstenite::{Message, WebSocket};

mod common;
use common::{Fixture, SLOTS, Server, marker, recv, send};

/// The server with the default limits and a 1 s drain.
fn with_defaults(ns: &Namespace) -> Server {
    Server::start(
        ns,
        streamd::Args {
            drain_secs: 1.0,
            ..streamd::Args::default()
        },
    )
}

/// Reads until a message of `kind` arrives; returns it and the audio seen before it.
fn recv_until(ws: &mut WebSocket<TcpStream>, kind: &str) -> (Value, Vec<Value>) {
    let mut audio = Vec::new();
    for _ in 0..200 {
        let message = recv(ws);
        if message["type"] == kind {
            return (message, audio);
        }
        if message["type"] == "audio" {
            audio.push(message);
        }
    }
    panic!("no {kind} message");
}

fn recv_audio(ws: &mut WebSocket<TcpStream>, n: usize) -> Vec<Value> {
    let mut audio = Vec::new();
    while audio.len() < n {
        let message = recv(ws);
        if message["type"] == "audio" {
            audio.push(message);
        }
    }
    audio
}

fn assert_contiguous(audio: &[Value]) {
    for pair in audio.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64().unwrap(),
            pair[0]["seq"].as_u64().unwrap() + 1,
            "seq not contiguous"
        );
    }
}

fn start() -> Value {
    json!({"type": "control", "action": "start", "params": {"ack": true}})
}

#[test]
fn streams_ten_contiguous_audio_messages_with_the_documented_fields() {
    let fixture = Fixture::new("audio");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    // Exactly as the seed scenarios send it: no ack asked for, so every message is audio, from
    // a station created for these parameters.
    send(
        &mut ws,
        json!({"type": "control", "action": "start", "params": {"key": "C", "bpm": 70, "intensity": 0.5}}),
    );
    let audio: Vec<Value> = (0..10).map(|_| recv(&mut ws)).collect();
    assert!(audio.iter().all(|m| m["type"] == "audio"), "{audio:?}");
    assert_contiguous(&audio);
    let station = audio[0]["station"].as_str().unwrap().to_owned();
    assert!(
        station.starts_with("p-") && station.len() == 18,
        "{station}"
    );
    let control = ControlBlock::attach(&fixture.ns).unwrap();
    let slot = control
        .find(&station)
        .expect("station in the control block");
    assert_eq!(
        (slot.params.key, slot.params.bpm, slot.params.intensity),
        (0, 70.0, 0.5)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for message in &audio {
        let o = message.as_object().unwrap();
        assert_eq!(o.len(), 11, "{:?}", o.keys().collect::<Vec<_>>());
        assert_eq!(o["duration_ms"], 100);
        assert_eq!(o["sample_rate"], 44_100);
        assert_eq!(o["channels"], 2);
        assert_eq!(o["format"], "s16le");
        assert_eq!(o["station"], station.as_str());
        assert_eq!(o["current_tier"], "normal");
        assert!(
            o["buffer_depth"].as_u64().unwrap() > 0,
            "{}",
            o["buffer_depth"]
        );
        let ts = o["timestamp"].as_f64().unwrap();
        assert!((now - ts).abs() < 10.0, "timestamp {ts} vs now {now}");
        let data = base64::engine::general_purpose::STANDARD
            .decode(o["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data.len(), 17_640);
        let seq = o["seq"].as_u64().unwrap();
        assert_eq!(i16::from_le_bytes([data[0], data[1]]), marker(seq));
    }
    // /ws/stream is the same endpoint.
    let mut other = server
        .try_connect("/ws/stream")
        .expect("connect /ws/stream");
    send(&mut other, start());
    assert_eq!(recv(&mut other)["type"], "ack");
    assert_contiguous(&recv_audio(&mut other, 3));
}

#[test]
fn errors_keep_the_connection_and_ping_pongs() {
    let fixture = Fixture::new("errors");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    let cases = [
        ("{not json", "invalid_json"),
        ("[1]", "invalid_message"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"control","action":"jump"}"#, "unknown_action"),
        (
            r#"{"type":"control","action":"start","params":{"station":"disco"}}"#,
            "unknown_station",
        ),
        (
            r#"{"type":"control","action":"start","params":{"volume":1}}"#,
            "unknown_param",
        ),
    ];
    for (text, code) in cases {
        ws.send(Message::Text(text.into())).unwrap();
        let reply = recv(&mut ws);
        assert_eq!(reply["type"], "error", "{text} -> {reply}");
        assert_eq!(reply["code"], code, "{text} -> {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Musical values out of range: composer's message names the field and the range.
    let stations_before = ControlBlock::attach(&fixture.ns).unwrap().stations().len();
    let invalid = [
        (
            json!({"bpm": 300}),
            "bpm must be between 40 and 120, got 300",
        ),
        (
            json!({"intensity": 1.5}),
            "intensity must be between 0 and 1, got 1.5",
        ),
        (json!({"key": "H"}), "key must be a note name"),
        (json!({"mode": "locrian"}), "mode must be one of"),
        (json!({"preset": "party"}), "preset must be one of"),
        (json!({"bpm": "fast"}), "bpm must be a number"),
        (
            json!({"bpm": 70, "intensity": 9}),
            "intensity must be between 0 and 1",
        ),
    ];
    for (params, message) in invalid {
        for action in ["start", "set"] {
            send(
                &mut ws,
                json!({"type": "control", "action": action, "params": params}),
            );
            let reply = recv(&mut ws);
            assert_eq!(reply["code"], "invalid_param", "{params} -> {reply}");
            assert!(
                reply["message"].as_str().unwrap().contains(message),
                "{params} -> {reply}"
            );
        }
    }
    assert_eq!(
        ControlBlock::attach(&fixture.ns).unwrap().stations().len(),
        stations_before,
        "an invalid request creates no station"
    );
    // That was 20 control messages in a burst: let the token bucket refill.
    std::thread::sleep(Duration::from_secs(2));
    ws.send(Message::Binary(vec![1, 2, 3].into())).unwrap();
    assert_eq!(recv(&mut ws)["code"], "binary_not_supported");

    send(&mut ws, json!({"type": "control", "action": "ping"}));
    assert_eq!(recv(&mut ws)["type"], "pong");
    send(&mut ws, json!({"type": "ping"}));
    assert_eq!(recv(&mut ws)["type"], "pong");
    send(
        &mut ws,
        json!({"type": "control", "action": "set", "params": {"format": "json"}}),
    );
    let ack = recv(&mut ws);
    assert_eq!(
        (ack["type"].as_str(), ack["action"].as_str()),
        (Some("ack"), Some("set"))
    );

    // Still usable.
    send(&mut ws, start());
    assert_eq!(recv(&mut ws)["type"], "ack");
    assert_contiguous(&recv_audio(&mut ws, 3));
}

#[test]
fn stop_stops_and_the_connection_stays() {
    let fixture = Fixture::new("stop");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    send(&mut ws, start());
    recv_audio(&mut ws, 3);
    send(&mut ws, json!({"type": "control", "action": "stop"}));
    let (ack, _) = recv_until(&mut ws, "ack");
    assert_eq!(ack["action"], "stop");
    // Nothing more arrives.
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected silence after stop, got {other:?}"),
    }
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    send(&mut ws, json!({"type": "ping"}));
    assert_eq!(recv(&mut ws)["type"], "pong");
    // And it can start again.
    send(&mut ws, start());
    assert_eq!(recv(&mut ws)["type"], "ack");
    recv_audio(&mut ws, 2);
}

#[test]
fn resume_from_replays_the_history_then_live() {
    let fixture = Fixture::new("resume");
    let server = with_defaults(&fixture.ns);
    let mut first = server.connect();
    send(&mut first, start());
    let audio = recv_audio(&mut first, 6);
    let last = audio.last().unwrap()["seq"].as_u64().unwrap();
    drop(first);

    // Reconnect 300 ms later asking for what follows: nothing lost.
    std::thread::sleep(Duration::from_millis(300));
    let mut ws = server.connect();
    send(
        &mut ws,
        json!({"type": "control", "action": "start", "params": {"resume_from": last + 1, "ack": true}}),
    );
    let ack = recv(&mut ws);
    assert_eq!(ack["first_seq"], last + 1, "{ack}");
    let status = recv(&mut ws);
    assert_eq!(status["state"], "resumed", "{status}");
    assert_eq!(status["lost"], 0);
    let audio = recv_audio(&mut ws, 8);
    assert_eq!(audio[0]["seq"], last + 1);
    assert_contiguous(&audio);

    // Asking for seq 0 long after it left the history: join live, told how much was lost.
    let mut late = server.connect();
    send(
        &mut late,
        json!({"type": "control", "action": "start", "params": {"resume_from": 0, "ack": true}}),
    );
    assert_eq!(recv(&mut late)["type"], "ack");
    let status = recv(&mut late);
    assert_eq!(status["state"], "resumed", "{status}");
    let lost = status["lost"].as_u64().unwrap();
    assert!(lost > 0);
    let audio = recv_audio(&mut late, 3);
    assert_eq!(audio[0]["seq"].as_u64().unwrap(), lost);
    assert_contiguous(&audio);
}

#[test]
fn pcm16_format_sends_binary_frames() {
    let fixture = Fixture::new("pcm");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    send(
        &mut ws,
        json!({"type": "control", "action": "start", "params": {"format": "pcm16", "ack": true}}),
    );
    let ack = recv(&mut ws);
    assert_eq!(ack["format"], "pcm16", "{ack}");
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        if let Message::Binary(frame) = ws.read().unwrap() {
            assert_eq!(&frame[0..4], b"AUR1");
            let header_len = u32::from_le_bytes(frame[4..8].try_into().unwrap()) as usize;
            assert_eq!(header_len, 40);
            assert_eq!(frame.len(), header_len + 17_640);
            let seq = u64::from_le_bytes(frame[8..16].try_into().unwrap());
            assert_eq!(
                u32::from_le_bytes(frame[24..28].try_into().unwrap()),
                44_100
            );
            assert_eq!(
                i16::from_le_bytes([frame[header_len], frame[header_len + 1]]),
                marker(seq)
            );
            seqs.push(seq);
        }
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn http_routes() {
    let fixture = Fixture::new("http");
    let server = with_defaults(&fixture.ns);
    assert_eq!(server.http_get("/healthz"), (200, "ok".to_owned()));
    let (status, page) = server.http_get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page}"
    );
    // Give the reader a moment to encode something, with one listener.
    let mut ws = server.connect();
    send(&mut ws, start());
    recv_audio(&mut ws, 2);
    let (status, body) = server.http_get("/api/status");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["pid"], std::process::id());
    assert_eq!(v["connections"]["active"], 1);
    assert_eq!(v["state"], "running");
    let station = &v["stations"][0];
    assert_eq!(station["name"], "focus");
    assert_eq!(station["index"], 0);
    assert_eq!(station["listeners"], 1);
    assert_eq!(station["ring_slots"], SLOTS);
    assert_eq!(station["writer_health"], "alive");
    assert!(station["latest_seq"].as_u64().is_some());
    assert!(v["uptime_s"].as_f64().is_some());
}

#[test]
fn oversized_message_closes_with_1009() {
    let fixture = Fixture::new("big");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    let big = format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    ws.send(Message::Text(big.into())).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Ok(Message::Close(None)) => panic!("close without code"),
            Ok(_) => {}
            Err(e) => panic!("expected a 1009 close, got {e}"),
        }
    }
}

#[test]
fn connections_over_the_cap_get_503() {
    let fixture = Fixture::new("cap");
    let server = Server::start(
        &fixture.ns,
        streamd::Args {
            max_connections: 1,
            drain_secs: 1.0,
            ..streamd::Args::default()
        },
    );
    let mut first = server.connect();
    match server.try_connect("/ws") {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    send(&mut first, json!({"type": "ping"}));
    assert_eq!(recv(&mut first)["type"], "pong");
    drop(first);
    // The permit comes back when the connection ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match server.try_connect("/ws") {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("permit not returned: {e}"),
        }
    }
}

#[test]
fn stalled_source_is_reported_and_recovers() {
    let fixture = Fixture::new("stall");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    send(&mut ws, start());
    recv_audio(&mut ws, 2);
    fixture.paused.store(true, Ordering::Relaxed);
    let (stalled, _) = recv_until(&mut ws, "status");
    assert_eq!(stalled["state"], "source_stalled", "{stalled}");
    assert_eq!(stalled["reason"], "stalled");
    assert_eq!(stalled["station"], "focus");
    fixture.paused.store(false, Ordering::Relaxed);
    let (recovered, _) = recv_until(&mut ws, "status");
    assert_eq!(recovered["state"], "source_recovered", "{recovered}");
    let audio = recv_audio(&mut ws, 3);
    assert_contiguous(&audio);
}

#[test]
fn shutdown_drains_then_closes_with_1001() {
    let fixture = Fixture::new("drain");
    let mut server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    send(&mut ws, start());
    recv_audio(&mut ws, 2);
    let shutdown_at = Instant::now();
    server.begin_shutdown();
    let (draining, _) = recv_until(&mut ws, "draining");
    assert!(
        draining["reconnect_after_ms"].as_u64().is_some(),
        "{draining}"
    );
    assert!(draining["closes_in_ms"].as_u64().unwrap() <= 1_000);
    let resume_from = draining["resume_from"].as_u64().unwrap();
    // Audio keeps flowing during the drain, from where the draining message said.
    let audio = recv_audio(&mut ws, 3);
    assert_eq!(audio[0]["seq"], resume_from);
    // New connections are refused meanwhile.
    assert!(server.try_connect("/ws").is_err());
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001);
                break;
            }
            Ok(Message::Text(_)) => {}
            other => panic!("expected a 1001 close, got {other:?}"),
        }
    }
    assert!(shutdown_at.elapsed() >= Duration::from_millis(900));
    server.stop().expect("run returned an error");
    assert!(shutdown_at.elapsed() < Duration::from_secs(8));
}

#[test]
fn shutdown_without_clients_is_immediate() {
    let fixture = Fixture::new("quick");
    let mut server = Server::start(
        &fixture.ns,
        streamd::Args {
            drain_secs: 30.0,
            ..streamd::Args::default()
        },
    );
    let started = Instant::now();
    server.stop().expect("run returned an error");
    assert!(started.elapsed() < Duration::from_secs(3));
}

fn start_with(params: Value) -> Value {
    let mut params = params;
    params["ack"] = json!(true);
    json!({"type": "control", "action": "start", "params": params})
}

/// The ack of a start or set (skipping audio), and its station.
fn ack_station(ws: &mut WebSocket<TcpStream>) -> String {
    let (ack, _) = recv_until(ws, "ack");
    ack["station"].as_str().expect("station in ack").to_owned()
}

/// Audio from `ws` until `n` messages of `station` arrived (earlier stations' chunks may still
/// be in flight after a move).
fn audio_of(ws: &mut WebSocket<TcpStream>, station: &str, n: usize) -> Vec<Value> {
    let mut audio = Vec::new();
    for _ in 0..200 {
        let m = recv(ws);
        if m["type"] == "audio" && m["station"] == station {
            audio.push(m);
            if audio.len() == n {
                return audio;
            }
        }
    }
    panic!("no audio of {station}");
}

#[test]
fn same_parameters_share_a_station_different_ones_do_not() {
    let fixture = Fixture::new("share");
    let server = with_defaults(&fixture.ns);
    let (mut a, mut b, mut c) = (server.connect(), server.connect(), server.connect());
    send(&mut a, start_with(json!({"bpm": 72, "mode": "aeolian"})));
    // Same values, other spelling and order.
    send(&mut b, start_with(json!({"mode": "aeolian", "bpm": 72.0})));
    send(&mut c, start_with(json!({"bpm": 80, "mode": "aeolian"})));
    let (sa, sb, sc) = (
        ack_station(&mut a),
        ack_station(&mut b),
        ack_station(&mut c),
    );
    assert_eq!(sa, sb);
    assert_ne!(sa, sc);
    assert!(sa.starts_with("p-") && sc.starts_with("p-"));
    let control = ControlBlock::attach(&fixture.ns).unwrap();
    let names: Vec<String> = control
        .stations()
        .iter()
        .map(|s| s.name_str().to_owned())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "focus and two parameter stations: {names:?}"
    );
    assert!(names.contains(&sa) && names.contains(&sc));
    assert_eq!(control.find(&sa).unwrap().params.bpm, 72.0);
    assert_eq!(control.find(&sc).unwrap().params.bpm, 80.0);
    // Both listeners of one station get the very same stream.
    let (x, y) = (audio_of(&mut a, &sa, 3), audio_of(&mut b, &sa, 3));
    assert_contiguous(&x);
    assert_contiguous(&y);
    audio_of(&mut c, &sc, 2);
    // Parameters equal to the base station's: no new station, the listener joins focus.
    let mut d = server.connect();
    send(&mut d, start_with(json!({"bpm": 60, "key": "C"})));
    assert_eq!(ack_station(&mut d), "focus");
    // Demand is reported for the parameter stations while they have listeners.
    let before = control.find(&sa).unwrap().last_demand_ns;
    std::thread::sleep(Duration::from_millis(1_200));
    assert!(control.find(&sa).unwrap().last_demand_ns > before);
}

#[test]
fn set_moves_only_that_listener() {
    let fixture = Fixture::new("move");
    let server = with_defaults(&fixture.ns);
    let (mut a, mut b) = (server.connect(), server.connect());
    send(&mut a, start_with(json!({"intensity": 0.3})));
    send(&mut b, start_with(json!({"intensity": 0.3})));
    let shared = ack_station(&mut a);
    assert_eq!(ack_station(&mut b), shared);
    audio_of(&mut a, &shared, 2);

    send(
        &mut a,
        json!({"type": "control", "action": "set", "params": {"key": "E", "bpm": 90}}),
    );
    let (ack, _) = recv_until(&mut a, "ack");
    assert_eq!(ack["action"], "set");
    let moved = ack["station"].as_str().unwrap().to_owned();
    assert_ne!(moved, shared);
    assert_eq!(ack["params"]["bpm"], 90.0);
    assert!((ack["params"]["intensity"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    audio_of(&mut a, &moved, 3);
    // B still hears the shared station, whose parameters did not change.
    let b_audio = audio_of(&mut b, &shared, 5);
    assert!(b_audio.iter().all(|m| m["station"] == shared.as_str()));
    let control = ControlBlock::attach(&fixture.ns).unwrap();
    let slot = control.find(&shared).unwrap();
    assert_eq!(
        (slot.params.key, slot.params.bpm, slot.generation),
        (0, 60.0, 1)
    );
    let slot = control.find(&moved).unwrap();
    assert_eq!((slot.params.key, slot.params.bpm), (4, 90.0));
}

#[test]
fn the_station_cap_refuses_new_parameter_stations() {
    let fixture = Fixture::new("cap");
    let server = Server::start(
        &fixture.ns,
        streamd::Args {
            max_stations: Some(2),
            drain_secs: 0.0,
            ..streamd::Args::default()
        },
    );
    let mut ws = server.connect();
    send(&mut ws, start_with(json!({"bpm": 41})));
    assert!(ack_station(&mut ws).starts_with("p-"));
    send(&mut ws, start_with(json!({"bpm": 42})));
    let (error, _) = recv_until(&mut ws, "error");
    assert_eq!(error["code"], "station_limit", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("all 2 stations")
    );
    // Joining an existing one is still fine.
    send(&mut ws, start_with(json!({"bpm": 41})));
    assert!(ack_station(&mut ws).starts_with("p-"));
}

fn http_request(server: &Server, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// The status of a response whose connection may stay open (a WebSocket upgrade).
fn http_status(server: &Server, request: &str) -> u16 {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

fn post_params(server: &Server, station: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let (status, _, body) = http_request(
        server,
        &format!(
            "POST /api/stations/{station}/params HTTP/1.1\r\nHost: x\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn operator_api_needs_the_token_and_changes_a_named_station_for_everyone() {
    let fixture = Fixture::new("operator");
    let off = with_defaults(&fixture.ns);
    assert_eq!(
        post_params(&off, "focus", Some("x"), r#"{"bpm":70}"#).0,
        403
    );
    drop(off);

    let server = Server::start(
        &fixture.ns,
        streamd::Args {
            operator_token: Some("s3cret-token".parse().unwrap()),
            drain_secs: 0.0,
            ..streamd::Args::default()
        },
    );
    let body = r#"{"bpm":70,"mode":"dorian"}"#;
    assert_eq!(post_params(&server, "focus", None, body).0, 401);
    assert_eq!(
        post_params(&server, "focus", Some("s3cret-tokeN"), body).0,
        401
    );
    assert_eq!(post_params(&server, "focus", Some("s3cret"), body).0, 401);
    let (status, reply) = post_params(&server, "disco", Some("s3cret-token"), body);
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = post_params(&server, "focus", Some("s3cret-token"), r#"{"bpm":300}"#);
    assert_eq!(status, 400);
    assert_eq!(reply["error"], "bpm must be between 40 and 120, got 300");
    let (status, reply) = post_params(&server, "focus", Some("s3cret-token"), r#"{"tempo":80}"#);
    assert_eq!(status, 400);
    assert!(
        reply["error"].as_str().unwrap().contains("tempo"),
        "{reply}"
    );
    let control = ControlBlock::attach(&fixture.ns).unwrap();
    assert_eq!(
        control.find("focus").unwrap().generation,
        1,
        "nothing applied yet"
    );

    let mut listener = server.connect();
    send(&mut listener, start());
    recv_until(&mut listener, "ack");
    let (status, reply) = post_params(&server, "focus", Some("s3cret-token"), body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["generation"], 2);
    assert_eq!(reply["params"]["bpm"], 70.0);
    let slot = control.find("focus").unwrap();
    assert_eq!(
        (slot.params.bpm, slot.params.mode, slot.generation),
        (70.0, 1, 2)
    );
    // Parameter stations are named by their parameters: immutable.
    let mut ws = server.connect();
    send(&mut ws, start_with(json!({"bpm": 99})));
    let p = ack_station(&mut ws);
    assert_eq!(post_params(&server, &p, Some("s3cret-token"), body).0, 409);
}

#[test]
fn control_messages_are_rate_limited() {
    let fixture = Fixture::new("rate");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    for _ in 0..30 {
        send(&mut ws, json!({"type": "ping"}));
    }
    let mut pongs = 0;
    let mut limited = 0;
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // At most one refusal notice a second while flooding: read until quiet.
    while let Ok(message) = ws.read() {
        let Message::Text(text) = message else {
            continue;
        };
        let m: Value = serde_json::from_str(text.as_str()).unwrap();
        match m["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(m["code"], "rate_limited", "{m}");
                limited += 1;
            }
            _ => panic!("unexpected {m}"),
        }
    }
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Over the limit the gateway stops reading until the bucket has a token (200 ms), so the
    // rest of the burst trickles in: every other message is accepted.
    assert!((20..=26).contains(&pongs), "{pongs} pongs");
    assert!((1..=2).contains(&limited), "one notice a second: {limited}");
    // The bucket refills at 5 per second.
    std::thread::sleep(Duration::from_millis(450));
    send(&mut ws, json!({"type": "ping"}));
    assert_eq!(recv(&mut ws)["type"], "pong");
}

#[test]
fn a_client_flooding_for_more_than_three_seconds_is_closed_with_1008() {
    let fixture = Fixture::new("flood");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let started = Instant::now();
    let code = loop {
        assert!(started.elapsed() < Duration::from_secs(20), "never closed");
        if ws.send(Message::Text(r#"{"type":"ping"}"#.into())).is_err() {
            break None;
        }
        match ws.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break None,
        }
    };
    assert_eq!(code, Some(1008));
    assert!(started.elapsed() > Duration::from_secs(3));
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn foreign_origins_are_refused() {
    let fixture = Fixture::new("origin");
    let upgrade = |server: &Server, origin: &str| {
        http_status(
            server,
            &format!(
                "GET /ws HTTP/1.1\r\nHost: radio.example:8000\r\nOrigin: {origin}\r\n\
                 Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        )
    };
    let server = with_defaults(&fixture.ns);
    assert_eq!(upgrade(&server, "https://evil.example"), 403);
    assert_eq!(upgrade(&server, "http://localhost:3000"), 101);
    assert_eq!(upgrade(&server, "https://radio.example"), 101);
    drop(server);
    let server = Server::start(
        &fixture.ns,
        streamd::Args {
            allowed_origins: Some(vec!["https://player.example".into()]),
            drain_secs: 0.0,
            ..streamd::Args::default()
        },
    );
    assert_eq!(upgrade(&server, "https://player.example"), 101);
    assert_eq!(upgrade(&server, "http://localhost:3000"), 403);
}

#[test]
fn reported_underruns_promote_the_tier() {
    let fixture = Fixture::new("report");
    let server = Server::start(
        &fixture.ns,
        streamd::Args {
            initial_tier: streamd::protocol::Tier::Stable,
            drain_secs: 0.0,
            ..streamd::Args::default()
        },
    );
    let mut ws = server.connect();
    send(&mut ws, start());
    let audio = recv_audio(&mut ws, 12);
    assert!(audio.iter().all(|m| m["current_tier"] == "stable"));
    send(
        &mut ws,
        json!({"type": "control", "action": "report", "params": {"underruns": 3, "buffer_ms": 0}}),
    );
    let audio = recv_audio(&mut ws, 3);
    assert_eq!(
        audio.last().unwrap()["current_tier"],
        "defensive",
        "{audio:?}"
    );
}

#[test]
fn late_socket_writes_promote_the_tier() {
    let fixture = Fixture::new("late");
    let server = with_defaults(&fixture.ns);
    // A client with a tiny receive buffer that stops reading: the server's writes complete ever
    // later (injected lateness, measured by the server alone).
    let socket = socket2_like_small_buffer(server.addr);
    let (mut ws, _) =
        tungstenite::client(format!("ws://{}/ws", server.addr), socket).expect("handshake");
    send(&mut ws, start());
    let first = recv_audio(&mut ws, 10);
    assert!(first.iter().all(|m| m["current_tier"] == "normal"));
    std::thread::sleep(Duration::from_millis(4_000));
    let mut tiers = Vec::new();
    for _ in 0..60 {
        let m = recv(&mut ws);
        if m["type"] == "audio" {
            tiers.push(m["current_tier"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        tiers.iter().any(|t| t == "stable" || t == "defensive"),
        "{tiers:?}"
    );
}

/// A TCP connection whose receive buffer is as small as the kernel allows.
fn socket2_like_small_buffer(addr: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(addr).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

#[test]
fn presets_and_player_files_are_served() {
    let fixture = Fixture::new("files");
    let server = with_defaults(&fixture.ns);
    let (status, head, body) = http_request(
        &server,
        "GET /api/presets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(head.contains("application/json"));
    let presets: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = presets["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"focus"), "{names:?}");
    for (path, kind) in [
        ("/", "text/html"),
        ("/player.js", "text/javascript"),
        ("/worklet.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let (status, head, _) = http_request(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
    }
}
