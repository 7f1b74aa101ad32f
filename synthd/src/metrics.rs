//! synthd's metrics and their endpoint (`--metrics-addr`, default 127.0.0.1:9102): per station
//! `synthesis_latency_seconds` (render time of one 100 ms chunk), `buffer_depth_chunks` (audio
//! published ahead of the wall clock), chunk, voice, real-time-factor and re-base counters, all
//! read from each station's [`RenderStats`] at scrape time; `gpu_memory_allocated_mb` (0: the
//! engine runs on the CPU); and the process metrics.
//!
//! The render loop never touches the registry: it updates its [`RenderStats`] atomics, and
//! [`station_stats`] (called once when a station opens) lists them on a process-wide board that
//! the scrape walks. Stations that close drop their stats; the board only holds weak references.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use auralis_ops::MetricsEndpoint;
use auralis_ops::prometheus::core::{Collector, Desc, Describer as _};
use auralis_ops::prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use auralis_ops::prometheus::{Opts, Registry};
use shm_proto::CHUNK_MS;

use crate::stats::{LATENCY_BUCKETS, RenderStats};

/// Where (and whether) synthd serves `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct MetricsArgs {
    /// Address of synthd's `/metrics` and `/healthz` endpoint.
    #[arg(
        long,
        env = "AURALIS_SYNTHD_METRICS_ADDR",
        default_value = "127.0.0.1:9102"
    )]
    pub metrics_addr: SocketAddr,
    /// Serve metrics (`false` turns the endpoint off).
    #[arg(long, env = "METRICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,
}

/// The stations rendering now, by name.
#[derive(Debug, Default)]
struct StationBoard {
    /// Weak: a station that closes takes its stats with it, and the next scrape forgets it.
    stations: Mutex<Vec<(String, Weak<RenderStats>)>>,
}

static BOARD: LazyLock<StationBoard> = LazyLock::new(StationBoard::default);

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let registry = auralis_ops::metrics::process_registry();
    registry
        .register(Box::new(BoardCollector::new()))
        .expect("registered once");
    registry
});

/// Fresh stats for a station that starts rendering, listed for the metrics endpoint. Called
/// when a station opens, never on the render path (it takes a lock).
pub fn station_stats(name: &str) -> Arc<RenderStats> {
    let stats = Arc::new(RenderStats::default());
    let mut list = BOARD.stations.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|(n, w)| w.strong_count() > 0 && n != name);
    list.push((name.to_owned(), Arc::downgrade(&stats)));
    stats
}

/// Starts the endpoint unless disabled (see [`MetricsEndpoint::start_or_log`]).
pub fn start(args: &MetricsArgs) -> Option<MetricsEndpoint> {
    MetricsEndpoint::start_or_log(args.metrics_enabled, args.metrics_addr, REGISTRY.clone())
}

/// The metrics text, as served (for tests).
pub fn render() -> String {
    auralis_ops::metrics::encode(&REGISTRY)
}

/// Reads the board at scrape time.
#[derive(Debug)]
struct BoardCollector {
    /// One description per family, as the registry requires.
    descs: Vec<Desc>,
}

/// (name, help, type, per-station?) of every family the collector emits.
const FAMILIES: [(&str, &str, MetricType, bool); 9] = [
    (
        "synthesis_latency_seconds",
        "Wall time to render one 100 ms chunk, per station.",
        MetricType::HISTOGRAM,
        true,
    ),
    (
        "buffer_depth_chunks",
        "Audio published in the ring ahead of the wall clock, in 100 ms chunks, per station.",
        MetricType::GAUGE,
        true,
    ),
    (
        "synthd_chunks_rendered_total",
        "Chunks rendered and published, per station.",
        MetricType::COUNTER,
        true,
    ),
    (
        "synthd_voices_active",
        "Voices sounding after the last chunk, per station.",
        MetricType::GAUGE,
        true,
    ),
    (
        "synthd_real_time_factor",
        "Chunk duration / render time of the last chunk (100 = 100x faster than real time).",
        MetricType::GAUGE,
        true,
    ),
    (
        "synthd_render_seconds_max",
        "Longest chunk render time since the station started.",
        MetricType::GAUGE,
        true,
    ),
    (
        "synthd_rebases_total",
        "Times the station fell over a second behind and skipped ahead instead of bursting.",
        MetricType::COUNTER,
        true,
    ),
    (
        "synthd_stations",
        "Stations being rendered.",
        MetricType::GAUGE,
        false,
    ),
    (
        "gpu_memory_allocated_mb",
        "GPU memory allocated by the synthesis engine, MiB (0: this engine renders on the CPU).",
        MetricType::GAUGE,
        false,
    ),
];

