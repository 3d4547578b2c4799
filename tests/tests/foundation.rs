//! The foundation, checked on the real output of the example application:
//! `/metrics` in both formats (with promtool), the JSON log lines, and
//! configuration errors.

use multiweb_telemetry::DEFAULT_BUCKETS;
use multiweb_telemetry::testing::Exposition;
use multiweb_tests::{
    exemplars_in, http_request, promtool_check_metrics, promtool_check_openmetrics,
    run_marketplace_to_exit, start_marketplace,
};

const PROCESS_METRICS: [(&str, &str); 7] = [
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_threads", "gauge"),
];

#[test]
fn metrics_endpoint_serves_process_metrics_that_promtool_accepts() {
    let app = start_marketplace(&[], &[]);
    assert_eq!(app.get("/api/v1/products/", &[]).status, 200);
    let response = app.get("/metrics", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let metrics = Exposition::parse(&response.body);
    for (name, kind) in PROCESS_METRICS {
        assert_eq!(
            metrics.type_of(name),
            Some(kind),
            "{name} in:\n{}",
            response.body
        );
        let value = metrics
            .value(name, &[])
            .unwrap_or_else(|| panic!("{name} has one value"));
        assert!(value >= 0.0, "{name} = {value}");
    }
    let rss = metrics.value("process_resident_memory_bytes", &[]).unwrap();
    assert!(rss > 1_000_000.0, "resident memory is in bytes: {rss}");
    let start = metrics.value("process_start_time_seconds", &[]).unwrap();
    assert!(start > 1.7e9, "start time is a unix timestamp: {start}");
    assert_eq!(
        metrics.type_of("multiweb_telemetry_log_lines_dropped_total"),
        Some("counter")
    );
    assert_eq!(
        metrics.value("multiweb_telemetry_log_lines_dropped_total", &[]),
        Some(0.0)
    );
    // At 0 before any overflow: its alert has a series to watch.
    assert_eq!(
        metrics.type_of("multiweb_telemetry_http_series_overflow_total"),
        Some("counter")
    );
    assert_eq!(
        metrics.value("multiweb_telemetry_http_series_overflow_total", &[]),
        Some(0.0)
    );

    // The HTTP layer's histogram, with the guide's thresholds as buckets.
    let labels = [
        ("method", "GET"),
        ("path", "/api/v1/products/"),
        ("status", "200"),
    ];
    assert_eq!(metrics.value("http_requests_total", &labels), Some(1.0));
    for le in ["0.5", "1", "+Inf"] {
        let mut with_le = labels.to_vec();
        with_le.push(("le", le));
        assert_eq!(
            metrics.value("http_request_duration_seconds_bucket", &with_le),
            Some(1.0),
            "le={le}"
        );
    }
    assert!(
        metrics
            .find("http_requests_total", &[("path", "/metrics")])
            .next()
            .is_none(),
        "the metrics endpoint is not recorded"
    );

    if let Err(report) = promtool_check_metrics(&response.body) {
        panic!("promtool check metrics reports problems:\n{report}");
    }
}

/// What Prometheus 2.x sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn metrics_endpoint_answers_openmetrics_to_who_asks_for_it() {
    let app = start_marketplace(&[], &[]);
    assert_eq!(app.get("/api/v1/products/", &[]).status, 200);
    assert_eq!(app.get("/api/v1/debug/error", &[]).status, 500);
    let classic = app.get("/metrics", &[("accept", "text/plain")]);
    let response = app.get("/metrics", &[("accept", PROMETHEUS_ACCEPT)]);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = &response.body;
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert!(
        !text.lines().any(str::is_empty),
        "no blank lines in OpenMetrics:\n{text}"
    );
    for family in [
        // Counters are named without `_total`; their samples keep it.
        "# TYPE http_requests counter\n# HELP http_requests ",
        "# TYPE http_request_duration_seconds histogram\n\
         # UNIT http_request_duration_seconds seconds\n\
         # HELP http_request_duration_seconds ",
        "# TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds\n",
        "# TYPE process_resident_memory_bytes gauge\n# UNIT process_resident_memory_bytes bytes\n",
        "# TYPE multiweb_products_created counter\n\
         # HELP multiweb_products_created Total number of products created\n\
         multiweb_products_created_total 0\n",
        "# TYPE multiweb_telemetry_log_lines_dropped counter\n",
    ] {
        assert!(text.contains(family), "{family:?} in:\n{text}");
    }

    // The same series as the classic answer, from the same registry.
    let ours = Exposition::parse(text);
    let theirs = Exposition::parse(&classic.body);
    assert_eq!(ours.samples.len(), theirs.samples.len());
    let labels = [
        ("method", "GET"),
        ("path", "/api/v1/debug/error"),
        ("status", "500"),
    ];
    assert_eq!(ours.value("http_requests_total", &labels), Some(1.0));
    let mut bucket = labels.to_vec();
    bucket.push(("le", "1.0"));
    assert_eq!(
        ours.value("http_request_duration_seconds_bucket", &bucket),
        Some(1.0),
        "`le` is a canonical number: 1.0, not 1"
    );

    // The default sampler keeps every trace: each request left its ids on
    // its bucket and its counter, and only in this format.
    let access = app.wait_json(|v| v["target"] == "multiweb_telemetry::http" && v["status"] == 500);
    let exemplars = exemplars_in(text);
    let on_error: Vec<_> = exemplars
        .iter()
        .filter(|e| e.label("path") == Some("/api/v1/debug/error"))
        .collect();
    assert_eq!(
        on_error.len(),
        2,
        "the bucket and the counter: {on_error:#?}"
    );
    for exemplar in &on_error {
        assert_eq!(exemplar.trace_id, access["trace_id"].as_str().unwrap());
        assert_eq!(exemplar.span_id, access["span_id"].as_str().unwrap());
    }
    let (counter, bucket) = match on_error[..] {
        [a, b] if a.sample == "http_requests_total" => (a, b),
        [a, b] => (b, a),
        _ => unreachable!(),
    };
    assert_eq!(counter.value, 1.0);
    assert_eq!(bucket.sample, "http_request_duration_seconds_bucket");
    assert_eq!(bucket.value, access["duration"].as_f64().unwrap());
    let first_holding = DEFAULT_BUCKETS
        .iter()
        .copied()
        .find(|bound| *bound >= bucket.value)
        .unwrap_or(f64::INFINITY);
    assert_eq!(
        bucket.label("le").and_then(|le| le.parse::<f64>().ok()),
        Some(first_holding),
        "on the bucket that counts it: {bucket:?}"
    );
    assert!(
        !classic
            .body
            .lines()
            .any(|l| !l.starts_with('#') && l.contains(" # ")),
        "the classic answer has no exemplars:\n{}",
        classic.body
    );
    if let Err(report) = promtool_check_openmetrics(text) {
        panic!("Prometheus' OpenMetrics parser rejects the answer:\n{report}\n{text}");
    }
    assert!(
        promtool_check_openmetrics(&text.replace("# EOF\n", "")).is_err(),
        "the check can fail"
    );
}

