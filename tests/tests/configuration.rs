//! Every environment variable the crate reads, tried with junk: each gives
//! an error naming the variable, or a documented fallback; never a panic.

use multiweb_tests::{Collector, run_marketplace_to_exit, start_marketplace};

/// Variables whose junk is an error, and the junk tried.
const REJECTED: &[(&str, &str)] = &[
    ("RUST_LOG", "info,=[["),
    ("MULTIWEB_LOG_FORMAT", "yaml"),
    ("MULTIWEB_METRICS_ADDR", "999.1.1.1:99999"),
    ("MULTIWEB_TRACES_KEEP_ERRORS", "sometimes"),
    ("OTEL_SDK_DISABLED", "1"),
    ("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "tempo:4317"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://tempo"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "carrier-pigeon"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "just-a-token"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad name=value"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-1"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip"),
    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli"),
    ("OTEL_TRACES_SAMPLER", "half"),
    ("OTEL_TRACES_SAMPLER_ARG", "-0.5"),
    ("MULTIWEB_METRICS_TOKEN", "tok en"),
    ("OTEL_EXPORTER_OTLP_INSECURE", "yes"),
    ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "on"),
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "lots"),
    ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-5"),
];

/// Variables that take any value (documented): the app starts.
const ANY_VALUE: &[(&str, &str)] = &[
    ("OTEL_SERVICE_NAME", "名前 with spaces \u{1}"),
    // Any visible ASCII, surrounding whitespace trimmed.
    ("MULTIWEB_METRICS_TOKEN", "tok\"en=/+~\n"),
    ("OTEL_SDK_DISABLED", "  "),
];

#[test]
fn junk_values_are_errors_naming_the_variable() {
    for (name, value) in REJECTED {
        let output = run_marketplace_to_exit(&["--listen", "127.0.0.1:0"], &[(name, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}={value:?}: {stderr}");
        assert!(
            stderr.starts_with("error: invalid value ")
                && stderr.contains(&format!(" for environment variable {name}: expected ")),
            "{name}={value:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

/// `gzip` compresses, on both protocols, without a warning: the spans
/// still reach rotel. (`otlp_tls.rs` checks that the requests on the wire
/// are compressed.)
#[test]
fn gzip_exports_on_both_protocols_without_a_warning() {
    let rotel = Collector::start();
    for (protocol, addr) in [("grpc", rotel.grpc), ("http/protobuf", rotel.http)] {
        let endpoint = format!("http://{addr}");
        let app = start_marketplace(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ],
        );
        assert_eq!(app.get("/api/v1/products/", &[]).status, 200);
        let access = app.wait_json(|v| v["target"] == "multiweb_telemetry::http");
        let trace_id = access["trace_id"].as_str().unwrap().to_owned();
        rotel.wait_for(|spans| spans.iter().any(|s| s.trace_id == trace_id));
        let (_, lines) = app.stop();
        let warnings: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains(r#""level":"warn""#))
            .collect();
        assert!(warnings.is_empty(), "{protocol}: {warnings:?}");
    }
}

#[test]
fn variables_that_take_any_value_start_the_app() {
    for (name, value) in ANY_VALUE {
        let app = start_marketplace(&[], &[(name, value)]);
        assert_eq!(app.get("/health", &[]).status, 200, "{name}={value:?}");
    }
}
