//! 44.1 kHz -> 48 kHz for Opus (which only takes 8/12/16/24/48 kHz): rubato's synchronous FFT
//! resampler, band-limited, with a fixed input of one 100 ms chunk (4,410 frames in, 4,800 out:
//! 44,100 and 48,000 share the factor 300, so 147 frames in are exactly 160 out).

use rubato::{FftFixedIn, Resampler as _};

use super::EncodeError;

/// Frames per 100 ms chunk at 44.1 kHz.
pub const FRAMES_IN: usize = 4410;
/// Frames per 100 ms chunk at 48 kHz.
pub const FRAMES_OUT: usize = 4800;

/// Stereo 44.1 -> 48 kHz, one chunk at a time, buffers allocated once.
pub struct Resampler48 {
    /// The FFT resampler (keeps its overlap between chunks, so chunk edges are seamless).
    inner: FftFixedIn<f32>,
    /// De-interleaved input, one `Vec` per channel.
    input: Vec<Vec<f32>>,
    /// De-interleaved output.
    output: Vec<Vec<f32>>,
}

impl std::fmt::Debug for Resampler48 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler48").finish_non_exhaustive()
    }
}

impl Resampler48 {
    /// A resampler for stereo chunks of [`FRAMES_IN`] frames.
    pub fn new() -> Result<Self, EncodeError> {
        let inner = FftFixedIn::<f32>::new(44_100, 48_000, FRAMES_IN, 1, 2)
            .map_err(|e| EncodeError::Resample(e.to_string()))?;
        debug_assert_eq!(inner.output_frames_max(), FRAMES_OUT);
        Ok(Self {
            input: vec![vec![0.0; FRAMES_IN]; 2],
            output: inner.output_buffer_allocate(true),
            inner,
        })
    }

    /// Frames (at 48 kHz) by which the output lags the input: the FFT resampler's overlap.
    pub fn delay(&self) -> usize {
        self.inner.output_delay()
    }

    /// Resamples one chunk (interleaved s16, [`FRAMES_IN`] frames; a shorter one, e.g. the end
    /// of a file, is padded with silence) into `out` (interleaved f32 in -1..1, [`FRAMES_OUT`]
    /// frames appended).
    pub fn process(&mut self, samples: &[i16], out: &mut Vec<f32>) -> Result<(), EncodeError> {
        let frames = (samples.len() / 2).min(FRAMES_IN);
        for (i, frame) in samples.chunks_exact(2).take(FRAMES_IN).enumerate() {
            self.input[0][i] = f32::from(frame[0]) / 32_768.0;
            self.input[1][i] = f32::from(frame[1]) / 32_768.0;
        }
        for channel in &mut self.input {
            channel[frames..].fill(0.0);
        }
        let (_, produced) = self
            .inner
            .process_into_buffer(&self.input, &mut self.output, None)
            .map_err(|e| EncodeError::Resample(e.to_string()))?;
        out.reserve(produced * 2);
        for i in 0..produced {
            out.push(self.output[0][i]);
            out.push(self.output[1][i]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_keeps_its_frequency_and_level() {
        let mut r = Resampler48::new().unwrap();
        let mut out = Vec::new();
        for chunk in 0..10 {
            let samples: Vec<i16> = (0..FRAMES_IN)
                .flat_map(|i| {
                    let t = (chunk * FRAMES_IN + i) as f64 / 44_100.0;
                    let s = (t * 1000.0 * std::f64::consts::TAU).sin() * 16_000.0;
                    [s as i16, s as i16]
                })
                .collect();
            r.process(&samples, &mut out).unwrap();
        }
        assert_eq!(out.len(), 10 * FRAMES_OUT * 2);
        // Skip the resampler's start-up delay, then compare with a 1 kHz sine at 48 kHz by
        // correlation at the best lag.
        let left: Vec<f32> = out.iter().step_by(2).copied().skip(9600).collect();
        let best = (0..48)
            .map(|lag| {
                left.iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let t = (i + lag) as f64 / 48_000.0;
                        f64::from(x) * (t * 1000.0 * std::f64::consts::TAU).sin()
                    })
                    .sum::<f64>()
            })
            .fold(f64::MIN, f64::max);
        let energy: f64 = left.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let norm = (energy * left.len() as f64 / 2.0).sqrt();
        assert!(best / norm > 0.99, "correlation {}", best / norm);
    }
}
