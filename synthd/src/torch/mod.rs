//! The torch backend (`--features torch`): one batched render per 100 ms chunk of the melodic voices
//! of every station, in the same tensor operations, on CUDA (or on libtorch's CPU for parity
//! tests).
//!
//! What it renders, per voice family ([`voices::Family`]), each mirroring the native voice code:
//! - pads (warm: three DPW saws; glass: two triangles and an octave saw), dry: their resonant
//!   filters become one low-pass per station on the CPU ([`PadFilter`]);
//! - the round bass, its one-pole included (a per-voice recursion, run on the device as a blocked
//!   closed form: a 64x64 Toeplitz product per block plus the carried block ends);
//! - the soft piano (polynomial-sine FM, control-rate index and level decays) and the electric
//!   piano (table FM, decaying index and tine, autopan: native steps the decays per frame but
//!   restarts them from their exact exponentials at every control point, which the device
//!   evaluates at every frame);
//! - the bell (five decaying table partials, its forced release included) and the shimmer (three
//!   partials with LFO swells, stereo);
//!
//! each with the native ADSR (exact curve at each 64-frame control point of the station clock,
//! straight lines between), level and pan, summed per station. The percussion (kick, brush,
//! shaker, click) stays native: the noise voices read a xorshift generator whose state advances
//! per frame (a counter-based noise would change their sound, and the parity with native with
//! it) and run a band-pass recursion each, for a few short notes per bar; they cost the CPU
//! little next to the reverb. The reverb, loudness hold and limiter stay on the CPU too.
//!
//! Reading order:
//! - [`voices`]: the host's voice table. Note-on runs the native code ([`crate::voice::Voice::start`],
//!   the instruments' `start`) and keeps only what the device needs; the host is the only owner of
//!   state.
//! - [`engine`]: [`VoiceEngine`], the device render: stateless per chunk (phases, envelope ages,
//!   decays and LFO steps are functions of the frame), pre-allocated per batch of
//!   `GPU_BATCH_SIZE` stations.
//! - [`route`]: [`VoiceRoute`], the daemon's use of it: melodic notes into the engine, one render
//!   per tick of every due station, each station's block into its renderer.
//! - [`pad_bus`]: [`PadFilter`], the per-station low-pass on the torch pads (what replaces the
//!   per-voice pad filters), and [`PadBus`], the renderer's end of the torch bus.
//! - `parity` (tests): the native engine's voice paths against this one, family by family, each
//!   within 1e-4 (relative) of native; every family is routed ([`voices::Family::routed`]).

pub mod engine;
pub mod pad_bus;
pub mod route;
pub mod voices;

#[cfg(test)]
mod parity;

pub use engine::{TorchError, VoiceEngine};
pub use pad_bus::{PadBus, PadFilter};
pub use route::VoiceRoute;

/// True when libtorch sees a CUDA device. (`libtorch_cuda.so` is kept linked by build.rs; a
/// libtorch without it, or a machine without a GPU, reports none.)
pub fn cuda_available() -> bool {
    tch::Cuda::device_count() > 0 && tch::Cuda::is_available()
}
