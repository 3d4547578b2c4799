//! The HTTP layer in-process, under a local `metrics` recorder and a local
//! subscriber (nothing global, so the tests run in parallel): the exact
//! series on `/metrics`, the access lines, and the request span under a
//! subscriber other than `init`'s.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use multiweb_telemetry::http::{TelemetryLayer, layer, panic_response, record_user_id};
use multiweb_telemetry::log::JsonLayer;
use multiweb_telemetry::testing::{Exposition, MetricsCapture};
use multiweb_tests::LogBuffer as Logs;
use tower::{Layer as _, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// A local recorder and a local subscriber: nothing global, tests run in parallel.
struct Harness {
    capture: MetricsCapture,
    logs: Logs,
}

impl Harness {
    fn new() -> Self {
        Self {
            capture: MetricsCapture::new(),
            logs: Logs::default(),
        }
    }

    async fn run<T>(&self, test: impl Future<Output = T>) -> T {
        let _metrics = self.capture.enter();
        let logs = self.logs.clone();
        let subscriber =
            tracing_subscriber::registry().with(JsonLayer::new().with_writer(move || logs.clone()));
        let _logs = tracing::subscriber::set_default(subscriber);
        test.await
    }

    fn metrics(&self) -> Exposition {
        self.capture.exposition()
    }
}

#[tracing::instrument(name = "list_products", skip_all, fields(page = 1_u64))]
async fn list_products(headers: axum::http::HeaderMap) -> &'static str {
    if let Some(id) = headers.get("x-user-id").and_then(|v| v.to_str().ok()) {
        record_user_id(id);
    }
    tracing::info!("listing products");
    "[]"
}

fn app(layer: TelemetryLayer) -> Router {
    with_layers(routes(), layer)
}

fn with_layers(routes: Router, layer: TelemetryLayer) -> Router {
    routes
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(layer)
}

