//! Operations shared by the Auralis daemons, so composer, synthd and streamd are run, observed and
//! configured the same way:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | flags > environment > TOML file > defaults; the common `--config`, `--log-*` flags |
//! | [`logging`] | `tracing` to stderr, text or JSON (`AURALIS_LOG_FORMAT=json`) |
//! | [`metrics`] | process metrics, `memory_usage_mb`, text encoding |
//! | [`http`] | the blocking `/metrics` + `/healthz` responder of the runtime-less daemons |
//! | [`notify`] | systemd `READY=1`, `WATCHDOG=1`, `STATUS=`, `STOPPING=1` |
//! | [`signals`] | the SIGINT/SIGTERM stop flag the daemons' loops poll |
#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod signals;

pub use config::CommonArgs;
pub use http::MetricsEndpoint;
pub use notify::Notifier;
pub use prometheus;
