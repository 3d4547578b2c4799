//! The HTTP layer: RED metrics, a request span and an access log line per request.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! let app: Router = Router::new()
//!     .route("/api/v1/products/", get(|| async { "[]" }))
//!     .layer(multiweb_telemetry::http::layer());
//! ```
//!
//! [`TelemetryLayer`] works on any `tower::Service<http::Request<B>>`
//! returning `http::Response<B2>`: axum, hyper, tonic.
//!
//! # Metrics
//!
//! | series | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `method`, `path`, `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `path`, `status` |
//! | `http_requests_in_flight` | gauge | `method`, `path` |
//!
//! - `path` is the route template (axum's `MatchedPath`, e.g.
//!   `/api/v1/products/{id}`), or what a
//!   [`route_classifier`](TelemetryLayer::route_classifier) returns; never
//!   the raw URI. Requests that match no route share `path="unmatched"`
//!   ([`UNMATCHED_PATH`]).
//! - `method` is one of the nine standard methods, or `_OTHER`.
//! - `status` is the three-digit code. A service error, or a handler panic
//!   that unwinds through the layer, counts as `500`; so does a panic turned
//!   into a 500 by `tower_http::catch_panic` inside the layer.
//! - The duration runs from the request's arrival until the response body
//!   has been sent in full, or dropped. A request dropped before it has a
//!   response (the client went away) leaves `http_requests_in_flight` and is
//!   not counted.
//! - Label sets are capped ([`TelemetryLayer::max_series`]); past the cap,
//!   requests are recorded under `path="overflow"` ([`OVERFLOW_PATH`]) and
//!   counted in `multiweb_telemetry_http_series_overflow_total`.
//! - Requests to excluded paths (by default `/metrics`) are not recorded.
//!
//! # Span
//!
//! Each request gets an OpenTelemetry SERVER span named `METHOD route`, with
//! the HTTP semantic-convention attributes `http.request.method`,
//! `http.route`, `url.path` (without the query string) and
//! `http.response.status_code`; a 5xx sets its status to Error. Its `tracing`
//! side is an `INFO` span named `HTTP request` (target
//! `multiweb_telemetry::http`), which carries the same fields into the log
//! lines; `user_id` and `error` recorded on it (see [`record_user_id`]) become
//! span attributes too. The inner service is called and polled inside both,
//! so spans the handler opens are children of the request span.
//!
//! The span ends when the response body has been sent in full (or dropped),
//! as `http_request_duration_seconds` measures, not when the handler
//! returns: a streamed response's span covers the stream.
//!
//! With the SDK disabled (`OTEL_SDK_DISABLED=true`) there is no
//! OpenTelemetry span: the `tracing` span and its log fields stay, and an
//! incoming `traceparent` is the request's context as it came (its ids on
//! the request's log lines, passed on by
//! [`trace::inject_context`](crate::trace::inject_context)).
//!
//! Under [`init`](crate::init)'s subscriber with JSON logs, the layer starts
//! the OpenTelemetry span itself, which costs a fraction of building it from
//! the `tracing` span's fields, and the bridge does not see the request's
//! `tracing` span. What that changes for the handler's code:
//!
//! - spans it opens inside the request (`#[instrument]`, `info_span!`, tasks
//!   spawned with `.in_current_span()`) are the request span's children, as
//!   before; a span given the request span as an *explicit* parent
//!   (`info_span!(parent: &request_span, ..)`) starts a new trace instead:
//!   open it inside the request span;
//! - `tracing_opentelemetry::OpenTelemetrySpanExt` methods called on the
//!   request span itself (`Span::current().context()` directly in the
//!   handler, `set_attribute`, `set_parent`) do not reach it: use
//!   [`trace::current_context`](crate::trace::current_context) and
//!   [`trace::inject_context`](crate::trace::inject_context), and record
//!   `user_id`, `error` or `otel.status_code` on the span, which are copied
//!   to it; on the handler's own spans they work as usual;
//! - log lines inside the request carry `http.request.method`, `http.route`
//!   and `url.path`, but not `http.response.status_code` (the access line
//!   has `status`).
//!
//! With the pretty log format,
//! [`bridge_request_spans`](crate::TelemetryBuilder::bridge_request_spans),
//! or under another subscriber with a `tracing-opentelemetry` bridge, the
//! bridge makes the span from the
//! `tracing` span, whose `otel.name`, `otel.kind` and `otel.status_code`
//! fields steer it.
//!
//! # Access log
//!
//! When the response completes, one event with target
//! `multiweb_telemetry::http` and the fields `method`, `path` (the request
//! path, without the query string), `status`, `duration` (seconds) and, on
//! failures, `error`; its message reads
//! `GET /api/v1/products/ status=200 duration=0.003`. It is a child of the
//! request span, so the JSON log line also carries the span's fields, such
//! as `user_id` (see [`record_user_id`]). The level is `info`, `warn` for
//! 4xx and `error` for 5xx ([`TelemetryLayer::access_log_levels`]).
//!
//! Under [`init`](crate::init)'s subscriber with JSON logs, whose only
//! consumer of events is the JSON formatter, the layer writes that line to
//! the formatter's writer itself once `RUST_LOG` lets the event through: the
//! same bytes, without passing the event through every layer.
//!
//! No header value is recorded anywhere, so `Authorization`, `Cookie` and
//! `Set-Cookie` never reach a label, an attribute or a log line.

