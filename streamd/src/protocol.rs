//! The messages of the WebSocket protocol: what a client may send (parsed into [`ClientRequest`]
//! with a precise [`ErrorCode`] when it is wrong), what the server sends ([`ServerMessage`]), and
//! the audio chunk encoded once per station and finished per client ([`EncodedChunk`]).

use std::fmt::Write as _;

use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use composer::ParamUpdate;
use serde::Serialize;
use serde_json::{Map, Value};
use shm_proto::{CHANNELS, CHUNK_MS, CHUNK_SAMPLES, SAMPLE_RATE};

use crate::variants::Variants;

/// How a client wants its audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON text frames with the samples in base64 (the default; works everywhere).
    Json,
    /// Binary frames: an [`BINARY_MAGIC`] header and raw s16le samples (a third smaller).
    Pcm16,
    /// Binary frames: the same header and the chunk's Opus packets at 48 kHz (about 1/14 of
    /// `pcm16`), encoded once per station and shared with the `/stream/{station}.opus` listeners.
    Opus,
}

impl Format {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "json" | "base64" => Some(Self::Json),
            "pcm16" | "binary" => Some(Self::Pcm16),
            "opus" => Some(Self::Opus),
            _ => None,
        }
    }

    /// The decoder parameters a client needs for this format (`codec` in the `ack`): only Opus
    /// has any, the PCM formats describe themselves in every message.
    pub fn codec(self) -> Option<CodecInfo> {
        (self == Self::Opus).then_some(CodecInfo::OPUS)
    }
}

/// `codec` of an `ack` in `opus` format: what a decoder is configured with (WebCodecs
/// `AudioDecoder.configure`, or an OpusHead for libopus).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CodecInfo {
    /// `"opus"`.
    pub name: &'static str,
    /// Rate of the decoded audio (48000): Opus always decodes at 48 kHz here.
    pub sample_rate: u32,
    /// Channels (2).
    pub channels: u16,
    /// 48 kHz samples of encoder look-ahead at the start of the encoder's stream (as in
    /// OpusHead). A client joining mid-stream drops nothing: it only says how far the decoded
    /// audio lags the samples encoded.
    pub pre_skip: u16,
    /// Duration of one packet (20); a frame carries `duration_ms / frame_ms` of them.
    pub frame_ms: u16,
}

impl CodecInfo {
    /// The Opus streams of this gateway.
    pub const OPUS: Self = Self {
        name: "opus",
        sample_rate: OPUS_SAMPLE_RATE,
        channels: CHANNELS as u16,
        pre_skip: crate::encode::opus::LOOKAHEAD,
        frame_ms: 20,
    };
}

/// The client's buffering tier: how much audio it should hold before and while playing. Chosen
/// per connection by [`crate::tiers::TierController`] and sent in every audio message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// 500 ms target buffer: stable network, low latency.
    Minimal,
    /// 1000 ms target buffer: the default for new connections.
    Normal,
    /// 2000 ms target buffer: occasional jitter.
    Stable,
    /// 3000 ms target buffer: high jitter or an unstable network.
    Defensive,
}

impl Tier {
    /// Every tier, least buffering first.
    pub const ALL: [Tier; 4] = [Self::Minimal, Self::Normal, Self::Stable, Self::Defensive];

    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Normal => "normal",
            Self::Stable => "stable",
            Self::Defensive => "defensive",
        }
    }
    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name.trim()))
    }
    /// The code used in the binary header.
    pub fn code(self) -> u8 {
        self as u8
    }
    /// The tier of a binary-header code (unknown codes read as `normal`).
    pub fn from_code(code: u8) -> Self {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or(Self::Normal)
    }
    /// The buffer the client should hold, milliseconds. The web-player issue fixes these at
    /// 300/500/700/1000 ms (the MVP plan's tiers); the performance plan's 0.5-3 s table is older
    /// and the issue stands where they disagree. Server and player share this table.
    pub fn target_ms(self) -> u32 {
        match self {
            Self::Minimal => 300,
            Self::Normal => 500,
            Self::Stable => 700,
            Self::Defensive => 1000,
        }
    }
    /// One step more defensive.
    pub fn up(self) -> Option<Self> {
        Self::ALL.get(self as usize + 1).copied()
    }
    /// One step less defensive.
    pub fn down(self) -> Option<Self> {
        (self as usize).checked_sub(1).map(|i| Self::ALL[i])
    }
}

