//! composer: the generative part of Auralis. It writes ambient music as timed note events,
//! bar by bar, deterministically from a seed, and feeds them to synthd through shared memory.
//!
//! From the bottom up:
#![forbid(unsafe_code)]

/// The `Composer`: seed + parameters -> bars of note events.
pub mod composer;
/// `composer run`: the daemon feeding synthd through shared memory.
pub mod daemon;
/// `composer dump`: print composed events.
pub mod dump;
/// Markov chord progressions per mode.
pub mod harmony;
/// The instrument indices shared with synthd.
pub mod instruments;
/// Constraint-based melody in phrases.
pub mod melody;
/// `/metrics`: bars composed, phrase rate, process metrics.
pub mod metrics;
/// Standard MIDI File export.
pub mod midi;
/// Validated parameters, their wire form and partial updates.
pub mod params;
/// Sparse, soft, probabilistic percussion.
pub mod percussion;
/// The preset table.
pub mod presets;
/// Keys, modes, scales.
pub mod scales;
/// Pad voicings with smooth voice leading; bass notes.
pub mod voicing;

pub use composer::{BarInfo, Composer};
pub use daemon::{DaemonArgs, run_daemon};
pub use params::{ParamError, ParamUpdate, Params};
pub use presets::{Preset, PresetId, presets};
pub use scales::{Key, Mode, Scale};
