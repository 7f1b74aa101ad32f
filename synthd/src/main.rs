//! synthd: renders every station's notes into its audio ring. Thin: arguments, logging, signals,
//! then [`synthd::run_daemon`].
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "synthd", version, about = "Auralis render daemon")]
struct Cli {
    #[command(flatten)]
    daemon: synthd::DaemonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("AURALIS_LOG_LEVEL")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&shutdown)) {
            eprintln!("synthd: cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    match synthd::run_daemon(cli.daemon, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("synthd failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
