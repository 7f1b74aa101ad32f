//! Command line of the launcher.

use std::path::PathBuf;

use anyhow::Context as _;
use auralis_ops::CommonArgs;
use clap::{Parser, Subcommand};

use crate::{render, supervisor};

/// Real-time generative ambient music, composed, synthesized and streamed live.
#[derive(Debug, Parser)]
#[command(name = "auralis", version, about)]
pub struct Cli {
    /// Configuration file and logging, for every command.
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Installs logging as `--log-level` / `--log-format` (or their variables) say.
    pub fn init_logging(&self) {
        self.common.init_logging();
    }
}

/// Parses the command line: flags > environment > the command's table of `--config FILE`
/// (`[up]`, `[composer]`, `[synthd]`, `[streamd]`) > defaults.
pub fn parse() -> Cli {
    auralis_ops::config::parse(|path| match path {
        ["up"] => Some("up"),
        ["composer"] => Some("composer"),
        ["synthd"] => Some("synthd"),
        ["streamd"] => Some("streamd"),
        _ => None,
    })
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system: composer, synthd and streamd as three supervised processes.
    Up(supervisor::UpArgs),
    /// Compose and render offline to a WAV, Ogg/Opus or MP3 file (and optionally a MIDI file),
    /// faster than real time.
    Render(render::RenderArgs),
    /// Run the composer daemon in this process (what `up` starts).
    Composer(ComposerRole),
    /// Run the synthesis daemon in this process (what `up` starts).
    Synthd(SynthdRole),
    /// Run the gateway in this process (what `up` starts).
    Streamd(streamd::Args),
}

/// `auralis composer`: the daemon and its metrics endpoint.
#[derive(Debug, clap::Args)]
struct ComposerRole {
    #[command(flatten)]
    daemon: composer::DaemonArgs,
    #[command(flatten)]
    metrics: composer::metrics::MetricsArgs,
}

/// `auralis synthd`: the daemon and its metrics endpoint.
#[derive(Debug, clap::Args)]
struct SynthdRole {
    #[command(flatten)]
    daemon: synthd::DaemonArgs,
    #[command(flatten)]
    metrics: synthd::metrics::MetricsArgs,
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => supervisor::up(args, &cli.common),
        Command::Render(args) => render::render(args),
        Command::Composer(role) => {
            let _metrics = composer::metrics::start(&role.metrics);
            composer::run_daemon(role.daemon, auralis_ops::signals::shutdown_flag()?)
        }
        Command::Synthd(role) => {
            let _metrics = synthd::metrics::start(&role.metrics);
            synthd::run_daemon(role.daemon, auralis_ops::signals::shutdown_flag()?)
        }
        Command::Streamd(args) => streamd::main_blocking(args),
    }
}

/// Where the current executable lives, to re-execute it in each role.
pub fn current_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating the auralis executable")
}
