//! Per-station render metrics, as plain atomics so the metrics endpoint (`metrics.rs`) can read
//! them from another thread without locks. Recording is a handful of relaxed atomic adds: no
//! allocation, no lock, fit for the render loop.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use shm_proto::CHUNK_MS;

/// Upper bounds (seconds) of the render-time histogram (`synthesis_latency_seconds`). A chunk is
/// 100 ms of audio: a render normally takes well under a millisecond, and anything near 0.1 s
/// means the station cannot keep real time.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.5, 1.0,
];

/// Render metrics of one station.
#[derive(Debug, Default)]
pub struct RenderStats {
    /// Wall time of the last `render_chunk`, nanoseconds.
    pub last_render_ns: AtomicU64,
    /// Largest render time seen, nanoseconds.
    pub max_render_ns: AtomicU64,
    /// Chunks rendered.
    pub chunks: AtomicU64,
    /// Voices sounding after the last chunk.
    pub voices: AtomicUsize,
    /// Times the station fell behind and was re-based (skipped time instead of bursting).
    pub rebases: AtomicU64,
    /// Events the renderer refused (pending queue full) and left in the shared queue for later.
    pub deferred_events: AtomicU64,
    /// Render times per [`LATENCY_BUCKETS`] bucket (not cumulative; the last counts the rest).
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of all render times, nanoseconds (the histogram's `_sum`).
    pub latency_sum_ns: AtomicU64,
    /// How far the published audio runs ahead of the wall clock, nanoseconds: the ring's depth
    /// as a listener sees it (`buffer_depth_chunks` = this / 100 ms).
    pub ahead_ns: AtomicU64,
}

impl RenderStats {
    /// Records one rendered chunk.
    pub fn record(&self, elapsed: Duration, voices: usize) {
        let ns = elapsed.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.last_render_ns.store(ns, Ordering::Relaxed);
        self.max_render_ns.fetch_max(ns, Ordering::Relaxed);
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.voices.store(voices, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Records how far ahead of the wall clock the published audio reaches.
    pub fn set_ahead(&self, ahead: Duration) {
        let ns = ahead.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.ahead_ns.store(ns, Ordering::Relaxed);
    }

    /// Real-time factor of the last chunk: chunk duration / render time (100 = 100x faster than
    /// real time). Infinite before the first chunk.
    pub fn real_time_factor(&self) -> f64 {
        let ns = self.last_render_ns.load(Ordering::Relaxed);
        if ns == 0 {
            f64::INFINITY
        } else {
            f64::from(CHUNK_MS) * 1e6 / ns as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_last_max_and_factor() {
        let s = RenderStats::default();
        s.record(Duration::from_millis(2), 5);
        s.record(Duration::from_millis(1), 6);
        assert_eq!(s.max_render_ns.load(Ordering::Relaxed), 2_000_000);
        assert_eq!(s.voices.load(Ordering::Relaxed), 6);
        assert!((s.real_time_factor() - 100.0).abs() < 1e-9);
        // 2 ms falls in the `le=0.002` bucket, 1 ms in `le=0.001`.
        assert_eq!(s.latency_buckets[1].load(Ordering::Relaxed), 1);
        assert_eq!(s.latency_buckets[2].load(Ordering::Relaxed), 1);
        assert_eq!(s.latency_sum_ns.load(Ordering::Relaxed), 3_000_000);
        s.record(Duration::from_secs(3), 0);
        assert_eq!(
            s.latency_buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed),
            1
        );
    }
}
