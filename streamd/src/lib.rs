//! streamd, the gateway: serves the stations' audio rings to browsers over WebSocket.
//!
//! Per station one thread reads the ring synthd writes (`station`), encodes each 100 ms chunk once
//! and fans it out to every listener through a broadcast channel; each WebSocket connection
//! (`ws`) is a session task plus a writer task behind a bounded queue, so a slow client skips
//! ahead instead of slowing anybody down. The protocol's messages live in `protocol`, the
//! per-connection control state machine in `session`.
//!
//! | module | what it does |
//! |---|---|
//! | [`config`] | flags / environment ([`Args`]) and tuning constants |
//! | [`server`] | [`run`] (the testable seam), [`main_blocking`], the `SO_REUSEPORT` bind |
//! | [`directory`] | stations discovered from the control block; demand reporting; retirement |
//! | [`params`] | stations by parameters: canonical names, creation within the cap |
//! | [`station`] | ring reader thread, encode-once, broadcast fan-out, resume history |
//! | [`protocol`] | client and server messages, the audio message and binary frame |
//! | [`session`] | control state machine of one connection, playout estimate (`buffer_depth`) |
//! | [`live`] | what a connection streams: the station's PCM broadcast or its Opus feed, joined at a seq |
//! | [`tiers`] | jitter tracking (EMA, mean + 2σ) and the adaptive buffer tier |
//! | [`variants`] | the few finished copies of an audio message its live listeners share |
//! | [`limits`] | token bucket on control messages, flood closing, Origin allow-list |
//! | [`ws`] | the WebSocket endpoint: session and writer tasks |
//! | [`http`] | routes: player files, `/healthz`, `/api/status`, `/api/presets` |
//! | [`http_stream`] | `/stream/{station}.opus` and `.mp3`: Icecast-style HTTP streams |
//! | [`icecast`] | source client: relays a station's Ogg/Opus feed to Icecast (`--icecast`) |
//! | [`compressed`] | per station and format: encode once while listened to, history, fan-out (HTTP and WebSocket `opus`) |
//! | [`encode`] | Opus (libopus, Ogg, 44.1 -> 48 kHz), MP3 (LAME) |
//! | [`operator`] | `POST /api/stations/{id}/params` behind a bearer token |
//! | [`stats`] | every counter (gateway, station, client) for status and metrics |
//! | [`metrics`] | `GET /metrics`: the stats read into Prometheus families at scrape time |
//! | [`shutdown`] | signals and the drain phases |
#![forbid(unsafe_code)]

pub mod compressed;
pub mod config;
pub mod directory;
pub mod encode;
pub mod http;
pub mod http_stream;
pub mod icecast;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod operator;
pub mod params;
pub mod protocol;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod station;
pub mod stats;
pub mod tiers;
pub mod variants;
pub mod ws;

pub use config::Args;
pub use server::{bind, main_blocking, run};
