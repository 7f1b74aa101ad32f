//! `auralis`: the launcher. `auralis up` runs composer, synthd and streamd as three separate
//! processes (re-executing this binary in each role, so one `cargo run` builds everything), and
//! `auralis render` composes and synthesizes in one process, faster than real time.
#![forbid(unsafe_code)]

mod cli;
mod export;
mod render;
mod supervisor;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    cli.init_logging();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("auralis: {err:#}");
            ExitCode::FAILURE
        }
    }
}
