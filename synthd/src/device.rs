//! Which engine synthesises: the native DSP loop, or the torch backend on CUDA (or on libtorch's
//! CPU, for parity tests only).
//!
//! `AURALIS_DEVICE` / `--device`:
//! - `auto` (default): CUDA when this build has the `torch` feature and libtorch finds a GPU, else
//!   the native engine. libtorch on the CPU is about 30 times slower per core than the native loop
//!   (shared/GPU.md), so it is never the fallback.
//! - `cuda`: the torch backend on GPU 0. Not possible (no `torch` feature, no CUDA device, the
//!   engine fails its warm-up): one warning line and the native engine. We chose a fallback over
//!   a start-up error so that a misplaced setting can never take a station off the air; the
//!   warning, the status line and `gpu_memory_allocated_mb 0` make the fallback visible.
//! - `cpu`: the native engine.
//! - `torch-cpu`: the torch backend on libtorch's CPU (parity tests; same fallback as `cuda`).
//!
//! The batch size (stations per device batch, which bounds device memory) comes from
//! `GPU_BATCH_SIZE`.
//!
//! On the torch backend the daemon routes every station's melodic voices through it
//! (`torch::VoiceRoute`): pad, bass, piano and texture notes go to the engine's voice table
//! instead of the station's renderer; each tick, the stations whose chunk is due are rendered in
//! one batch (all their device voices in the same tensor operations: oscillators, envelopes,
//! decays, level and pan, and the bass one-pole as a closed form), and each station's block is
//! mixed by its [`crate::StationRenderer`] (`render_chunk_with_external_pads`) with its
//! percussion, which stays native, before the reverb, loudness hold and limiter (CPU). What
//! differs from the native engine:
//! - The pads' filters. Native runs two resonant low-passes per pad voice (key-tracked, swept by
//!   a per-voice LFO, opened by the envelope); a filter is a per-frame recursion, so the device
//!   renders the pads dry and the CPU filters each station's pad sum with one low-pass
//!   (`torch::PadFilter`: 700 Hz times the brightness curve, Q 0.75). Measured on a Focus
//!   station's final output, every melodic part routed: correlation 0.987 with native, relative
//!   error 0.16 (the other routed voices are within 1e-4 of native's, the parity tests).
//! - Voice stealing: fixed slots per station and family (16 pads, 6 basses, 12 pianos, 8 bells
//!   or shimmers); one more note cuts the oldest (native fades it).
//! - The percussion stays native, as do SoundFont stations (`--soundfont`: the route is not
//!   used).
//! - A libtorch error while running is logged once and ends the route: every station renders on
//!   the native engine from then on (the notes sounding in the engine are lost; the music
//!   returns with the next notes), never a crash.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Stations per device batch when `GPU_BATCH_SIZE` is unset.
pub const DEFAULT_BATCH: usize = 1024;

/// Device memory the torch backend holds, bytes (0 on the native engine). Written when the
/// engine is built and after its warm-up; read by the metrics scrape (`gpu_memory_allocated_mb`).
// SYNC POINT: relaxed store in `set_device_memory`, relaxed load in `device_memory_mb`; a plain
// gauge, nothing else is published through it.
static DEVICE_MEMORY_BYTES: AtomicU64 = AtomicU64::new(0);

/// Records the device memory the engine holds.
pub fn set_device_memory(bytes: u64) {
    DEVICE_MEMORY_BYTES.store(bytes, Ordering::Relaxed);
}

/// Device memory the engine holds, MiB (the `gpu_memory_allocated_mb` metric).
pub fn device_memory_mb() -> f64 {
    DEVICE_MEMORY_BYTES.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

/// What the operator asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceRequest {
    /// CUDA if available, else the native engine.
    #[default]
    Auto,
    /// The torch backend on GPU 0.
    Cuda,
    /// The native engine.
    Cpu,
    /// The torch backend on libtorch's CPU (parity tests).
    TorchCpu,
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceRequest::Auto => "auto",
            DeviceRequest::Cuda => "cuda",
            DeviceRequest::Cpu => "cpu",
            DeviceRequest::TorchCpu => "torch-cpu",
        })
    }
}

