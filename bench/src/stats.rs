//! Figures: a value measured in several runs, summarised as median, min and max; latency
//! percentiles from an HDR histogram.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// One reported quantity over every run of a benchmark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// Stable identifier (the JSON key readers compare across reports).
    pub id: String,
    /// What it is, for the Markdown table.
    pub label: String,
    pub unit: String,
    /// One value per run, in run order.
    pub runs: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// The median as a share of the matching ceiling figure, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of_ceiling: Option<Share>,
    /// What else the reader needs to know about this figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was measured, if not by the run that wrote the report: a run of some scenarios
    /// carries the other scenarios' figures over from the report it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
}

/// [`Share::ceiling`] of a figure given as a share of its ideal rather than of a measured
/// ceiling (the endpoint scenarios).
pub const IDEAL: &str = "ideal";

/// A figure as a fraction of another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Share {
    pub ceiling: String,
    pub fraction: f64,
}

impl Figure {
    pub fn new(id: &str, label: &str, unit: &str, runs: Vec<f64>) -> Self {
        let (median, min, max) = summarise(&runs);
        Self {
            id: id.to_owned(),
            label: label.to_owned(),
            unit: unit.to_owned(),
            runs,
            median,
            min,
            max,
            of_ceiling: None,
            note: None,
            measured: None,
        }
    }

    /// The figure as a share of `ideal` (nothing for no ideal).
    pub fn with_ideal(mut self, ideal: Option<f64>) -> Self {
        if let Some(ideal) = ideal.filter(|i| i.is_finite() && *i > 0.0) {
            self.of_ceiling = Some(Share { ceiling: IDEAL.to_owned(), fraction: self.median / ideal });
        }
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Median, min and max (the median of an even count is the mean of the middle two); zeros for
/// no values.
pub fn summarise(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median =
        if sorted.len().is_multiple_of(2) { f64::midpoint(sorted[middle - 1], sorted[middle]) } else { sorted[middle] };
    (median, sorted[0], sorted[sorted.len() - 1])
}

/// Latencies in microseconds, 1 µs to 100 s at 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 100_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds")))
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 100_000_000);
        self.0.saturating_record(micros);
    }

    pub fn merge(&mut self, other: &Self) {
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `quantile` (0 to 1) in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(summarise(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summarise(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(summarise(&[]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn latency_quantiles() {
        let mut latencies = Latencies::default();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        assert_eq!(latencies.count(), 100);
        assert!((latencies.quantile_ms(0.5) - 50.0).abs() < 0.1, "{}", latencies.quantile_ms(0.5));
        assert!((latencies.quantile_ms(0.99) - 99.0).abs() < 0.1);
    }
}