fn routes() -> Router {
    Router::new()
        .route("/api/v1/products/", get(list_products))
        .route(
            "/api/v1/products/{id}",
            get(|| async { (StatusCode::NOT_FOUND, "no such product") }),
        )
        .route(
            "/api/v1/debug/error",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/api/v1/debug/panic",
            get(|| async {
                panic!("handler exploded");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/api/v1/debug/hang",
            get(std::future::pending::<&'static str>),
        )
        .route("/metrics", get(|| async { "metrics" }))
}

async fn send(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn count(metrics: &Exposition, path: &str, status: &str) -> Option<f64> {
    metrics.value(
        "http_requests_total",
        &[("method", "GET"), ("path", path), ("status", status)],
    )
}

#[tokio::test]
async fn scripted_requests_give_exact_series() {
    let h = Harness::new();
    h.run(async {
        let app = app(layer());
        assert_eq!(send(&app, "GET", "/api/v1/products/", &[]).await.0, 200);
        assert_eq!(
            send(&app, "GET", "/api/v1/products/?page=2", &[]).await.0,
            200
        );
        assert_eq!(send(&app, "GET", "/api/v1/products/7", &[]).await.0, 404);
        assert_eq!(send(&app, "GET", "/no/such/route", &[]).await.0, 404);
        assert_eq!(send(&app, "GET", "/api/v1/debug/error", &[]).await.0, 500);
        assert_eq!(send(&app, "GET", "/api/v1/debug/panic", &[]).await.0, 500);
        assert_eq!(send(&app, "GET", "/metrics", &[]).await.0, 200);

        // A request dropped before its response: in flight while pending, then not.
        let hang = app.clone().oneshot(
            Request::get("/api/v1/debug/hang")
                .body(Body::empty())
                .unwrap(),
        );
        let mut hang = Box::pin(hang);
        let polled = std::future::poll_fn(|cx| Poll::Ready(hang.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        let in_flight = h.metrics().value(
            "http_requests_in_flight",
            &[("method", "GET"), ("path", "/api/v1/debug/hang")],
        );
        assert_eq!(in_flight, Some(1.0));
        drop(hang);
    })
    .await;

    let m = h.metrics();
    assert_eq!(m.type_of("http_requests_total"), Some("counter"));
    assert_eq!(
        m.type_of("http_request_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(m.type_of("http_requests_in_flight"), Some("gauge"));
    assert_eq!(count(&m, "/api/v1/products/", "200"), Some(2.0));
    assert_eq!(count(&m, "/api/v1/products/{id}", "404"), Some(1.0));
    assert_eq!(count(&m, "unmatched", "404"), Some(1.0));
    assert_eq!(count(&m, "/api/v1/debug/error", "500"), Some(1.0));
    assert_eq!(count(&m, "/api/v1/debug/panic", "500"), Some(1.0));
    assert_eq!(
        m.find("http_requests_total", &[]).count(),
        5,
        "no other series"
    );
    assert!(
        m.find("http_requests_total", &[("path", "/metrics")])
            .next()
            .is_none()
    );
    assert!(
        m.find("http_requests_total", &[("path", "/api/v1/debug/hang")])
            .next()
            .is_none()
    );

    let bucket = |le| {
        m.value(
            "http_request_duration_seconds_bucket",
            &[("path", "/api/v1/products/"), ("status", "200"), ("le", le)],
        )
    };
    assert_eq!(bucket("0.5"), Some(2.0));
    assert_eq!(bucket("1"), Some(2.0));
    assert_eq!(bucket("+Inf"), Some(2.0));
    assert_eq!(
        m.value(
            "http_request_duration_seconds_count",
            &[("path", "/api/v1/products/{id}"), ("status", "404")]
        ),
        Some(1.0)
    );
    for sample in m.find("http_requests_in_flight", &[]) {
        assert_eq!(sample.value, 0.0, "{sample:?}");
    }
}

#[tokio::test]
async fn duration_and_in_flight_cover_the_whole_body() {
    let h = Harness::new();
    h.run(async {
        let app = app(layer());
        let response = app
            .clone()
            .oneshot(
                Request::get("/api/v1/products/")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let m = h.metrics();
        let labels = [("method", "GET"), ("path", "/api/v1/products/")];
        assert_eq!(m.value("http_requests_in_flight", &labels), Some(1.0));
        assert_eq!(
            count(&m, "/api/v1/products/", "200"),
            None,
            "not counted before the body is sent"
        );
        let _ = response.into_body().collect().await.unwrap();
        let m = h.metrics();
        assert_eq!(m.value("http_requests_in_flight", &labels), Some(0.0));
        assert_eq!(count(&m, "/api/v1/products/", "200"), Some(1.0));
    })
    .await;
}

#[tokio::test]
async fn service_errors_count_as_500() {
    let h = Harness::new();
    h.run(async {
        let failing = tower::service_fn(|_: Request<Body>| async {
            Err::<axum::http::Response<Body>, _>(io::Error::other("backend unreachable"))
        });
        let service = layer()
            .route_classifier(|_, _| Some(Cow::Borrowed("/rpc")))
            .layer(failing);
        let err = service
            .oneshot(Request::get("/rpc").body(Body::empty()).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "backend unreachable");
    })
    .await;
    assert_eq!(count(&h.metrics(), "/rpc", "500"), Some(1.0));
    let access = h.logs.access_lines();
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["level"], "error");
    assert_eq!(access[0]["error"], "backend unreachable");
}

#[tokio::test]
async fn random_urls_create_no_more_series_than_the_cap() {
    let h = Harness::new();
    let cap = 100;
    h.run(async {
        // Worst case: a classifier that returns raw paths.
        let raw = app(layer()
            .max_series(cap)
            .route_classifier(|_, uri| Some(Cow::Owned(uri.path().to_owned()))));
        let default = app(layer());
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..100_000_u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let uri = format!("/u/{seed:x}/{i}");
            let target = if i % 2 == 0 { &raw } else { &default };
            let method = if i % 3 == 0 { "PROPFIND" } else { "GET" };
            send(target, method, &uri, &[]).await;
        }
    })
    .await;
    let m = h.metrics();
    let paths: std::collections::BTreeSet<_> = m
        .find("http_requests_total", &[])
        .map(|s| s.label("path").unwrap().to_owned())
        .collect();
    assert!(
        paths.contains("unmatched") && paths.contains("overflow"),
        "{paths:?}"
    );
    let sets = m.find("http_requests_total", &[]).count();
    // The raw layer's cap, plus its overflow series (2 methods), plus the
    // default layer's `unmatched` (2 methods).
    assert!(sets <= cap + 2 + 2, "{sets} label sets");
    let methods: std::collections::BTreeSet<_> = m
        .find("http_requests_total", &[])
        .map(|s| s.label("method").unwrap().to_owned())
        .collect();
    assert_eq!(methods, ["GET", "_OTHER"].map(str::to_owned).into());
    let overflowed = m
        .value("multiweb_telemetry_http_series_overflow_total", &[])
        .unwrap();
    assert!(overflowed >= 50_000.0 - cap as f64, "{overflowed}");
    assert!(m.find("http_requests_in_flight", &[]).count() <= cap + 2 + 2);
}

#[tokio::test]
async fn access_log_lines_match_the_guide_queries() {
    let h = Harness::new();
    h.run(async {
        let app = app(layer());
        let secret_headers = [
            ("authorization", "Bearer sekret-token-1"),
            ("cookie", "session=sekret-cookie-2"),
            ("x-user-id", "123"),
        ];
        send(
            &app,
            "GET",
            "/api/v1/products/?token=sekret-query-3",
            &secret_headers,
        )
        .await;
        send(&app, "GET", "/api/v1/products/7", &[]).await;
        send(&app, "GET", "/api/v1/debug/error", &[]).await;
        send(&app, "GET", "/api/v1/debug/panic", &[]).await;
    })
    .await;

    let raw = h.logs.raw_lines().join("\n");
    for secret in [
        "sekret-token-1",
        "sekret-cookie-2",
        "sekret-query-3",
        "token=",
    ] {
        assert!(!raw.contains(secret), "{secret} leaked:\n{raw}");
    }

    let access = h.logs.access_lines();
    assert_eq!(access.len(), 4, "one line per request:\n{raw}");
    let ok = access[0].as_object().unwrap();
    assert_eq!(ok["level"], "info");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/api/v1/products/");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["user_id"], "123");
    let duration = ok["duration"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&duration));
    assert_eq!(
        ok["message"],
        format!("GET /api/v1/products/ status=200 duration={duration:.3}")
    );
    assert_eq!(access[1]["level"], "warn");
    assert_eq!(access[1]["status"], 404);
    assert_eq!(access[2]["level"], "error");
    assert_eq!(access[3]["level"], "error");
    assert_eq!(access[3]["status"], 500);

    // The handler's own line carries the request's fields too.
    let handler = h
        .logs
        .json()
        .into_iter()
        .find(|l| l["message"] == "listing products")
        .unwrap();
    assert_eq!(handler["user_id"], "123");
    assert_eq!(handler["http.route"], "/api/v1/products/");
    assert_eq!(handler["page"], 1);

    // `|~ "status=[45][0-9]{2}"` on raw lines selects the 404 and the two 500s.
    let status_filter = h
        .logs
        .raw_lines()
        .into_iter()
        .filter(|l| {
            l.match_indices("status=").any(|(i, _)| {
                let code = l.as_bytes().get(i + 7..i + 10).unwrap_or_default();
                code.len() == 3
                    && matches!(code[0], b'4' | b'5')
                    && code[1..].iter().all(u8::is_ascii_digit)
            })
        })
        .count();
    assert_eq!(status_filter, 3);
    // `| json | level="error"` selects the two 5xx access lines; the
    // panic's line carries the panic message.
    let errors: Vec<_> = h
        .logs
        .json()
        .into_iter()
        .filter(|l| l["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[1]["message"].as_str().unwrap().split(' ').nth(1),
        Some("/api/v1/debug/panic")
    );
    assert_eq!(errors[1]["error"], "handler exploded");
    assert!(
        errors[0].get("error").is_none(),
        "no error text on a plain 500: {:?}",
        errors[0]
    );
    // `| json | status=~"2.."` selects the one success.
    let successes = access
        .iter()
        .filter(|l| l["status"].to_string().starts_with('2'))
        .count();
    assert_eq!(successes, 1);
}

/// Under a subscriber other than `init`'s, the `tracing` span carries
/// what another `tracing-opentelemetry` bridge needs (`otel.*` fields).
#[tokio::test]
async fn request_span_has_http_attributes_and_handler_spans_are_children() {
    /// `(name, parent name, fields)` of every span.
    type SpanRecord = (String, Option<String>, Vec<(String, String)>);
    #[derive(Clone, Default)]
    struct Spans(Arc<Mutex<Vec<SpanRecord>>>);
    struct Fields<'a>(&'a mut Vec<(String, String)>);
    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push((
                field.name().to_owned(),
                format!("{value:?}").trim_matches('"').to_owned(),
            ));
        }
    }
    impl<S> tracing_subscriber::Layer<S> for Spans
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let span = ctx.span(id).unwrap();
            let mut fields = Vec::new();
            attrs.record(&mut Fields(&mut fields));
            let parent = span.parent().map(|p| p.name().to_owned());
            self.0
                .lock()
                .unwrap()
                .push((span.name().to_owned(), parent, fields));
        }
        fn on_record(
            &self,
            id: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let name = ctx.span(id).unwrap().name();
            let mut spans = self.0.lock().unwrap();
            let entry = spans.iter_mut().rev().find(|s| s.0 == name).unwrap();
            values.record(&mut Fields(&mut entry.2));
        }
    }

    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let app = app(layer());
    send(
        &app,
        "GET",
        "/api/v1/products/?secret=1",
        &[("x-user-id", "9")],
    )
    .await;
    send(&app, "GET", "/api/v1/debug/error", &[]).await;

    let spans = spans.0.lock().unwrap().clone();
    let field = |i: usize, name: &str| {
        spans[i]
            .2
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(spans[0].0, "HTTP request");
    assert_eq!(spans[0].1, None, "the request span is a root");
    assert_eq!(
        field(0, "otel.name").as_deref(),
        Some("GET /api/v1/products/")
    );
    assert_eq!(field(0, "otel.kind").as_deref(), Some("server"));
    assert_eq!(field(0, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(field(0, "http.route").as_deref(), Some("/api/v1/products/"));
    assert_eq!(field(0, "url.path").as_deref(), Some("/api/v1/products/"));
    assert_eq!(
        field(0, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(field(0, "user_id").as_deref(), Some("9"));
    assert_eq!(field(0, "otel.status_code"), None);
    assert_eq!(spans[1].0, "list_products");
    assert_eq!(
        spans[1].1.as_deref(),
        Some("HTTP request"),
        "handler span is a child"
    );
    assert_eq!(spans[2].0, "HTTP request");
    assert_eq!(
        field(2, "http.response.status_code").as_deref(),
        Some("500")
    );
    assert_eq!(field(2, "otel.status_code").as_deref(), Some("ERROR"));
}

#[tokio::test]
async fn parts_can_be_switched_off() {
    let h = Harness::new();
    h.run(async {
        let app = app(layer().access_log(false).span(false));
        send(&app, "GET", "/api/v1/products/", &[]).await;
        let quiet = app_with_metrics_off();
        send(&quiet, "GET", "/api/v1/products/7", &[]).await;
    })
    .await;
    let access = h.logs.access_lines();
    assert_eq!(
        access.len(),
        1,
        "only the layer with the access log on writes"
    );
    assert_eq!(access[0]["status"], 404);
    let m = h.metrics();
    assert_eq!(count(&m, "/api/v1/products/", "200"), Some(1.0));
    assert_eq!(count(&m, "/api/v1/products/{id}", "404"), None);
}

fn app_with_metrics_off() -> Router {
    app(layer().metrics(false))
}
