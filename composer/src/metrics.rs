//! composer's metrics and their endpoint: `phrase_generation_rate_hz` and `composer_bars_total`
//! per station, the number of stations, plus the process metrics, served by the blocking
//! responder of `auralis-ops` on `--metrics-addr` (default 127.0.0.1:9101).
//!
//! The metrics are process-wide (like the prometheus crate's default registry): the daemon loop
//! updates them whether or not an endpoint serves them.

use std::net::SocketAddr;
use std::sync::LazyLock;

use auralis_ops::MetricsEndpoint;
use auralis_ops::prometheus::{GaugeVec, IntCounterVec, IntGauge, Opts, Registry};

/// Where (and whether) composer serves `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct MetricsArgs {
    /// Address of composer's `/metrics` and `/healthz` endpoint.
    #[arg(
        long,
        env = "AURALIS_COMPOSER_METRICS_ADDR",
        default_value = "127.0.0.1:9101"
    )]
    pub metrics_addr: SocketAddr,
    /// Serve metrics (`false` turns the endpoint off).
    #[arg(long, env = "METRICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,
}

/// The composer's metrics.
#[derive(Debug)]
pub(crate) struct ComposerMetrics {
    /// Everything served at `/metrics`.
    registry: Registry,
    /// Bars composed and queued, per station (a "phrase" of the plans is one bar here).
    pub(crate) bars: IntCounterVec,
    /// Bars per second over the last rate window, per station.
    pub(crate) rate: GaugeVec,
    /// Stations being composed.
    pub(crate) stations: IntGauge,
}

static METRICS: LazyLock<ComposerMetrics> = LazyLock::new(|| {
    let registry = auralis_ops::metrics::process_registry();
    let bars = IntCounterVec::new(
        Opts::new(
            "composer_bars_total",
            "Bars composed and queued for synthd, per station.",
        ),
        &["station"],
    )
    .expect("valid metric");
    let rate = GaugeVec::new(
        Opts::new(
            "phrase_generation_rate_hz",
            "Bars (phrases) composed per second over the last 20 s, per station; about bpm/240 \
             when healthy, 0 when composition stalls.",
        ),
        &["station"],
    )
    .expect("valid metric");
    let stations = IntGauge::new("composer_stations", "Stations being composed.").expect("valid");
    for c in [
        Box::new(bars.clone()) as Box<dyn auralis_ops::prometheus::core::Collector>,
        Box::new(rate.clone()),
        Box::new(stations.clone()),
    ] {
        registry.register(c).expect("registered once");
    }
    ComposerMetrics {
        registry,
        bars,
        rate,
        stations,
    }
});

/// The process's composer metrics.
pub(crate) fn metrics() -> &'static ComposerMetrics {
    &METRICS
}

/// Starts the endpoint unless disabled (see [`MetricsEndpoint::start_or_log`]).
pub fn start(args: &MetricsArgs) -> Option<MetricsEndpoint> {
    MetricsEndpoint::start_or_log(
        args.metrics_enabled,
        args.metrics_addr,
        METRICS.registry.clone(),
    )
}

/// The metrics text, as served (for tests).
pub fn render() -> String {
    auralis_ops::metrics::encode(&METRICS.registry)
}