mod body;
mod future;
mod labels;
mod layer;
mod request;
mod series;
mod service;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use labels::{OTHER_METHOD, OVERFLOW_PATH, UNMATCHED_PATH};
pub use layer::{DEFAULT_MAX_SERIES, TelemetryLayer};
pub use series::{REQUEST_DURATION, REQUESTS_IN_FLIGHT, REQUESTS_TOTAL, SERIES_OVERFLOW_TOTAL};
pub use service::TelemetryService;

pub(crate) use labels::METHODS;

use tracing::field::Value;
use tracing_subscriber::registry::LookupSpan;

/// Whether `meta` is the callsite of the layer's request spans.
pub(crate) fn is_request_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.name() == request::SPAN_NAME && meta.target() == request::TARGET
}

/// A [`TelemetryLayer`] with the default settings.
pub fn layer() -> TelemetryLayer {
    TelemetryLayer::new()
}

/// Records `user_id` on the current request's span, so it appears on the
/// access log line and on every log line of the request.
///
/// Call it anywhere inside the handler (or a span it opened). It finds the
/// request span among the current span's ancestors; with a subscriber that
/// is not built on `tracing_subscriber::Registry`, it records on the current
/// span instead.
///
/// ```no_run
/// async fn handler(headers: axum::http::HeaderMap) -> &'static str {
///     if let Some(id) = headers.get("x-user-id").and_then(|v| v.to_str().ok()) {
///         multiweb_telemetry::http::record_user_id(id);
///     }
///     "ok"
/// }
/// ```
pub fn record_user_id(user_id: &str) {
    record_on_request_span("user_id", user_id);
}

/// Answers a handler panic caught by tower-http's `CatchPanicLayer`: a 500
/// with a generic JSON body (the panic message is not shown to clients),
/// and the panic message recorded as `error` on the request span, so the
/// request's one access log line (level `error`) carries it.
///
/// ```no_run
/// # let app: axum::Router = axum::Router::new();
/// let app = app
///     .layer(tower_http::catch_panic::CatchPanicLayer::custom(
///         multiweb_telemetry::http::panic_response,
///     ))
///     .layer(multiweb_telemetry::http::layer());
/// ```
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature `CatchPanicLayer::custom` calls"
)]
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> http::Response<String> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the handler panicked".to_owned());
    record_on_request_span("error", &message);
    let mut response = http::Response::new(r#"{"error":"internal server error"}"#.to_owned());
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Records `value` as `field` on the current request's span (found among
/// the current span's ancestors), or on the current span when the
/// subscriber is not built on `tracing_subscriber::Registry`.
fn record_on_request_span(field_name: &str, value: &str) {
    let recorded = tracing::dispatcher::get_default(|dispatch| {
        // Inside `get_default`, `Span::current()` would not see `dispatch`:
        // ask it directly.
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return false;
        };
        let Some(current) = dispatch.current_span().id().cloned() else {
            return true;
        };
        let Some(span) = registry.span(&current) else {
            return true;
        };
        for ancestor in span.scope() {
            let meta = ancestor.metadata();
            if !is_request_span(meta) {
                continue;
            }
            if let Some(field) = meta.fields().field(field_name) {
                let values = [(&field, Some(&value as &dyn Value))];
                let values = meta.fields().value_set(&values);
                dispatch.record(&ancestor.id(), &tracing::span::Record::new(&values));
            }
            break;
        }
        true
    });
    if !recorded {
        tracing::Span::current().record(field_name, value);
    }
}