/// Machine-readable error codes of `{"type":"error"}` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text frame is not JSON.
    InvalidJson,
    /// JSON, but not an object with a string `type` (or a field has the wrong type).
    InvalidMessage,
    /// `type` is not one the server knows.
    UnknownType,
    /// `action` of a control message is not one the server knows.
    UnknownAction,
    /// A parameter name the server does not know.
    UnknownParam,
    /// A known parameter with a bad value.
    InvalidParam,
    /// The requested station does not exist.
    UnknownStation,
    /// No station exists yet (composer not running?).
    NoStation,
    /// The parameters need a new station and every station allowed is in use.
    StationLimit,
    /// A station created for the listener's parameters produced no audio in time.
    StationUnavailable,
    /// Too many control messages; this one was ignored.
    RateLimited,
    /// Clients send text frames only.
    BinaryNotSupported,
}

/// A protocol error to report to the client (the connection stays open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// What kind of error.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
}

impl ProtocolError {
    /// Builds one.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// The `{"type":"error"}` message for it.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

/// Musical parameters composer owns: given in `start` or `set`, they select (or create) the
/// station that plays them.
pub const MUSICAL_PARAMS: [&str; 6] = ["key", "mode", "bpm", "intensity", "seed", "preset"];

/// What `start` asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartParams {
    /// Station id; `None` means the default station (or the base of `musical`).
    pub station: Option<String>,
    /// Audio format; `None` keeps the connection's current one (JSON initially).
    pub format: Option<Format>,
    /// Replay from this seq (a reconnecting client), as far as the history reaches.
    pub resume_from: Option<u64>,
    /// Musical parameters, applied over the station's: the listener moves to the station playing
    /// the result.
    pub musical: Option<ParamUpdate>,
    /// Send an `ack` before the audio (off by default: the first audio message is the answer).
    pub ack: bool,
}

/// What `set` asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetParams {
    /// Switch to another station.
    pub station: Option<String>,
    /// Switch the audio format.
    pub format: Option<Format>,
    /// Musical parameters: move this listener to the station playing them.
    pub musical: Option<ParamUpdate>,
}

/// What a client reports about its playback (`report`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Underruns since the connection opened (cumulative).
    pub underruns: Option<u64>,
    /// Audio the client holds now, milliseconds.
    pub buffer_ms: Option<f64>,
}

/// A well-formed client request.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientRequest {
    /// `{"type":"control","action":"start","params":{...}}`
    Start(StartParams),
    /// `{"type":"control","action":"stop"}`
    Stop,
    /// `{"type":"control","action":"set","params":{...}}`
    Set(SetParams),
    /// `{"type":"control","action":"report","params":{"underruns":N,"buffer_ms":M}}`
    Report(Report),
    /// `{"type":"control","action":"ping"}` or `{"type":"ping"}`
    Ping,
}

/// Parses one text frame from a client.
pub fn parse_client_message(text: &str) -> Result<ClientRequest, ProtocolError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidJson, format!("not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            "a message must be a JSON object",
        ));
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => {
            return Err(ProtocolError::new(
                ErrorCode::InvalidMessage,
                "a message needs a string field \"type\"",
            ));
        }
    };
    match kind {
        "ping" => Ok(ClientRequest::Ping),
        "control" => parse_control(&object),
        other => Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {other:?} (expected \"control\" or \"ping\")"),
        )),
    }
}