impl BoardCollector {
    fn new() -> Self {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, per_station)| {
                let labels = if *per_station {
                    vec!["station".to_owned()]
                } else {
                    vec![]
                };
                Opts::new(*name, *help)
                    .variable_labels(labels)
                    .describe()
                    .expect("valid metric")
            })
            .collect();
        BoardCollector { descs }
    }
}

fn label(station: &str) -> Vec<LabelPair> {
    let mut l = LabelPair::default();
    l.set_name("station".into());
    l.set_value(station.into());
    vec![l]
}

fn gauge(labels: Vec<LabelPair>, v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_gauge(g);
    m
}

fn counter(labels: Vec<LabelPair>, v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_counter(c);
    m
}

fn histogram(labels: Vec<LabelPair>, s: &RenderStats) -> Metric {
    let mut cumulative = 0;
    let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
    for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += s.latency_buckets[i].load(Ordering::Relaxed);
        let mut b = Bucket::default();
        b.set_upper_bound(*le);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    cumulative += s.latency_buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(cumulative);
    h.set_sample_sum(s.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_histogram(h);
    m
}

impl Collector for BoardCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut stations: Vec<(String, Arc<RenderStats>)> = {
            let mut list = BOARD.stations.lock().unwrap_or_else(|e| e.into_inner());
            list.retain(|(_, w)| w.strong_count() > 0);
            list.iter()
                .filter_map(|(n, w)| Some((n.clone(), w.upgrade()?)))
                .collect()
        };
        stations.sort_by(|a, b| a.0.cmp(&b.0));
        FAMILIES
            .iter()
            .map(|(name, help, kind, _)| {
                let metrics: Vec<Metric> = match *name {
                    "synthd_stations" => vec![gauge(vec![], stations.len() as f64)],
                    "gpu_memory_allocated_mb" => {
                        vec![gauge(vec![], crate::device::device_memory_mb())]
                    }
                    _ => stations
                        .iter()
                        .map(|(station, s)| {
                            let l = label(station);
                            let get =
                                |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
                            match *name {
                                "synthesis_latency_seconds" => histogram(l, s),
                                "buffer_depth_chunks" => {
                                    gauge(l, get(&s.ahead_ns) / (f64::from(CHUNK_MS) * 1e6))
                                }
                                "synthd_chunks_rendered_total" => counter(l, get(&s.chunks)),
                                "synthd_voices_active" => {
                                    gauge(l, s.voices.load(Ordering::Relaxed) as f64)
                                }
                                "synthd_real_time_factor" => {
                                    let f = s.real_time_factor();
                                    gauge(l, if f.is_finite() { f } else { 0.0 })
                                }
                                "synthd_render_seconds_max" => {
                                    gauge(l, get(&s.max_render_ns) / 1e9)
                                }
                                _ => counter(l, get(&s.rebases)),
                            }
                        })
                        .collect(),
                };
                let mut f = MetricFamily::default();
                f.set_name((*name).into());
                f.set_help((*help).into());
                f.set_field_type(*kind);
                f.set_metric(metrics);
                f
            })
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn exports_station_stats_and_forgets_closed_stations() {
        let s = station_stats("metrics-test-station");
        s.record(Duration::from_micros(700), 3);
        s.record(Duration::from_millis(120), 4);
        s.set_ahead(Duration::from_millis(200));
        let text = render();
        let station = "station=\"metrics-test-station\"";
        for line in [
            format!("synthesis_latency_seconds_bucket{{{station},le=\"0.001\"}} 1"),
            format!("synthesis_latency_seconds_bucket{{{station},le=\"0.15\"}} 2"),
            format!("synthesis_latency_seconds_bucket{{{station},le=\"+Inf\"}} 2"),
            format!("synthesis_latency_seconds_count{{{station}}} 2"),
            format!("buffer_depth_chunks{{{station}}} 2"),
            format!("synthd_chunks_rendered_total{{{station}}} 2"),
            format!("synthd_voices_active{{{station}}} 4"),
            "gpu_memory_allocated_mb 0".to_owned(),
            "# TYPE synthesis_latency_seconds histogram".to_owned(),
            "# TYPE process_cpu_seconds_total counter".to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line}:\n{text}");
        }
        drop(s);
        assert!(!render().contains(station));
    }
}
