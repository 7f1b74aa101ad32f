//! The torch backend (`--features torch`): one batched render per 100 ms chunk of the pad voices of
//! every station, in the same tensor operations, on CUDA (or on libtorch's CPU for parity tests).
//!
//! What it renders: the native pad voices' dry path — the three oscillators of a warm pad (DPW
//! saws) or glass pad (triangles and an octave saw), the ADSR envelope as native plans it (exact
//! curve at each 64-frame control point of the station clock, straight lines between), level and
//! equal-power pan — summed per station, before the pads' resonant filters, the other
//! instruments, the reverb and the limiter. Those stay on the CPU (the filter is a per-frame
//! recursion, which eager tensor code would run as 4,410 sequential steps).
//!
//! Reading order:
//! - [`voices`]: the host's voice table. Note-on runs the native code ([`crate::voice::Voice::start`])
//!   and keeps only what the device needs; the host is the only owner of state.
//! - [`engine`]: [`PadEngine`], the device render: stateless per chunk (phases and envelope ages
//!   are functions of the frame), pre-allocated per batch of `GPU_BATCH_SIZE` stations.
//! - [`route`]: [`PadRoute`], the daemon's use of it: pad notes into the engine, one render per
//!   tick of every due station, each station's block into its renderer.
//! - [`pad_bus`]: [`PadBus`], the per-station low-pass on the torch pads, on the CPU (what replaces
//!   the per-voice filters).
//! - `parity` (tests): the native engine's dry pad path against this one.

pub mod engine;
pub mod pad_bus;
pub mod route;
pub mod voices;

#[cfg(test)]
mod parity;

pub use engine::{PadEngine, TorchError};
pub use pad_bus::PadBus;
pub use route::PadRoute;

/// True when libtorch sees a CUDA device. (`libtorch_cuda.so` is kept linked by build.rs; a
/// libtorch without it, or a machine without a GPU, reports none.)
pub fn cuda_available() -> bool {
    tch::Cuda::device_count() > 0 && tch::Cuda::is_available()
}
