//! Every environment variable the crate reads, tried with junk: each gives
//! an error naming the variable, or a documented fallback; never a panic.

use multiweb_tests::{run_marketplace_to_exit, start_marketplace};

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

/// `gzip` is not in this build: the app starts and serves, and says once
/// that it exports uncompressed. (The exporter sends the same requests as
/// without the setting; its HTTP tests check them against a local
/// collector, and `traces.rs` against rotel.)
#[test]
fn gzip_falls_back_to_uncompressed_with_one_warning() {
    let app = start_marketplace(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
    );
    assert_eq!(app.get("/health", &[]).status, 200);
    let warning = app.wait_json(|line| line["variable"] == "OTEL_EXPORTER_OTLP_COMPRESSION");
    assert_eq!(warning["level"], "warn", "{warning}");
    assert_eq!(
        warning["message"],
        "gzip compression is not in this build; spans are exported uncompressed"
    );
    let (_, lines) = app.stop();
    let warnings = lines
        .iter()
        .filter(|l| l.contains("OTEL_EXPORTER_OTLP_COMPRESSION"))
        .count();
    assert_eq!(warnings, 1, "{lines:?}");
}

#[test]
fn variables_that_take_any_value_start_the_app() {
    for (name, value) in ANY_VALUE {
        let app = start_marketplace(&[], &[(name, value)]);
        assert_eq!(app.get("/health", &[]).status, 200, "{name}={value:?}");
    }
}
