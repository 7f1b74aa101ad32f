//! `format: "opus"` on the WebSocket, end to end over real shared memory and a real port (the
//! shared fixture plays synthd and composer): binary frames of five Opus packets that libopus
//! decodes back to the station's audio, resume from the history, format switches without gap or
//! duplicate, one encoder per station shared with the HTTP `.opus` listeners, the encode timings
//! in `/metrics`, and bad requests that leave the connection usable.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shm_proto::Namespace;
use streamd::encode::resample::Resampler48;
use tungstenite::{Message, WebSocket};

mod common;
use common::{Fixture, Server, chunk_samples, marker, recv, send};

/// The server with the default limits and no drain.
fn with_defaults(ns: &Namespace) -> Server {
    Server::start(
        ns,
        streamd::Args {
            drain_secs: 0.0,
            ..streamd::Args::default()
        },
    )
}

/// One message from the gateway: JSON text or a binary audio frame.
#[derive(Debug)]
enum Incoming {
    Json(Value),
    Frame(Frame),
}

/// A binary audio frame, its header read with the header length it announces.
#[derive(Debug)]
struct Frame {
    seq: u64,
    timestamp: f64,
    sample_rate: u32,
    channels: u16,
    format: u16,
    duration_ms: u16,
    tier: u8,
    depth: u32,
    payload: Vec<u8>,
}

fn parse_frame(bytes: &[u8]) -> Frame {
    assert_eq!(&bytes[0..4], b"AUR1");
    let header_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert!(
        header_len >= 40 && header_len <= bytes.len(),
        "{header_len}"
    );
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
    Frame {
        seq: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
        timestamp: f64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        sample_rate: u32::from_le_bytes(bytes[24..28].try_into().unwrap()),
        channels: u16_at(28),
        format: u16_at(30),
        duration_ms: u16_at(32),
        tier: bytes[34],
        depth: u32::from_le_bytes(bytes[36..40].try_into().unwrap()),
        payload: bytes[header_len..].to_vec(),
    }
}

fn next(ws: &mut WebSocket<TcpStream>) -> Incoming {
    loop {
        match ws.read().expect("read") {
            Message::Text(text) => {
                return Incoming::Json(serde_json::from_str(text.as_str()).expect("json"));
            }
            Message::Binary(bytes) => return Incoming::Frame(parse_frame(&bytes)),
            Message::Close(frame) => panic!("unexpected close: {frame:?}"),
            _ => {}
        }
    }
}

/// The next `n` binary frames (statuses and other text skipped).
fn frames(ws: &mut WebSocket<TcpStream>, n: usize) -> Vec<Frame> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if let Incoming::Frame(frame) = next(ws) {
            out.push(frame);
        }
    }
    out
}

/// The next text message of `kind`.
fn json_of(ws: &mut WebSocket<TcpStream>, kind: &str) -> Value {
    for _ in 0..300 {
        if let Incoming::Json(v) = next(ws)
            && v["type"] == kind
        {
            return v;
        }
    }
    panic!("no {kind} message");
}

/// The Opus packets of a frame's payload: each prefixed by its length (u16 LE).
fn packets(payload: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let len = usize::from(u16::from_le_bytes([payload[at], payload[at + 1]]));
        assert!(len > 0 && at + 2 + len <= payload.len(), "packet overruns");
        out.push(&payload[at + 2..at + 2 + len]);
        at += 2 + len;
    }
    out
}

fn assert_contiguous(seqs: &[u64]) {
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "not contiguous: {seqs:?}"
    );
}

fn opus_start(extra: Value) -> Value {
    let mut params = json!({"format": "opus", "ack": true});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    json!({"type": "control", "action": "start", "params": params})
}

