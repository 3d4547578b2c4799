//! Traces reach a real OTLP collector (rotel) over both protocols, with the
//! guide's sampling rule, continued `traceparent`s, and ids in the logs.

use multiweb_telemetry::testing::Exposition;
use multiweb_tests::{Collector, ExportedSpan, free_port, start_marketplace};

fn endpoint_env(collector: &Collector, grpc: bool) -> Vec<(&'static str, String)> {
    let (endpoint, protocol) = if grpc {
        (format!("http://{}", collector.grpc), "grpc")
    } else {
        (format!("http://{}", collector.http), "http/protobuf")
    };
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_SERVICE_NAME", "multiweb-api".to_owned()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn request_and_child_span_arrive(grpc: bool) {
    let collector = Collector::start();
    let env = endpoint_env(&collector, grpc);
    let app = start_marketplace(&[], &as_refs(&env));
    let response = app.get("/api/v1/products/?page=1", &[("x-user-id", "42")]);
    assert_eq!(response.status, 200);

    let spans = collector.wait_for(|spans| spans.len() >= 2);
    let server = spans
        .iter()
        .find(|s| s.name == "GET /api/v1/products/")
        .unwrap_or_else(|| panic!("no server span in {spans:#?}"));
    assert_eq!(server.kind, "SPAN_KIND_SERVER");
    assert_eq!(server.parent_id, "", "the request span is the trace's root");
    assert_eq!(server.attribute("http.request.method"), Some("Str(GET)"));
    assert_eq!(
        server.attribute("http.route"),
        Some("Str(/api/v1/products/)")
    );
    assert_eq!(server.attribute("url.path"), Some("Str(/api/v1/products/)"));
    assert_eq!(
        server.attribute("http.response.status_code"),
        Some("Int(200)")
    );
    assert_eq!(server.attribute("user_id"), Some("Str(42)"));
    assert_eq!(server.status, "STATUS_CODE_UNSET");
    assert_eq!(
        server.resource_attribute("service.name"),
        Some("Str(multiweb-api)")
    );
    assert!(server.resource_attribute("service.version").is_some());

    let child = spans
        .iter()
        .find(|s| s.name == "list_products")
        .unwrap_or_else(|| panic!("no handler span in {spans:#?}"));
    assert_eq!(child.kind, "SPAN_KIND_INTERNAL");
    assert_eq!(child.trace_id, server.trace_id);
    assert_eq!(
        child.parent_id, server.span_id,
        "the handler's span is the request's child"
    );

    // The log lines carry the ids the collector received.
    let handler_line = app.wait_json(|v| v["message"] == "listed products");
    assert_eq!(handler_line["trace_id"], server.trace_id.as_str());
    assert_eq!(handler_line["span_id"], child.span_id.as_str());
    let access_line = app.wait_json(|v| v["target"] == "multiweb_telemetry::http");
    assert_eq!(access_line["trace_id"], server.trace_id.as_str());
    assert_eq!(access_line["span_id"], server.span_id.as_str());
    let raw = app.stdout_lines().join("\n");
    assert!(!raw.contains("page=1"), "no query string in logs");
}

#[test]
fn spans_reach_the_collector_over_grpc() {
    request_and_child_span_arrive(true);
}

#[test]
fn spans_reach_the_collector_over_http_protobuf() {
    request_and_child_span_arrive(false);
}

#[test]
fn an_incoming_traceparent_is_continued_and_a_bad_one_ignored() {
    let collector = Collector::start();
    let env = endpoint_env(&collector, true);
    let app = start_marketplace(&[], &as_refs(&env));
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        app.get("/api/v1/products/", &[("traceparent", parent)])
            .status,
        200
    );
    assert_eq!(
        app.get(
            "/api/v1/debug/error",
            &[("traceparent", "00-zz-not-hex-01")]
        )
        .status,
        500,
        "a malformed header changes nothing in the response"
    );
    let spans = collector.wait_for(|spans| {
        spans
            .iter()
            .filter(|s| s.kind == "SPAN_KIND_SERVER")
            .count()
            >= 2
    });
    let continued = spans
        .iter()
        .find(|s| s.name == "GET /api/v1/products/")
        .unwrap();
    assert_eq!(continued.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(continued.parent_id, "00f067aa0ba902b7");
    let fresh = spans
        .iter()
        .find(|s| s.name == "GET /api/v1/debug/error")
        .unwrap();
    assert_ne!(fresh.trace_id, continued.trace_id);
    assert_eq!(
        fresh.parent_id, "",
        "an invalid traceparent starts a new trace"
    );
    assert_eq!(fresh.status, "STATUS_CODE_ERROR");
}

#[test]
fn every_error_trace_is_kept_and_ok_traces_follow_the_ratio() {
    let collector = Collector::start();
    let mut env = endpoint_env(&collector, true);
    env.push(("OTEL_TRACES_SAMPLER_ARG", "0.1".to_owned()));
    let app = start_marketplace(&[], &as_refs(&env));
    for i in 0..220 {
        let path = if i % 11 == 10 {
            "/api/v1/debug/error"
        } else {
            "/api/v1/products/"
        };
        app.get(path, &[]);
    }
    // A clean stop flushes every finished span before exit.
    let (status, _) = app.stop();
    assert!(status.success());
    // rotel prints a batch after acknowledging it, so wait for the printout.
    // The last request fails and its server span ends last: once 20 error
    // spans are printed, every earlier batch is too.
    let is_error_server =
        |s: &ExportedSpan| s.name == "GET /api/v1/debug/error" && s.kind == "SPAN_KIND_SERVER";
    let spans =
        collector.wait_for(|spans| spans.iter().filter(|s| is_error_server(s)).count() >= 20);
    let servers = |name: &str| -> Vec<&ExportedSpan> {
        spans
            .iter()
            .filter(|s| s.name == name && s.kind == "SPAN_KIND_SERVER")
            .collect()
    };
    let errors = servers("GET /api/v1/debug/error");
    assert_eq!(errors.len(), 20, "every failing trace arrives, once");
    assert!(errors.iter().all(|s| s.status == "STATUS_CODE_ERROR"));
    let ok = servers("GET /api/v1/products/").len();
    // Binomial(200, 0.1): mean 20, sd 4.2; [3, 45] is beyond 4 sd each way.
    assert!(
        (3..=45).contains(&ok),
        "{ok} of 200 OK traces kept at ratio 0.1"
    );
    // The decision covers whole traces: a kept OK trace has its handler span.
    let handler_spans = spans.iter().filter(|s| s.name == "list_products").count();
    assert_eq!(handler_spans, ok);
}

#[test]
fn a_collector_that_is_down_costs_requests_nothing_and_is_counted() {
    let closed = free_port();
    let endpoint = format!("http://127.0.0.1:{closed}");
    let app = start_marketplace(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    for _ in 0..300 {
        assert_eq!(app.get("/api/v1/products/", &[]).status, 200);
    }
    let dropped = || {
        Exposition::parse(&app.get("/metrics", &[]).body)
            .value("multiweb_telemetry_spans_dropped_total", &[])
            .unwrap_or(0.0)
    };
    // Each batch is retried (connection refused is transient) until the
    // export timeout, 10 s, has passed: the spans are counted when given up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while dropped() < 600.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        dropped() >= 600.0,
        "both spans of each request are counted: {}",
        dropped()
    );
    let warnings: Vec<_> = app
        .stdout_lines()
        .into_iter()
        .filter(|l| l.contains("span export failed"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "failures are logged at most once a minute: {warnings:#?}"
    );
}
