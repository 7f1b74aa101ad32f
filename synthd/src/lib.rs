//! synthd: turns each station's note events into 44.1 kHz stereo, 100 ms chunk by chunk, into the
//! station's audio ring.
//!
//! Reading order:
//! - [`renderer`]: [`StationRenderer`], one station's synthesis (the API the daemon and the offline
//!   `auralis render` share).
//! - [`daemon`]: [`run_daemon`], pacing stations to the wall clock over shared memory.
//! - The signal path, bottom up: [`osc`] (band-limited tables, noise), [`envelope`], [`filter`],
//!   [`voice`], [`instruments`], [`pool`] (voice stealing), [`pending`] (sorted event queue),
//!   [`reverb`], [`limiter`], [`master`].
//! - [`stats`]: render metrics; [`loudness`]: BS.1770 loudness and true peak for tests and
//!   calibration.
//!
//! The real-time contract, after fundsp: allocate in constructors, render on bounded blocks, never
//! allocate or lock while rendering, and produce the same samples whatever the block size.
#![forbid(unsafe_code)]
// DSP loops walk several parallel fixed-size arrays (phases, increments, amplitudes) by index;
// iterator zips of four arrays read worse and compile to the same code.
#![allow(clippy::needless_range_loop)]

pub mod daemon;
pub mod envelope;
pub mod filter;
pub mod instruments;
pub mod limiter;
pub mod loudness;
pub mod master;
pub mod osc;
pub mod pending;
pub mod pool;
pub mod renderer;
pub mod reverb;
pub mod stats;
pub mod voice;

pub use daemon::{DaemonArgs, run_daemon};
pub use renderer::StationRenderer;
pub use stats::RenderStats;
