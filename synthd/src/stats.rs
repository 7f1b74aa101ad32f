//! Per-station render metrics, as plain atomics so a metrics endpoint (later) can read them from
//! another thread without locks.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use shm_proto::CHUNK_MS;

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
}

impl RenderStats {
    /// Records one rendered chunk.
    pub fn record(&self, elapsed: Duration, voices: usize) {
        let ns = elapsed.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.last_render_ns.store(ns, Ordering::Relaxed);
        self.max_render_ns.fetch_max(ns, Ordering::Relaxed);
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.voices.store(voices, Ordering::Relaxed);
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
    }
}
