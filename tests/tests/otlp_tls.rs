//! Span export to collectors behind TLS (real TLS: certificates made with
//! rcgen, a tokio-rustls proxy in front of rotel), with gzip, mTLS, retries
//! as the OTLP specification says, and failures that never reach the
//! application.

use std::time::{Duration, Instant};

use multiweb_telemetry::testing::Exposition;
use multiweb_tests::fake_collector::{Answer, FakeCollector};
use multiweb_tests::tls::{Certificates, TlsProxy};
use multiweb_tests::{App, Collector, start_marketplace};

fn counter(app: &App, name: &str) -> f64 {
    Exposition::parse(&app.get("/metrics", &[]).body)
        .value(name, &[])
        .unwrap_or(0.0)
}

fn dropped(app: &App) -> f64 {
    counter(app, "multiweb_telemetry_spans_dropped_total")
}

/// Waits (bounded) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request to the products list; its trace id, from its access line.
fn traced_request(app: &App) -> String {
    let before = access_lines(app).len();
    assert_eq!(app.get("/api/v1/products/", &[]).status, 200);
    wait_until("the access line", || access_lines(app).len() > before);
    access_lines(app)[before]["trace_id"]
        .as_str()
        .expect("a trace id")
        .to_owned()
}

fn access_lines(app: &App) -> Vec<serde_json::Value> {
    app.stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "multiweb_telemetry::http")
        .collect()
}

/// The warnings the app logged whose message starts with `prefix`, once
/// there is one (the counters move just before the warning is written).
fn warnings(app: &App, prefix: &str) -> Vec<serde_json::Value> {
    wait_until("a warning", || !logged_warnings(app, prefix).is_empty());
    logged_warnings(app, prefix)
}

/// The warnings logged so far whose message starts with `prefix`.
fn logged_warnings(app: &App, prefix: &str) -> Vec<serde_json::Value> {
    app.stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["level"] == "warn" && v["message"].as_str().is_some_and(|m| m.starts_with(prefix))
        })
        .collect()
}

const PROTOCOLS: [&str; 2] = ["grpc", "http/protobuf"];

#[test]
fn https_with_gzip_and_mtls_reach_rotel_on_both_protocols() {
    let certificates = Certificates::new();
    let rotel = Collector::start();
    let proxy = TlsProxy::start(&certificates, rotel.grpc, rotel.http, false);
    let mtls = TlsProxy::start(&certificates, rotel.grpc, rotel.http, true);
    let (ca, cert, key) = (
        certificates.path("ca.pem"),
        certificates.path("client.pem"),
        certificates.path("client.key"),
    );
    for protocol in PROTOCOLS {
        // TLS with the test CA, gzip on.
        let endpoint = proxy.url();
        let app = start_marketplace(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
            ],
        );
        let trace_id = traced_request(&app);
        let spans =
            rotel.wait_for(|spans| spans.iter().filter(|s| s.trace_id == trace_id).count() >= 2);
        let names: Vec<&str> = spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .map(|s| s.name.as_str())
            .collect();
        assert!(
            names.contains(&"GET /api/v1/products/") && names.contains(&"list_products"),
            "{protocol}: {names:?}"
        );
        assert_eq!(dropped(&app), 0.0, "{protocol}");
        let (compressed, plain) = *proxy.requests.lock().unwrap();
        assert!(
            compressed >= 1 && plain == 0,
            "{protocol}: {compressed} gzip requests, {plain} plain"
        );
        *proxy.requests.lock().unwrap() = (0, 0);
        drop(app);

        // mTLS required: with the client certificate the spans arrive...
        let endpoint = mtls.url();
        let base = [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca.as_str()),
        ];
        let endpoint_http = format!("{endpoint}/v1/traces");
        let mut with_client = base.to_vec();
        if protocol == "http/protobuf" {
            // The traces variable is the full URL.
            with_client[0].1 = &endpoint_http;
        }
        let without_client = with_client.clone();
        with_client.push(("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", &cert));
        with_client.push(("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", &key));
        let app = start_marketplace(&[], &with_client);
        let trace_id = traced_request(&app);
        rotel.wait_for(|spans| spans.iter().filter(|s| s.trace_id == trace_id).count() >= 2);
        assert_eq!(dropped(&app), 0.0, "{protocol}");
        drop(app);

        // ... and without it they are dropped and counted.
        let app = start_marketplace(&[], &without_client);
        let trace_ids: Vec<String> = (0..3).map(|_| traced_request(&app)).collect();
        wait_until(
            "the spans without a client certificate to be counted",
            || dropped(&app) >= 6.0,
        );
        let received = rotel.spans();
        assert!(
            !received.iter().any(|s| trace_ids.contains(&s.trace_id)),
            "{protocol}: no span arrives without the client certificate"
        );
        // Over TLS 1.3 the server refuses a client without a certificate
        // after the client's side of the handshake: the client sees the
        // alert (a TLS failure) or just the connection closed (retried).
        let warned = warnings(&app, "span export failed");
        assert_eq!(warned.len(), 1, "{protocol}: {warned:#?}");
    }
}

