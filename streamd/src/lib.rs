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
//! | [`directory`] | stations discovered from the control block; demand reporting |
//! | [`station`] | ring reader thread, encode-once, broadcast fan-out, resume history |
//! | [`protocol`] | client and server messages, the audio message and binary frame |
//! | [`session`] | control state machine of one connection, playout estimate (`buffer_depth`) |
//! | [`ws`] | the WebSocket endpoint: session and writer tasks |
//! | [`http`] | routes: player page, `/healthz`, `/api/status` |
//! | [`shutdown`] | signals and the drain phases |
#![forbid(unsafe_code)]

pub mod config;
pub mod directory;
pub mod http;
pub mod protocol;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod station;
pub mod ws;

pub use config::Args;
pub use server::{bind, main_blocking, run};
