//! The fixture the gateway-only integration tests share: a composer + synthd stand-in (control
//! block with a "focus" station and a ring fed every 100 ms) and a `streamd::run` on 127.0.0.1:0,
//! both stopped on drop.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shm_proto::{AudioWriter, CHUNK_SAMPLES, ControlBlock, Namespace, StationParams};
use tungstenite::WebSocket;

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

/// Composer + synthd stand-in: the control block with "focus" and a ring fed every 100 ms.
pub struct Fixture {
    pub ns: Namespace,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fixture {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sdt_{}_{}_{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Namespace::new(&name).expect("namespace");
        let _ = ns.remove_all();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (ns, stop) = (ns.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let control = ControlBlock::create_or_adopt(&ns, 8).expect("control block");
                let index = control.ensure_station("focus", params()).expect("station");
                let mut writer = AudioWriter::create_or_adopt(&ns, index, 8).expect("ring");
                let samples = [100i16; CHUNK_SAMPLES];
                writer.publish(&samples, params(), 1);
                ready_tx.send(()).expect("ready");
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    writer.publish(&samples, params(), 1);
                    control.heartbeat();
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
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        tungstenite::client(format!("ws://{}/ws", self.addr), stream)
            .expect("websocket")
            .0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