fn parse_control(object: &Map<String, Value>) -> Result<ClientRequest, ProtocolError> {
    let action = match object.get("action") {
        Some(Value::String(action)) => action.as_str(),
        _ => {
            return Err(ProtocolError::new(
                ErrorCode::InvalidMessage,
                "a control message needs a string field \"action\"",
            ));
        }
    };
    let empty = Map::new();
    let params = match object.get("params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(params)) => params,
        Some(_) => {
            return Err(ProtocolError::new(
                ErrorCode::InvalidMessage,
                "\"params\" must be an object",
            ));
        }
    };
    match action {
        "start" => parse_start(params).map(ClientRequest::Start),
        "stop" => Ok(ClientRequest::Stop),
        "set" => parse_set(params).map(ClientRequest::Set),
        "report" => parse_report(params).map(ClientRequest::Report),
        "ping" => Ok(ClientRequest::Ping),
        other => Err(ProtocolError::new(
            ErrorCode::UnknownAction,
            format!("unknown action {other:?} (expected start, stop, set, report or ping)"),
        )),
    }
}

fn parse_start(params: &Map<String, Value>) -> Result<StartParams, ProtocolError> {
    let mut start = StartParams::default();
    let mut musical = ParamUpdate::default();
    let mut any_musical = false;
    for (name, value) in params {
        match name.as_str() {
            "station" => start.station = Some(parse_station(value)?),
            "format" => start.format = Some(parse_format(value)?),
            "resume_from" => match value.as_u64() {
                Some(seq) => start.resume_from = Some(seq),
                None if value.is_null() => {}
                None => {
                    return Err(ProtocolError::new(
                        ErrorCode::InvalidParam,
                        "\"resume_from\" must be a non-negative integer seq",
                    ));
                }
            },
            "ack" => {
                start.ack = value.as_bool().ok_or_else(|| {
                    ProtocolError::new(ErrorCode::InvalidParam, "\"ack\" must be true or false")
                })?;
            }
            other => {
                parse_musical(other, value, &mut musical)?;
                any_musical = true;
            }
        }
    }
    start.musical = any_musical.then_some(musical);
    Ok(start)
}

fn parse_set(params: &Map<String, Value>) -> Result<SetParams, ProtocolError> {
    let mut set = SetParams::default();
    let mut musical = ParamUpdate::default();
    let mut any_musical = false;
    for (name, value) in params {
        match name.as_str() {
            "station" => set.station = Some(parse_station(value)?),
            "format" => set.format = Some(parse_format(value)?),
            other => {
                parse_musical(other, value, &mut musical)?;
                any_musical = true;
            }
        }
    }
    set.musical = any_musical.then_some(musical);
    Ok(set)
}

fn parse_report(params: &Map<String, Value>) -> Result<Report, ProtocolError> {
    let mut report = Report::default();
    for (name, value) in params {
        match name.as_str() {
            "underruns" => {
                report.underruns = Some(value.as_u64().ok_or_else(|| {
                    ProtocolError::new(
                        ErrorCode::InvalidParam,
                        "\"underruns\" must be a non-negative integer (the count since connecting)",
                    )
                })?);
            }
            "buffer_ms" => {
                report.buffer_ms = Some(value.as_f64().filter(|v| *v >= 0.0).ok_or_else(|| {
                    ProtocolError::new(
                        ErrorCode::InvalidParam,
                        "\"buffer_ms\" must be a non-negative number",
                    )
                })?);
            }
            other => {
                return Err(ProtocolError::new(
                    ErrorCode::UnknownParam,
                    format!("unknown report field {other:?} (known: underruns, buffer_ms)"),
                ));
            }
        }
    }
    Ok(report)
}

/// Stores one musical parameter into `update`, checking its JSON type (composer checks ranges).
fn parse_musical(name: &str, value: &Value, update: &mut ParamUpdate) -> Result<(), ProtocolError> {
    let text = |field: &str| {
        value.as_str().map(str::to_owned).ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::InvalidParam,
                format!("{field} must be a string, got {value}"),
            )
        })
    };
    let number = |field: &str| {
        value.as_f64().ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::InvalidParam,
                format!("{field} must be a number, got {value}"),
            )
        })
    };
    match name {
        "key" => update.key = Some(text("key")?),
        "mode" => update.mode = Some(text("mode")?),
        "preset" => update.preset = Some(text("preset")?),
        "bpm" => update.bpm = Some(number("bpm")?),
        "intensity" => update.intensity = Some(number("intensity")?),
        "seed" => {
            update.seed = Some(value.as_u64().ok_or_else(|| {
                ProtocolError::new(
                    ErrorCode::InvalidParam,
                    format!("seed must be an integer between 0 and 2^64-1, got {value}"),
                )
            })?);
        }
        other => return Err(unknown_param(other)),
    }
    Ok(())
}

