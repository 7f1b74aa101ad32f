//! Log set-up shared by every role of the launcher.

use tracing_subscriber::EnvFilter;

/// `AURALIS_LOG_LEVEL` (or `RUST_LOG`) selects the filter, default `info`; `AURALIS_LOG_FORMAT=json`
/// switches to one JSON object per line for log shippers.
pub fn init() {
    let filter = std::env::var("AURALIS_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("AURALIS_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
