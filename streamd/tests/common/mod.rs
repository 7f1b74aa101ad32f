//! The fixture the gateway-only integration tests share: a composer + synthd stand-in (control
//! block with a "focus" station, a ring for every station, fed every 100 ms) and a `streamd::run`
//! on 127.0.0.1:0, both stopped on drop; plus the JSON send/receive helpers.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use shm_proto::{AudioWriter, CHUNK_SAMPLES, ControlBlock, Namespace, StationParams};
use tungstenite::{Message, WebSocket};

pub const SLOTS: u32 = 8;

pub fn params() -> StationParams {
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
pub fn marker(seq: u64) -> i16 {
    (seq % 30_000) as i16
}

/// The synthetic chunk `seq`: a tone whose pitch changes from chunk to chunk (so audio put in
/// the wrong chunk's place does not look right), the right channel quieter than the left, and
/// [`marker`] as its first sample.
pub fn chunk_samples(seq: u64) -> [i16; CHUNK_SAMPLES] {
    let mut samples = [0i16; CHUNK_SAMPLES];
    let hz = 200.0 + (seq % 11) as f64 * 90.0;
    for (frame, pair) in samples.chunks_exact_mut(2).enumerate() {
        let t = (seq as f64 * 4_410.0 + frame as f64) / 44_100.0;
        let s = (t * hz * std::f64::consts::TAU).sin() * 6_000.0;
        pair[0] = s as i16;
        pair[1] = (s * 0.7) as i16;
    }
    samples[0] = marker(seq);
    samples
}

/// Publishes the next synthetic chunk ([`chunk_samples`]).
pub fn publish(writer: &mut AudioWriter) {
    let seq = writer.next_seq();
    writer.publish(&chunk_samples(seq), params(), 1);
}

/// Composer + synthd stand-in: the control block with "focus", three chunks of history, then a
/// chunk every 100 ms on a ring for every station in the control block.
pub struct Fixture {
    pub ns: Namespace,
    stop: Arc<AtomicBool>,
    /// While set, the writer neither publishes nor heartbeats (a stalled synthd).
    pub paused: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fixture {
    pub fn new(tag: &str) -> Self {
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
                // A little history before anybody connects.
                for _ in 0..3 {
                    publish(&mut writer);
                }
                ready_tx.send(()).expect("ready");
                // Like synthd: a ring for every station that appears in the control block.
                let mut writers = vec![(index, writer)];
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if !paused.load(Ordering::Relaxed) {
                        for slot in control.stations() {
                            if !writers.iter().any(|(i, _)| *i == slot.index)
                                && let Ok(w) = AudioWriter::create_or_adopt(&ns, slot.index, SLOTS)
                            {
                                writers.push((slot.index, w));
                            }
                        }
                        writers.retain(|(i, _)| control.station(*i).is_some());
                        for (_, writer) in &mut writers {
                            publish(writer);
                        }
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

/// A running `streamd::run`, stopped on drop.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub fn start(ns: &Namespace, args: streamd::Args) -> Self {
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

    pub fn http_get(&self, path: &str) -> (u16, String) {
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

    pub fn connect(&self) -> WebSocket<TcpStream> {
        self.try_connect("/ws").expect("websocket connect")
    }

    // A test helper: the size of tungstenite's error does not matter here.
    #[allow(clippy::result_large_err)]
    pub fn try_connect(&self, path: &str) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
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

    /// Triggers shutdown without waiting; panics if it was already triggered or `run` is gone.
    pub fn begin_shutdown(&mut self) {
        let tx = self.shutdown.take().expect("shutdown already triggered");
        tx.send(()).expect("server still running");
    }

    /// Triggers shutdown and waits for `run` to return.
    pub fn stop(&mut self) -> anyhow::Result<()> {
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

pub fn send(ws: &mut WebSocket<TcpStream>, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .expect("send");
}

/// Next text message as JSON (skips pings).
pub fn recv(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("json"),
            Message::Binary(_) => panic!("unexpected binary frame"),
            Message::Close(frame) => panic!("unexpected close: {frame:?}"),
            _ => {}
        }
    }
}