fn unknown_param(name: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::UnknownParam,
        format!(
            "unknown parameter {name:?} (known: station, format, resume_from, ack, {})",
            MUSICAL_PARAMS.join(", ")
        ),
    )
}

fn parse_station(value: &Value) -> Result<String, ProtocolError> {
    match value {
        Value::String(name) if !name.is_empty() && name.len() <= 31 => Ok(name.clone()),
        _ => Err(ProtocolError::new(
            ErrorCode::InvalidParam,
            "\"station\" must be a station id (1 to 31 bytes)",
        )),
    }
}

fn parse_format(value: &Value) -> Result<Format, ProtocolError> {
    value.as_str().and_then(Format::parse).ok_or_else(|| {
        ProtocolError::new(
            ErrorCode::InvalidParam,
            "\"format\" must be \"json\" (base64 in JSON text frames), \"pcm16\" (binary \
             frames of PCM) or \"opus\" (binary frames of Opus packets)",
        )
    })
}

/// Everything the server sends except audio (which is [`EncodedChunk`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A control message was applied.
    Ack {
        /// The action acknowledged.
        action: &'static str,
        /// The station streamed after it (start and set).
        #[serde(skip_serializing_if = "Option::is_none")]
        station: Option<String>,
        /// The audio format after it (start and set).
        #[serde(skip_serializing_if = "Option::is_none")]
        format: Option<Format>,
        /// The decoder parameters of `format`, for `opus` (start and set).
        #[serde(skip_serializing_if = "Option::is_none")]
        codec: Option<CodecInfo>,
        /// `live` (audio follows at once) or `starting` (a station created for these parameters;
        /// audio follows when its first chunk is rendered), for start and set.
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<&'static str>,
        /// Seq of the first audio message that follows (start), when the ring has audio.
        #[serde(skip_serializing_if = "Option::is_none")]
        first_seq: Option<u64>,
        /// The musical parameters of the station (start and set), when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        params: Option<composer::Params>,
    },
    /// A control message was refused or a frame was malformed; the connection stays open.
    Error {
        /// Machine-readable.
        code: ErrorCode,
        /// For humans.
        message: String,
    },
    /// Answer to a ping, with the server's clock (Unix seconds) for latency estimates.
    Pong {
        /// Server time.
        timestamp: f64,
    },
    /// Something happened to the stream.
    Status(StatusMessage),
    /// The server is shutting down: reconnect (with `resume_from`) after `reconnect_after_ms`.
    /// Audio continues until the server closes the socket with 1001, `closes_in_ms` from now.
    Draining {
        /// When to reconnect (spread per client so they do not all come back at once).
        reconnect_after_ms: u64,
        /// When this server closes the connection.
        closes_in_ms: u64,
        /// The seq to pass as `resume_from` when reconnecting, if streaming.
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_from: Option<u64>,
    },
}

/// `{"type":"status","state":...}`: one struct, the fields that apply to the state set.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatusMessage {
    /// `skipped`, `resumed`, `source_stalled`, `source_recovered`, `station_removed`.
    pub state: &'static str,
    /// The station concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// `skipped`: chunks this client did not get because it fell behind live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
    /// `resumed`: chunks asked for that are no longer in the history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// `resumed`: the seq that follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_seq: Option<u64>,
    /// `source_stalled`: `stalled` (synthd alive but silent) or `dead` (synthd gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl ServerMessage {
    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        // Serialising these plain types cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }
}

/// Unix seconds with microseconds, as a JSON number.
pub fn unix_seconds_json(unix_ns: u64) -> String {
    format!(
        "{}.{:06}",
        unix_ns / 1_000_000_000,
        (unix_ns % 1_000_000_000) / 1_000
    )
}

