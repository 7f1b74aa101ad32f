//! The Icecast relay against a real Icecast 2 (Debian's `icecast2`): `auralis up` with
//! `STREAMD_ICECAST` pushes the focus station's Ogg/Opus feed to `/focus.opus`; ffmpeg reads the
//! mount back from Icecast for 30 s (Opus, 48 kHz, stereo, no decode error, >= 29 s of audio in
//! the 30 s window), then Icecast is restarted and the relay must come back by itself.
//!
//! Needs `icecast2` and `ffmpeg` (installed by `scripts/test.sh`); skipped with a message without.

mod common;

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Launcher, free_port, unique_namespace, wait_for};

const ICECAST: &str = "/usr/bin/icecast2";
const PASSWORD: &str = "auralis-test";

fn have_tools() -> bool {
    let present =
        Path::new(ICECAST).exists() && common::tool_runs("ffmpeg") && common::tool_runs("ffprobe");
    if !present {
        eprintln!(
            "SKIPPED: icecast2 or ffmpeg/ffprobe not installed (./scripts/test.sh installs them)"
        );
    }
    present
}

/// An Icecast server on a free loopback port, from a minimal config in a temp dir; stopped by
/// its PID on drop.
struct Icecast {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Icecast {
    fn start(dir: &Path, port: u16) -> Self {
        std::fs::create_dir_all(dir.join("log")).unwrap();
        // Icecast refuses to run as root unless told to drop to another user (CI runs as root).
        let root = {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        let changeowner = if root {
            "<changeowner><user>nobody</user><group>nogroup</group></changeowner>"
        } else {
            ""
        };
        if root {
            use std::os::unix::fs::PermissionsExt as _;
            for d in [dir.to_path_buf(), dir.join("log")] {
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
            }
        }
        let d = dir.display();
        let config = format!(
            "<icecast>
  <limits><clients>100</clients><sources>4</sources><burst-size>65535</burst-size>
    <source-timeout>10</source-timeout></limits>
  <authentication><source-password>{PASSWORD}</source-password>
    <admin-user>admin</admin-user><admin-password>{PASSWORD}</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>0</fileserve>
  <paths><basedir>{d}</basedir><logdir>{d}/log</logdir><webroot>{d}</webroot>
    <adminroot>{d}</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
    <loglevel>3</loglevel></logging>
  <security><chroot>0</chroot>{changeowner}</security>
</icecast>
"
        );
        let file = dir.join("icecast.xml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(ICECAST)
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start icecast2");
        let up = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "icecast2 did not listen on {port}: {}",
            Self::log(dir)
        );
        Self {
            child: Some(child),
            dir: dir.to_owned(),
            port,
        }
    }

    fn log(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("log/error.log")).unwrap_or_default()
    }

    /// SIGTERM by PID, then SIGKILL if it lingers.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        self.stop();
    }
}

/// ffprobe's codec, sample rate and channels of the stream at `url`, if it answers.
fn probe(url: &str) -> Option<(String, u64, u64)> {
    let out = Command::new("timeout")
        .args(["15", "ffprobe", "-v", "error", "-select_streams", "a:0"])
        .args(["-show_entries", "stream=codec_name,sample_rate,channels"])
        .args(["-of", "json", url])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let s = &v["streams"][0];
    Some((
        s["codec_name"].as_str()?.to_owned(),
        s["sample_rate"].as_str()?.parse().ok()?,
        s["channels"].as_u64()?,
    ))
}

/// Decodes `url` for `window` of wall time: (seconds of audio decoded, ffmpeg's error output).
fn decode_for(url: &str, window: Duration) -> (f64, String) {
    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "error", "-i", url])
        .args(["-f", "s16le", "-ac", "2", "-ar", "48000", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let counter = std::thread::spawn(move || {
        let started = Instant::now();
        let mut bytes = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while started.elapsed() < window {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes += n,
            }
        }
        // Returned, not dropped: ffmpeg is killed before its output pipe closes, so it does not
        // report a broken pipe.
        (bytes, stdout)
    });
    let (bytes, stdout) = counter.join().unwrap();
    let exited_early = child.try_wait().ok().flatten();
    let _ = child.kill();
    let _ = child.wait();
    drop(stdout);
    let mut errors = errors.join().unwrap();
    if let Some(status) = exited_early {
        errors.push_str(&format!("\nffmpeg exited early: {status}"));
    }
    (bytes as f64 / (4.0 * 48_000.0), errors)
}

#[test]
fn the_relay_feeds_icecast_and_comes_back_after_icecast_restarts() {
    if !have_tools() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("auralis-icecast-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port();
    let mut icecast = Icecast::start(&dir, port);
    let source = format!("http://source:{PASSWORD}@127.0.0.1:{port}");
    let ns = unique_namespace("icecast");
    let launcher = Launcher::up_with(
        &ns,
        &[
            ("STREAMD_ICECAST", source.as_str()),
            ("STREAMD_ICECAST_MOUNTS", "focus=/focus.opus"),
        ],
    );
    launcher.wait_ready(Duration::from_secs(60));
    let mount = format!("http://127.0.0.1:{}/focus.opus", icecast.port);

    let probed = wait_for(Duration::from_secs(30), Duration::from_millis(500), || {
        probe(&mount)
    });
    let Some((codec, rate, channels)) = probed else {
        panic!(
            "the mount never came up; icecast log:\n{}",
            Icecast::log(&icecast.dir)
        );
    };
    assert_eq!(
        (codec.as_str(), rate, channels),
        ("opus", 48_000, 2),
        "the mount's stream"
    );

    let (seconds, errors) = decode_for(&mount, Duration::from_secs(30));
    eprintln!("decoded {seconds:.2} s of audio from Icecast in a 30 s window");
    assert!(
        errors.trim().is_empty(),
        "ffmpeg reported errors:\n{errors}"
    );
    assert!(
        seconds >= 29.0,
        "only {seconds:.2} s decoded in 30 s: the relay stalled"
    );

    // Icecast goes away and comes back on the same port: the relay reconnects by itself (its
    // backoff starts at 1 s), with the Ogg header pages first so the mount decodes again.
    icecast.stop();
    std::thread::sleep(Duration::from_secs(2));
    let icecast = Icecast::start(&dir, port);
    let back = wait_for(Duration::from_secs(30), Duration::from_millis(500), || {
        probe(&mount)
    });
    assert_eq!(
        back,
        Some(("opus".to_owned(), 48_000, 2)),
        "the relay did not come back after Icecast restarted; icecast log:\n{}",
        Icecast::log(&icecast.dir)
    );
    let (seconds, errors) = decode_for(&mount, Duration::from_secs(5));
    assert!(errors.trim().is_empty(), "after the restart:\n{errors}");
    assert!(
        seconds >= 4.0,
        "after the restart only {seconds:.2} s in 5 s"
    );

    launcher.terminate(Duration::from_secs(20));
    drop(icecast);
    let _ = std::fs::remove_dir_all(&dir);
}
