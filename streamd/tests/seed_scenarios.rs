//! The seeds' WebSocket scenarios (testing guide 003), translated as literally as Rust allows, run
//! against the real pipeline: composer and synthd daemons in threads of this process (real shared
//! memory, their own namespace) and `streamd::run` on a real port. Each client sends exactly what
//! the seed scripts send and checks what they check.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use shm_proto::Namespace;
use tungstenite::{Message, WebSocket};

mod common;
use common::Server;

/// composer + synthd + streamd, stopped and cleaned up on drop.
struct Pipeline {
    ns: Namespace,
    stop: Arc<AtomicBool>,
    daemons: Vec<JoinHandle<anyhow::Result<()>>>,
    server: Option<Server>,
}

impl Pipeline {
    fn start(tag: &str, args: streamd::Args) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sds_{}_{}_{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Namespace::new(&name).expect("namespace");
        let _ = ns.remove_all();
        let stop = Arc::new(AtomicBool::new(false));
        let composer = {
            let (stop, name) = (Arc::clone(&stop), name.clone());
            std::thread::spawn(move || {
                composer::run_daemon(
                    composer::DaemonArgs {
                        namespace: Some(name),
                        unlink_on_exit: true,
                        ..composer::DaemonArgs::default()
                    },
                    stop,
                )
            })
        };
        // synthd needs the control block composer creates.
        let deadline = Instant::now() + Duration::from_secs(20);
        while shm_proto::ControlBlock::attach(&ns).is_err() {
            assert!(Instant::now() < deadline, "composer did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let synthd = {
            let (stop, name) = (Arc::clone(&stop), name.clone());
            std::thread::spawn(move || {
                synthd::run_daemon(
                    synthd::DaemonArgs {
                        namespace: Some(name),
                        unlink_on_exit: true,
                        ..synthd::DaemonArgs::default()
                    },
                    stop,
                )
            })
        };
        let server = Server::start(&ns, args);
        Self {
            ns,
            stop,
            daemons: vec![composer, synthd],
            server: Some(server),
        }
    }

    /// `websockets.connect("ws://localhost:8000/ws")`
    fn connect(&self) -> WebSocket<TcpStream> {
        let ws = self.server.as_ref().expect("server").connect();
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        ws
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // The gateway first, then the daemons it reads from.
        drop(self.server.take());
        self.stop.store(true, Ordering::Relaxed);
        for daemon in self.daemons.drain(..) {
            let _ = daemon.join();
        }
        let _ = self.ns.remove_all();
    }
}

/// The seeds' start message, byte for byte.
fn seed_start() -> Message {
    Message::text(
        json!({"type": "control", "action": "start", "params": {"key": "C", "bpm": 70, "intensity": 0.5}})
            .to_string(),
    )
}

fn seed_stop() -> Message {
    Message::text(json!({"type": "control", "action": "stop"}).to_string())
}

/// `json.loads(await websocket.recv())`
fn recv(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match ws.read().expect("recv") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Integration Testing, "Full System Integration Test" (test_full_pipeline.py).
#[test]
fn seed_full_pipeline() {
    let pipeline = Pipeline::start("full", streamd::Args::default());
    let mut ws = pipeline.connect();
    ws.send(seed_start()).unwrap();
    let mut chunks_received = 0;
    let mut audio_data_bytes = Vec::new();
    for _ in 0..50 {
        let data = recv(&mut ws);
        if data["type"] == "audio" {
            chunks_received += 1;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data["data"].as_str().unwrap())
                .unwrap();
            audio_data_bytes.extend_from_slice(&bytes);
            if chunks_received % 10 == 0 {
                let _ = (&data["buffer_depth"], &data["current_tier"]);
            }
        }
    }
    ws.send(seed_stop()).unwrap();
    assert_eq!(
        chunks_received, 50,
        "Expected 50 chunks, got {chunks_received}"
    );
    assert_eq!(audio_data_bytes.len(), 50 * 17_640);
    // audio_stereo = np.frombuffer(..., int16).reshape(-1, 2): 2 channels, 4,410 frames a chunk.
    let samples: Vec<i16> = audio_data_bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(samples.len() % 2, 0);
    assert_eq!(samples.len() / 2, 50 * 4_410);
    assert!(
        samples.iter().any(|&s| s.unsigned_abs() > 100),
        "music expected"
    );
}

struct ClientResult {
    chunks_received: usize,
    underruns: usize,
    p99_latency_ms: f64,
}

/// `client_worker` of test_concurrent_clients.py.
fn client_worker(pipeline: &Pipeline, duration: Duration) -> Result<ClientResult, String> {
    let mut ws = pipeline.connect();
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    ws.send(seed_start()).map_err(|e| e.to_string())?;
    let start_time = Instant::now();
    let (mut chunks_received, mut underruns) = (0, 0);
    let mut latencies = Vec::new();
    while start_time.elapsed() < duration {
        // asyncio.wait_for(websocket.recv(), timeout=1.0)
        let message = ws.read().map_err(|e| format!("recv: {e}"))?;
        let Message::Text(text) = message else {
            continue;
        };
        let data: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
        if data["type"] == "audio" {
            chunks_received += 1;
            let server_timestamp = data["timestamp"].as_f64().unwrap_or(0.0);
            latencies.push((now() - server_timestamp) * 1000.0);
            if data["buffer_depth"].as_u64().unwrap_or(100) == 0 {
                underruns += 1;
            }
        }
    }
    ws.send(seed_stop()).map_err(|e| e.to_string())?;
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get((latencies.len() as f64 * 0.99) as usize)
        .copied()
        .unwrap_or(0.0);
    Ok(ClientResult {
        chunks_received,
        underruns,
        p99_latency_ms: p99,
    })
}

/// Scenario 2, Test 2.1 (test_concurrent_clients.py), with `num_clients` clients for 10 s.
fn concurrent_clients(num_clients: usize) {
    let duration_sec = 10;
    let pipeline = Pipeline::start(&format!("conc{num_clients}"), streamd::Args::default());
    let results: Vec<Result<ClientResult, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..num_clients)
            .map(|_| s.spawn(|| client_worker(&pipeline, Duration::from_secs(duration_sec))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    let results: Vec<ClientResult> = results.into_iter().map(Result::unwrap).collect();
    let total_chunks: usize = results.iter().map(|r| r.chunks_received).sum();
    let total_underruns: usize = results.iter().map(|r| r.underruns).sum();
    let avg_p99 = results.iter().map(|r| r.p99_latency_ms).sum::<f64>() / num_clients as f64;
    eprintln!(
        "{num_clients} clients: {total_chunks} chunks, {total_underruns} underruns, average p99 latency {avg_p99:.1} ms"
    );
    assert!(
        total_chunks >= num_clients * duration_sec as usize * 9,
        "Expected at least {} chunks, got {total_chunks}",
        num_clients * duration_sec as usize * 9
    );
    assert_eq!(total_underruns, 0, "Expected zero underruns");
    assert!(avg_p99 < 100.0, "Expected p99 < 100ms, got {avg_p99:.1}ms");
}

#[test]
fn seed_ten_concurrent_clients() {
    concurrent_clients(10);
}

#[test]
fn seed_twenty_concurrent_clients() {
    concurrent_clients(20);
}
