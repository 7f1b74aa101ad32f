//! A look-ahead peak limiter that guarantees no output sample exceeds its ceiling.
//!
//! Why this design: the gain needed for each input frame is held for the look-ahead window (sliding
//! minimum, a monotonic deque in fixed arrays) and then averaged over the same window. The average
//! of a window that contains the held minimum can never exceed it, so by the time a peak leaves the
//! delay the gain is already low enough — a hard guarantee, reached along a smooth ramp (no clicks,
//! little distortion). Release is a slow one-pole so sustained material is not pumped. The ceiling
//! sits 1.5 dB under full scale so inter-sample peaks of our band-limited material stay under -1 dBFS.

use shm_proto::SAMPLE_RATE;

/// Most frames one [`Limiter::process`] call may take.
pub const MAX_BLOCK: usize = 64;
/// Look-ahead window in frames (1.45 ms).
pub const LOOKAHEAD: usize = 64;

/// The limiter state (stereo-linked).
#[derive(Debug)]
pub struct Limiter {
    /// Output ceiling (linear).
    ceiling: f32,
    /// Delay of `LOOKAHEAD - 1` frames for the signal, per channel, with room for 32 blocks.
    delay: [Box<[f32]>; 2],
    /// End of the held frames in `delay` (where the next block is appended).
    write: usize,
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
    /// Consecutive frames that needed no limiting (saturating): the limiter is idle once this
    /// covers the window twice and the gain is back at exactly 1.
    quiet: u32,
}

impl Limiter {
    /// A limiter with ceiling `ceiling_db` (dBFS) and release time constant `release_s`.
    pub fn new(ceiling_db: f32, release_s: f32) -> Self {
        Limiter {
            ceiling: 10f32.powf(ceiling_db / 20.0),
            delay: [0, 1].map(|_| vec![0.0; LOOKAHEAD - 1 + 32 * MAX_BLOCK].into_boxed_slice()),
            write: LOOKAHEAD - 1,
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
            quiet: 2 * LOOKAHEAD as u32,
        }
    }

    /// True when the state is the canonical idle one: nothing in the window needs limiting, the
    /// moving average is exactly 1 and so is the gain. A frame that needs no limiting then leaves
    /// the output equal to the delayed input and the state idle.
    fn idle(&self) -> bool {
        self.gain == 1.0 && self.quiet >= 2 * LOOKAHEAD as u32
    }

    /// Limits a block in place (stereo-linked). When the limiter is idle and no frame of the
    /// block exceeds the ceiling — nearly always, the master gain is calibrated for that — the
    /// block only passes through the delay: one branch per block instead of the per-frame
    /// deque work, with bit-identical results, so block boundaries still cannot change the output.
    pub fn process(&mut self, l: &mut [f32], r: &mut [f32]) {
        const D: usize = LOOKAHEAD - 1;
        let n = l.len();
        debug_assert!(n <= MAX_BLOCK && r.len() == n);
        // The delay is a long linear buffer: the D held frames end at `write`, the block is
        // appended there, frame i leaves as `delay[write - D + i]`. When the buffer is full the
        // last D frames move to the front (once every few dozen blocks, not every block).
        if self.write + n > self.delay[0].len() {
            for ch in &mut self.delay {
                ch.copy_within(self.write - D..self.write, 0);
            }
            self.write = D;
        }
        let (w, o) = (self.write, self.write - D);
        self.delay[0][w..w + n].copy_from_slice(l);
        self.delay[1][w..w + n].copy_from_slice(r);
        self.write += n;
        if self.idle() && block_peak(l, r) <= self.ceiling {
            l.copy_from_slice(&self.delay[0][o..o + n]);
            r.copy_from_slice(&self.delay[1][o..o + n]);
            // The state a frame-by-frame pass would leave: one candidate (1 at the last frame).
            self.t += n as u64;
            self.dq_head = 0;
            self.dq_len = 1;
            self.dq_val[0] = 1.0;
            self.dq_time[0] = self.t - 1;
            self.quiet = self.quiet.saturating_add(n as u32);
        } else {
            for i in 0..n {
                let g = self.next_gain(self.delay[0][w + i], self.delay[1][w + i]);
                l[i] = self.delay[0][o + i] * g;
                r[i] = self.delay[1][o + i] * g;
            }
        }
    }

    /// Current gain (1 = not limiting), for metrics and tests.
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// One stereo frame in, one (delayed by `LOOKAHEAD - 1`) frame out.
    pub fn tick(&mut self, l: f32, r: f32) -> (f32, f32) {
        let (mut l, mut r) = ([l], [r]);
        self.process(&mut l, &mut r);
        (l[0], r[0])
    }

    /// Advances the gain computer by the input frame `(l, r)`; returns the gain for the frame
    /// leaving the delay now.
    #[inline]
    fn next_gain(&mut self, l: f32, r: f32) -> f32 {
        let peak = l.abs().max(r.abs());
        let need = if peak > self.ceiling {
            self.quiet = 0;
            self.ceiling / peak
        } else {
            self.quiet = self.quiet.saturating_add(1);
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
        if self.quiet >= 2 * LOOKAHEAD as u32 {
            // Every held gain in the buffer is exactly 1: drop any rounding drift of the sum, so
            // the idle state is canonical (see `idle`).
            self.avg_sum = LOOKAHEAD as f64;
        }
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
        self.gain
    }
}

/// Largest magnitude in `l` and `r` (NaN ignored): eight running maxima (element-wise, so it
/// vectorises; a single running `max` is a serial reduction the compiler may not reorder).
fn block_peak(l: &[f32], r: &[f32]) -> f32 {
    // `if m < v { v } else { m }` rather than `f32::max`: the same result here (the maxima start
    // at 0 and a NaN `v` leaves them), and one `maxps` where `max`'s NaN rule costs a compare and
    // a blend per vector.
    #[inline(always)]
    fn keep_max(m: &mut f32, v: f32) {
        let v = v.abs();
        *m = if *m < v { v } else { *m };
    }
    let mut acc = [0.0f32; 8];
    for x in [l, r] {
        let chunks = x.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for (m, &v) in acc.iter_mut().zip(c) {
                keep_max(m, v);
            }
        }
        for (m, &v) in acc.iter_mut().zip(rest) {
            keep_max(m, v);
        }
    }
    acc.iter().fold(0.0f32, |m, &v| m.max(v))
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
    fn blocks_match_frames() {
        let input: Vec<f32> = (0..50_000u32)
            .map(|i| if (i / 3000) % 4 == 1 { 3.0 } else { 0.4 } * ((i as f32) * 0.03).sin())
            .collect();
        let mut a = Limiter::new(-1.5, 0.2);
        let want: Vec<f32> = input.iter().map(|&x| a.tick(x, -x).0).collect();
        let mut b = Limiter::new(-1.5, 0.2);
        let mut got = Vec::new();
        for chunk in input.chunks(61) {
            let mut l = chunk.to_vec();
            let mut r: Vec<f32> = chunk.iter().map(|x| -x).collect();
            b.process(&mut l, &mut r);
            got.extend(l);
        }
        assert!(got == want);
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