#[cfg(test)]
mod tests {
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
    use tower::{Layer as _, ServiceExt};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::log::JsonLayer;
    use crate::testing::{Exposition, MetricsCapture};

    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        fn raw_lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(str::to_owned).collect()
        }

        fn json(&self) -> Vec<serde_json::Value> {
            self.raw_lines()
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }

        fn access_lines(&self) -> Vec<serde_json::Value> {
            self.json()
                .into_iter()
                .filter(|l| l["target"] == "multiweb_telemetry::http")
                .collect()
        }
    }

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
            let subscriber = tracing_subscriber::registry()
                .with(JsonLayer::new().with_writer(move || logs.clone()));
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

    async fn send(
        app: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
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
                Err::<http::Response<Body>, _>(io::Error::other("backend unreachable"))
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

    /// Collects what the SDK exports, synchronously.
    #[derive(Clone, Debug, Default)]
    struct Exported(Arc<Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Exported {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    impl Exported {
        fn span(&self, name: &str) -> opentelemetry_sdk::trace::SpanData {
            let spans = self.0.lock().unwrap();
            let found = spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
            assert_eq!(found.len(), 1, "one span {name} in {spans:#?}");
            found[0].clone()
        }
    }

    fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    /// `init`'s OpenTelemetry layers and JSON layer, set as the default for
    /// the calling thread, exporting into the returned [`Exported`]; the app
    /// has four more routes: one answering the `traceparent` an outgoing call
    /// would carry, one answering `current_context()`'s ids, one opening a
    /// span in a task spawned `.in_current_span()`,
    /// one marking its span Error as the bridge's `otel.status_code`
    /// convention does.
    fn init_like(direct: bool) -> (Exported, Logs, tracing::subscriber::DefaultGuard, Router) {
        use opentelemetry::trace::TracerProvider as _;

        let exported = Exported::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(crate::log::otel_layers(
                Some(provider.tracer("test")),
                direct.then(|| {
                    let logs = logs.clone();
                    let sink: crate::log::LineSink = Arc::new(move |line: &[u8]| {
                        logs.0.lock().unwrap().extend_from_slice(line);
                    });
                    sink
                }),
            ))
            .with(JsonLayer::new().with_writer(move || writer.clone()));
        let default = tracing::subscriber::set_default(subscriber);
        let routes = routes()
            .route(
                "/api/v1/outgoing",
                get(|| async {
                    let mut headers = http::HeaderMap::new();
                    crate::trace::inject_context(&mut headers);
                    headers
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                }),
            )
            .route(
                "/api/v1/ids",
                get(|| async {
                    use opentelemetry::trace::TraceContextExt as _;
                    let cx = crate::trace::current_context();
                    let ids = cx.span().span_context().clone();
                    format!("{}-{}", ids.trace_id(), ids.span_id())
                }),
            )
            .route(
                "/api/v1/spawned",
                get(|| async {
                    use tracing::Instrument as _;
                    let task = async {
                        let _span = tracing::info_span!("background").entered();
                    };
                    tokio::spawn(task.in_current_span()).await.unwrap();
                    ""
                }),
            )
            .route(
                "/api/v1/flagged",
                get(|| async {
                    tracing::Span::current().record("otel.status_code", "ERROR");
                    ""
                }),
            );
        (exported, logs, default, with_layers(routes, layer()))
    }

    /// Under `init`'s subscriber the layer starts the request's OpenTelemetry
    /// span itself: same attributes, parentage and ids as through the bridge.
    #[tokio::test]
    async fn with_inits_subscriber_the_layer_exports_the_request_span_itself() {
        use opentelemetry::trace::{SpanKind, Status};

        let (exported, logs, _default, app) = init_like(true);
        send(
            &app,
            "GET",
            "/api/v1/products/?secret=1",
            &[("x-user-id", "9")],
        )
        .await;
        let names: Vec<_> = exported
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(
            names,
            ["list_products", "GET /api/v1/products/"],
            "one span per request, made once (the bridge does not see it)"
        );
        let server = exported.span("GET /api/v1/products/");
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(server.parent_span_id, opentelemetry::trace::SpanId::INVALID);
        assert_eq!(
            attribute(&server, "http.request.method").as_deref(),
            Some("GET")
        );
        assert_eq!(
            attribute(&server, "http.route").as_deref(),
            Some("/api/v1/products/")
        );
        assert_eq!(
            attribute(&server, "url.path").as_deref(),
            Some("/api/v1/products/")
        );
        assert_eq!(
            attribute(&server, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(attribute(&server, "user_id").as_deref(), Some("9"));
        assert_eq!(server.status, Status::Unset);
        assert!(
            server
                .attributes
                .iter()
                .all(|kv| !kv.key.as_str().starts_with("otel.")),
            "{:?}",
            server.attributes
        );
        let handler = exported.span("list_products");
        assert_eq!(handler.parent_span_id, server.span_context.span_id());
        assert_eq!(
            handler.span_context.trace_id(),
            server.span_context.trace_id()
        );
        // The log lines carry the exported ids: the handler's in its span,
        // the access line in the request span.
        let trace_id = server.span_context.trace_id().to_string();
        let lines = logs.json();
        let handler_line = lines
            .iter()
            .find(|l| l["message"] == "listing products")
            .unwrap();
        assert_eq!(handler_line["trace_id"], trace_id.as_str());
        assert_eq!(
            handler_line["span_id"],
            handler.span_context.span_id().to_string().as_str()
        );
        let access = logs.access_lines();
        assert_eq!(access[0]["trace_id"], trace_id.as_str());
        assert_eq!(
            access[0]["span_id"],
            server.span_context.span_id().to_string().as_str()
        );
        assert_eq!(access[0]["user_id"], "9");
        // The request's attributes are fields of every line inside it.
        for line in [handler_line, &access[0]] {
            assert_eq!(line["http.request.method"], "GET", "{line}");
            assert_eq!(line["http.route"], "/api/v1/products/", "{line}");
            assert_eq!(line["url.path"], "/api/v1/products/", "{line}");
        }
    }

    /// Later requests of a route share what its first one made (span name,
    /// `http.route` value, log fields); another method has its own.
    #[tokio::test]
    async fn later_requests_of_a_route_share_its_name_and_fields() {
        use opentelemetry::trace::SpanKind;

        let (exported, logs, _default, app) = init_like(true);
        send(&app, "GET", "/api/v1/products/", &[]).await;
        send(&app, "GET", "/api/v1/products/?page=2", &[]).await;
        send(&app, "POST", "/api/v1/products/", &[]).await;
        let spans = exported.0.lock().unwrap().clone();
        let servers: Vec<_> = spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Server)
            .collect();
        let names: Vec<_> = servers.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "GET /api/v1/products/",
                "GET /api/v1/products/",
                "POST /api/v1/products/"
            ]
        );
        for (server, method) in servers.iter().zip(["GET", "GET", "POST"]) {
            for (key, value) in [
                ("http.request.method", method),
                ("http.route", "/api/v1/products/"),
                ("url.path", "/api/v1/products/"),
            ] {
                assert_eq!(attribute(server, key).as_deref(), Some(value), "{key}");
            }
        }
        let access = logs.access_lines();
        assert_eq!(access.len(), 3);
        for (line, method) in access.iter().zip(["GET", "GET", "POST"]) {
            assert_eq!(line["http.request.method"], method, "{line}");
            assert_eq!(line["http.route"], "/api/v1/products/", "{line}");
            assert_eq!(line["url.path"], "/api/v1/products/", "{line}");
        }
    }

    /// A continued trace, a 5xx, a panic's message, the bridge's
    /// `otel.status_code` convention, and an outgoing call's traceparent,
    /// with the layer starting the request spans itself.
    #[tokio::test]
    async fn with_inits_subscriber_status_parent_and_propagation_are_kept() {
        use opentelemetry::trace::Status;

        let (exported, _logs, _default, app) = init_like(true);
        let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        send(
            &app,
            "GET",
            "/api/v1/debug/error",
            &[("traceparent", remote)],
        )
        .await;
        let error = exported.span("GET /api/v1/debug/error");
        assert_eq!(
            error.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(error.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(error.parent_span_is_remote);
        assert_eq!(error.status, Status::error(""));
        assert_eq!(
            attribute(&error, "http.response.status_code").as_deref(),
            Some("500")
        );

        send(&app, "GET", "/api/v1/debug/panic", &[]).await;
        let panicked = exported.span("GET /api/v1/debug/panic");
        assert_eq!(panicked.status, Status::error(""));
        assert_eq!(
            attribute(&panicked, "error").as_deref(),
            Some("handler exploded")
        );

        send(&app, "GET", "/api/v1/flagged", &[]).await;
        assert_eq!(
            exported.span("GET /api/v1/flagged").status,
            Status::error("")
        );

        let (_, ids) = send(&app, "GET", "/api/v1/ids", &[]).await;
        let ids_span = exported.span("GET /api/v1/ids");
        assert_eq!(
            ids,
            format!(
                "{}-{}",
                ids_span.span_context.trace_id(),
                ids_span.span_context.span_id()
            ),
            "current_context() in a handler is the request span's"
        );

        send(&app, "GET", "/api/v1/spawned", &[]).await;
        let spawner = exported.span("GET /api/v1/spawned");
        assert_eq!(
            exported.span("background").parent_span_id,
            spawner.span_context.span_id(),
            "a span opened in a task spawned `.in_current_span()` is the request's child"
        );

        let (_, traceparent) = send(&app, "GET", "/api/v1/outgoing", &[]).await;
        let outgoing = exported.span("GET /api/v1/outgoing");
        assert_eq!(
            traceparent,
            format!(
                "00-{}-{}-01",
                outgoing.span_context.trace_id(),
                outgoing.span_context.span_id()
            ),
            "the request span is the outgoing call's parent"
        );
    }

    /// With the SDK disabled (`OTEL_SDK_DISABLED=true`) no OpenTelemetry span
    /// exists: a request without `traceparent` and lines outside requests
    /// carry no ids and propagate nothing; an incoming `traceparent` passes
    /// through unchanged (its ids on the request's lines, and on to the
    /// calls it makes), as the OpenTelemetry API does without an SDK. The
    /// access line is the same as with the SDK on, but for the ids.
    #[tokio::test]
    async fn with_the_sdk_disabled_no_span_exists_and_a_traceparent_passes_through() {
        use opentelemetry::trace::TraceContextExt as _;

        let logs = Logs::default();
        let (dispatch, guard) = crate::Telemetry::builder()
            .log_writer(logs.clone())
            .disabled(true)
            .build_dispatch()
            .unwrap();
        let default = tracing::dispatcher::set_default(&dispatch);
        let app = with_layers(
            routes().route(
                "/api/v1/outgoing",
                get(|| async {
                    let mut headers = http::HeaderMap::new();
                    // In a span of the handler's own, which no bridge sees.
                    tracing::info_span!("call").in_scope(|| {
                        crate::trace::inject_context(&mut headers);
                        tracing::info!("calling out");
                    });
                    headers
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                }),
            ),
            layer(),
        );
        let (trace_id, caller) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
        let parent = format!("00-{trace_id}-{caller}-01");
        let (_, sent) = send(&app, "GET", "/api/v1/outgoing", &[("traceparent", &parent)]).await;
        assert_eq!(sent, parent, "the caller's context, unchanged");
        let (_, sent) = send(&app, "GET", "/api/v1/outgoing", &[]).await;
        assert_eq!(sent, "", "no context to propagate");
        send(&app, "GET", "/api/v1/products/", &[("x-user-id", "7")]).await;
        tracing::info_span!("job").in_scope(|| {
            let cx = crate::trace::current_context();
            assert!(!cx.span().span_context().is_valid());
            tracing::info!("inside a job");
        });
        drop(default);
        drop(guard); // writes out the buffered lines
        let lines = logs.json();
        assert_eq!(lines.len(), 7, "{lines:#?}");
        for line in &lines {
            let keys = line.as_object().unwrap().keys();
            let ours =
                |key: &&String| key.starts_with("otel.") || *key == "http.response.status_code";
            assert_eq!(keys.filter(ours).count(), 0, "{line}");
        }
        let (traced, untraced) = lines.split_at(2);
        for line in traced {
            assert_eq!(line["trace_id"], trace_id, "{line}");
            assert_eq!(line["span_id"], caller, "{line}");
        }
        for line in untraced {
            assert!(line.get("trace_id").is_none(), "{line}");
            assert!(line.get("span_id").is_none(), "{line}");
        }
        let access = logs.access_lines();
        assert_eq!(access.len(), 3, "{access:#?}");
        assert_eq!(access[2]["status"], 200);
        assert_eq!(access[2]["user_id"], "7");
        assert_eq!(access[2]["http.route"], "/api/v1/products/");
        let handler = lines
            .iter()
            .find(|l| l["message"] == "listing products")
            .expect("the handler's line");
        assert_eq!(handler["http.route"], "/api/v1/products/");
        assert_eq!(handler["user_id"], "7");
    }

    /// Under `init`'s subscriber the access line is written without an
    /// event, and `RUST_LOG` still decides: a level it filters out writes
    /// nothing, one it lets through writes the line with its ids.
    #[tokio::test]
    async fn with_inits_subscriber_the_log_filter_still_decides_access_lines() {
        let logs = Logs::default();
        let (dispatch, guard) = crate::Telemetry::builder()
            .log_writer(logs.clone())
            .log_filter("info")
            .build_dispatch()
            .unwrap();
        let default = tracing::dispatcher::set_default(&dispatch);
        assert!(crate::trace::request::is_installed());
        let app = app(layer().access_log_levels(
            tracing::Level::DEBUG,
            tracing::Level::WARN,
            tracing::Level::ERROR,
        ));
        send(&app, "GET", "/api/v1/products/", &[]).await;
        send(&app, "GET", "/api/v1/products/7", &[]).await;
        drop(default);
        drop(guard); // writes out the buffered lines
        let access = logs.access_lines();
        assert_eq!(access.len(), 1, "{access:#?}");
        assert_eq!(access[0]["status"], 404);
        assert_eq!(access[0]["level"], "warn");
        assert_eq!(access[0]["trace_id"].as_str().map(str::len), Some(32));
        let handler = logs
            .json()
            .into_iter()
            .find(|l| l["message"] == "listing products")
            .expect("the handler's line of the first request");
        assert_eq!(handler["http.route"], "/api/v1/products/");
    }

    /// Writing the access line without dispatching an event must leave no
    /// per-layer filter state behind (an `enabled!` check records which
    /// filters said no, and only a dispatched event clears that): the
    /// spans opened next on the same thread (here a job between requests,
    /// and the next requests' handler spans) are exported and parented.
    /// And log events never reach the bridge as span events.
    #[tokio::test]
    async fn spans_after_an_access_line_are_all_exported() {
        let (exported, logs, _default, app) = init_like(true);
        for _ in 0..3 {
            send(&app, "GET", "/api/v1/products/", &[]).await;
            // The application's own check leaves no mark either.
            assert!(tracing::enabled!(tracing::Level::INFO));
            tracing::info_span!("between_requests").in_scope(|| {});
        }
        let spans = exported.0.lock().unwrap().clone();
        let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
        let (servers, handlers) = (named("GET /api/v1/products/"), named("list_products"));
        assert_eq!(servers.len(), 3, "{spans:#?}");
        assert_eq!(handlers.len(), 3, "{spans:#?}");
        for handler in handlers {
            assert!(
                handler.events.is_empty(),
                "the handler's log line is not a span event: {handler:#?}"
            );
            assert!(
                servers
                    .iter()
                    .any(|server| server.span_context.span_id() == handler.parent_span_id),
                "{handler:#?}"
            );
        }
        assert_eq!(named("between_requests").len(), 3, "{spans:#?}");
        assert_eq!(logs.access_lines().len(), 3);
    }

    /// Without the direct request spans (as with the pretty log format), the
    /// bridge makes the request span from the `tracing` span's fields.
    #[tokio::test]
    async fn without_direct_request_spans_the_bridge_exports_the_same_span() {
        use opentelemetry::trace::SpanKind;

        let (exported, logs, _default, app) = init_like(false);
        send(&app, "GET", "/api/v1/products/", &[("x-user-id", "9")]).await;
        let server = exported.span("GET /api/v1/products/");
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(
            attribute(&server, "http.route").as_deref(),
            Some("/api/v1/products/")
        );
        assert_eq!(attribute(&server, "user_id").as_deref(), Some("9"));
        assert_eq!(
            exported.span("list_products").parent_span_id,
            server.span_context.span_id()
        );
        let access = logs.access_lines();
        assert_eq!(
            access[0]["span_id"],
            server.span_context.span_id().to_string().as_str()
        );
        assert_eq!(access[0]["http.response.status_code"], 200);
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
}
