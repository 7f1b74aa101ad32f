//! synthd: renders every station's notes into its audio ring. Thin: arguments, logging, signals,
//! the metrics endpoint, then [`synthd::run_daemon`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use auralis_ops::CommonArgs;
use clap::Parser;

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "synthd", version, about = "Auralis render daemon")]
struct Cli {
    /// Configuration file and logging.
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    daemon: synthd::DaemonArgs,
    #[command(flatten)]
    metrics: synthd::metrics::MetricsArgs,
}

fn main() -> ExitCode {
    // Flags > environment > the `[synthd]` table of --config FILE > defaults.
    let cli: Cli = auralis_ops::config::parse(|_| Some("synthd"));
    cli.common.init_logging();
    let shutdown = match auralis_ops::signals::shutdown_flag() {
        Ok(flag) => flag,
        Err(e) => {
            eprintln!("synthd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _metrics = synthd::metrics::start(&cli.metrics);
    match synthd::run_daemon(cli.daemon, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("synthd failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
