//! The `composer` binary: argument parsing, logging and signals around the library.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use auralis_ops::CommonArgs;
use clap::{Parser, Subcommand};
use composer::DaemonArgs;
use composer::dump::{DumpArgs, run_dump};
use composer::metrics::MetricsArgs;

/// Generative ambient composer of Auralis.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file and logging.
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
    /// Daemon options when no subcommand is given.
    #[command(flatten)]
    run: RunArgs,
}

/// Options of the daemon.
#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: compose for the stations in shared memory (the default).
    Run(RunArgs),
    /// Compose offline and print the events (or write a MIDI file).
    Dump(DumpArgs),
}

fn main() -> ExitCode {
    // Flags > environment > the `[composer]` table of --config FILE > defaults.
    let cli: Cli = auralis_ops::config::parse(|path| match path {
        [] | ["run"] => Some("composer"),
        _ => None,
    });
    cli.common.init_logging();
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

/// Runs the daemon (and its metrics endpoint) until SIGINT or SIGTERM.
fn daemon(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = auralis_ops::signals::shutdown_flag()?;
    let _metrics = composer::metrics::start(&args.metrics);
    composer::run_daemon(args.daemon, shutdown)
}