fn status(server: &Server) -> Value {
    let (code, body) = server.http_get("/api/status");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

/// The `/api/status` line of the focus Opus feed, if it runs.
fn opus_feed(server: &Server) -> Option<Value> {
    status(server)["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["station"] == "focus" && f["format"] == "opus")
        .cloned()
}

/// Normalized correlation of `a` with `b[lag..]`.
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

#[test]
fn opus_frames_carry_five_packets_that_decode_to_the_station_s_audio() {
    let fixture = Fixture::new("opus_decode");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    send(&mut ws, opus_start(json!({})));
    let ack = json_of(&mut ws, "ack");
    assert_eq!(ack["format"], "opus", "{ack}");
    assert_eq!(
        ack["codec"],
        json!({"name": "opus", "sample_rate": 48000, "channels": 2, "pre_skip": 312, "frame_ms": 20})
    );
    let first_seq = ack["first_seq"].as_u64().expect("first_seq");

    let received = frames(&mut ws, 30);
    let seqs: Vec<u64> = received.iter().map(|f| f.seq).collect();
    assert_eq!(seqs[0], first_seq, "{ack}");
    assert_contiguous(&seqs);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
    let mut decoded = Vec::new(); // mono, 48 kHz
    let mut payload_bytes = 0;
    for frame in &received {
        assert_eq!(
            (
                frame.sample_rate,
                frame.channels,
                frame.format,
                frame.duration_ms
            ),
            (48_000, 2, 2, 100),
            "seq {}",
            frame.seq
        );
        assert_eq!(frame.tier, 1, "normal");
        assert!(frame.depth >= 1);
        assert!((now - frame.timestamp).abs() < 10.0, "{}", frame.timestamp);
        let packets = packets(&frame.payload);
        assert_eq!(packets.len(), 5, "seq {}", frame.seq);
        payload_bytes += frame.payload.len();
        for packet in packets {
            let mut pcm = [0f32; 2 * 960];
            let n = decoder.decode_float(packet, &mut pcm, false).unwrap();
            assert_eq!(n, 960, "a 20 ms packet");
            decoded.extend(pcm.chunks_exact(2).map(|f| (f[0] + f[1]) / 2.0));
        }
    }
    // The same chunks as the station's PCM, through the same 44.1 -> 48 kHz resampler; the
    // decoded audio lags it by libopus's look-ahead (the pre-skip) exactly when every frame
    // carries its own chunk (the tone's pitch changes from chunk to chunk).
    let mut resampler = Resampler48::new().unwrap();
    let mut reference48 = Vec::new();
    for seq in &seqs {
        resampler
            .process(&chunk_samples(*seq), &mut reference48)
            .unwrap();
    }
    let reference: Vec<f32> = reference48
        .chunks_exact(2)
        .map(|f| (f[0] + f[1]) / 2.0)
        .collect();
    assert_eq!(decoded.len(), reference.len());
    // Skip two chunks (the decoder joined mid-stream, the reference resampler starts empty).
    let window = &reference[2 * 4_800..reference.len() - 2 * 960];
    let signal = &decoded[2 * 4_800..];
    let (lag, best) = (0..=960)
        .map(|lag| (lag, correlation(window, signal, lag)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(best > 0.9, "correlation {best:.3} at lag {lag}");
    assert!(lag.abs_diff(312) <= 2, "lag {lag} (correlation {best:.3})");
    let kbit_s = payload_bytes as f64 * 8.0 / (received.len() as f64 * 0.1) / 1000.0;
    println!(
        "opus over the WebSocket: {kbit_s:.1} kbit/s of packets, correlation {best:.4} at lag {lag}"
    );
    assert!(kbit_s < 200.0, "{kbit_s} kbit/s");
}

#[test]
fn resume_from_replays_opus_from_the_history_even_on_a_new_feed() {
    let fixture = Fixture::new("opus_resume");
    let server = with_defaults(&fixture.ns);
    let mut first = server.connect();
    send(&mut first, opus_start(json!({})));
    json_of(&mut first, "ack");
    let last = frames(&mut first, 6).last().unwrap().seq;
    drop(first);

    // Reconnect 300 ms later asking for what follows: replayed from the feed's history.
    std::thread::sleep(Duration::from_millis(300));
    let mut ws = server.connect();
    send(&mut ws, opus_start(json!({"resume_from": last + 1})));
    let ack = json_of(&mut ws, "ack");
    assert_eq!(ack["first_seq"], last + 1, "{ack}");
    let resumed = json_of(&mut ws, "status");
    assert_eq!(resumed["state"], "resumed", "{resumed}");
    assert_eq!(resumed["lost"], 0);
    let seqs: Vec<u64> = frames(&mut ws, 6).iter().map(|f| f.seq).collect();
    assert_eq!(seqs[0], last + 1);
    assert_contiguous(&seqs);
    drop(ws);

    // Once nobody listens the feed stops; a reconnecting client primes a new one from where it
    // resumes (within the station's history: the fixture's ring holds 8 chunks).
    let deadline = Instant::now() + Duration::from_secs(15);
    while opus_feed(&server).is_some() {
        assert!(Instant::now() < deadline, "the idle feed did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
    let latest = status(&server)["stations"][0]["latest_seq"]
        .as_u64()
        .unwrap();
    let from = latest - 4;
    let mut ws = server.connect();
    send(&mut ws, opus_start(json!({"resume_from": from})));
    assert_eq!(json_of(&mut ws, "ack")["first_seq"], from);
    let resumed = json_of(&mut ws, "status");
    assert_eq!(
        (resumed["lost"].as_u64(), resumed["next_seq"].as_u64()),
        (Some(0), Some(from))
    );
    let seqs: Vec<u64> = frames(&mut ws, 8).iter().map(|f| f.seq).collect();
    assert_eq!(seqs[0], from);
    assert_contiguous(&seqs);

    // Far older than any history: pre-roll, then live, and told what was lost.
    let mut late = server.connect();
    send(&mut late, opus_start(json!({"resume_from": 0})));
    json_of(&mut late, "ack");
    let resumed = json_of(&mut late, "status");
    let lost = resumed["lost"].as_u64().unwrap();
    assert!(lost > 0, "{resumed}");
    let seqs: Vec<u64> = frames(&mut late, 3).iter().map(|f| f.seq).collect();
    assert_eq!(seqs[0], lost);
    assert_contiguous(&seqs);
}

#[test]
fn set_switches_json_opus_pcm16_without_gap_or_duplicate() {
    let fixture = Fixture::new("opus_switch");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    send(
        &mut ws,
        json!({"type": "control", "action": "start", "params": {"ack": true}}),
    );
    json_of(&mut ws, "ack");
    /// Reads `n` audio messages into `audio` as (seq, kind); returns an ack met meanwhile.
    fn read_audio(
        ws: &mut WebSocket<TcpStream>,
        audio: &mut Vec<(u64, &'static str)>,
        n: usize,
    ) -> Option<Value> {
        let mut got = 0;
        let mut ack = None;
        while got < n {
            match next(ws) {
                Incoming::Json(v) if v["type"] == "audio" => {
                    audio.push((v["seq"].as_u64().unwrap(), "json"));
                    got += 1;
                }
                Incoming::Json(v) if v["type"] == "ack" => ack = Some(v),
                Incoming::Json(v) => panic!("unexpected {v}"),
                Incoming::Frame(f) => {
                    match f.format {
                        1 => {
                            assert_eq!(f.payload.len(), 17_640);
                            let first = i16::from_le_bytes([f.payload[0], f.payload[1]]);
                            assert_eq!(first, marker(f.seq));
                            audio.push((f.seq, "pcm16"));
                        }
                        2 => {
                            assert_eq!(packets(&f.payload).len(), 5);
                            audio.push((f.seq, "opus"));
                        }
                        other => panic!("format code {other}"),
                    }
                    got += 1;
                }
            }
        }
        ack
    }
    // (seq, kind) of every audio message, in order.
    let mut audio = Vec::new();
    read_audio(&mut ws, &mut audio, 7);
    send(
        &mut ws,
        json!({"type": "control", "action": "set", "params": {"format": "opus"}}),
    );
    let mut acks = Vec::new();
    acks.extend(read_audio(&mut ws, &mut audio, 10));
    send(
        &mut ws,
        json!({"type": "control", "action": "set", "params": {"format": "pcm16"}}),
    );
    acks.extend(read_audio(&mut ws, &mut audio, 10));
    send(
        &mut ws,
        json!({"type": "control", "action": "set", "params": {"format": "opus"}}),
    );
    acks.extend(read_audio(&mut ws, &mut audio, 6));
    let seqs: Vec<u64> = audio.iter().map(|(s, _)| *s).collect();
    assert_contiguous(&seqs);
    // The kinds come in runs, in the order asked for.
    let mut runs: Vec<&str> = audio.iter().map(|(_, k)| *k).collect();
    runs.dedup();
    assert_eq!(runs, ["json", "opus", "pcm16", "opus"], "{audio:?}");
    assert_eq!(acks.len(), 3, "{acks:?}");
    assert_eq!(acks[0]["format"], "opus");
    assert_eq!(acks[0]["codec"]["sample_rate"], 48_000);
    assert_eq!(acks[1]["format"], "pcm16");
    assert!(acks[1].get("codec").is_none(), "{}", acks[1]);
}

/// Reads the endless response to `GET path` for `duration`: head and chunked body, raw.
fn http_stream(server: &Server, path: &str, duration: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let until = Instant::now() + duration;
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    out
}

#[test]
fn websocket_and_http_opus_listeners_share_one_encoder() {
    let fixture = Fixture::new("opus_share");
    let server = with_defaults(&fixture.ns);
    let (mut a, mut b) = (server.connect(), server.connect());
    send(&mut a, opus_start(json!({})));
    send(&mut b, opus_start(json!({})));
    json_of(&mut a, "ack");
    json_of(&mut b, "ack");
    let fa = frames(&mut a, 8);
    let fb = frames(&mut b, 8);
    // The same packets for the same chunk, byte for byte.
    let common_seq = fa.last().unwrap().seq.min(fb.last().unwrap().seq);
    let pa = &fa.iter().find(|f| f.seq == common_seq).unwrap().payload;
    let pb = &fb.iter().find(|f| f.seq == common_seq).unwrap().payload;
    assert_eq!(pa, pb);

    // An HTTP listener too: its Ogg pages hold the very packets the WebSocket frames carry.
    let before = opus_feed(&server).expect("a running opus feed");
    let units_before = before["units"].as_u64().unwrap();
    let started = Instant::now();
    let ogg = std::thread::scope(|s| {
        let http =
            s.spawn(|| http_stream(&server, "/stream/focus.opus", Duration::from_millis(1_500)));
        std::thread::sleep(Duration::from_millis(700));
        let feed = opus_feed(&server).unwrap();
        assert_eq!(feed["listeners"], 3, "{feed}");
        http.join().unwrap()
    });
    let live = frames(&mut a, 3);
    let packet = packets(&live[0].payload)[0];
    assert!(
        ogg.windows(packet.len()).any(|w| w == packet),
        "a WebSocket packet of seq {} is not in the Ogg stream",
        live[0].seq
    );
    assert!(
        ogg.windows(8).any(|w| w == b"OpusHead"),
        "the Ogg stream starts with its header pages"
    );
    let feeds: Vec<Value> = status(&server)["feeds"].as_array().unwrap().clone();
    assert_eq!(feeds.len(), 1, "one feed for the station: {feeds:?}");
    // Encoded once per chunk, whatever the listener count.
    let units = feeds[0]["units"].as_u64().unwrap() - units_before;
    let chunks = (started.elapsed().as_secs_f64() * 10.0).round() as u64;
    assert!(
        units <= chunks + 3,
        "{units} units for ~{chunks} chunks: encoded more than once"
    );
    assert!(feeds[0]["encode_us_mean"].as_f64().unwrap() > 0.0);

    // The encode timings are in the metrics, per format.
    let (code, metrics) = server.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        encode_count(&metrics, "opus").is_some_and(|n| n >= 15.0),
        "{metrics}"
    );
    assert_eq!(encode_count(&metrics, "mp3"), None, "no MP3 listener yet");
    let mp3 = http_stream(&server, "/stream/focus.mp3", Duration::from_millis(800));
    assert!(
        mp3.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&mp3[..40])
    );
    let (_, metrics) = server.http_get("/metrics");
    assert!(
        encode_count(&metrics, "mp3").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

/// `chunk_encoding_duration_seconds_count` of focus in `format`, if exported.
fn encode_count(metrics: &str, format: &str) -> Option<f64> {
    let series =
        format!("chunk_encoding_duration_seconds_count{{format=\"{format}\",station=\"focus\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn bad_opus_requests_keep_the_connection() {
    let fixture = Fixture::new("opus_bad");
    let server = with_defaults(&fixture.ns);
    let mut ws = server.connect();
    let cases = [
        (opus_start(json!({"station": "disco"})), "unknown_station"),
        (opus_start(json!({"resume_from": -1})), "invalid_param"),
        (
            json!({"type": "control", "action": "set", "params": {"format": "ogg"}}),
            "invalid_param",
        ),
        (
            json!({"type": "control", "action": "set", "params": {"format": "opus", "station": "disco"}}),
            "unknown_station",
        ),
    ];
    for (message, code) in cases {
        send(&mut ws, message.clone());
        let reply = recv(&mut ws);
        assert_eq!(reply["type"], "error", "{message} -> {reply}");
        assert_eq!(reply["code"], code, "{message} -> {reply}");
    }
    send(
        &mut ws,
        json!({"type": "control", "action": "set", "params": {"format": "ogg"}}),
    );
    let message = recv(&mut ws)["message"].as_str().unwrap().to_owned();
    assert!(message.contains("\"opus\""), "{message}");
    assert!(opus_feed(&server).is_none(), "nothing started");
    send(&mut ws, json!({"type": "ping"}));
    assert_eq!(recv(&mut ws)["type"], "pong");

    // Still usable, and `stop` leaves the feed.
    send(&mut ws, opus_start(json!({})));
    json_of(&mut ws, "ack");
    assert_contiguous(&frames(&mut ws, 4).iter().map(|f| f.seq).collect::<Vec<_>>());
    assert_eq!(opus_feed(&server).unwrap()["listeners"], 1);
    send(&mut ws, json!({"type": "control", "action": "stop"}));
    assert_eq!(json_of(&mut ws, "ack")["action"], "stop");
    assert_eq!(opus_feed(&server).unwrap()["listeners"], 0);
}