/// Current wall-clock time in Unix seconds.
pub fn now_unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Magic of binary audio frames.
pub const BINARY_MAGIC: [u8; 4] = *b"AUR1";
/// Length of the binary header; samples follow it.
pub const BINARY_HEADER_LEN: usize = 40;
/// Format code of s16le in the binary header.
pub const BINARY_FORMAT_S16LE: u16 = 1;
/// Format code of Opus packets (each prefixed by its length, u16 LE) in the binary header.
pub const BINARY_FORMAT_OPUS: u16 = 2;
/// Sample rate of the audio decoded from an `opus` frame.
pub const OPUS_SAMPLE_RATE: u32 = 48_000;
const BINARY_TIER_OFFSET: usize = 34;
const BINARY_DEPTH_OFFSET: usize = 36;

/// Writes the 40-byte header of a binary audio frame with zero in the per-client fields (tier,
/// `buffer_depth`), which [`finish_binary`] fills in.
pub fn put_binary_header(
    frame: &mut BytesMut,
    seq: u64,
    publish_unix_ns: u64,
    sample_rate: u32,
    format_code: u16,
) {
    let start = frame.len();
    frame.put_slice(&BINARY_MAGIC);
    frame.put_u32_le(BINARY_HEADER_LEN as u32);
    frame.put_u64_le(seq);
    frame.put_f64_le(publish_unix_ns as f64 / 1e9);
    frame.put_u32_le(sample_rate);
    frame.put_u16_le(CHANNELS as u16);
    frame.put_u16_le(format_code);
    frame.put_u16_le(CHUNK_MS as u16);
    frame.put_u8(0); // tier, per client
    frame.put_u8(0); // reserved
    frame.put_u32_le(0); // buffer_depth, per client
    debug_assert_eq!(frame.len() - start, BINARY_HEADER_LEN);
}

/// A copy of the binary frame `shared` with one client's tier and `buffer_depth`.
pub fn finish_binary(shared: &[u8], buffer_depth: u32, tier: Tier) -> Bytes {
    let mut frame = BytesMut::from(shared);
    frame[BINARY_TIER_OFFSET] = tier.code();
    frame[BINARY_DEPTH_OFFSET..BINARY_DEPTH_OFFSET + 4]
        .copy_from_slice(&buffer_depth.to_le_bytes());
    frame.freeze()
}

/// One chunk encoded once for every listener of its station. Per-client fields (`buffer_depth`,
/// `current_tier`) come last so a client's message is the shared head plus a few bytes.
#[derive(Debug)]
pub struct EncodedChunk {
    /// Station sequence number.
    pub seq: u64,
    /// When synthd published it.
    pub publish_unix_ns: u64,
    /// The JSON message up to and including `"buffer_depth":`.
    json_head: String,
    /// The binary frame with zero in the per-client fields.
    binary: Bytes,
    /// Finished JSON messages shared by live listeners with the same tier and depth.
    json_variants: Variants<Utf8Bytes>,
    /// Finished binary frames shared likewise.
    binary_variants: Variants<Bytes>,
}

impl EncodedChunk {
    /// Encodes `samples` (interleaved stereo s16) once: base64 JSON head and binary frame.
    pub fn encode(
        station: &str,
        seq: u64,
        publish_unix_ns: u64,
        samples: &[i16; CHUNK_SAMPLES],
    ) -> Self {
        let mut pcm = BytesMut::with_capacity(BINARY_HEADER_LEN + CHUNK_SAMPLES * 2);
        put_binary_header(
            &mut pcm,
            seq,
            publish_unix_ns,
            SAMPLE_RATE,
            BINARY_FORMAT_S16LE,
        );
        for &sample in samples {
            pcm.put_i16_le(sample);
        }
        let station_json = serde_json::to_string(station).unwrap_or_else(|_| "\"\"".into());
        let b64_len = (CHUNK_SAMPLES * 2).div_ceil(3) * 4;
        let mut json_head = String::with_capacity(b64_len + 256);
        // Writing into a String cannot fail.
        let _ = write!(
            json_head,
            "{{\"type\":\"audio\",\"seq\":{seq},\"timestamp\":{},\"duration_ms\":{CHUNK_MS},\
             \"sample_rate\":{SAMPLE_RATE},\"channels\":{CHANNELS},\"format\":\"s16le\",\
             \"station\":{station_json},\"data\":\"",
            unix_seconds_json(publish_unix_ns)
        );
        base64::engine::general_purpose::STANDARD
            .encode_string(&pcm[BINARY_HEADER_LEN..], &mut json_head);
        json_head.push_str("\",\"buffer_depth\":");
        Self {
            seq,
            publish_unix_ns,
            json_head,
            binary: pcm.freeze(),
            json_variants: Variants::default(),
            binary_variants: Variants::default(),
        }
    }