/// Where the torch backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TorchDevice {
    /// GPU 0.
    Cuda,
    /// libtorch's CPU.
    Cpu,
}

/// The engine chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The native DSP loop.
    Native,
    /// The torch backend.
    Torch(TorchDevice),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Native => "native",
            Backend::Torch(TorchDevice::Cuda) => "torch on cuda:0",
            Backend::Torch(TorchDevice::Cpu) => "torch on libtorch's cpu",
        })
    }
}

/// The outcome of device selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// What was asked for (kept for the status line).
    pub requested: DeviceRequest,
    /// What runs.
    pub backend: Backend,
    /// Why the request was not honoured, when it was not (logged once, shown in the status).
    pub fallback: Option<String>,
}

impl Selection {
    /// The native engine, with the reason.
    fn native(requested: DeviceRequest, why: Option<String>) -> Self {
        Selection {
            requested,
            backend: Backend::Native,
            fallback: why,
        }
    }
}

/// Stations per device batch: `GPU_BATCH_SIZE` when it is a positive integer, else
/// [`DEFAULT_BATCH`].
pub fn batch_size() -> usize {
    parse_batch(std::env::var("GPU_BATCH_SIZE").ok().as_deref())
}

fn parse_batch(v: Option<&str>) -> usize {
    v.and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_BATCH)
}

/// True when this build has the torch backend.
pub const fn torch_built() -> bool {
    cfg!(feature = "torch")
}

/// True when libtorch sees a CUDA device (always false without the `torch` feature).
pub fn cuda_available() -> bool {
    #[cfg(feature = "torch")]
    {
        crate::torch::cuda_available()
    }
    #[cfg(not(feature = "torch"))]
    {
        false
    }
}

/// Chooses the engine for `requested` (no side effects beyond asking libtorch for devices).
pub fn select(requested: DeviceRequest) -> Selection {
    select_with(requested, torch_built(), cuda_available())
}

/// [`select`] with the facts given (tests).
fn select_with(requested: DeviceRequest, torch: bool, cuda: bool) -> Selection {
    let no_feature = || {
        format!(
            "device {requested} asked for, but this synthd was built without the `torch` feature"
        )
    };
    match requested {
        DeviceRequest::Cpu => Selection::native(requested, None),
        DeviceRequest::Auto if torch && cuda => Selection {
            requested,
            backend: Backend::Torch(TorchDevice::Cuda),
            fallback: None,
        },
        DeviceRequest::Auto => Selection::native(requested, None),
        DeviceRequest::Cuda if !torch => Selection::native(requested, Some(no_feature())),
        DeviceRequest::Cuda if !cuda => Selection::native(
            requested,
            Some("device cuda asked for, but libtorch finds no CUDA device".into()),
        ),
        DeviceRequest::Cuda => Selection {
            requested,
            backend: Backend::Torch(TorchDevice::Cuda),
            fallback: None,
        },
        DeviceRequest::TorchCpu if !torch => Selection::native(requested, Some(no_feature())),
        DeviceRequest::TorchCpu => Selection {
            requested,
            backend: Backend::Torch(TorchDevice::Cpu),
            fallback: None,
        },
    }
}

/// The engine chosen and, for the torch backend, built and warmed up.
#[derive(Debug)]
pub struct Started {
    /// What was asked for and what runs.
    pub selection: Selection,
    /// Stations per device batch (`GPU_BATCH_SIZE`).
    pub batch: usize,
    /// The torch voice engine, held for the daemon's life (its device memory stays reserved).
    #[cfg(feature = "torch")]
    pub engine: Option<crate::torch::VoiceEngine>,
}

