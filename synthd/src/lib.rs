//! synthd: turns each station's note events into 44.1 kHz stereo, 100 ms chunk by chunk, into the
//! station's audio ring.
//!
//! Reading order:
//! - [`renderer`]: [`StationRenderer`], one station's synthesis (the API the daemon and the offline
//!   `auralis render` share).
//! - [`daemon`]: [`run_daemon`], pacing stations to the wall clock over shared memory.
//! - The signal path, bottom up: [`osc`] (tables, polynomial sines, noise), [`envelope`]
//!   (control-rate plans, linear ramps), [`filter`], [`voice`], [`instruments`], [`pad_bank`]
//!   (the pads, four voices per SIMD vector), [`pool`] (voice stealing), [`pending`] (sorted
//!   event queue), [`reverb`], [`loudness_hold`] (the automatic gain holding -16 LUFS),
//!   [`limiter`], [`master`].
//! - [`soundfont`]: SF2 instruments through rustysynth (`--soundfont`); [`midi_in`]: Standard
//!   MIDI File input (`auralis render --midi-in`).
//! - [`stats`]: render metrics, exported by [`metrics`] at `/metrics`; [`loudness`]: BS.1770 loudness and true peak for tests and
//!   calibration.
//!
//! The real-time contract, after fundsp: allocate in constructors, render on bounded blocks, never
//! allocate or lock while rendering, and produce the same samples whatever the block size. The
//! last holds because all control-rate work happens on a 64-frame grid of the station clock (and
//! at a note's first frame), every ramp is a function of the offset in that grid block, and every
//! recursion advances frame by frame in a fixed order.
#![forbid(unsafe_code)]
// DSP loops walk several parallel fixed-size arrays (phases, increments, amplitudes) by index;
// iterator zips of four arrays read worse and compile to the same code.
#![allow(clippy::needless_range_loop)]

pub mod daemon;
pub mod device;
pub mod envelope;
pub mod filter;
pub mod instruments;
pub mod limiter;
pub mod loudness;
pub mod loudness_hold;
pub mod master;
pub mod metrics;
pub mod midi_in;
pub mod osc;
pub mod pad_bank;
pub mod pending;
pub mod pool;
pub mod renderer;
pub mod reverb;
pub mod soundfont;
pub mod stats;
#[cfg(feature = "torch")]
pub mod torch;
pub mod voice;

pub use daemon::{DaemonArgs, run_daemon};
pub use renderer::StationRenderer;
pub use soundfont::{SoundFontBank, SoundFontError};
pub use stats::RenderStats;
