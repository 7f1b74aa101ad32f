//! Command line of the launcher.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{render, supervisor};

/// Real-time generative ambient music, composed, synthesized and streamed live.
#[derive(Debug, Parser)]
#[command(name = "auralis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system: composer, synthd and streamd as three supervised processes.
    Up(supervisor::UpArgs),
    /// Compose and render offline to a WAV file (and optionally a MIDI file), faster than real time.
    Render(render::RenderArgs),
    /// Run the composer daemon in this process (what `up` starts).
    Composer(composer::DaemonArgs),
    /// Run the synthesis daemon in this process (what `up` starts).
    Synthd(synthd::DaemonArgs),
    /// Run the gateway in this process (what `up` starts).
    Streamd(streamd::Args),
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => supervisor::up(args),
        Command::Render(args) => render::render(args),
        Command::Composer(args) => composer::run_daemon(args, shutdown_flag()?),
        Command::Synthd(args) => synthd::run_daemon(args, shutdown_flag()?),
        Command::Streamd(args) => streamd::main_blocking(args),
    }
}

/// A flag set by SIGINT or SIGTERM, for the daemons that poll one.
fn shutdown_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .with_context(|| format!("installing the handler for signal {sig}"))?;
    }
    Ok(flag)
}

/// Where the current executable lives, to re-execute it in each role.
pub fn current_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating the auralis executable")
}
