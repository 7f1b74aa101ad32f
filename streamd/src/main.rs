//! The streamd binary: logging, flags, then [`streamd::main_blocking`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// Gateway: serves the stations' audio rings to browsers over WebSocket.
#[derive(Debug, Parser)]
#[command(name = "streamd", version, about)]
struct Cli {
    #[command(flatten)]
    args: streamd::Args,
}

fn main() -> ExitCode {
    let filter = std::env::var("AURALIS_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map(|level| level.to_lowercase())
        .unwrap_or_else(|_| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match streamd::main_blocking(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
