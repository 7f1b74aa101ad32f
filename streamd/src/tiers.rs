//! Adaptive buffer tiers: a [`JitterTracker`] (exponential moving mean and variance of each
//! chunk's delivery lateness, RFC 3550 style) and the [`TierController`] that turns it, plus the
//! underruns clients report, into the tier announced in every audio message.
//!
//! Lateness is measured by the server: from the moment synthd published a chunk to the moment the
//! socket write of it completed. A client that reads slowly, or a congested path, makes writes
//! complete late once the socket buffers are full; jitter a kernel buffer absorbs is invisible here,
//! which is why clients also report their underruns (`report`).

use std::collections::VecDeque;

use crate::protocol::Tier;

/// EMA smoothing factor (the seeds' `jitter_ema_alpha`).
pub const JITTER_ALPHA: f64 = 0.1;
/// Chunks over which the underrun rate is computed, and the demotion interval.
pub const WINDOW_CHUNKS: usize = 50;
/// Promote when more than this fraction of the window's chunks had an underrun.
pub const PROMOTE_UNDERRUN_RATE: f64 = 0.05;
/// Demote only when fewer than this fraction had one...
pub const DEMOTE_UNDERRUN_RATE: f64 = 0.01;
/// ...and the mean jitter is under this (milliseconds)...
pub const DEMOTE_JITTER_MS: f64 = 10.0;
/// ...or under this to go from normal down to minimal.
pub const MINIMAL_JITTER_MS: f64 = 5.0;
/// After any change, the tier is not raised again for this many chunks (hysteresis).
pub const PROMOTE_COOLDOWN_CHUNKS: u64 = 10;

/// Mean and variance of the lateness, as exponential moving averages.
#[derive(Clone, Debug, Default)]
pub struct JitterTracker {
    /// Samples seen.
    samples: u64,
    /// EMA of the lateness, ms.
    mean_ms: f64,
    /// EMA of the squared deviation, ms².
    variance_ms2: f64,
}

impl JitterTracker {
    /// Adds one lateness sample (milliseconds; negative values count as 0).
    pub fn record(&mut self, lateness_ms: f64) {
        let x = if lateness_ms.is_finite() {
            lateness_ms.max(0.0)
        } else {
            0.0
        };
        self.samples += 1;
        if self.samples == 1 {
            self.mean_ms = x;
            self.variance_ms2 = 0.0;
        } else {
            let delta = x - self.mean_ms;
            self.mean_ms += JITTER_ALPHA * delta;
            self.variance_ms2 =
                (1.0 - JITTER_ALPHA) * (self.variance_ms2 + JITTER_ALPHA * delta * delta);
        }
    }

    /// Mean lateness, ms.
    pub fn mean_ms(&self) -> f64 {
        self.mean_ms
    }

    /// Standard deviation of the lateness, ms.
    pub fn std_ms(&self) -> f64 {
        self.variance_ms2.sqrt()
    }

    /// Buffer that covers ~95% of the observed lateness: mean + 2σ.
    pub fn recommended_buffer_ms(&self) -> f64 {
        self.mean_ms + 2.0 * self.std_ms()
    }

    /// Samples recorded.
    pub fn samples(&self) -> u64 {
        self.samples
    }
}

/// The tier state machine of one connection.
#[derive(Clone, Debug)]
pub struct TierController {
    tier: Tier,
    jitter: JitterTracker,
    /// Underruns per chunk over the last [`WINDOW_CHUNKS`] chunks (reports land on the newest).
    window: VecDeque<u32>,
    /// Chunks since the tier last changed.
    since_change: u64,
    /// Latest cumulative underrun count the client reported.
    reported: u64,
}

/// A change of tier, for logs and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierChange {
    /// Before.
    pub from: Tier,
    /// After.
    pub to: Tier,
}

impl TierController {
    /// Starts in `initial`.
    pub fn new(initial: Tier) -> Self {
        Self {
            tier: initial,
            jitter: JitterTracker::default(),
            window: VecDeque::with_capacity(WINDOW_CHUNKS + 1),
            since_change: 0,
            reported: 0,
        }
    }

    /// The tier now.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The lateness statistics.
    pub fn jitter(&self) -> &JitterTracker {
        &self.jitter
    }

