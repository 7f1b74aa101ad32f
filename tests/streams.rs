//! Compressed HTTP streams against a real `auralis up`: ffmpeg decodes `/stream/focus.opus` and
//! `/stream/focus.mp3` for 30 s without one error, with the advertised codec, rate and channels;
//! the Opus stream decoded back matches the PCM the WebSocket serves over the same span.
//!
//! Needs Debian's `ffmpeg` (installed by `scripts/test.sh`); skipped with a message without it.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Launcher;

fn ffmpeg(args: &[&str]) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "error"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// ffprobe's codec, sample rate and channels of the first audio stream at `url`.
fn probe(url: &str) -> (String, u64, u64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_entries"])
        .args(["stream=codec_name,sample_rate,channels", "-of", "json", url])
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe {url}: {}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or_default().to_owned(),
        s["sample_rate"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        s["channels"].as_u64().unwrap_or(0),
    )
}

/// The response head of `GET path` with `extra` request headers.
fn response_head(port: u16, path: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

#[test]
fn opus_and_mp3_streams_decode_for_30_seconds_without_errors() {
    if !common::have_ffmpeg() {
        return;
    }
    let _heavy = common::heavy_test_lock();
    let launcher = Launcher::up(&common::unique_namespace("streams"));
    launcher.wait_ready(Duration::from_secs(60));
    let base = format!("http://127.0.0.1:{}/stream", launcher.port);

    let ogg = response_head(launcher.port, "/stream/focus.opus", "Icy-MetaData: 1\r\n");
    assert!(ogg.starts_with("http/1.1 200"), "{ogg}");
    assert!(ogg.contains("content-type: audio/ogg"), "{ogg}");
    assert!(ogg.contains("cache-control: no-cache"), "{ogg}");
    assert!(ogg.contains("icy-name: ") && ogg.contains("icy-description: "));
    assert!(ogg.contains("icy-br: 96"), "{ogg}");
    assert!(!ogg.contains("content-length"), "{ogg}");
    let mp3 = response_head(launcher.port, "/stream/focus.mp3", "Icy-MetaData: 1\r\n");
    assert!(mp3.contains("content-type: audio/mpeg"), "{mp3}");
    assert!(mp3.contains("icy-br: 128") && mp3.contains("icy-metaint: 16000"));
    let plain = response_head(launcher.port, "/stream/focus.mp3", "");
    assert!(!plain.contains("icy-metaint"), "{plain}");
    let missing = response_head(launcher.port, "/stream/nowhere.opus", "");
    assert!(missing.starts_with("http/1.1 404"), "{missing}");

    assert_eq!(
        probe(&format!("{base}/focus.opus")),
        ("opus".into(), 48_000, 2)
    );
    assert_eq!(
        probe(&format!("{base}/focus.mp3")),
        ("mp3".into(), 44_100, 2)
    );

    // 30 s of each, decoded side by side; the burst lets a client start ahead of real time, the
    // rest arrives live, so 30 s take roughly 28.5 s.
    let started = Instant::now();
    let decoders: Vec<_> = ["opus", "mp3"]
        .iter()
        .map(|ext| {
            let url = format!("{base}/focus.{ext}");
            (*ext, ffmpeg(&["-t", "30", "-i", &url, "-f", "null", "-"]))
        })
        .collect();
    for (ext, child) in decoders {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{ext}: ffmpeg failed: {}",
            stderr_of(&out)
        );
        assert!(
            out.stderr.is_empty(),
            "{ext}: decode errors: {}",
            stderr_of(&out)
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(25) && took < Duration::from_secs(45),
        "30 s of live audio took {took:?}"
    );
    launcher.terminate(Duration::from_secs(20));
}

/// Mono mix of interleaved stereo s16le bytes.
fn mono(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|f| {
            let l = i16::from_le_bytes([f[0], f[1]]);
            let r = i16::from_le_bytes([f[2], f[3]]);
            (f32::from(l) + f32::from(r)) / 65_536.0
        })
        .collect()
}

