//! Log set-up shared by every binary: `tracing` to stderr, plain text for people or one JSON
//! object per line for log shippers.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (journald, Loki, Elasticsearch).
    Json,
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive (`info`,
/// `debug,streamd=trace`); `None` falls back to `RUST_LOG`, then `info`. A directive that does
/// not parse is reported and replaced by `info` rather than silencing the daemon.
pub fn init(level: Option<&str>, format: LogFormat) {
    let wanted = level
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let (filter, bad) = match EnvFilter::try_new(wanted.to_lowercase()) {
        Ok(f) => (f, None),
        Err(err) => (EnvFilter::new("info"), Some(err)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: a second initialisation (tests, embedders) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    if let Some(err) = bad {
        tracing::warn!(level = %wanted, %err, "invalid AURALIS_LOG_LEVEL; using info");
    }
}