impl fmt::Display for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {}", self.selection.backend)?;
        if let Backend::Torch(_) = self.selection.backend {
            write!(
                f,
                " (batch {} stations, {:.0} MiB)",
                self.batch,
                device_memory_mb()
            )?;
        }
        if let Some(why) = &self.selection.fallback {
            write!(f, " [{why}]")?;
        }
        Ok(())
    }
}

/// Selects the engine for `requested` and starts it: on the torch backend, builds the engine for
/// one batch and warms it up; if that fails, one warning and the native engine. Logs one line.
pub fn start(requested: DeviceRequest) -> Started {
    let selection = select(requested);
    let batch = batch_size();
    #[cfg(feature = "torch")]
    let (selection, engine) = match selection.backend {
        Backend::Torch(device) => match crate::torch::VoiceEngine::new(device, batch, batch) {
            Ok(engine) => {
                set_device_memory(engine.memory_bytes());
                (selection, Some(engine))
            }
            Err(e) => {
                let why = format!("the torch backend failed to start: {e}");
                (Selection::native(requested, Some(why)), None)
            }
        },
        Backend::Native => (selection, None),
    };
    let started = Started {
        selection,
        batch,
        #[cfg(feature = "torch")]
        engine,
    };
    match &started.selection.fallback {
        Some(why) => {
            tracing::warn!(requested = %requested, "{why}; rendering on the native engine")
        }
        None => tracing::info!(requested = %requested, "synthesis on {started}"),
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_cuda_only_with_torch_and_a_gpu() {
        let a = DeviceRequest::Auto;
        assert_eq!(
            select_with(a, true, true).backend,
            Backend::Torch(TorchDevice::Cuda)
        );
        for (torch, cuda) in [(true, false), (false, false), (false, true)] {
            let s = select_with(a, torch, cuda);
            assert_eq!(s.backend, Backend::Native);
            assert_eq!(s.fallback, None, "auto on the native engine is no fallback");
        }
    }

    #[test]
    fn explicit_requests_fall_back_with_a_reason() {
        let s = select_with(DeviceRequest::Cuda, false, false);
        assert_eq!(s.backend, Backend::Native);
        assert!(s.fallback.unwrap().contains("without the `torch` feature"));
        let s = select_with(DeviceRequest::Cuda, true, false);
        assert!(s.fallback.unwrap().contains("no CUDA device"));
        let s = select_with(DeviceRequest::TorchCpu, true, false);
        assert_eq!(s.backend, Backend::Torch(TorchDevice::Cpu));
        let s = select_with(DeviceRequest::TorchCpu, false, false);
        assert_eq!(s.backend, Backend::Native);
        assert!(s.fallback.is_some());
        assert_eq!(
            select_with(DeviceRequest::Cpu, true, true).backend,
            Backend::Native
        );
    }

    #[test]
    fn batch_size_parses_or_defaults() {
        assert_eq!(parse_batch(None), DEFAULT_BATCH);
        assert_eq!(parse_batch(Some("256")), 256);
        assert_eq!(parse_batch(Some("0")), DEFAULT_BATCH);
        assert_eq!(parse_batch(Some("lots")), DEFAULT_BATCH);
    }

    #[test]
    fn the_default_build_reports_no_device_memory() {
        if !torch_built() {
            assert_eq!(device_memory_mb(), 0.0);
            let s = start(DeviceRequest::Cuda);
            assert_eq!(s.selection.backend, Backend::Native);
            assert!(s.to_string().starts_with("device native ["), "{s}");
        }
    }

    #[cfg(feature = "torch")]
    #[test]
    fn torch_cpu_starts_the_engine_and_reports_its_memory() {
        let s = start(DeviceRequest::TorchCpu);
        assert_eq!(s.selection.backend, Backend::Torch(TorchDevice::Cpu));
        assert!(s.engine.is_some());
        assert!(device_memory_mb() > 0.0);
        assert!(s.to_string().contains("MiB"), "{s}");
    }
}
