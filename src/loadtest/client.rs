//! One listener: connects, sends `start`, reads until told to stop, and records what a browser
//! would notice: every chunk's seq (gaps, duplicates), its lateness (receive wall time minus the
//! `timestamp` synthd stamped at publish), status and drain messages, and disconnects. A listener
//! with `reconnect` behaves like the player: on `draining` it opens a new connection with
//! `resume_from` after `reconnect_after_ms` (keeping the old one until the new one streams), and on
//! a lost connection it reconnects with `resume_from` at once.
//!
//! Light by design: one tokio task per listener, no thread, JSON audio messages are read with a
//! fast path over their fixed head (no full parse, no base64 decode unless `measure_rms`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long one connection attempt (TCP + handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Audio format asked for in `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// Base64 in JSON text frames.
    Json,
    /// `AUR1` binary frames of s16le samples.
    Pcm16,
    /// `AUR1` binary frames of Opus packets (the station's one encoder).
    Opus,
}

/// What one listener does.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    /// `ws://127.0.0.1:PORT/ws`.
    pub url: String,
    /// Audio format.
    pub format: AudioFormat,
    /// Extra `start` parameters (`station`, musical parameters), besides `format` and `resume_from`.
    pub params: Map<String, Value>,
    /// Reconnect with `resume_from` on `draining` and on a lost connection (the player's behaviour).
    pub reconnect: bool,
    /// Keep every arrival (time, seq, publish time, RMS) for timeline checks.
    pub record_arrivals: bool,
    /// Decode the samples and compute each chunk's RMS (costs CPU; fault tests use a few).
    pub measure_rms: bool,
}

impl ListenerSpec {
    /// A JSON listener of the default station that does not reconnect.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            format: AudioFormat::Json,
            params: Map::new(),
            reconnect: false,
            record_arrivals: false,
            measure_rms: false,
        }
    }
}

/// One audio chunk as received.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// When it was received.
    pub at: Instant,
    /// Its seq.
    pub seq: u64,
    /// synthd's publish time (Unix seconds).
    pub published: f64,
    /// Receive wall time minus publish time, ms.
    pub lateness_ms: f64,
    /// RMS of the samples (0 unless `measure_rms`).
    pub rms: f64,
}

/// A non-audio message from the server.
#[derive(Clone, Debug)]
pub struct Notice {
    /// When it was received.
    pub at: Instant,
    /// The message.
    pub message: Value,
}

/// What a listener saw.
#[derive(Clone, Debug, Default)]
pub struct ListenerReport {
    /// Audio chunks received (duplicates excluded).
    pub chunks: u64,
    /// Chunks received again (a resume overlapping what was already played).
    pub duplicates: u64,
    /// Forward jumps in seq.
    pub gaps: u64,
    /// Chunks skipped by those jumps.
    pub missing: u64,
    /// Lateness of each chunk, ms.
    pub lateness_ms: Vec<f64>,
    /// Connections that ended without the listener choosing it and without a `draining` first.
    pub disconnects: u64,
    /// Connections closed by the server after a `draining` message, before the listener moved on.
    pub drain_closes: u64,
    /// New connections after the first (drain or loss).
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Every non-audio message (acks, status, draining, errors), in order.
    pub notices: Vec<Notice>,
    /// Every chunk, when `record_arrivals`.
    pub arrivals: Vec<Arrival>,
    /// Last seq received.
    pub last_seq: Option<u64>,
    /// Why the first connection could not be made, or the last one ended abnormally.
    pub last_error: Option<String>,
}

