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

/// Child processes of `parent` with the role each was started in (`argv[1]`), zombies left out.
pub use loadtest::procstat::children_of;

/// `auralis up` on a free port and its own namespace; killed (with its children) if the test panics.
pub struct Launcher {
    child: Option<Child>,
    pub port: u16,
    pub ns: String,
}

impl Launcher {
    pub fn up(ns: &str) -> Self {
        Self::spawn(ns, "info", &[])
    }

    /// `auralis up` with extra environment (e.g. `AURALIS_STATIONS`, `STREAMD_DRAIN_SECS`).
    pub fn up_with(ns: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(ns, "warn", env)
    }

    fn spawn(ns: &str, log_level: &str, env: &[(&str, &str)]) -> Self {
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
            .env("AURALIS_LOG_LEVEL", log_level)
            .envs(env.iter().copied())
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

// ---- Reliability helpers (faults, hostile clients, soak) ----------------------------------------

/// The load generator's listener, `/proc` sampling and statistics, shared with `auralis-loadtest`.
#[path = "../../src/loadtest/mod.rs"]
pub mod loadtest;

impl Launcher {
    /// `ws://127.0.0.1:PORT/ws`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// The pid running `role` now.
    pub fn role_pid(&self, role: &str) -> Option<u32> {
        loadtest::procstat::role_pid(self.pid(), role)
    }

    /// Waits until all three roles run and `/api/status` answers with a station that has audio.
    pub fn wait_ready(&self, timeout: Duration) {
        let ready = wait_for(timeout, Duration::from_millis(200), || {
            let status = api_status(self.port)?;
            let has_audio = status["stations"]
                .as_array()?
                .iter()
                .any(|s| s["latest_seq"].is_u64());
            let roles = ["composer", "synthd", "streamd"];
            (has_audio && roles.iter().all(|r| self.role_pid(r).is_some())).then_some(())
        });
        assert!(ready.is_some(), "auralis up not ready within {timeout:?}");
    }
}

/// Sends `sig` to `pid` (errors ignored: the process may be gone).
pub fn signal_pid(pid: u32, sig: nix::sys::signal::Signal) {
    signal(pid, sig);
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `GET path` over HTTP/1.0 on loopback: status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// `GET /api/status` as JSON.
pub fn api_status(port: u16) -> Option<serde_json::Value> {
    let (code, body) = http_get(port, "/api/status")?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Total listeners over every station, from `/api/status`.
pub fn status_listeners(port: u16) -> Option<u64> {
    let status = api_status(port)?;
    Some(
        status["stations"]
            .as_array()?
            .iter()
            .filter_map(|s| s["listeners"].as_u64())
            .sum(),
    )
}

/// Many async listeners on their own small runtime, stopped together.
pub struct ListenerPool {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<loadtest::client::ListenerReport>>,
}

impl ListenerPool {
    /// Starts one listener per spec, spread over `ramp`.
    pub fn start(specs: Vec<loadtest::client::ListenerSpec>, ramp: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let n = specs.len().max(1) as u32;
        let tasks = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let stop = stop_rx.clone();
                let delay = ramp * i as u32 / n;
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    loadtest::client::run_listener(spec, stop).await
                })
            })
            .collect();
        Self {
            runtime,
            stop,
            tasks,
        }
    }

    /// `n` copies of `spec`.
    pub fn uniform(spec: &loadtest::client::ListenerSpec, n: usize, ramp: Duration) -> Self {
        Self::start(vec![spec.clone(); n], ramp)
    }

    /// Runs `f` on the pool's runtime (extra clients in the same process).
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(f)
    }

    /// Stops every listener and collects their reports.
    pub fn stop(self) -> Vec<loadtest::client::ListenerReport> {
        let _ = self.stop.send(true);
        let tasks = self.tasks;
        let reports = self.runtime.block_on(async move {
            let mut out = Vec::new();
            for task in tasks {
                let report = tokio::time::timeout(Duration::from_secs(10), task).await;
                out.push(report.ok().and_then(Result::ok).unwrap_or_default());
            }
            out
        });
        self.runtime.shutdown_timeout(Duration::from_secs(2));
        reports
    }
}

/// A process the test started itself (e.g. a second `auralis streamd`), SIGKILLed on drop.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// `auralis <args>` with `env`, output discarded.
    pub fn auralis(args: &[&str], env: &[(&str, &str)]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_auralis"))
            .args(args)
            .env("AURALIS_LOG_LEVEL", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start auralis");
        Self(Some(child))
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Whether it has exited (reaping it).
    pub fn exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Serialises the heavy end-to-end tests of one test binary (each runs a whole `auralis up` and
/// 100+ listeners; the CI machine has two cores). Poison is ignored: a failed test must not fail
/// the next one.
pub fn heavy_test_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// CPU used on this machine by processes other than the test's own (the test process and the
/// launcher's children), so timing assertions can tell our slowness from a neighbour's build.
pub struct ForeignCpu {
    ours: Vec<u32>,
    start_busy: u64,
    start_ours: u64,
    started: Instant,
}

fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

fn ticks_of(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&p| loadtest::procstat::sample(p))
        .map(|s| s.cpu_ticks)
        .sum()
}

impl ForeignCpu {
    /// Starts measuring; `launcher`'s children and this process count as ours.
    pub fn start(launcher: &Launcher) -> Self {
        let mut ours: Vec<u32> = loadtest::procstat::children_of(launcher.pid())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        ours.push(launcher.pid());
        ours.push(std::process::id());
        Self {
            start_busy: machine_busy_ticks(),
            start_ours: ticks_of(&ours),
            ours,
            started: Instant::now(),
        }
    }

    /// Cores' worth of CPU other processes used since `start`.
    pub fn cores(&self) -> f64 {
        let busy = machine_busy_ticks().saturating_sub(self.start_busy);
        let ours = ticks_of(&self.ours).saturating_sub(self.start_ours);
        let secs = self.started.elapsed().as_secs_f64().max(0.01);
        busy.saturating_sub(ours) as f64 / loadtest::procstat::CLOCK_TICKS / secs
    }
}

/// Whether `tool -version` runs and succeeds.
pub fn tool_runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether ffmpeg and ffprobe are installed; says the test is skipped when not.
pub fn have_ffmpeg() -> bool {
    let present = tool_runs("ffmpeg") && tool_runs("ffprobe");
    if !present {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed (./scripts/test.sh installs them)");
    }
    present
}

/// Whether timing assertions must hold whatever the machine's load (`AURALIS_STRICT_TIMING=1`).
pub fn strict_timing() -> bool {
    std::env::var("AURALIS_STRICT_TIMING").is_ok_and(|v| v == "1")
}
