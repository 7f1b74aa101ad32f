//! A look-ahead peak limiter that guarantees no output sample exceeds its ceiling.
//!
//! Why this design: the gain needed for each input frame is held for the look-ahead window (sliding
//! minimum, a monotonic deque in fixed arrays) and then averaged over the same window. The average
//! of a window that contains the held minimum can never exceed it, so by the time a peak leaves the
//! delay the gain is already low enough — a hard guarantee, reached along a smooth ramp (no clicks,
//! little distortion). Release is a slow one-pole so sustained material is not pumped. The ceiling
//! sits 1.5 dB under full scale so inter-sample peaks of our band-limited material stay under -1 dBFS.

use shm_proto::SAMPLE_RATE;

/// Look-ahead window in frames (1.45 ms).
pub const LOOKAHEAD: usize = 64;

/// The limiter state (stereo-linked).
#[derive(Debug)]
pub struct Limiter {
    /// Output ceiling (linear).
    ceiling: f32,
    /// Delay of `LOOKAHEAD - 1` frames for the signal.
    delay: Box<[[f32; 2]]>,
    /// Position in `delay`.
    delay_pos: usize,
    /// Deque of candidate minima: values.
    dq_val: Box<[f32]>,
    /// Deque of candidate minima: frame numbers.
    dq_time: Box<[u64]>,
    /// Deque head index (ring over `LOOKAHEAD`).
    dq_head: usize,
    /// Deque length.
    dq_len: usize,
    /// Frame counter.
    t: u64,
    /// Last `LOOKAHEAD` held gains, for the moving average.
    avg_buf: Box<[f32]>,
    /// Position in `avg_buf`.
    avg_pos: usize,
    /// Running sum of `avg_buf` (f64: no drift over hours).
    avg_sum: f64,
    /// Current gain after release smoothing.
    gain: f32,
    /// Release coefficient per frame.
    release: f32,
}

impl Limiter {
    /// A limiter with ceiling `ceiling_db` (dBFS) and release time constant `release_s`.
    pub fn new(ceiling_db: f32, release_s: f32) -> Self {
        Limiter {
            ceiling: 10f32.powf(ceiling_db / 20.0),
            delay: vec![[0.0; 2]; LOOKAHEAD - 1].into_boxed_slice(),
            delay_pos: 0,
            dq_val: vec![1.0; LOOKAHEAD].into_boxed_slice(),
            dq_time: vec![0; LOOKAHEAD].into_boxed_slice(),
            dq_head: 0,
            dq_len: 0,
            t: 0,
            avg_buf: vec![1.0; LOOKAHEAD].into_boxed_slice(),
            avg_pos: 0,
            avg_sum: LOOKAHEAD as f64,
            gain: 1.0,
            release: 1.0 - (-1.0 / (release_s * SAMPLE_RATE as f32)).exp(),
        }
    }

    /// Current gain (1 = not limiting), for metrics and tests.
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// One stereo frame in, one (delayed by `LOOKAHEAD - 1`) frame out.
    #[inline]
    pub fn tick(&mut self, l: f32, r: f32) -> (f32, f32) {
        let peak = l.abs().max(r.abs());
        let need = if peak > self.ceiling {
            self.ceiling / peak
        } else {
            1.0
        };
        // Sliding minimum: drop candidates that can no longer be the minimum, then expired ones.
        while self.dq_len > 0 {
            let back = (self.dq_head + self.dq_len - 1) % LOOKAHEAD;
            if self.dq_val[back] >= need {
                self.dq_len -= 1;
            } else {
                break;
            }
        }
        let slot = (self.dq_head + self.dq_len) % LOOKAHEAD;
        self.dq_val[slot] = need;
        self.dq_time[slot] = self.t;
        self.dq_len += 1;
        while self.dq_time[self.dq_head] + (LOOKAHEAD as u64) <= self.t {
            self.dq_head = (self.dq_head + 1) % LOOKAHEAD;
            self.dq_len -= 1;
        }
        let held = self.dq_val[self.dq_head];
        self.t += 1;
        // Moving average of the held gain over the window.
        self.avg_sum += f64::from(held) - f64::from(self.avg_buf[self.avg_pos]);
        self.avg_buf[self.avg_pos] = held;
        self.avg_pos = (self.avg_pos + 1) % LOOKAHEAD;
        // A hair under the exact average so f64 -> f32 rounding can never lift it above the held
        // minimum it is bounded by; exactly 1 when nothing in the window needs limiting.
        let avg = self.avg_sum / LOOKAHEAD as f64;
        let smooth = if avg > 1.0 - 1e-9 {
            1.0
        } else {
            (avg * (1.0 - 1e-6)) as f32
        };
        // Attack at once; snap the last millionth of a release; otherwise release slowly.
        self.gain = if smooth < self.gain || smooth - self.gain < 1e-6 {
            smooth
        } else {
            self.gain + (smooth - self.gain) * self.release
        };
        // Delay the signal.
        let [dl, dr] = self.delay[self.delay_pos];
        self.delay[self.delay_pos] = [l, r];
        self.delay_pos = (self.delay_pos + 1) % (LOOKAHEAD - 1);
        (dl * self.gain, dr * self.gain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_the_ceiling() {
        let mut lim = Limiter::new(-1.5, 0.2);
        let ceiling = 10f32.powf(-1.5 / 20.0);
        let mut max_out = 0.0f32;
        for i in 0..200_000u32 {
            // Bursts up to +12 dBFS with sudden edges.
            let amp = if (i / 5000) % 3 == 0 { 4.0 } else { 0.3 };
            let x = amp * ((i as f32) * 0.05).sin();
            let (l, r) = lim.tick(x, -x * 0.5);
            max_out = max_out.max(l.abs()).max(r.abs());
        }
        assert!(max_out <= ceiling * 1.0001, "{max_out} > {ceiling}");
    }

    #[test]
    fn quiet_material_passes_unchanged() {
        let mut lim = Limiter::new(-1.5, 0.2);
        for i in 0..10_000 {
            let x = 0.5 * ((i as f32) * 0.01).sin();
            let (l, _) = lim.tick(x, x);
            if i >= LOOKAHEAD - 1 {
                let want = 0.5 * (((i - (LOOKAHEAD - 1)) as f32) * 0.01).sin();
                assert!((l - want).abs() < 1e-6);
            }
        }
        assert_eq!(lim.gain(), 1.0);
    }
}
