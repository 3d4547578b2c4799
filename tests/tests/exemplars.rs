//! Exemplars in the OpenMetrics answer, in-process: the HTTP layer's and the
//! business metrics', under `init`'s subscriber (built with
//! `build_dispatch`, so nothing is global but the exemplar slots, which each
//! test keeps apart by using routes and metrics of its own). The access
//! line of a request carries the ids its exemplar must have.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use multiweb_telemetry::business::{CounterVec, Histogram};
use multiweb_telemetry::http::TelemetryLayer;
use multiweb_telemetry::testing::MetricsCapture;
use multiweb_telemetry::{LabelValue, Telemetry, TelemetryBuilder, TraceSampler, business_metric};
use multiweb_tests::{ExemplarLine, LogBuffer, exemplars_in};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tower::ServiceExt;

/// Where an order came from; a closed set, so it can be a label.
#[derive(Clone, Copy, LabelValue)]
enum Channel {
    Web,
    Batch,
}

/// Orders placed in the exemplar tests
#[business_metric(labels(channel: Channel))]
static EXEMPLAR_TEST_ORDERS: CounterVec<Channel>;

/// Items per order in the exemplar tests
#[business_metric(buckets = [1.0, 5.0, 10.0])]
static EXEMPLAR_TEST_ITEMS: Histogram;

#[tracing::instrument]
async fn place_order(items: u32) {
    EXEMPLAR_TEST_ORDERS.increment(&Channel::Web);
    EXEMPLAR_TEST_ITEMS.record(f64::from(items));
    tracing::info!("order placed");
}

/// Routes under `/{prefix}`: `ok` (200), `fail` (500), `slow` (200 after
/// 30 ms) and `order` (200, records the business metrics in a span of its
/// own).
fn routes(prefix: &str) -> Router {
    Router::new()
        .route(&format!("/{prefix}/ok"), get(|| async { "ok" }))
        .route(
            &format!("/{prefix}/fail"),
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .route(
            &format!("/{prefix}/slow"),
            get(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                "slow"
            }),
        )
        .route(
            &format!("/{prefix}/order"),
            get(|| async {
                place_order(7).await;
                "ordered"
            }),
        )
}

/// What one run shows: the OpenMetrics answer and the log lines.
struct Run {
    openmetrics: String,
    logs: Vec<serde_json::Value>,
}

impl Run {
    /// The exemplars of the HTTP layer's series (the business metrics are
    /// process-wide: every capture shows them).
    fn exemplars(&self) -> Vec<ExemplarLine> {
        exemplars_in(&self.openmetrics)
            .into_iter()
            .filter(|e| e.sample.starts_with("http_"))
            .collect()
    }

    /// The exemplars on the series of `path`.
    fn of_path(&self, path: &str) -> Vec<ExemplarLine> {
        self.exemplars()
            .into_iter()
            .filter(|e| e.label("path") == Some(path))
            .collect()
    }

    /// The access lines of `path`, in order.
    fn access_lines(&self, path: &str) -> Vec<&serde_json::Value> {
        self.logs
            .iter()
            .filter(|l| l["target"] == "multiweb_telemetry::http" && l["url.path"] == path)
            .collect()
    }
}

/// Sends GET `paths` through `layer` around [`routes`]`(prefix)`, under the
/// dispatch `builder` makes (no exporter: spans are made, not sent) and a
/// local recorder.
fn run(builder: TelemetryBuilder, layer: TelemetryLayer, prefix: &str, paths: &[&str]) -> Run {
    let capture = MetricsCapture::new();
    let logs = LogBuffer::default();
    let (dispatch, guard) = builder.log_writer(logs.clone()).build_dispatch().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = routes(prefix).layer(layer);
    {
        let _metrics = capture.enter();
        let _dispatch = tracing::dispatcher::set_default(&dispatch);
        for path in paths {
            let uri = format!("/{prefix}/{path}");
            runtime.block_on(async {
                let request = Request::get(uri).body(Body::empty()).unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                response.into_body().collect().await.unwrap();
            });
        }
    }
    drop(runtime);
    drop(dispatch);
    drop(guard);
    Run {
        openmetrics: capture.render_openmetrics(),
        logs: logs.json(),
    }
}

/// The exemplars on `path`'s counter and bucket are those of `access`.
fn assert_linked(run: &Run, path: &str, access: &serde_json::Value) {
    let exemplars = run.of_path(path);
    assert_eq!(exemplars.len(), 2, "{path}: {exemplars:#?}");
    for exemplar in &exemplars {
        assert_eq!(exemplar.trace_id, access["trace_id"].as_str().unwrap());
        assert_eq!(exemplar.span_id, access["span_id"].as_str().unwrap());
        assert_eq!(
            exemplar.label("status"),
            Some(&*access["status"].to_string())
        );
        match exemplar.sample.as_str() {
            "http_requests_total" => assert_eq!(exemplar.value, 1.0),
            "http_request_duration_seconds_bucket" => {
                let duration = access["duration"].as_f64().unwrap();
                assert_eq!(exemplar.value, duration);
                let bound = multiweb_telemetry::DEFAULT_BUCKETS
                    .iter()
                    .copied()
                    .find(|bound| *bound >= duration)
                    .unwrap_or(f64::INFINITY);
                let le = exemplar.label("le").and_then(|le| le.parse::<f64>().ok());
                assert_eq!(le, Some(bound), "the bucket that counts it: {exemplar:?}");
            }
            other => panic!("an exemplar on {other}"),
        }
    }
}

