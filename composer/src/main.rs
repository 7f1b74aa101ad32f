//! The `composer` binary: argument parsing, logging and signals around the library.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use composer::DaemonArgs;
use composer::dump::{DumpArgs, run_dump};
use tracing_subscriber::EnvFilter;

/// Generative ambient composer of Auralis.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Daemon options when no subcommand is given.
    #[command(flatten)]
    run: DaemonArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: compose for the stations in shared memory (the default).
    Run(DaemonArgs),
    /// Compose offline and print the events (or write a MIDI file).
    Dump(DumpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One plain line on stderr: readable on a terminal and in the journal alike.
            let _ = writeln!(std::io::stderr(), "composer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Dump(args)) => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            run_dump(&args, &mut lock)
        }
        Some(Command::Run(args)) => daemon(args),
        None => daemon(cli.run),
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
fn daemon(args: DaemonArgs) -> anyhow::Result<()> {
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&shutdown))?;
    }
    composer::run_daemon(args, shutdown)
}

/// Logs to stderr, filtered by `AURALIS_LOG_LEVEL` (an EnvFilter directive), default `info`.
fn init_tracing() {
    let filter =
        EnvFilter::try_from_env("AURALIS_LOG_LEVEL").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
