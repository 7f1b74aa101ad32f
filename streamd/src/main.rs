//! The streamd binary: logging, flags, then [`streamd::main_blocking`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use auralis_ops::CommonArgs;
use clap::Parser;

/// Gateway: serves the stations' audio rings to browsers over WebSocket.
#[derive(Debug, Parser)]
#[command(name = "streamd", version, about)]
struct Cli {
    /// Configuration file and logging (`AURALIS_LOG_FORMAT=json` for one JSON object per line).
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    args: streamd::Args,
}

fn main() -> ExitCode {
    // Flags > environment > the `[streamd]` table of --config FILE > defaults.
    let cli: Cli = auralis_ops::config::parse(|_| Some("streamd"));
    cli.common.init_logging();
    match streamd::main_blocking(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
