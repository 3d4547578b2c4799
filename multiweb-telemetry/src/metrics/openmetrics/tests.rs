use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId};

use super::*;
use crate::exemplar::SpanIds;
use crate::testing::{Exposition, MetricsCapture};

fn exemplar(n: u8, value: f64) -> Exemplar {
    Exemplar {
        ids: SpanIds {
            trace_id: TraceId::from_bytes([n; 16]),
            span_id: SpanId::from_bytes([n; 8]),
        },
        value,
        time: Duration::from_millis(1_764_859_200_123),
    }
}

/// The trace and span ids of [`exemplar`]`(n)` as an exemplar's labels.
fn ids(n: u8) -> String {
    format!(
        "{{trace_id=\"{}\",span_id=\"{}\"}}",
        format!("{n:02x}").repeat(16),
        format!("{n:02x}").repeat(8)
    )
}

fn convert_without_exemplars(classic: &str) -> String {
    convert(classic, &mut Index::default())
}

/// What metrics-exporter-prometheus writes for the HTTP layer's series.
const HTTP: &str = "\
# HELP http_requests_total Total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",path=\"/a\",status=\"200\"} 3

# HELP http_request_duration_seconds HTTP request duration in seconds.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{method=\"GET\",le=\"0.5\"} 1
http_request_duration_seconds_bucket{method=\"GET\",le=\"1\"} 2
http_request_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 2
http_request_duration_seconds_sum{method=\"GET\"} 1.25
http_request_duration_seconds_count{method=\"GET\"} 2

";

#[test]
fn counters_and_histograms_without_exemplars() {
    assert_eq!(
        convert_without_exemplars(HTTP),
        "\
# TYPE http_requests counter
# HELP http_requests Total number of HTTP requests.
http_requests_total{method=\"GET\",path=\"/a\",status=\"200\"} 3
# TYPE http_request_duration_seconds histogram
# UNIT http_request_duration_seconds seconds
# HELP http_request_duration_seconds HTTP request duration in seconds.
http_request_duration_seconds_bucket{method=\"GET\",le=\"0.5\"} 1
http_request_duration_seconds_bucket{method=\"GET\",le=\"1.0\"} 2
http_request_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 2
http_request_duration_seconds_sum{method=\"GET\"} 1.25
http_request_duration_seconds_count{method=\"GET\"} 2
# EOF
"
    );
}

#[test]
fn counters_and_histogram_buckets_carry_their_exemplars() {
    let mut index = Index::default();
    let mut counter_labels = [("status", "200"), ("method", "GET"), ("path", "/a")];
    index.insert(
        "http_requests_total",
        &mut counter_labels,
        None,
        exemplar(1, 1.0),
    );
    let mut bucket_labels = [("method", "GET")];
    index.insert(
        "http_request_duration_seconds_bucket",
        &mut bucket_labels,
        Some(1.0),
        exemplar(2, 0.75),
    );
    index.insert(
        "http_request_duration_seconds_bucket",
        &mut bucket_labels,
        Some(f64::INFINITY),
        exemplar(3, 12.5),
    );
    let converted = convert(HTTP, &mut index);
    let expected = format!(
        "\
# TYPE http_requests counter
# HELP http_requests Total number of HTTP requests.
http_requests_total{{method=\"GET\",path=\"/a\",status=\"200\"}} 3 # {} 1 1764859200.123
# TYPE http_request_duration_seconds histogram
# UNIT http_request_duration_seconds seconds
# HELP http_request_duration_seconds HTTP request duration in seconds.
http_request_duration_seconds_bucket{{method=\"GET\",le=\"0.5\"}} 1
http_request_duration_seconds_bucket{{method=\"GET\",le=\"1.0\"}} 2 # {} 0.75 1764859200.123
http_request_duration_seconds_bucket{{method=\"GET\",le=\"+Inf\"}} 2 # {} 12.5 1764859200.123
http_request_duration_seconds_sum{{method=\"GET\"}} 1.25
http_request_duration_seconds_count{{method=\"GET\"}} 2
# EOF
",
        ids(1),
        ids(2),
        ids(3)
    );
    assert_eq!(converted, expected);
}

#[test]
fn exemplars_go_only_where_their_labels_match() {
    let mut index = Index::default();
    index.insert(
        "http_requests_total",
        &mut [("method", "POST"), ("path", "/a"), ("status", "200")],
        None,
        exemplar(1, 1.0),
    );
    index.insert(
        "http_request_duration_seconds_bucket",
        &mut [("method", "GET")],
        Some(0.25),
        exemplar(2, 0.2),
    );
    // A gauge or a `_sum` never carries one, even with the same name and labels.
    index.insert(
        "http_request_duration_seconds_sum",
        &mut [("method", "GET")],
        None,
        exemplar(3, 0.2),
    );
    assert_eq!(convert(HTTP, &mut index), convert_without_exemplars(HTTP));
}

#[test]
fn label_values_and_help_texts_are_escaped() {
    // As the classic format escapes them: `"`, `\` and a line feed in label
    // values; `\` and a line feed in HELP, where a quote stays bare.
    let classic = "\
# HELP odd_total Counts \"odd\" paths \\\\ like C:\\\\temp\\nand more.
# TYPE odd_total counter
odd_total{path=\"/a\\\"b\\\\c\\nd\",empty=\"\"} 1
";
    let converted = convert_without_exemplars(classic);
    assert_eq!(
        converted,
        "\
# TYPE odd counter
# HELP odd Counts \\\"odd\\\" paths \\\\ like C:\\\\temp\\nand more.
odd_total{path=\"/a\\\"b\\\\c\\nd\",empty=\"\"} 1
# EOF
"
    );
    let parsed = Exposition::parse(&converted);
    assert_eq!(
        parsed.value("odd_total", &[("path", "/a\"b\\c\nd")]),
        Some(1.0)
    );
}

#[test]
fn other_types_and_odd_lines() {
    let classic = "\
# a comment the classic format allows

# TYPE requests counter
requests 4
# HELP queue_depth Items waiting.
# TYPE queue_depth gauge
queue_depth{queue=\"a\"} +Inf
queue_depth{queue=\"b\"} -inf
queue_depth{queue=\"c\"} NaN
untyped_thing 1.5 1700000000123
# TYPE latency_seconds summary
latency_seconds{quantile=\"0.5\"} 0.2
latency_seconds{quantile=\"1\"} 0.9
latency_seconds_sum 3.5
latency_seconds_count 7
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1000
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 0.25
# TYPE rate_of_ratio gauge
ratio 0.5
";
    assert_eq!(
        convert_without_exemplars(classic),
        "\
# TYPE requests unknown
requests 4
# TYPE queue_depth gauge
# HELP queue_depth Items waiting.
queue_depth{queue=\"a\"} +Inf
queue_depth{queue=\"b\"} -Inf
queue_depth{queue=\"c\"} NaN
# TYPE untyped_thing unknown
untyped_thing 1.5 1700000000.123
# TYPE latency_seconds summary
# UNIT latency_seconds seconds
latency_seconds{quantile=\"0.5\"} 0.2
latency_seconds{quantile=\"1.0\"} 0.9
latency_seconds_sum 3.5
latency_seconds_count 7
# TYPE process_resident_memory_bytes gauge
# UNIT process_resident_memory_bytes bytes
process_resident_memory_bytes 1000
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
process_cpu_seconds_total 0.25
# TYPE rate_of_ratio gauge
# UNIT rate_of_ratio ratio
# TYPE ratio unknown
ratio 0.5
# EOF
",
        "a counter without `_total` keeps its name as `unknown`; `ratio` alone has no unit"
    );
}

#[test]
fn an_empty_exposition_is_just_eof() {
    assert_eq!(convert_without_exemplars(""), "# EOF\n");
}

#[test]
fn bounds_and_quantiles_are_canonical_numbers() {
    // The examples of the specification's "Canonical Numbers".
    for (value, canonical) in [
        (0.0, "0.0"),
        (0.001, "0.001"),
        (0.002, "0.002"),
        (0.01, "0.01"),
        (0.1, "0.1"),
        (0.9, "0.9"),
        (0.95, "0.95"),
        (0.99, "0.99"),
        (0.999, "0.999"),
        (1.0, "1.0"),
        (1.7, "1.7"),
        (10.0, "10.0"),
        (1e-10, "1e-10"),
        (1e-9, "1e-09"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (100_000.0, "100000.0"),
        (1e6, "1e+06"),
        (1e10, "1e+10"),
        (2.5e6, "2.5e+06"),
        (-0.5, "-0.5"),
        (f64::INFINITY, "+Inf"),
    ] {
        let mut out = String::new();
        write_canonical(&mut out, value);
        assert_eq!(out, canonical, "{value}");
    }
}

/// The real writers' output, through the converter: every line is
/// metadata, a sample or `# EOF`, and every sample keeps its value.
#[test]
fn a_captured_exposition_keeps_every_sample() {
    let capture = MetricsCapture::new();
    capture.run(|| {
        metrics::describe_counter!("converter_orders_total", "Orders \"placed\".");
        metrics::counter!("converter_orders_total", "method" => "card").increment(2);
        metrics::gauge!("converter_queue_depth").set(3.0);
        metrics::describe_histogram!(
            "converter_checkout_duration_seconds",
            metrics::Unit::Seconds,
            "Checkout latency."
        );
        metrics::histogram!("converter_checkout_duration_seconds").record(0.3);
    });
    let classic = capture.render();
    let converted = convert_without_exemplars(&classic);
    assert!(converted.ends_with("\n# EOF\n"), "{converted}");
    for line in converted.lines() {
        let metadata = ["# TYPE ", "# UNIT ", "# HELP "]
            .iter()
            .any(|prefix| line.starts_with(prefix));
        assert!(
            metadata || line == "# EOF" || line.starts_with(|c: char| c.is_ascii_alphabetic()),
            "{line:?} in:\n{converted}"
        );
    }
    assert!(converted.contains("# TYPE converter_orders counter\n"));
    assert!(converted.contains("# HELP converter_orders Orders \\\"placed\\\".\n"));
    assert!(converted.contains("# UNIT converter_checkout_duration_seconds seconds\n"));
    let before = Exposition::parse(&classic);
    let after = Exposition::parse(&converted);
    assert_eq!(after.samples.len(), before.samples.len());
    for sample in &before.samples {
        let le = sample.label("le").map(|le| {
            let mut canonical = String::new();
            write_canonical(&mut canonical, le.parse().unwrap_or(f64::INFINITY));
            canonical
        });
        let labels: Vec<(&str, &str)> = sample
            .labels
            .iter()
            .map(|(k, v)| match (k.as_str(), &le) {
                ("le", Some(le)) => (k.as_str(), le.as_str()),
                _ => (k.as_str(), v.as_str()),
            })
            .collect();
        assert_eq!(
            after.value(&sample.name, &labels),
            Some(sample.value),
            "{sample:?} in:\n{converted}"
        );
    }
}