    /// The chunk's samples as interleaved s16le bytes (what the compressed encoders take).
    pub fn pcm_le(&self) -> &[u8] {
        &self.binary[BINARY_HEADER_LEN..]
    }

    /// The JSON text message for one client.
    pub fn json_for(&self, buffer_depth: u32, tier: Tier) -> String {
        let mut text = String::with_capacity(self.json_head.len() + 40);
        text.push_str(&self.json_head);
        let _ = write!(
            text,
            "{buffer_depth},\"current_tier\":\"{}\"}}",
            tier.as_str()
        );
        text
    }

    /// The binary frame for one client.
    pub fn binary_for(&self, buffer_depth: u32, tier: Tier) -> Bytes {
        finish_binary(&self.binary, buffer_depth, tier)
    }

    /// The JSON text message for a client. `live`: the chunk goes to every live listener now,
    /// so the message is shared with the next clients with the same tier and depth (a replay
    /// from the history is one client's alone and is not kept).
    pub fn json_message(&self, buffer_depth: u32, tier: Tier, live: bool) -> Utf8Bytes {
        let finish = || Utf8Bytes::from(self.json_for(buffer_depth, tier));
        if live {
            self.json_variants.get_or_finish(tier, buffer_depth, finish)
        } else {
            finish()
        }
    }