impl ListenerReport {
    /// Notices whose `type` (and, if given, `state`) match.
    pub fn notices_of<'a>(
        &'a self,
        kind: &'a str,
        state: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Notice> + 'a {
        self.notices.iter().filter(move |n| {
            n.message["type"] == kind && state.is_none_or(|s| n.message["state"] == s)
        })
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Current wall time, Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Connects and sends `start` (with `resume_from` when given). Errors are strings for reports.
async fn open(spec: &ListenerSpec, resume_from: Option<u64>) -> Result<Socket, String> {
    let connect = tokio_tungstenite::connect_async(spec.url.as_str());
    let (mut socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut params = spec.params.clone();
    params.insert(
        "format".into(),
        json!(match spec.format {
            AudioFormat::Json => "json",
            AudioFormat::Pcm16 => "pcm16",
            AudioFormat::Opus => "opus",
        }),
    );
    if let Some(seq) = resume_from {
        params.insert("resume_from".into(), json!(seq));
    }
    let start = json!({"type": "control", "action": "start", "params": params});
    socket
        .send(Message::text(start.to_string()))
        .await
        .map_err(|e| format!("send start: {e}"))?;
    Ok(socket)
}

/// A received audio chunk's seq, publish time and (optionally) samples.
struct Audio {
    seq: u64,
    published: f64,
    rms: f64,
}

fn rms_of(bytes: &[u8]) -> f64 {
    let n = bytes.len() / 2;
    let sum: f64 = bytes
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])).powi(2))
        .sum();
    (sum / n.max(1) as f64).sqrt()
}

