//! Fixed audio geometry and protocol constants shared by every process.

/// Output sample rate of the whole system, in frames per second.
pub const SAMPLE_RATE: u32 = 44_100;
/// Interleaved stereo.
pub const CHANNELS: usize = 2;
/// One chunk is 100 ms.
pub const CHUNK_MS: u32 = 100;
/// Frames in one chunk (4,410 at 44.1 kHz).
pub const CHUNK_FRAMES: usize = (SAMPLE_RATE as usize) * (CHUNK_MS as usize) / 1000;
/// Interleaved `i16` samples in one chunk (8,820).
pub const CHUNK_SAMPLES: usize = CHUNK_FRAMES * CHANNELS;
/// Bytes of s16le PCM in one chunk (17,640).
pub const CHUNK_BYTES: usize = CHUNK_SAMPLES * 2;
/// Bumped whenever any `#[repr(C)]` structure placed in shared memory changes.
pub const LAYOUT_VERSION: u32 = 1;