#[test]
fn logs_are_one_json_object_per_line_with_span_fields_flattened() {
    let app = start_marketplace(&[], &[]);
    let response = app.get("/api/v1/products/", &[("x-user-id", "123")]);
    assert_eq!(response.status, 200);
    let line = app.wait_json(|v| v["message"] == "listed products");
    let access = app.wait_json(|v| v["target"] == "multiweb_telemetry::http");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/api/v1/products/");
    assert_eq!(access["status"], 200);
    assert_eq!(
        access["user_id"], "123",
        "user_id reaches the access log line"
    );
    assert!(access["duration"].is_f64());
    assert!(
        access["message"]
            .as_str()
            .unwrap()
            .starts_with("GET /api/v1/products/ status=200 duration=0.0")
    );
    let fields = line.as_object().unwrap();
    assert_eq!(fields["level"], "info");
    assert_eq!(fields["target"], "marketplace::api");
    assert_eq!(
        fields["user_id"], "123",
        "the span's field is at the top level"
    );
    assert_eq!(fields["count"], 2);
    let timestamp = fields["timestamp"].as_str().unwrap();
    assert!(
        timestamp.len() == 27 && timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
        "RFC 3339 UTC: {timestamp}"
    );

    // The guide's LogQL `| json | user_id="123"` selects exactly this line.
    let selected: Vec<serde_json::Value> = app
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &serde_json::Value| v["user_id"] == "123")
        .collect();
    assert_eq!(selected.len(), 2, "the handler's line and the access line");
    for line in app.stdout_lines() {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let level = value["level"].as_str().unwrap();
        assert!(
            ["error", "warn", "info", "debug", "trace"].contains(&level),
            "{line}"
        );
        assert!(
            value["message"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn pretty_format_is_for_humans() {
    let app = start_marketplace(&[], &[("MULTIWEB_LOG_FORMAT", "pretty")]);
    let lines = app.stdout_lines();
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" INFO marketplace: marketplace listening, addr: ")),
        "{lines:#?}"
    );
}

#[test]
fn standalone_metrics_listener_serves_metrics() {
    let app = start_marketplace(&[], &[("MULTIWEB_METRICS_ADDR", "127.0.0.1:0")]);
    let start = app.wait_json(|v| v["message"] == "marketplace listening");
    let metrics_addr = start["metrics_addr"]
        .as_str()
        .expect("metrics_addr is logged");
    let response = http_request(metrics_addr.parse().unwrap(), "GET", "/metrics", &[], "");
    assert_eq!(response.status, 200);
    let metrics = Exposition::parse(&response.body);
    assert_eq!(
        metrics.type_of("process_cpu_seconds_total"),
        Some("counter")
    );
}

#[test]
fn bad_environment_values_stop_the_app_with_an_error_naming_them() {
    for (name, value, expected) in [
        (
            "MULTIWEB_METRICS_ADDR",
            "not-an-address",
            "invalid value \"not-an-address\" for environment variable MULTIWEB_METRICS_ADDR",
        ),
        (
            "OTEL_SDK_DISABLED",
            "maybe",
            "invalid value \"maybe\" for environment variable OTEL_SDK_DISABLED",
        ),
        (
            "RUST_LOG",
            "info,[[",
            "invalid value \"info,[[\" for environment variable RUST_LOG",
        ),
        (
            "MULTIWEB_LOG_FORMAT",
            "xml",
            "invalid value \"xml\" for environment variable MULTIWEB_LOG_FORMAT",
        ),
    ] {
        let output = run_marketplace_to_exit(&["--listen", "127.0.0.1:0"], &[(name, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} must fail");
        assert!(stderr.contains(expected), "{name}={value}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "nothing was logged before the error"
        );
    }
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run_marketplace_to_exit(
        &["--listen", "127.0.0.1:0"],
        &[("MULTIWEB_METRICS_ADDR", &addr)],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "error: could not bind the metrics listener to {addr}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("caused by:"),
        "the OS error is the source: {stderr}"
    );
}

#[test]
fn sigterm_flushes_the_last_log_line() {
    let app = start_marketplace(&[], &[]);
    let lines_before = app.stdout_lines().len();
    let (status, lines) = app.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["message"], "marketplace stopped");
    assert!(lines.len() > lines_before);
}
