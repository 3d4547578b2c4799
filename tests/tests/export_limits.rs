//! Long URLs never sink span batches (attribute values are cut, export
//! requests are bounded in size), and a burst that overflows the span queue
//! is counted and warned about.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiweb_telemetry::testing::Exposition;
use multiweb_tests::fake_collector::{Answer, FakeCollector};
use multiweb_tests::{App, Collector, http_request, start_marketplace};

fn access_trace_ids(app: &App) -> Vec<String> {
    app.stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "multiweb_telemetry::http")
        .filter_map(|v| v["trace_id"].as_str().map(str::to_owned))
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn long_paths_mixed_with_normal_requests_reach_rotel_over_grpc_without_drops() {
    let rotel = Collector::start();
    let endpoint = format!("http://{}", rotel.grpc);
    // hyper refuses request targets of 64 KiB and more.
    let long = format!("/api/v1/products/{}", "1".repeat(60_000));
    // With the default limit the path is cut to 8192 characters; with a
    // limit above it, spans of 60 KB fill requests beyond 4 MB, which the
    // exporter splits.
    for (limit, kept) in [(None, 8192), (Some("100000"), long.len())] {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        if let Some(limit) = limit {
            env.push(("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", limit));
        }
        let app = start_marketplace(&[], &env);
        let before: HashSet<String> = rotel.spans().into_iter().map(|s| s.trace_id).collect();
        // One long path in two, sent as fast as one client can: batches of
        // hundreds of spans, tens of megabytes before the cut.
        for i in 0..400 {
            let path = if i % 2 == 0 {
                long.as_str()
            } else {
                "/api/v1/products/"
            };
            let response = http_request(app.addr, "GET", path, &[], "");
            assert!(response.status < 500, "{}", response.status);
        }
        wait_until("400 access lines", || access_trace_ids(&app).len() >= 400);
        let trace_ids: HashSet<String> = access_trace_ids(&app).into_iter().collect();
        assert!(trace_ids.is_disjoint(&before));
        let spans = rotel.wait_for(|spans| {
            let got: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
            trace_ids.iter().all(|t| got.contains(t.as_str()))
        });
        let metrics = Exposition::parse(&app.get("/metrics", &[]).body);
        assert_eq!(
            metrics.value("multiweb_telemetry_spans_dropped_total", &[]),
            Some(0.0),
            "limit {limit:?}: no span dropped"
        );
        let long_paths: Vec<&str> = spans
            .iter()
            .filter(|s| trace_ids.contains(&s.trace_id))
            .filter_map(|s| s.attribute("url.path"))
            .filter(|path| path.len() > 1000)
            .collect();
        assert_eq!(long_paths.len(), 200, "limit {limit:?}");
        let expected = format!("Str({})", &long[..kept]);
        assert!(
            long_paths.iter().all(|path| *path == expected),
            "limit {limit:?}: url.path cut to {kept} characters"
        );
    }
}

/// Log lines written into memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[test]
fn a_burst_that_fills_the_span_queue_is_counted_and_warned_once() {
    let collector = FakeCollector::start(&[], Answer::OK);
    let logs = Logs::default();
    let guard = multiweb_telemetry::Telemetry::builder()
        .log_writer(logs.clone())
        .otlp_endpoint(collector.url())
        .span_queue_size(16)
        .try_init()
        .expect("init");
    for _ in 0..2_000 {
        let _span = tracing::info_span!("burst").entered();
    }
    let full = |logs: &Logs| -> Vec<serde_json::Value> {
        logs.lines()
            .into_iter()
            .filter(|v| {
                v["level"] == "warn"
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("the span queue is full"))
            })
            .collect()
    };
    wait_until("the queue-full warning", || !full(&logs).is_empty());
    let metrics = Exposition::parse(&guard.render_metrics());
    let dropped = metrics
        .value("multiweb_telemetry_spans_dropped_total", &[])
        .unwrap();
    assert!(dropped > 0.0, "{dropped}");
    // A second burst within the minute is counted, not logged again.
    for _ in 0..2_000 {
        let _span = tracing::info_span!("burst").entered();
    }
    wait_until("the second burst's drops", || {
        Exposition::parse(&guard.render_metrics())
            .value("multiweb_telemetry_spans_dropped_total", &[])
            .unwrap()
            > dropped
    });
    std::thread::sleep(Duration::from_secs(1));
    let warned = full(&logs);
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0]["dropped"].as_u64().is_some_and(|n| n > 0),
        "{warned:#?}"
    );
    assert_eq!(warned[0]["capacity"], 16);
}

/// A span too large for an export request on its own (a 5 MB attribute,
/// the value limit raised above it) is dropped alone and counted once; the
/// spans around it still arrive. (Its warning goes to the global
/// subscriber, which the burst test above owns in this binary.)
#[test]
fn a_span_too_large_for_any_request_is_dropped_alone() {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let collector = FakeCollector::start(&[], Answer::OK);
    let capture = multiweb_telemetry::testing::MetricsCapture::new();
    let (dispatch, guard) = capture.run(|| {
        multiweb_telemetry::Telemetry::builder()
            .log_writer(std::io::sink())
            .otlp_endpoint(collector.url())
            .attribute_value_length_limit(6_000_000)
            .build_dispatch()
            .expect("build")
    });
    let huge = "x".repeat(5_000_000);
    let (mut neighbours, mut too_large) = (Vec::new(), String::new());
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..10 {
            let span = tracing::info_span!("neighbour", payload = tracing::field::Empty);
            if i == 5 {
                span.record("payload", huge.as_str());
            }
            let trace_id = span.context().span().span_context().trace_id().to_string();
            if i == 5 {
                too_large = trace_id;
            } else {
                neighbours.push(trace_id);
            }
        }
    });
    drop(guard); // exports what is queued
    let received: HashSet<String> = collector
        .received()
        .iter()
        .flat_map(multiweb_tests::fake_collector::Received::spans)
        .map(|(trace, _)| trace)
        .collect();
    assert!(
        neighbours.iter().all(|t| received.contains(t)),
        "every neighbour arrived: {neighbours:?} in {received:?}"
    );
    assert!(!received.contains(&too_large), "the large span was sent");
    let metrics = capture.exposition();
    assert_eq!(
        metrics.value("multiweb_telemetry_spans_dropped_total", &[]),
        Some(1.0)
    );
}