/// Reads `{"type":"audio","seq":N,"timestamp":T,...` without parsing the rest.
fn audio_head(text: &str) -> Option<(u64, f64)> {
    let rest = text.strip_prefix(r#"{"type":"audio","seq":"#)?;
    let (seq, rest) = rest.split_once(',')?;
    let rest = rest.strip_prefix(r#""timestamp":"#)?;
    let (ts, _) = rest.split_once(',')?;
    Some((seq.parse().ok()?, ts.parse().ok()?))
}

fn decode_text(text: &str, measure_rms: bool) -> Result<Audio, Value> {
    if !measure_rms && let Some((seq, published)) = audio_head(text) {
        return Ok(Audio {
            seq,
            published,
            rms: 0.0,
        });
    }
    let value: Value = serde_json::from_str(text).unwrap_or_else(|_| json!({"type": "unparsable"}));
    if value["type"] != "audio" {
        return Err(value);
    }
    let rms = if measure_rms {
        value["data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .map_or(0.0, |b| rms_of(&b))
    } else {
        0.0
    };
    Ok(Audio {
        seq: value["seq"].as_u64().unwrap_or(0),
        published: value["timestamp"].as_f64().unwrap_or(0.0),
        rms,
    })
}

fn decode_binary(frame: &[u8], measure_rms: bool) -> Option<Audio> {
    if frame.len() < 40 || &frame[..4] != b"AUR1" {
        return None;
    }
    let header = u32::from_le_bytes(frame[4..8].try_into().ok()?) as usize;
    Some(Audio {
        seq: u64::from_le_bytes(frame[8..16].try_into().ok()?),
        published: f64::from_le_bytes(frame[16..24].try_into().ok()?),
        // Format code 1 is s16le samples; an Opus payload has no RMS without decoding.
        rms: if measure_rms && frame[30..32] == 1u16.to_le_bytes() {
            rms_of(frame.get(header..)?)
        } else {
            0.0
        },
    })
}

impl ListenerReport {
    fn on_audio(&mut self, spec: &ListenerSpec, audio: Audio) {
        let at = Instant::now();
        if let Some(last) = self.last_seq {
            if audio.seq <= last {
                self.duplicates += 1;
                return;
            }
            if audio.seq > last + 1 {
                self.gaps += 1;
                self.missing += audio.seq - last - 1;
            }
        }
        self.last_seq = Some(audio.seq);
        self.chunks += 1;
        let lateness_ms = (unix_now() - audio.published) * 1000.0;
        self.lateness_ms.push(lateness_ms);
        if spec.record_arrivals {
            self.arrivals.push(Arrival {
                at,
                seq: audio.seq,
                published: audio.published,
                lateness_ms,
                rms: audio.rms,
            });
        }
    }
}

/// How one connection ended.
enum Ended {
    /// The listener was told to stop.
    Stopped,
    /// The server closed it or the socket failed.
    Lost { after_draining: bool, error: String },
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs one listener until `stop` turns true; returns what it saw.
pub async fn run_listener(spec: ListenerSpec, mut stop: watch::Receiver<bool>) -> ListenerReport {
    let mut report = ListenerReport::default();
    let mut first = true;
    loop {
        if *stop.borrow() {
            return report;
        }
        let resume = if first {
            None
        } else {
            report.last_seq.map(|s| s + 1)
        };
        let socket = tokio::select! {
            opened = open(&spec, resume) => opened,
            () = stopped(&mut stop) => return report,
        };
        let socket = match socket {
            Ok(socket) => socket,
            Err(error) => {
                report.connect_failures += 1;
                report.last_error = Some(error);
                if !spec.reconnect {
                    return report;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if !first {
            report.reconnects += 1;
        }
        first = false;
        match serve(&spec, socket, &mut report, &mut stop).await {
            Ended::Stopped => return report,
            Ended::Lost {
                after_draining,
                error,
            } => {
                if after_draining {
                    report.drain_closes += 1;
                } else {
                    report.disconnects += 1;
                }
                report.last_error = Some(error);
                if !spec.reconnect {
                    return report;
                }
            }
        }
    }
}

/// Reads one connection (and, after `draining`, its successor) until stop or loss.
async fn serve(
    spec: &ListenerSpec,
    mut socket: Socket,
    report: &mut ListenerReport,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut draining = false;
    // When to open the successor connection after a `draining` message.
    let mut move_at: Option<Instant> = None;
    loop {
        let wake = move_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = stopped(stop) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                return Ended::Stopped;
            }
            () = tokio::time::sleep_until(wake.into()), if move_at.is_some() => {
                match open(spec, report.last_seq.map(|s| s + 1)).await {
                    Ok(next) => {
                        report.reconnects += 1;
                        let mut old = std::mem::replace(&mut socket, next);
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(Duration::from_secs(1), old.close(None)).await;
                        });
                        draining = false;
                        move_at = None;
                    }
                    Err(error) => {
                        report.connect_failures += 1;
                        report.last_error = Some(error);
                        move_at = Some(Instant::now() + Duration::from_millis(200));
                    }
                }
            }
            message = socket.next() => {
                let message = match message {
                    None => return Ended::Lost { after_draining: draining, error: "closed".into() },
                    Some(Err(e)) => return Ended::Lost { after_draining: draining, error: e.to_string() },
                    Some(Ok(m)) => m,
                };
                match message {
                    Message::Text(text) => match decode_text(text.as_str(), spec.measure_rms) {
                        Ok(audio) => report.on_audio(spec, audio),
                        Err(value) => {
                            if value["type"] == "draining" {
                                draining = true;
                                if spec.reconnect && move_at.is_none() {
                                    let after = value["reconnect_after_ms"].as_u64().unwrap_or(500);
                                    move_at = Some(Instant::now() + Duration::from_millis(after));
                                }
                            }
                            report.notices.push(Notice { at: Instant::now(), message: value });
                        }
                    },
                    Message::Binary(frame) => {
                        if let Some(audio) = decode_binary(&frame, spec.measure_rms) {
                            report.on_audio(spec, audio);
                        }
                    }
                    Message::Close(frame) => {
                        let error = frame.map_or_else(|| "close".to_owned(), |f| format!("close {} {}", u16::from(f.code), f.reason));
                        return Ended::Lost { after_draining: draining, error };
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_audio_head_fast() {
        let text = r#"{"type":"audio","seq":42,"timestamp":1735228800.123456,"duration_ms":100}"#;
        assert_eq!(audio_head(text), Some((42, 1_735_228_800.123_456)));
        assert_eq!(audio_head(r#"{"type":"status","state":"x"}"#), None);
        let Err(v) = decode_text(r#"{"type":"status","state":"x"}"#, false) else {
            panic!("not audio")
        };
        assert_eq!(v["state"], "x");
    }
}
