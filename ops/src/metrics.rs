//! The metrics every daemon exports besides its own: the `process_*` family (CPU seconds,
//! resident and virtual memory, open and maximum file descriptors, start time) and
//! `memory_usage_mb`, plus the settings of the endpoint (`METRICS_ENABLED`).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder as _, Gauge, Opts, Registry, TextEncoder};

/// Builds a registry holding the process metrics and `memory_usage_mb`; the daemon adds its own.
pub fn process_registry() -> Registry {
    let registry = Registry::new();
    // `ProcessCollector` reads /proc/self: Linux only, as is the whole of Auralis.
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process metrics register once in a fresh registry");
    registry
        .register(Box::new(RssCollector::new()))
        .expect("memory_usage_mb registers once in a fresh registry");
    registry
}

/// Renders `registry` in the Prometheus text exposition format (version 0.0.4).
pub fn encode(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding a gathered registry only fails on an inconsistent family, which is a bug: keep
    // what was written so far rather than failing the scrape.
    if let Err(err) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::error!(%err, "encoding metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// `memory_usage_mb`: resident set size in MiB, read from `/proc/self/statm` at every scrape
/// (the plans' metric; `process_resident_memory_bytes` says the same in bytes).
#[derive(Debug)]
pub struct RssCollector {
    /// The gauge set at each collection.
    gauge: Gauge,
    /// Page size, for converting statm's page counts.
    page_size: u64,
}

impl RssCollector {
    /// A collector for this process.
    pub fn new() -> Self {
        RssCollector {
            gauge: Gauge::with_opts(Opts::new(
                "memory_usage_mb",
                "Resident set size of the process in MiB (from /proc/self/statm).",
            ))
            .expect("valid metric name"),
            page_size: page_size(),
        }
    }
}

impl Default for RssCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for RssCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(pages) = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| statm_resident_pages(&s))
        {
            self.gauge
                .set((pages * self.page_size) as f64 / (1024.0 * 1024.0));
        }
        self.gauge.collect()
    }
}

/// The second field of `/proc/self/statm`: resident pages.
pub fn statm_resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// The kernel's page size as it reports it in `/proc/self/smaps` (`KernelPageSize`), read once at
/// start; 4 KiB when that cannot be read.
fn page_size() -> u64 {
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("KernelPageSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_parsing() {
        assert_eq!(statm_resident_pages("1000 250 30 4 0 100 0\n"), Some(250));
        assert_eq!(statm_resident_pages("1000"), None);
        assert_eq!(statm_resident_pages(""), None);
    }

    #[test]
    fn process_registry_exports_process_and_memory_metrics() {
        let text = encode(&process_registry());
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "memory_usage_mb",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
        let mb: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("memory_usage_mb "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(mb > 0.5 && mb < 100_000.0, "{mb}");
    }
}