fn always_on() -> TelemetryBuilder {
    Telemetry::builder().sampler(TraceSampler::AlwaysOn)
}

#[test]
fn sampled_requests_leave_their_ids_on_their_bucket_and_counter() {
    for (prefix, builder) in [
        ("bridged", always_on()),
        ("direct", always_on().bridge_request_spans(false)),
    ] {
        let run = run(
            builder,
            multiweb_telemetry::http::layer(),
            prefix,
            &["ok", "fail", "slow", "ok"],
        );
        for path in ["ok", "fail", "slow"] {
            let path = format!("/{prefix}/{path}");
            let lines = run.access_lines(&path);
            // Each bucket keeps one exemplar: the newest.
            let newest = lines.last().unwrap();
            assert_linked(&run, &path, newest);
        }
        let slow = &run.of_path(&format!("/{prefix}/slow"));
        assert!(
            slow.iter()
                .any(|e| e.value >= 0.03 && e.label("le") != Some("0.005")),
            "{slow:#?}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        for exemplar in run.exemplars() {
            assert!(
                (now - 60.0..=now).contains(&exemplar.timestamp),
                "recorded just now: {exemplar:?}"
            );
        }
    }
}

#[test]
fn unsampled_requests_leave_none_but_errors_kept_by_the_guides_rule_do() {
    let never = || Telemetry::builder().sampler(TraceSampler::ParentBasedTraceIdRatio(0.0));
    for (prefix, builder) in [
        ("held", never()),
        ("held-direct", never().bridge_request_spans(false)),
    ] {
        let run = run(
            builder,
            multiweb_telemetry::http::layer(),
            prefix,
            &["ok", "fail", "slow"],
        );
        assert!(run.of_path(&format!("/{prefix}/ok")).is_empty());
        assert!(run.of_path(&format!("/{prefix}/slow")).is_empty());
        let fail = format!("/{prefix}/fail");
        assert_linked(&run, &fail, run.access_lines(&fail)[0]);
    }

    // Without the rule, an unsampled error's trace is dropped too.
    let run = run(
        never().keep_error_traces(false),
        multiweb_telemetry::http::layer(),
        "dropped",
        &["ok", "fail"],
    );
    assert_eq!(run.exemplars(), [], "{}", run.openmetrics);
    assert_eq!(run.access_lines("/dropped/fail").len(), 1);
}

#[test]
fn the_metrics_only_layer_reads_no_context() {
    // A sampled span around the requests, which a layer with a span would
    // have as parent.
    let outer = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes([7; 16]),
        SpanId::from_bytes([7; 8]),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    ));
    let _attached = outer.attach();
    let run = run(
        always_on(),
        multiweb_telemetry::http::layer()
            .span(false)
            .access_log(false),
        "metrics-only",
        &["ok", "fail"],
    );
    assert!(run.openmetrics.contains(
        "http_requests_total{method=\"GET\",path=\"/metrics-only/ok\",status=\"200\"} 1\n"
    ));
    assert_eq!(run.exemplars(), [], "{}", run.openmetrics);
}

#[test]
fn business_metrics_keep_the_span_they_were_recorded_in() {
    let run = run(
        always_on(),
        multiweb_telemetry::http::layer(),
        "business",
        &["order"],
    );
    // Outside any span: counted, no exemplar.
    EXEMPLAR_TEST_ORDERS.increment(&Channel::Batch);
    let openmetrics = MetricsCapture::new().render_openmetrics();

    let handler = run
        .logs
        .iter()
        .find(|l| l["message"] == "order placed")
        .expect("the handler's line");
    let ours: Vec<ExemplarLine> = exemplars_in(&openmetrics)
        .into_iter()
        .filter(|e| e.sample.starts_with("multiweb_exemplar_test_"))
        .collect();
    let names: Vec<(&str, Option<&str>, Option<&str>)> = ours
        .iter()
        .map(|e| (e.sample.as_str(), e.label("channel"), e.label("le")))
        .collect();
    assert_eq!(
        names,
        [
            ("multiweb_exemplar_test_items_bucket", None, Some("10.0")),
            ("multiweb_exemplar_test_orders_total", Some("web"), None),
        ],
        "{openmetrics}"
    );
    for exemplar in &ours {
        assert_eq!(exemplar.trace_id, handler["trace_id"].as_str().unwrap());
        assert_eq!(
            exemplar.span_id,
            handler["span_id"].as_str().unwrap(),
            "the handler's span, not the request's"
        );
    }
    assert_eq!(ours[0].value, 7.0);
    assert_eq!(ours[1].value, 1.0);
    assert!(openmetrics.contains("multiweb_exemplar_test_orders_total{channel=\"batch\"} 1\n"));
}