/// Normalized correlation of `a` with `b[lag..]` over `a`'s length.
fn correlation(a: &[f32], b: &[f32], lag: usize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(&b[lag..]) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

/// Best lag of `window` in `signal` (coarse on 16x block means, then refined at full rate).
fn best_lag(window: &[f32], signal: &[f32]) -> (usize, f64) {
    let decimate = |x: &[f32]| -> Vec<f32> {
        x.chunks_exact(16)
            .map(|c| c.iter().sum::<f32>() / 16.0)
            .collect()
    };
    let (w, s) = (decimate(window), decimate(signal));
    let coarse = (0..=s.len().saturating_sub(w.len()))
        .max_by(|&a, &b| correlation(&w, &s, a).total_cmp(&correlation(&w, &s, b)))
        .expect("signal longer than window");
    let from = (coarse * 16).saturating_sub(32);
    let to = (coarse * 16 + 32).min(signal.len() - window.len());
    (from..=to)
        .map(|lag| (lag, correlation(window, signal, lag)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

#[test]
fn opus_stream_decodes_back_to_the_pcm_the_websocket_serves() {
    if !common::have_ffmpeg() {
        return;
    }
    let _heavy = common::heavy_test_lock();
    let launcher = Launcher::up(&common::unique_namespace("opuspcm"));
    launcher.wait_ready(Duration::from_secs(60));
    let dir = std::env::temp_dir().join(format!("auralis-opuspcm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The same span of the same station, both ways at once: 12 s of PCM over the WebSocket
    // (binary pcm16 frames), 10 s of Opus over HTTP decoded by ffmpeg to 48 kHz s16le.
    let url = format!("http://127.0.0.1:{}/stream/focus.opus", launcher.port);
    let decoded = dir.join("opus48.raw");
    let opus = ffmpeg(&[
        "-t",
        "10",
        "-i",
        &url,
        "-f",
        "s16le",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-y",
        decoded.to_str().unwrap(),
    ]);
    let mut ws = common::connect_ws(launcher.port, Duration::from_secs(30));
    ws.send(tungstenite::Message::text(
        r#"{"type":"control","action":"start","params":{"station":"focus","format":"pcm16"}}"#,
    ))
    .unwrap();
    let mut pcm = Vec::new();
    let mut last_seq = None;
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let tungstenite::Message::Binary(frame) = ws.read().expect("websocket read") else {
            continue;
        };
        assert_eq!(&frame[..4], b"AUR1");
        let seq = u64::from_le_bytes(frame[8..16].try_into().unwrap());
        if let Some(last) = last_seq {
            assert_eq!(seq, last + 1, "contiguous PCM");
        }
        last_seq = Some(seq);
        pcm.extend_from_slice(&frame[40..]);
    }
    drop(ws);
    let out = opus.wait_with_output().unwrap();
    assert!(out.status.success(), "ffmpeg: {}", stderr_of(&out));

    // The PCM to 48 kHz by ffmpeg too (its own resampler, independent of ours).
    let raw44 = dir.join("pcm44.raw");
    std::fs::write(&raw44, &pcm).unwrap();
    let pcm48 = dir.join("pcm48.raw");
    let out = ffmpeg(&[
        "-f",
        "s16le",
        "-ar",
        "44100",
        "-ac",
        "2",
        "-i",
        raw44.to_str().unwrap(),
        "-f",
        "s16le",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-y",
        pcm48.to_str().unwrap(),
    ])
    .wait_with_output()
    .unwrap();
    assert!(out.status.success(), "ffmpeg resample: {}", stderr_of(&out));

    let opus = mono(&std::fs::read(&decoded).unwrap());
    let reference = mono(&std::fs::read(&pcm48).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(opus.len() > 9 * 48_000, "decoded {} frames", opus.len());
    // A 3 s window from the middle of the Opus decode, found in the PCM.
    let window = &opus[4 * 48_000..7 * 48_000];
    let energy: f32 = window.iter().map(|x| x * x).sum::<f32>() / window.len() as f32;
    assert!(energy.sqrt() > 1e-3, "Opus decode is silent");
    let (lag, r) = best_lag(window, &reference);
    eprintln!("Opus vs PCM: correlation {r:.4} at PCM offset {lag} samples (48 kHz)");
    assert!(
        r > 0.9,
        "Opus decode does not match the PCM: correlation {r:.4}"
    );
    launcher.terminate(Duration::from_secs(20));
}

/// Many plain-stream listeners at once, read by the load generator's HTTP listener (the one
/// `scripts/bench-icecast.sh` measures with): every one gets `200 audio/ogg`, the burst at once,
/// then the live batches at the stream's rate without a stall, and nobody is closed early.
#[test]
fn plain_stream_listeners_get_the_burst_at_once_then_steady_audio() {
    use common::loadtest::http::run_http_listener;
    let _heavy = common::heavy_test_lock();
    let launcher = Launcher::up(&common::unique_namespace("batches"));
    launcher.wait_ready(Duration::from_secs(60));
    let url = format!("http://127.0.0.1:{}/stream/focus.opus", launcher.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let reports = runtime.block_on(async {
        let listeners: Vec<_> = (0..50)
            .map(|_| tokio::spawn(run_http_listener(url.clone(), stopped.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(8)).await;
        stop.send(true).unwrap();
        let mut reports = Vec::new();
        for listener in listeners {
            reports.push(listener.await.unwrap());
        }
        reports
    });
    for r in &reports {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.content_type.as_deref(), Some("audio/ogg"));
        assert!(!r.closed_early && r.error.is_none(), "{r:?}");
        assert!(
            r.first_byte_ms.is_some_and(|ms| ms < 3_000.0),
            "the burst did not come at once: {r:?}"
        );
        // ~96 kbit/s of Opus plus Ogg framing, plus the 1.5 s burst spread over the run.
        let kbit_s = r.bytes as f64 * 8.0 / 1e3 / r.listened_s;
        assert!(
            r.listened_s > 6.0 && (85.0..200.0).contains(&kbit_s),
            "{kbit_s:.1} kbit/s over {:.1} s: {r:?}",
            r.listened_s
        );
        // Batches come every 0.5 s; a gap over 1.5 s is a stall a player would hear.
        assert!(r.max_gap_ms < 1_500.0, "stalled: {r:?}");
    }
    launcher.terminate(Duration::from_secs(20));
}