    /// Fraction of the window's chunks with an underrun.
    pub fn underrun_rate(&self) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        let total: u64 = self.window.iter().map(|&n| u64::from(n.min(1))).sum();
        total as f64 / self.window.len().max(WINDOW_CHUNKS / 5) as f64
    }

    /// Records one live chunk delivered `lateness_ms` after it was published. A chunk later than
    /// the tier's whole target buffer would have drained the client: it counts as an underrun.
    /// Returns `true` when that happened.
    pub fn on_chunk(&mut self, lateness_ms: f64) -> (bool, Option<TierChange>) {
        self.jitter.record(lateness_ms);
        let late = lateness_ms > f64::from(self.tier.target_ms());
        if self.window.len() >= WINDOW_CHUNKS {
            self.window.pop_front();
        }
        self.window.push_back(u32::from(late));
        self.since_change += 1;
        (late, self.adjust())
    }

    /// Records a client report of its cumulative underrun count; returns the new underruns.
    pub fn on_report(&mut self, cumulative_underruns: u64) -> (u64, Option<TierChange>) {
        let new = if cumulative_underruns >= self.reported {
            cumulative_underruns - self.reported
        } else {
            // The client restarted its count (a new player instance).
            cumulative_underruns
        };
        self.reported = cumulative_underruns;
        if new == 0 {
            return (0, None);
        }
        // Spread over the newest chunks, one underrun per chunk, as if each had starved.
        let mut left = new.min(WINDOW_CHUNKS as u64) as usize;
        if self.window.is_empty() {
            self.window.push_back(0);
        }
        for slot in self.window.iter_mut().rev() {
            if left == 0 {
                break;
            }
            if *slot == 0 {
                *slot = 1;
                left -= 1;
            }
        }
        while left > 0 && self.window.len() < WINDOW_CHUNKS {
            self.window.push_front(1);
            left -= 1;
        }
        (new, self.adjust())
    }

    fn adjust(&mut self) -> Option<TierChange> {
        let from = self.tier;
        let rate = self.underrun_rate();
        let target = f64::from(self.tier.target_ms());
        let needs_more = rate > PROMOTE_UNDERRUN_RATE
            || (self.jitter.samples() >= 5 && self.jitter.recommended_buffer_ms() > target / 2.0);
        if needs_more {
            if self.since_change >= PROMOTE_COOLDOWN_CHUNKS
                && let Some(up) = self.tier.up()
            {
                self.tier = up;
            }
        } else if self.since_change >= WINDOW_CHUNKS as u64
            && self.window.len() >= WINDOW_CHUNKS
            && rate < DEMOTE_UNDERRUN_RATE
            && self.jitter.mean_ms() < DEMOTE_JITTER_MS
        {
            let down = match self.tier {
                Tier::Normal if self.jitter.mean_ms() >= MINIMAL_JITTER_MS => None,
                tier => tier.down(),
            };
            if let Some(down) = down {
                self.tier = down;
            }
        }
        if self.tier == from {
            return None;
        }
        self.since_change = 0;
        // The evidence that caused the change is spent: a new tier starts with a clean window.
        self.window.clear();
        Some(TierChange {
            from,
            to: self.tier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_matches_the_seed_formula() {
        let mut j = JitterTracker::default();
        j.record(10.0);
        assert_eq!(j.mean_ms(), 10.0);
        assert_eq!(j.std_ms(), 0.0);
        j.record(20.0);
        // mean = 10 + 0.1 * 10; var = 0.9 * (0 + 0.1 * 100)
        assert!((j.mean_ms() - 11.0).abs() < 1e-9);
        assert!((j.std_ms() - 9.0f64.sqrt()).abs() < 1e-9);
        assert!((j.recommended_buffer_ms() - (11.0 + 6.0)).abs() < 1e-9);
        j.record(-5.0);
        assert!(j.mean_ms() < 11.0);
    }

    #[test]
    fn steady_small_lateness_keeps_normal_then_demotes_to_minimal() {
        let mut t = TierController::new(Tier::Normal);
        for _ in 0..49 {
            assert_eq!(t.on_chunk(2.0).1, None);
        }
        assert_eq!(
            t.on_chunk(2.0).1,
            Some(TierChange {
                from: Tier::Normal,
                to: Tier::Minimal
            })
        );
        // And no further: minimal is the floor.
        for _ in 0..200 {
            t.on_chunk(2.0);
        }
        assert_eq!(t.tier(), Tier::Minimal);
    }

    #[test]
    fn moderate_jitter_holds_normal() {
        let mut t = TierController::new(Tier::Normal);
        for i in 0..300 {
            t.on_chunk(if i % 2 == 0 { 4.0 } else { 12.0 });
        }
        assert_eq!(t.tier(), Tier::Normal);
    }

    #[test]
    fn reported_underruns_promote_one_step_at_a_time_with_cooldown() {
        let mut t = TierController::new(Tier::Stable);
        for _ in 0..20 {
            t.on_chunk(1.0);
        }
        let (new, change) = t.on_report(4);
        assert_eq!(new, 4);
        assert_eq!(
            change,
            Some(TierChange {
                from: Tier::Stable,
                to: Tier::Defensive
            })
        );
        // Defensive is the ceiling.
        for _ in 0..20 {
            t.on_chunk(1.0);
        }
        assert_eq!(t.on_report(10).1, None);
        assert_eq!(t.tier(), Tier::Defensive);
        // A restarted count is taken as new underruns, not as negative ones.
        assert_eq!(t.on_report(2).0, 2);
    }

    #[test]
    fn one_underrun_in_fifty_chunks_does_not_promote() {
        let mut t = TierController::new(Tier::Normal);
        for _ in 0..50 {
            t.on_chunk(7.0);
        }
        assert_eq!(t.on_report(1).1, None);
        assert_eq!(t.tier(), Tier::Normal);
    }

    #[test]
    fn writes_completing_late_promote_to_defensive() {
        let mut t = TierController::new(Tier::Normal);
        for _ in 0..20 {
            t.on_chunk(3.0);
        }
        // The client stopped reading: writes complete ever later.
        let mut lateness = 0.0;
        for _ in 0..40 {
            lateness += 80.0;
            t.on_chunk(lateness);
        }
        assert_eq!(t.tier(), Tier::Defensive);
    }
}