    /// The binary frame for a client, shared like [`Self::json_message`].
    pub fn binary_message(&self, buffer_depth: u32, tier: Tier, live: bool) -> Bytes {
        let finish = || self.binary_for(buffer_depth, tier);
        if live {
            self.binary_variants
                .get_or_finish(tier, buffer_depth, finish)
        } else {
            finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm_proto::CHUNK_BYTES;

    fn chunk() -> EncodedChunk {
        let mut samples = [0i16; CHUNK_SAMPLES];
        for (i, s) in samples.iter_mut().enumerate() {
            *s = (i as i16).wrapping_mul(7).wrapping_sub(3000);
        }
        EncodedChunk::encode("focus", 42, 1_735_228_800_123_456_789, &samples)
    }

    #[test]
    fn live_listeners_with_the_same_fields_share_one_message() {
        let c = chunk();
        let a = c.json_message(5, Tier::Normal, true);
        let b = c.json_message(5, Tier::Normal, true);
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr(), "one buffer");
        assert_eq!(a.as_str(), c.json_for(5, Tier::Normal));
        let replay = c.json_message(5, Tier::Normal, false);
        assert_ne!(replay.as_str().as_ptr(), a.as_str().as_ptr());
        assert_eq!(replay.as_str(), a.as_str());
        let other = c.json_message(6, Tier::Normal, true);
        assert!(other.as_str().ends_with("6,\"current_tier\":\"normal\"}"));
        let x = c.binary_message(5, Tier::Stable, true);
        let y = c.binary_message(5, Tier::Stable, true);
        assert_eq!(x.as_ptr(), y.as_ptr());
        assert_eq!(x, c.binary_for(5, Tier::Stable));
    }

    #[test]
    fn audio_json_has_exact_fields_and_sizes() {
        let text = chunk().json_for(5, Tier::Normal);
        let v: Value = serde_json::from_str(&text).unwrap();
        let o = v.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "buffer_depth",
                "channels",
                "current_tier",
                "data",
                "duration_ms",
                "format",
                "sample_rate",
                "seq",
                "station",
                "timestamp",
                "type"
            ]
        );
        assert_eq!(o["type"], "audio");
        assert_eq!(o["seq"], 42);
        assert!((o["timestamp"].as_f64().unwrap() - 1_735_228_800.123456).abs() < 1e-6);
        assert_eq!(o["duration_ms"], 100);
        assert_eq!(o["sample_rate"], 44100);
        assert_eq!(o["channels"], 2);
        assert_eq!(o["format"], "s16le");
        assert_eq!(o["station"], "focus");
        assert_eq!(o["buffer_depth"], 5);
        assert_eq!(o["current_tier"], "normal");
        let data = base64::engine::general_purpose::STANDARD
            .decode(o["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data.len(), CHUNK_BYTES);
        assert_eq!(data.len(), 17_640);
        assert_eq!(i16::from_le_bytes([data[0], data[1]]), -3000);
        assert_eq!(i16::from_le_bytes([data[2], data[3]]), -2993);
    }

    #[test]
    fn per_client_fields_differ_but_share_the_head() {
        let c = chunk();
        let a = c.json_for(0, Tier::Normal);
        let b = c.json_for(12, Tier::Defensive);
        assert!(a.ends_with("\"buffer_depth\":0,\"current_tier\":\"normal\"}"));
        assert!(b.ends_with("\"buffer_depth\":12,\"current_tier\":\"defensive\"}"));
        assert_eq!(a[..c.json_head.len()], b[..c.json_head.len()]);
    }

    #[test]
    fn binary_frame_layout() {
        let frame = chunk().binary_for(7, Tier::Stable);
        assert_eq!(frame.len(), BINARY_HEADER_LEN + CHUNK_BYTES);
        assert_eq!(&frame[0..4], b"AUR1");
        assert_eq!(u32::from_le_bytes(frame[4..8].try_into().unwrap()), 40);
        assert_eq!(u64::from_le_bytes(frame[8..16].try_into().unwrap()), 42);
        let ts = f64::from_le_bytes(frame[16..24].try_into().unwrap());
        assert!((ts - 1_735_228_800.123_456_8).abs() < 1e-5);
        assert_eq!(
            u32::from_le_bytes(frame[24..28].try_into().unwrap()),
            44_100
        );
        assert_eq!(u16::from_le_bytes(frame[28..30].try_into().unwrap()), 2);
        assert_eq!(u16::from_le_bytes(frame[30..32].try_into().unwrap()), 1);
        assert_eq!(u16::from_le_bytes(frame[32..34].try_into().unwrap()), 100);
        assert_eq!(frame[34], 2);
        assert_eq!(u32::from_le_bytes(frame[36..40].try_into().unwrap()), 7);
        assert_eq!(i16::from_le_bytes([frame[40], frame[41]]), -3000);
    }

    #[test]
    fn parses_the_seed_scenario_start() {
        let r = parse_client_message(
            r#"{"type":"control","action":"start","params":{"key":"C","bpm":70,"intensity":0.5}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            ClientRequest::Start(StartParams {
                musical: Some(ParamUpdate {
                    key: Some("C".into()),
                    bpm: Some(70.0),
                    intensity: Some(0.5),
                    ..ParamUpdate::default()
                }),
                ..StartParams::default()
            })
        );
    }

    #[test]
    fn parses_start_stop_set_ping() {
        let r = parse_client_message(
            r#"{"type":"control","action":"start","params":{"station":"sleep","format":"pcm16","resume_from":17}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            ClientRequest::Start(StartParams {
                station: Some("sleep".into()),
                format: Some(Format::Pcm16),
                resume_from: Some(17),
                musical: None,
                ack: false,
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"control","action":"stop"}"#).unwrap(),
            ClientRequest::Stop
        );
        for action in ["start", "set"] {
            let r = parse_client_message(&format!(
                r#"{{"type":"control","action":"{action}","params":{{"format":"opus"}}}}"#
            ))
            .unwrap();
            let format = match r {
                ClientRequest::Start(start) => start.format,
                ClientRequest::Set(set) => set.format,
                other => panic!("{other:?}"),
            };
            assert_eq!(format, Some(Format::Opus), "{action}");
        }
        assert_eq!(
            parse_client_message(r#"{"type":"control","action":"ping"}"#).unwrap(),
            ClientRequest::Ping
        );
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#).unwrap(),
            ClientRequest::Ping
        );
        assert_eq!(
            parse_client_message(
                r#"{"type":"control","action":"set","params":{"format":"json","bpm":80}}"#
            )
            .unwrap(),
            ClientRequest::Set(SetParams {
                station: None,
                format: Some(Format::Json),
                musical: Some(ParamUpdate {
                    bpm: Some(80.0),
                    ..ParamUpdate::default()
                }),
            })
        );
    }

    #[test]
    fn errors_have_precise_codes() {
        let code = |t: &str| parse_client_message(t).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"action":"start"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"control"}"#), ErrorCode::InvalidMessage);
        assert_eq!(
            code(r#"{"type":"control","action":"jump"}"#),
            ErrorCode::UnknownAction
        );
        assert_eq!(
            code(r#"{"type":"control","action":"start","params":{"volume":3}}"#),
            ErrorCode::UnknownParam
        );
        assert_eq!(
            code(r#"{"type":"control","action":"start","params":{"format":"mp3"}}"#),
            ErrorCode::InvalidParam
        );
        let format_error =
            parse_client_message(r#"{"type":"control","action":"set","params":{"format":"ogg"}}"#)
                .unwrap_err();
        assert_eq!(format_error.code, ErrorCode::InvalidParam);
        for name in ["\"json\"", "\"pcm16\"", "\"opus\""] {
            assert!(
                format_error.message.contains(name),
                "{}",
                format_error.message
            );
        }
        assert_eq!(
            code(r#"{"type":"control","action":"start","params":{"resume_from":-1}}"#),
            ErrorCode::InvalidParam
        );
        assert_eq!(
            code(r#"{"type":"control","action":"start","params":"x"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"control","action":"start","params":{"bpm":"fast"}}"#),
            ErrorCode::InvalidParam
        );
        assert_eq!(
            code(r#"{"type":"control","action":"start","params":{"seed":-3}}"#),
            ErrorCode::InvalidParam
        );
        assert_eq!(
            code(r#"{"type":"control","action":"report","params":{"underruns":-1}}"#),
            ErrorCode::InvalidParam
        );
        assert_eq!(
            code(r#"{"type":"control","action":"report","params":{"dropouts":1}}"#),
            ErrorCode::UnknownParam
        );
        assert_eq!(
            parse_client_message(
                r#"{"type":"control","action":"report","params":{"underruns":3,"buffer_ms":850}}"#
            )
            .unwrap(),
            ClientRequest::Report(Report {
                underruns: Some(3),
                buffer_ms: Some(850.0)
            })
        );
    }

    #[test]
    fn server_messages_serialize_as_documented() {
        let ack = ServerMessage::Ack {
            action: "start",
            station: Some("focus".into()),
            format: Some(Format::Json),
            codec: Format::Json.codec(),
            state: Some("live"),
            first_seq: Some(3),
            params: None,
        };
        assert_eq!(
            ack.to_json(),
            r#"{"type":"ack","action":"start","station":"focus","format":"json","state":"live","first_seq":3}"#
        );
        let opus = ServerMessage::Ack {
            action: "set",
            station: None,
            format: Some(Format::Opus),
            codec: Format::Opus.codec(),
            state: None,
            first_seq: None,
            params: None,
        };
        assert_eq!(
            opus.to_json(),
            r#"{"type":"ack","action":"set","format":"opus","codec":{"name":"opus","sample_rate":48000,"channels":2,"pre_skip":312,"frame_ms":20}}"#
        );
        let err = ProtocolError::new(ErrorCode::UnknownStation, "no").to_message();
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"unknown_station","message":"no"}"#
        );
        let skipped = ServerMessage::Status(StatusMessage {
            state: "skipped",
            missed: Some(4),
            ..StatusMessage::default()
        });
        assert_eq!(
            skipped.to_json(),
            r#"{"type":"status","state":"skipped","missed":4}"#
        );
        let drain = ServerMessage::Draining {
            reconnect_after_ms: 700,
            closes_in_ms: 5000,
            resume_from: None,
        };
        assert_eq!(
            drain.to_json(),
            r#"{"type":"draining","reconnect_after_ms":700,"closes_in_ms":5000}"#
        );
    }

    #[test]
    fn unix_seconds_are_json_numbers() {
        assert_eq!(unix_seconds_json(1_500_000_000), "1.500000");
        assert_eq!(unix_seconds_json(12), "0.000000");
    }
}
