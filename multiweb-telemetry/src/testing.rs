//! Helpers to assert on metrics in unit tests, without a global recorder.
//!
//! [`MetricsCapture`] is a recorder local to one test, configured like the
//! one [`init`](crate::init) installs (same histogram buckets), so tests run
//! in parallel without seeing each other's metrics. [`Exposition`] parses the
//! Prometheus text format (and the OpenMetrics one, without its exemplars),
//! to look values up by name and labels.
//!
//! ```
//! use multiweb_telemetry::testing::MetricsCapture;
//!
//! let capture = MetricsCapture::new();
//! capture.run(|| {
//!     metrics::counter!("orders_total", "method" => "card").increment(2);
//!     metrics::histogram!("checkout_duration_seconds").record(0.3);
//! });
//! let metrics = capture.exposition();
//! assert_eq!(metrics.value("orders_total", &[("method", "card")]), Some(2.0));
//! assert_eq!(metrics.value("checkout_duration_seconds_bucket", &[("le", "0.5")]), Some(1.0));
//! ```
//!
//! Metrics recorded through handles registered with the global recorder
//! (such as those cached by the HTTP layer) are not seen by a local
//! capture: those are tested against `/metrics`.

use std::fmt;

use ::metrics::LocalRecorderGuard;
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

use crate::config::Buckets;

/// A metrics recorder local to a test.
pub struct MetricsCapture {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl fmt::Debug for MetricsCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsCapture").finish_non_exhaustive()
    }
}

impl Default for MetricsCapture {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsCapture {
    /// A capture with the default histogram buckets.
    pub fn new() -> Self {
        // The default buckets are valid, so building cannot fail; fall back
        // to the exporter's own defaults rather than panic if it ever did.
        let recorder = crate::metrics::build_recorder(&Buckets::default()).unwrap_or_else(|_| {
            metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
        });
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    /// Runs `f` with this capture as the current thread's recorder.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        ::metrics::with_local_recorder(&self.recorder, f)
    }

    /// Makes this capture the current thread's recorder until the returned
    /// guard is dropped; for `#[tokio::test]` (current-thread) bodies.
    pub fn enter(&self) -> LocalRecorderGuard<'_> {
        ::metrics::set_default_local_recorder(&self.recorder)
    }

    /// The Prometheus text exposition of what was recorded.
    ///
    /// It includes the metrics declared with `#[business_metric]`, which
    /// are process-wide.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        let mut out = self.handle.render();
        crate::business::render(&mut out);
        out
    }

    /// The same exposition in the OpenMetrics text format, as `/metrics`
    /// answers a scrape that asks for it: with the exemplars recorded so
    /// far (they are process-wide too, and appear on the samples of this
    /// capture whose name and labels they were recorded with).
    ///
    /// ```
    /// use multiweb_telemetry::testing::MetricsCapture;
    ///
    /// let capture = MetricsCapture::new();
    /// capture.run(|| metrics::counter!("orders_total").increment(1));
    /// let text = capture.render_openmetrics();
    /// assert!(text.contains("# TYPE orders counter\norders_total 1\n"));
    /// assert!(text.ends_with("# EOF\n"));
    /// ```
    pub fn render_openmetrics(&self) -> String {
        crate::metrics::openmetrics_of(&self.render())
    }

    /// The parsed exposition of what was recorded.
    pub fn exposition(&self) -> Exposition {
        Exposition::parse(&self.render())
    }
}

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name, e.g. `http_requests_total`.
    pub name: String,
    /// The labels, in the order they appear.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed Prometheus text exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `(name, type)` of every `# TYPE` line.
    pub types: Vec<(String, String)>,
    /// `(name, help)` of every `# HELP` line.
    pub helps: Vec<(String, String)>,
}

impl Exposition {
    /// Parses the text format. Lines that cannot be parsed are skipped.
    pub fn parse(text: &str) -> Self {
        let mut exposition = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    exposition
                        .types
                        .push((name.to_owned(), kind.trim().to_owned()));
                }
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                if let Some((name, help)) = rest.split_once(' ') {
                    exposition.helps.push((name.to_owned(), help.to_owned()));
                }
            } else if !line.starts_with('#')
                && let Some(sample) = parse_sample(line)
            {
                exposition.samples.push(sample);
            }
        }
        exposition
    }

    /// The samples named `name` whose labels include all of `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
    }

    /// The value of the one sample named `name` whose labels include all of
    /// `labels`; `None` if there is no such sample or more than one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.find(name, labels);
        let first = found.next()?;
        found.next().is_none().then_some(first.value)
    }

    /// The `# TYPE` of metric family `name`.
    pub fn type_of(&self, name: &str) -> Option<&str> {
        self.types
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }

    /// The `# HELP` text of metric family `name`.
    pub fn help_of(&self, name: &str) -> Option<&str> {
        self.helps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h.as_str())
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(mut rest) = rest.strip_prefix('{') {
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                break after;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((key.trim().to_owned(), value));
            rest = &after[end + 1..];
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes() {
        let text = "# HELP a_total An a.\n# TYPE a_total counter\n\
                    a_total{path=\"/x\\\"y\",status=\"200\"} 3\nb 1.5\nc{le=\"+Inf\"} +Inf\n";
        let e = Exposition::parse(text);
        assert_eq!(e.value("a_total", &[("path", "/x\"y")]), Some(3.0));
        assert_eq!(e.value("b", &[]), Some(1.5));
        assert_eq!(e.value("c", &[("le", "+Inf")]), Some(f64::INFINITY));
        assert_eq!(e.type_of("a_total"), Some("counter"));
        assert_eq!(e.help_of("a_total"), Some("An a."));
    }

    #[test]
    fn captures_are_isolated_and_histograms_have_buckets() {
        let first = MetricsCapture::new();
        let second = MetricsCapture::new();
        first.run(|| {
            ::metrics::histogram!("http_request_duration_seconds", "path" => "/p").record(0.3);
            ::metrics::histogram!("http_request_duration_seconds", "path" => "/p").record(0.7);
        });
        second.run(|| ::metrics::counter!("other_total").increment(1));

        let e = first.exposition();
        assert_eq!(
            e.type_of("http_request_duration_seconds"),
            Some("histogram")
        );
        let bucket = |le| {
            e.value(
                "http_request_duration_seconds_bucket",
                &[("path", "/p"), ("le", le)],
            )
        };
        assert_eq!(bucket("0.25"), Some(0.0));
        assert_eq!(bucket("0.5"), Some(1.0));
        assert_eq!(bucket("1"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        assert_eq!(
            e.value("http_request_duration_seconds_count", &[("path", "/p")]),
            Some(2.0)
        );
        assert_eq!(
            e.value("http_request_duration_seconds_sum", &[("path", "/p")]),
            Some(1.0)
        );
        assert!(
            e.find("other_total", &[]).next().is_none(),
            "captures do not share metrics"
        );
        assert_eq!(second.exposition().value("other_total", &[]), Some(1.0));
    }
}
