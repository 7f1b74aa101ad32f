//! Small statistics: percentiles of latencies and the least-squares slope of a series.

/// The `q` quantile (0..=1) of `sorted` (ascending), nearest rank; `None` when empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

/// Sorts in place (NaN last) and returns the slice, for [`quantile`].
pub fn sort(values: &mut [f64]) -> &[f64] {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

/// Least-squares slope of `y` over `x` (`None` with fewer than two distinct `x`).
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    Some(sxy / sxx)
}

/// Latency summary in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Share of samples at or under 50 ms, in percent (the target: 99 %).
    pub within_50ms_pct: f64,
}

impl LatencySummary {
    /// Summarises `values` (sorted in place).
    pub fn of(values: &mut [f64]) -> Self {
        let sorted = sort(values);
        let q = |p| quantile(sorted, p).unwrap_or(0.0);
        let within = sorted.iter().filter(|&&v| v <= 50.0).count();
        Self {
            count: sorted.len(),
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            max: sorted.last().copied().unwrap_or(0.0),
            within_50ms_pct: if sorted.is_empty() {
                0.0
            } else {
                100.0 * within as f64 / sorted.len() as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_slope() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let s = LatencySummary::of(&mut v);
        assert_eq!((s.p50, s.p99, s.p999, s.max), (500.0, 990.0, 999.0, 1000.0));
        assert!((s.within_50ms_pct - 5.0).abs() < 1e-9);
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 * f64::from(i) + 1.0))
            .collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
    }
}