#[test]
fn wrong_ca_and_wrong_host_name_drop_count_and_warn_once_a_minute() {
    let certificates = Certificates::new();
    // Nothing listens upstream: no handshake gets that far.
    let nowhere = multiweb_tests::free_port();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], nowhere));
    let proxy = TlsProxy::start(&certificates, upstream, upstream, false);
    let (ca, wrong_ca) = (
        certificates.path("ca.pem"),
        certificates.path("wrong-ca.pem"),
    );
    // The server certificate is for `localhost`, not for `127.0.0.1`.
    let by_address = format!("https://127.0.0.1:{}", proxy.addr.port());
    let by_name = proxy.url();
    for protocol in PROTOCOLS {
        for (endpoint, trusted, cause) in [
            (&by_name, &wrong_ca, "UnknownIssuer"),
            (&by_address, &ca, "not valid for name \"127.0.0.1\""),
        ] {
            let app = start_marketplace(
                &[],
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                    ("OTEL_EXPORTER_OTLP_CERTIFICATE", trusted.as_str()),
                ],
            );
            // Three batches, each failing on its own.
            for _ in 0..3 {
                for _ in 0..5 {
                    assert_eq!(
                        app.get("/api/v1/products/", &[]).status,
                        200,
                        "no request fails"
                    );
                }
                let before = dropped(&app);
                wait_until("a batch to be dropped", || dropped(&app) > before);
            }
            // Every span of the 15 requests (the same number for each, at
            // least the request's and its handler's) counted once.
            wait_until("every span counted", || {
                let n = dropped(&app);
                n >= 30.0 && n % 15.0 == 0.0
            });
            let warned = warnings(&app, "span export failed: no TLS connection");
            assert_eq!(
                warned.len(),
                1,
                "{protocol} {cause}: {:#?}",
                logged_warnings(&app, "")
            );
            let error = warned[0]["error"].as_str().unwrap();
            assert!(
                error.starts_with("TLS handshake failed: ") && error.contains(cause),
                "{protocol}: {error}"
            );
        }
    }
    assert_eq!(
        proxy.handshakes.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_503_with_retry_after_twice_then_200_delivers_every_span_once() {
    let unavailable = Answer {
        status: "503 Service Unavailable",
        headers: "retry-after: 1\r\n",
    };
    let collector = FakeCollector::start(&[unavailable, unavailable], Answer::OK);
    let endpoint = collector.url();
    let app = start_marketplace(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);
    let trace_ids: Vec<String> = (0..10).map(|_| traced_request(&app)).collect();
    let accepted = |collector: &FakeCollector| -> Vec<(String, String)> {
        collector
            .received()
            .iter()
            .filter(|r| r.answered == 200)
            .flat_map(multiweb_tests::fake_collector::Received::spans)
            .collect()
    };
    // Each request makes the same spans: wait until every trace has as many
    // as the others (at least the request's and its handler's), all of
    // them counted as exported.
    wait_until("every span to be accepted", || {
        let accepted = accepted(&collector);
        let per_trace: Vec<usize> = trace_ids
            .iter()
            .map(|t| accepted.iter().filter(|(id, _)| id == t).count())
            .collect();
        per_trace[0] >= 2
            && per_trace.iter().all(|n| *n == per_trace[0])
            && counter(&app, "multiweb_telemetry_spans_exported_total") == accepted.len() as f64
    });
    let received = collector.received();
    assert_eq!(received[0].answered, 503);
    assert_eq!(received[1].answered, 503);
    assert_eq!(
        received[0].body, received[1].body,
        "the same request, retried"
    );
    let mut accepted = accepted(&collector);
    accepted.sort();
    let total = accepted.len();
    accepted.dedup();
    assert_eq!(accepted.len(), total, "no span accepted twice");
    assert_eq!(dropped(&app), 0.0, "nothing counted as dropped");
    assert!(logged_warnings(&app, "span export").is_empty());
}

#[test]
fn a_400_drops_and_counts_once_warns_once_and_the_app_keeps_serving() {
    let collector = FakeCollector::start(
        &[],
        Answer {
            status: "400 Bad Request",
            headers: "",
        },
    );
    let endpoint = collector.url();
    let app = start_marketplace(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);
    for _ in 0..3 {
        for _ in 0..5 {
            assert_eq!(app.get("/api/v1/products/", &[]).status, 200);
        }
        let before = dropped(&app);
        wait_until("a batch to be dropped", || dropped(&app) > before);
    }
    // Every span sent once (a 400 is not retried), and counted once.
    let sent = || -> usize { collector.received().iter().map(|r| r.spans().len()).sum() };
    wait_until("every span sent and counted", || {
        let sent = sent();
        sent >= 30 && sent % 15 == 0 && dropped(&app) == sent as f64
    });
    let mut ids: Vec<(String, String)> = collector
        .received()
        .iter()
        .flat_map(multiweb_tests::fake_collector::Received::spans)
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no span sent twice");
    assert_eq!(app.get("/health", &[]).status, 200, "the app keeps serving");
    let warned = warnings(&app, "span export rejected by the collector");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert_eq!(
        warned[0]["error"],
        "the collector answered HTTP 400 Bad Request"
    );
}
