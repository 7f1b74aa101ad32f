//! End to end: `auralis up` runs three real processes joined by real shared memory; a real
//! WebSocket client receives contiguous, non-silent, correctly sized stereo chunks; a killed
//! synthd is restarted and the stream carries on; SIGTERM leaves no segment behind.

mod common;

use std::time::{Duration, Instant};

use common::{AudioMsg, Launcher, children_of, connect_ws, read_audio, shm_segments};

#[test]
fn up_streams_music_from_three_processes_and_cleans_up() {
    let ns = common::unique_namespace("up");
    // A crashed run's leftover with garbage in it must be detected and replaced, not trusted.
    let stale = format!("/dev/shm/auralis-{ns}-control");
    std::fs::write(&stale, vec![0xA5u8; 4096]).expect("plant a stale segment");

    let launcher = Launcher::up(&ns);
    let mut ws = connect_ws(launcher.port, Duration::from_secs(60));
    ws.send(tungstenite::Message::text(
        r#"{"type":"control","action":"start","params":{}}"#,
    ))
    .unwrap();

    let chunks: Vec<AudioMsg> = (0..40).map(|_| read_audio(&mut ws)).collect();
    for pair in chunks.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "seq must be contiguous");
    }
    for c in &chunks {
        assert_eq!(c.pcm.len(), 8_820, "4,410 stereo frames per chunk");
        assert_eq!((c.sample_rate, c.channels, c.duration_ms), (44_100, 2, 100));
    }
    let loudest = chunks.iter().map(|c| c.rms()).fold(0.0, f64::max);
    assert!(
        loudest > 300.0,
        "music expected, loudest chunk RMS was {loudest:.1}"
    );
    let (l, r): (Vec<i16>, Vec<i16>) = chunks
        .iter()
        .flat_map(|c| c.pcm.chunks_exact(2).map(|f| (f[0], f[1])))
        .unzip();
    assert_ne!(l, r, "expected a stereo image, got identical channels");

    // Three separate processes, one per role, all children of the launcher.
    let roles = children_of(launcher.pid());
    for role in ["composer", "synthd", "streamd"] {
        assert_eq!(
            roles.iter().filter(|(_, r)| r == role).count(),
            1,
            "expected one {role} process, found {roles:?}"
        );
    }

    // SIGKILL synthd: the launcher restarts it and the stream carries on.
    let synthd_pid = roles.iter().find(|(_, r)| r == "synthd").unwrap().0;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(synthd_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let last_seq = chunks.last().unwrap().seq;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut resumed = false;
    while !resumed && Instant::now() < deadline {
        resumed = read_audio(&mut ws).seq > last_seq + 60;
    }
    assert!(resumed, "audio did not carry on after synthd was killed");
    let new_roles = children_of(launcher.pid());
    let new_synthd = new_roles.iter().find(|(_, r)| r == "synthd").map(|x| x.0);
    assert!(
        new_synthd.is_some_and(|p| p != synthd_pid),
        "synthd was not restarted: {new_roles:?}"
    );

    assert!(
        !shm_segments(&ns).is_empty(),
        "segments exist while running"
    );
    let status = launcher.terminate(Duration::from_secs(40));
    assert!(status.success(), "launcher exit status {status:?}");
    assert!(
        shm_segments(&ns).is_empty(),
        "segments left behind: {:?}",
        shm_segments(&ns)
    );
}

#[test]
fn render_writes_a_wav_faster_than_real_time() {
    let dir = std::env::temp_dir().join(format!("auralis-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("focus.wav");
    let mid = dir.join("focus.mid");
    // `auralis render` of 12 s of focus with seed 7 to `out`.
    let render = |out: &std::path::Path| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_auralis"));
        cmd.args(["render", "--seed", "7", "--preset", "focus"])
            .args(["--seconds", "12", "--out"])
            .arg(out);
        cmd
    };
    let out = render(&wav).arg("--midi").arg(&mid).output().unwrap();
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = hound::WavReader::open(&wav).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 44_100, 16)
    );
    let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    assert_eq!(samples.len(), 12 * 44_100 * 2);
    let rms =
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 300.0, "render is near-silent: RMS {rms:.1}");
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak < 32_000, "render clips: peak {peak}");
    let midi = std::fs::read(&mid).unwrap();
    assert_eq!(&midi[..4], b"MThd");

    // Same seed, same bytes: the whole chain is deterministic.
    let wav2 = dir.join("again.wav");
    let out2 = render(&wav2).output().unwrap();
    assert!(out2.status.success());
    assert!(
        std::fs::read(&wav).unwrap() == std::fs::read(&wav2).unwrap(),
        "render not deterministic"
    );
    std::fs::remove_dir_all(&dir).ok();
}
