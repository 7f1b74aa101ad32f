//! Helpers for the end-to-end tests: a launcher started and stopped by PID, a WebSocket client.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// A unique shared-memory namespace per test and process, so tests never see each other's segments.
pub fn unique_namespace(tag: &str) -> String {
    format!("t{}_{tag}", std::process::id())
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Names of the segments of namespace `ns` that exist now.
pub fn shm_segments(ns: &str) -> Vec<String> {
    let prefix = format!("auralis-{ns}-");
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Child processes of `parent` with the role each was started in (`argv[1]`).
pub fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let ppid: u32 = after
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if ppid != parent {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let role = cmdline
            .split(|&b| b == 0)
            .nth(1)
            .map(|s| String::from_utf8_lossy(s).into_owned());
        out.push((pid, role.unwrap_or_default()));
    }
    out
}

/// `auralis up` on a free port and its own namespace; killed (with its children) if the test panics.
pub struct Launcher {
    child: Option<Child>,
    pub port: u16,
    pub ns: String,
}

impl Launcher {
    pub fn up(ns: &str) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_auralis"))
            .args([
                "up",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--namespace",
                ns,
            ])
            .env("AURALIS_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .spawn()
            .expect("start auralis up");
        Launcher {
            child: Some(child),
            port,
            ns: ns.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                kill_tree(&mut child);
                panic!("launcher did not stop within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(&mut child);
            for seg in shm_segments(&self.ns) {
                let _ = std::fs::remove_file(format!("/dev/shm/{seg}"));
            }
        }
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

fn kill_tree(child: &mut Child) {
    for (pid, _) in children_of(child.id()) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Connects to `ws://127.0.0.1:port/ws`, retrying while the server starts.
pub fn connect_ws(port: u16, timeout: Duration) -> Ws {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            match tungstenite::client(format!("ws://127.0.0.1:{port}/ws"), stream) {
                Ok((ws, _)) => return ws,
                Err(err) if Instant::now() > deadline => panic!("websocket handshake: {err}"),
                Err(_) => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "streamd did not accept connections on port {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One decoded `audio` message.
#[derive(Debug)]
pub struct AudioMsg {
    pub seq: u64,
    pub sample_rate: u64,
    pub channels: u64,
    pub duration_ms: u64,
    pub pcm: Vec<i16>,
    pub json: serde_json::Value,
}

impl AudioMsg {
    pub fn rms(&self) -> f64 {
        let sum: f64 = self.pcm.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / self.pcm.len().max(1) as f64).sqrt()
    }
}

/// Reads messages until the next `audio` one (skipping acks and status messages).
pub fn read_audio(ws: &mut Ws) -> AudioMsg {
    loop {
        let msg = ws.read().expect("websocket read");
        let tungstenite::Message::Text(text) = msg else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(text.as_str()).expect("valid JSON");
        if json["type"] != "audio" {
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(json["data"].as_str().expect("data"))
            .expect("base64");
        assert_eq!(bytes.len(), 17_640, "chunk bytes");
        let pcm = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        return AudioMsg {
            seq: json["seq"].as_u64().expect("seq"),
            sample_rate: json["sample_rate"].as_u64().unwrap(),
            channels: json["channels"].as_u64().unwrap(),
            duration_ms: json["duration_ms"].as_u64().unwrap(),
            pcm,
            json,
        };
    }
}
