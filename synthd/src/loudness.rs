//! Measurement helpers (not on the render path): ITU-R BS.1770-4 integrated loudness with EBU R128
//! gating, and a 4x-oversampled true-peak estimate. Tests and the calibration of the master gain
//! use them; the launcher may report them after an offline render.

use shm_proto::SAMPLE_RATE;

/// A direct-form-I biquad (measurement only, f64).
#[derive(Clone, Copy, Debug)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    x: [f64; 2],
    y: [f64; 2],
}

impl Biquad {
    fn tick(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

/// Coefficients `(b, a)` (a0 normalised to 1) of the K-weighting filter pair for sample rate
/// `fs`: the high shelf, then the high-pass. Derived from the analogue prototype as in
/// libebur128, so they are right at 44.1 kHz as well as 48 kHz, and at the decimated rate of the
/// render path's loudness hold ([`crate::loudness_hold`]).
pub fn k_weighting_coefs(fs: f64) -> [([f64; 3], [f64; 2]); 2] {
    let pi = std::f64::consts::PI;
    let (f0, g, q) = (1681.974450955533, 3.999843853973347, 0.7071752369554196);
    let k = (pi * f0 / fs).tan();
    let vh = 10f64.powf(g / 20.0);
    let vb = vh.powf(0.4996667741545416);
    let a0 = 1.0 + k / q + k * k;
    let shelf = (
        [
            (vh + vb * k / q + k * k) / a0,
            2.0 * (k * k - vh) / a0,
            (vh - vb * k / q + k * k) / a0,
        ],
        [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
    );
    let (f0, q) = (38.13547087602444, 0.5003270373238773);
    let k = (pi * f0 / fs).tan();
    let a0 = 1.0 + k / q + k * k;
    let hp = (
        [1.0, -2.0, 1.0],
        [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
    );
    [shelf, hp]
}

/// The K-weighting filter pair (high shelf, then high-pass) for `fs`.
fn k_weighting(fs: f64) -> [Biquad; 2] {
    k_weighting_coefs(fs).map(|(b, a)| Biquad {
        b,
        a,
        x: [0.0; 2],
        y: [0.0; 2],
    })
}

/// Integrated loudness (LUFS) of interleaved stereo `samples` at the system rate; `-inf` for
/// silence.
pub fn integrated_lufs(samples: &[f32]) -> f64 {
    let fs = f64::from(SAMPLE_RATE);
    let mut filters = [k_weighting(fs), k_weighting(fs)];
    // Mean square per 100 ms step, summed over channels.
    let step = (fs / 10.0) as usize;
    let mut steps = Vec::new();
    let mut acc = 0.0;
    for (i, frame) in samples.chunks_exact(2).enumerate() {
        for ch in 0..2 {
            let mut v = f64::from(frame[ch]);
            for f in &mut filters[ch] {
                v = f.tick(v);
            }
            acc += v * v;
        }
        if (i + 1) % step == 0 {
            steps.push(acc / step as f64);
            acc = 0.0;
        }
    }
    // 400 ms blocks, 75 % overlap.
    let blocks: Vec<f64> = steps
        .windows(4)
        .map(|w| w.iter().sum::<f64>() / 4.0)
        .collect();
    let lufs = |p: f64| -0.691 + 10.0 * p.log10();
    let gated = |threshold: f64| -> Vec<f64> {
        blocks
            .iter()
            .copied()
            .filter(|&p| lufs(p) > threshold)
            .collect()
    };
    let abs = gated(-70.0);
    if abs.is_empty() {
        return f64::NEG_INFINITY;
    }
    let rel = lufs(abs.iter().sum::<f64>() / abs.len() as f64) - 10.0;
    let both = gated(rel.max(-70.0));
    lufs(both.iter().sum::<f64>() / both.len() as f64)
}

/// True peak (dBFS) of interleaved stereo `samples`: 4x oversampling with a windowed-sinc
/// interpolator (48 taps per phase), as BS.1770 annex 2 suggests.
pub fn true_peak_dbfs(samples: &[f32]) -> f64 {
    const PHASES: usize = 4;
    const TAPS: usize = 48;
    let mut kernel = [[0.0f64; TAPS]; PHASES];
    for (p, row) in kernel.iter_mut().enumerate() {
        for (t, k) in row.iter_mut().enumerate() {
            let x = t as f64 - (TAPS / 2) as f64 + p as f64 / PHASES as f64;
            let sinc = if x == 0.0 {
                1.0
            } else {
                (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
            };
            let w = 0.5 + 0.5 * (std::f64::consts::PI * x / (TAPS / 2 + 1) as f64).cos();
            *k = sinc * w;
        }
    }
    let mut peak = 0.0f64;
    for ch in 0..2 {
        let x: Vec<f64> = samples
            .iter()
            .skip(ch)
            .step_by(2)
            .map(|&v| f64::from(v))
            .collect();
        for n in TAPS..x.len() {
            for row in &kernel {
                let mut acc = 0.0;
                for (t, k) in row.iter().enumerate() {
                    acc += k * x[n - t];
                }
                peak = peak.max(acc.abs());
            }
        }
    }
    20.0 * peak.log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_1k_sine_at_minus_20_dbfs_reads_minus_20_lufs() {
        // BS.1770: a 0 dBFS 1 kHz sine in one channel reads -3.01 LUFS, so in both channels at
        // -20 dBFS it reads -20 LUFS.
        let amp = 10f32.powf(-20.0 / 20.0);
        let samples: Vec<f32> = (0..10 * SAMPLE_RATE as usize)
            .flat_map(|n| {
                let v =
                    amp * (std::f32::consts::TAU * 1000.0 * n as f32 / SAMPLE_RATE as f32).sin();
                [v, v]
            })
            .collect();
        let l = integrated_lufs(&samples);
        assert!((l + 20.0).abs() < 0.1, "{l}");
    }
}
