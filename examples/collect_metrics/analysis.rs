//! The guide's analysis: traffic by hour, slow and failing endpoints, and
//! z-score anomalies (|z| > 3), as its pandas notebook does.

use std::collections::BTreeMap;

use serde::Serialize;

/// One collected point.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Unix seconds.
    pub(crate) time: i64,
    pub(crate) metric: &'static str,
    pub(crate) label: Option<String>,
    pub(crate) value: f64,
}

/// A point more than three standard deviations from its series' mean.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Anomaly {
    pub(crate) metric: String,
    pub(crate) path: Option<String>,
    pub(crate) timestamp: String,
    pub(crate) value: f64,
    pub(crate) z: f64,
}

/// The report: the same content in the table and in `--json`.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Mean request rate (req/s) per UTC hour of day.
    pub(crate) hourly_request_rate: BTreeMap<String, f64>,
    pub(crate) peak_hour: Option<String>,
    /// Mean P95 latency (s) per endpoint, slowest first, at most 10.
    pub(crate) slowest_endpoints: Vec<(String, f64)>,
    /// Mean 5xx rate (errors/s) per endpoint, highest first, at most 10.
    pub(crate) error_endpoints: Vec<(String, f64)>,
    pub(crate) anomalies: Vec<Anomaly>,
}

/// z-scores with the population standard deviation, like `scipy.stats.zscore`.
/// A constant series has no anomalies (its z-scores are undefined).
pub(crate) fn z_scores(values: &[f64]) -> Vec<f64> {
    let n = values.len() as f64;
    if values.is_empty() {
        return Vec::new();
    }
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let sd = variance.sqrt();
    if sd == 0.0 || !sd.is_finite() {
        return vec![0.0; values.len()];
    }
    values.iter().map(|v| (v - mean) / sd).collect()
}

fn top10(rows: &[Row], metric: &str) -> Vec<(String, f64)> {
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.metric == metric && r.value.is_finite())
    {
        let entry = sums
            .entry(row.label.clone().unwrap_or_default())
            .or_default();
        entry.0 += row.value;
        entry.1 += 1.0;
    }
    let mut means: Vec<(String, f64)> = sums.into_iter().map(|(k, (s, n))| (k, s / n)).collect();
    means.sort_by(|a, b| b.1.total_cmp(&a.1));
    means.truncate(10);
    means
}

pub(crate) fn report(rows: &[Row], timestamp: impl Fn(i64) -> String) -> Report {
    let mut hourly: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.metric == "request_rate" && r.value.is_finite())
    {
        let hour = format!("{:02}:00", row.time.rem_euclid(86_400) / 3_600);
        let entry = hourly.entry(hour).or_default();
        entry.0 += row.value;
        entry.1 += 1.0;
    }
    let hourly_request_rate: BTreeMap<String, f64> =
        hourly.into_iter().map(|(h, (s, n))| (h, s / n)).collect();
    let peak_hour = hourly_request_rate
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(h, _)| h.clone());

    let mut series: BTreeMap<(&str, Option<&str>), Vec<&Row>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.value.is_finite()) {
        series
            .entry((row.metric, row.label.as_deref()))
            .or_default()
            .push(row);
    }
    let mut anomalies = Vec::new();
    for ((metric, label), points) in series {
        let values: Vec<f64> = points.iter().map(|r| r.value).collect();
        for (row, z) in points.iter().zip(z_scores(&values)) {
            if z.abs() > 3.0 {
                anomalies.push(Anomaly {
                    metric: metric.to_owned(),
                    path: label.map(str::to_owned),
                    timestamp: timestamp(row.time),
                    value: row.value,
                    z,
                });
            }
        }
    }
    Report {
        hourly_request_rate,
        peak_hour,
        slowest_endpoints: top10(rows, "endpoint_p95_latency"),
        error_endpoints: top10(rows, "endpoint_error_rate"),
        anomalies,
    }
}

impl Report {
    /// The report as readable tables.
    pub(crate) fn to_table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "Requests per second by hour (UTC)");
        for (hour, rate) in &self.hourly_request_rate {
            let _ = writeln!(out, "  {hour}  {rate:>10.3}");
        }
        let _ = writeln!(
            out,
            "Peak hour: {}",
            self.peak_hour.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "\nSlowest endpoints (mean P95, seconds)");
        for (path, p95) in &self.slowest_endpoints {
            let _ = writeln!(out, "  {p95:>10.4}  {path}");
        }
        let _ = writeln!(
            out,
            "\nEndpoints with the most errors (mean 5xx per second)"
        );
        for (path, rate) in &self.error_endpoints {
            let _ = writeln!(out, "  {rate:>10.4}  {path}");
        }
        let _ = writeln!(out, "\nAnomalies (|z| > 3): {}", self.anomalies.len());
        for a in &self.anomalies {
            let _ = writeln!(
                out,
                "  {}  {}{}  value={}  z={:.2}",
                a.timestamp,
                a.metric,
                a.path
                    .as_deref()
                    .map(|p| format!(" {p}"))
                    .unwrap_or_default(),
                a.value,
                a.z
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_spike_is_the_only_anomaly() {
        let mut rows: Vec<Row> = (0..100)
            .map(|i| Row {
                time: 1_700_000_000 + i * 15,
                metric: "request_rate",
                label: None,
                value: 10.0 + f64::from(u8::try_from(i % 5).unwrap()) * 0.1,
            })
            .collect();
        rows[60].value = 50.0;
        let report = report(&rows, |t| t.to_string());
        assert_eq!(report.anomalies.len(), 1, "{:?}", report.anomalies);
        assert_eq!(report.anomalies[0].value, 50.0);
        assert!(report.anomalies[0].z > 3.0);
    }

    #[test]
    fn z_scores_match_scipy() {
        // scipy.stats.zscore([1, 2, 3, 4, 5]) = [-1.414, -0.707, 0, 0.707, 1.414]
        let z = z_scores(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let expected = [
            -1.414_213_562,
            -0.707_106_781,
            0.0,
            0.707_106_781,
            1.414_213_562,
        ];
        for (a, b) in z.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{z:?}");
        }
        assert_eq!(z_scores(&[3.0, 3.0, 3.0]), [0.0, 0.0, 0.0]);
    }

    #[test]
    fn top_endpoints_are_sorted_and_capped() {
        let rows: Vec<Row> = (0..15)
            .map(|i| Row {
                time: 0,
                metric: "endpoint_p95_latency",
                label: Some(format!("/r{i}")),
                value: f64::from(i),
            })
            .collect();
        let report = report(&rows, |t| t.to_string());
        assert_eq!(report.slowest_endpoints.len(), 10);
        assert_eq!(report.slowest_endpoints[0], ("/r14".to_owned(), 14.0));
    }
}
