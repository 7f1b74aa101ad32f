//! `auralis render --out FILE.opus|.mp3`: the extension chooses the format, and the file is
//! finished properly (Ogg end-of-stream page at the final granule position, LAME flushed), so
//! ffprobe reports the codec, rate, channels and length asked for, and ffmpeg decodes it whole
//! without an error.
//!
//! Needs Debian's `ffmpeg` (installed by `scripts/test.sh`); skipped with a message without it.

mod common;

use std::path::Path;
use std::process::Command;

/// ffprobe's codec, sample rate, channels and duration (s) of the file's first audio stream.
fn probe(path: &Path) -> (String, u64, u64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_entries"])
        .args(["stream=codec_name,sample_rate,channels:format=duration"])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let s = &v["streams"][0];
    let num = |v: &serde_json::Value| v.as_str().and_then(|r| r.parse::<f64>().ok());
    (
        s["codec_name"].as_str().unwrap_or_default().to_owned(),
        num(&s["sample_rate"]).unwrap_or(0.0) as u64,
        s["channels"].as_u64().unwrap_or(0),
        num(&v["format"]["duration"]).unwrap_or(0.0),
    )
}

/// Seconds of audio ffmpeg decodes from `path` (stereo s16 at `rate`), and its error output.
fn decoded_seconds(path: &Path, rate: u64) -> (f64, String) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "2", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg failed");
    (
        out.stdout.len() as f64 / (4.0 * rate as f64),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn render_to_opus_and_mp3_gives_finished_files_of_the_asked_length() {
    if !common::have_ffmpeg() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("auralis-render-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (ext, codec, rate) in [("opus", "opus", 48_000), ("mp3", "mp3", 44_100)] {
        let path = dir.join(format!("focus.{ext}"));
        let out = Command::new(env!("CARGO_BIN_EXE_auralis"))
            .args(["render", "--seconds", "10", "--out"])
            .arg(&path)
            .env("AURALIS_LOG_LEVEL", "warn")
            .output()
            .expect("run auralis render");
        assert!(
            out.status.success(),
            "render .{ext} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (name, sample_rate, channels, duration) = probe(&path);
        eprintln!("{ext}: {name} {sample_rate} Hz {channels} ch {duration:.3} s");
        assert_eq!(name, codec, ".{ext} codec");
        assert_eq!(sample_rate, rate, ".{ext} sample rate");
        assert_eq!(channels, 2, ".{ext} channels");
        assert!(
            (duration - 10.0).abs() <= 0.2,
            ".{ext}: ffprobe says {duration} s, asked for 10 s"
        );
        let (decoded, errors) = decoded_seconds(&path, rate);
        assert!(errors.trim().is_empty(), ".{ext} decode errors: {errors}");
        assert!(
            (decoded - 10.0).abs() <= 0.2,
            ".{ext}: decodes to {decoded} s, asked for 10 s"
        );
        if ext == "opus" {
            // The end-of-stream page's granule position trims the padding: exactly 10 s.
            assert!(
                (decoded - 10.0).abs() < 0.001,
                "Ogg/Opus decodes to {decoded} s, not exactly 10 s"
            );
        }
    }
    // `--minutes` gives the same length as the seconds it stands for.
    let path = dir.join("short.wav");
    let status = Command::new(env!("CARGO_BIN_EXE_auralis"))
        .args(["render", "--minutes", "0.05", "--out"])
        .arg(&path)
        .env("AURALIS_LOG_LEVEL", "warn")
        .status()
        .expect("run auralis render");
    assert!(status.success());
    let wav = hound::WavReader::open(&path).expect("a WAV file");
    assert_eq!(wav.duration(), 3 * 44_100, "0.05 minutes = 3 s");
    let _ = std::fs::remove_dir_all(&dir);
}
