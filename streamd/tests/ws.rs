//! End-to-end tests of the gateway over real shared memory and a real port: a fixture plays
//! synthd (an `AudioWriter` publishing a synthetic chunk every 100 ms) and composer (the control
//! block with a "focus" station); `streamd::run` serves 127.0.0.1:0; a tungstenite client talks to
//! it. Each test uses its own namespace and removes it at the end.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use shm_proto::{AudioWriter, CHUNK_SAMPLES, ControlBlock, Namespace, StationParams};
use tungstenite::{Message, WebSocket};

const SLOTS: u32 = 8;

fn params() -> StationParams {
    StationParams {
        seed: 7,
        bpm: 60.0,
        intensity: 0.5,
        key: 0,
        mode: 0,
        preset: 0,
        _reserved: 0,
    }
}

/// The value of the first sample of chunk `seq`, so the test can check it got the right audio.
fn marker(seq: u64) -> i16 {
    (seq % 30_000) as i16
}

/// Composer + synthd stand-in.
struct Fixture {
    ns: Namespace,
    stop: Arc<AtomicBool>,
    /// While set, the writer neither publishes nor heartbeats (a stalled synthd).
    paused: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sdt_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            tag
        );
        let ns = Namespace::new(&name).expect("namespace");
        let _ = ns.remove_all();
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (ns, stop, paused) = (ns.clone(), Arc::clone(&stop), Arc::clone(&paused));
            std::thread::spawn(move || {
                let control = ControlBlock::create_or_adopt(&ns, 8).expect("control block");
                let index = control.ensure_station("focus", params()).expect("station");
                let mut writer = AudioWriter::create_or_adopt(&ns, index, SLOTS).expect("ring");
                let mut samples = [0i16; CHUNK_SAMPLES];
                let mut publish = |writer: &mut AudioWriter| {
                    let seq = writer.next_seq();
                    for (i, s) in samples.iter_mut().enumerate() {
                        *s = ((i as i64 * 37 + seq as i64 * 11) % 2_000) as i16;
                    }
                    samples[0] = marker(seq);
                    writer.publish(&samples, params(), 1);
                };
                // A little history before anybody connects.
                for _ in 0..3 {
                    publish(&mut writer);
                }
                ready_tx.send(()).expect("ready");
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if !paused.load(Ordering::Relaxed) {
                        publish(&mut writer);
                        control.heartbeat();
                    }
                    next += Duration::from_millis(100);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("fixture ready");
        Self {
            ns,
            stop,
            paused,
            thread: Some(thread),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self.ns.remove_all();
    }
}

/// A running `streamd::run`.
struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    fn start(ns: &Namespace, args: streamd::Args) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let ns = ns.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?)?;
                streamd::run(listener, args, ns, async {
                    let _ = shutdown_rx.await;
                })
                .await
            })
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server address");
        Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn with_defaults(ns: &Namespace) -> Self {
        Self::start(
            ns,
            streamd::Args {
                drain_secs: 1.0,
                ..streamd::Args::default()
            },
        )
    }

    fn connect(&self) -> WebSocket<TcpStream> {
        self.try_connect("/ws").expect("websocket connect")
    }

    // A test helper: the size of tungstenite's error does not matter here.
    #[allow(clippy::result_large_err)]
    fn try_connect(&self, path: &str) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
        let stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let (ws, _) = tungstenite::client(format!("ws://{}{path}", self.addr), stream).map_err(
            |e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => {
                    tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
                }
            },
        )?;
        Ok(ws)
    }

    fn http_get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Triggers shutdown and waits for `run` to return.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().expect("server thread"),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn send(ws: &mut WebSocket<TcpStream>, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .expect("send");
}

/// Next text message as JSON (skips pings).
fn recv(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("json"),
            Message::Binary(_) => panic!("unexpected binary frame"),
            Message::Close(frame) => panic!("unexpected close: {frame:?}"),
            _ => {}
        }
    }
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
    json!({"type": "control", "action": "start"})
}

#[test]
fn streams_ten_contiguous_audio_messages_with_the_documented_fields() {
    let fixture = Fixture::new("audio");
    let server = Server::with_defaults(&fixture.ns);
    let mut ws = server.connect();
    // Exactly as the seed scenarios send it.
    send(
        &mut ws,
        json!({"type": "control", "action": "start", "params": {"key": "C", "bpm": 70, "intensity": 0.5}}),
    );
    let ack = recv(&mut ws);
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["action"], "start");
    assert_eq!(ack["station"], "focus");
    assert_eq!(ack["format"], "json");
    assert_eq!(ack["ignored_params"], json!(["bpm", "intensity", "key"]));
    let audio = recv_audio(&mut ws, 10);
    assert_eq!(audio[0]["seq"], ack["first_seq"]);
    assert_contiguous(&audio);
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
        assert_eq!(o["station"], "focus");
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
    let server = Server::with_defaults(&fixture.ns);
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
        (
            r#"{"type":"control","action":"set","params":{"bpm":80}}"#,
            "unsupported",
        ),
    ];
    for (text, code) in cases {
        ws.send(Message::Text(text.into())).unwrap();
        let reply = recv(&mut ws);
        assert_eq!(reply["type"], "error", "{text} -> {reply}");
        assert_eq!(reply["code"], code, "{text} -> {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
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
    let server = Server::with_defaults(&fixture.ns);
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
    let server = Server::with_defaults(&fixture.ns);
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
        json!({"type": "control", "action": "start", "params": {"resume_from": last + 1}}),
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
        json!({"type": "control", "action": "start", "params": {"resume_from": 0}}),
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
    let server = Server::with_defaults(&fixture.ns);
    let mut ws = server.connect();
    send(
        &mut ws,
        json!({"type": "control", "action": "start", "params": {"format": "pcm16"}}),
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
    let server = Server::with_defaults(&fixture.ns);
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
    let server = Server::with_defaults(&fixture.ns);
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
    let server = Server::with_defaults(&fixture.ns);
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
    let mut server = Server::with_defaults(&fixture.ns);
    let mut ws = server.connect();
    send(&mut ws, start());
    recv_audio(&mut ws, 2);
    let shutdown_at = Instant::now();
    server.shutdown.take().unwrap().send(()).unwrap();
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
