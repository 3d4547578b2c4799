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
//! `multiweb_telemetry::http`), which carries the request's fields into the
//! log lines inside it (`http.request.method`, `http.route`, `url.path`,
//! and `path`: the route template, or the request path where no route
//! matched);
//! `user_id` and `error` recorded on it (see [`record_user_id`]) become span
//! attributes and log fields too. The inner service is called and polled
//! inside it, so spans the handler opens are children of the request span.
//! An incoming W3C `traceparent` is continued.
//!
//! The request span is an ordinary `tracing` span, made into the
//! OpenTelemetry span by the `tracing-opentelemetry` bridge like every
//! other span (its `otel.name`, `otel.kind` and `otel.status_code` fields
//! steer it), so everything a `tracing-opentelemetry` user expects works on
//! it: `OpenTelemetrySpanExt::{context, set_parent, set_attribute,
//! add_link}` on `Span::current()` in a handler, spans given it as an
//! explicit parent, tasks spawned with `.in_current_span()`, `#[instrument]`
//! children and `RUST_LOG` directives that name it
//! (`tests/tests/request_span.rs` checks each).
//!
//! The span ends when the response body has been sent in full (or dropped),
//! as `http_request_duration_seconds` measures, not when the handler
//! returns: a streamed response's span covers the stream.
//!
//! With the SDK disabled (`OTEL_SDK_DISABLED=true`) there is no
//! OpenTelemetry span: the `tracing` span and its log fields stay, and with
//! JSON logs an incoming `traceparent` is the request's context as it came
//! (its ids on the request's log lines, passed on by
//! [`trace::inject_context`](crate::trace::inject_context)).
//!
//! ## The direct path (opt-in)
//!
//! With [`bridge_request_spans(false)`](crate::TelemetryBuilder::bridge_request_spans)
//! and JSON logs, the layer starts the request's OpenTelemetry span itself,
//! about a fifth cheaper per request than through the bridge (see
//! BENCHMARKS.md), and the bridge does not see the request's `tracing`
//! span. What that changes for the handler's code:
//!
//! - spans it opens inside the request (`#[instrument]`, `info_span!`, tasks
//!   spawned with `.in_current_span()`) are still the request span's
//!   children; a span given the request span as an *explicit* parent
//!   (`info_span!(parent: &request_span, ..)`) starts a new trace instead;
//! - `tracing_opentelemetry::OpenTelemetrySpanExt` methods called on the
//!   request span itself (`context`, `set_attribute`, `set_parent`,
//!   `add_link`) do not reach it: use
//!   [`trace::current_context`](crate::trace::current_context) and
//!   [`trace::inject_context`](crate::trace::inject_context), and record
//!   `user_id`, `error` or `otel.status_code` on the span, which are copied
//!   to it;
//! - `RUST_LOG` directives that match the request span by its `http.*`
//!   fields do not match it (it has no such `tracing` fields).
//!
//! # Access log
//!
//! When the response completes, one event with target
//! `multiweb_telemetry::http` and the fields `method`, `path` (the route
//! template, or the request path where no route matched), `status`,
//! `duration` (seconds) and, on failures, `error`; its message reads
//! `GET /api/v1/products/7 status=200 duration=0.003` (the request path,
//! without the query string). The `error` of a 5xx is the service's error,
//! else the `error` recorded on the request span, else the `error` field of
//! the first error-level event inside the request. It is a child of the
//! request span, so the JSON log line also carries the span's fields, such
//! as `user_id` (see [`record_user_id`]). The level is `info`, `warn` for
//! 4xx and `error` for 5xx ([`TelemetryLayer::access_log_levels`]).
//!
//! Under [`init`](crate::init)'s subscriber with JSON logs, whose only
//! consumer of events is the JSON formatter, the line is written by the
//! formatter's own line writer once `RUST_LOG` lets the event through: the
//! same bytes, without passing the event through every layer.
//!
//! # gRPC (feature `tonic`)
//!
//! A request whose `content-type` is `application/grpc` (with or without
//! a `+proto` suffix) is a gRPC call, tonic's or any other server's behind
//! the layer:
//!
//! ```
//! use tower::Layer as _;
//!
//! // For a tonic server, `Server::builder().layer(multiweb_telemetry::http::layer())`.
//! let grpc_service = tower::service_fn(|_: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! });
//! let service = multiweb_telemetry::http::layer().layer(grpc_service);
//! ```
//!
//! - It is counted in `rpc_server_duration_seconds{rpc_service,
//!   rpc_method,rpc_grpc_status_code}` (`http::RPC_SERVER_DURATION`), by the
//!   `grpc-status` of its response (in the headers of a call that fails at
//!   once, in the trailers otherwise), not in the HTTP series, where nearly
//!   every call would count as `status="200"`. A response without a
//!   `grpc-status` takes the status the gRPC specification maps its HTTP
//!   status to; one dropped before it sent its status (a stream the client
//!   cancelled) is `CANCELLED` (1), or `INTERNAL` (13) when the handler
//!   panicked while sending it; a call cancelled before any response is not
//!   counted, as HTTP requests are not. Calls the server does not implement
//!   (`UNIMPLEMENTED`, 12) share `rpc_service="_OTHER"` and
//!   `rpc_method="_OTHER"`, so made-up paths that reach the router make no
//!   series; the other label sets are capped (see
//!   [`TelemetryLayer::max_series`]). gRPC calls are not in
//!   `http_requests_in_flight`.
//! - Its span, `gRPC request` on the `tracing` side, is the SERVER span
//!   `package.Service/Method` with the OpenTelemetry RPC attributes
//!   `rpc.system` (`grpc`), `rpc.service`, `rpc.method` and
//!   `rpc.grpc.status_code`; a server error (`UNKNOWN`,
//!   `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`,
//!   `DATA_LOSS`) sets its status to Error. It goes through the bridge,
//!   also on the direct path. Its name is the call's path, made-up ones
//!   included.
//! - Its access line has `rpc.grpc.status_code` after `status`, and its
//!   level follows the gRPC status: `info` for `OK`, `error` for a server
//!   error, `warn` for the others.
//!
//! Without the feature, gRPC calls are recorded as HTTP requests.
//!
//! No header value is recorded anywhere, so `Authorization`, `Cookie` and
//! `Set-Cookie` never reach a label, an attribute or a log line.

mod body;
mod future;
#[cfg(feature = "tonic")]
mod grpc;
mod layer;
mod series;
mod service;
mod settings;
mod state;

pub use crate::labels::{OTHER_METHOD, OVERFLOW_PATH, UNMATCHED_PATH};
pub use body::ResponseBody;
pub use future::ResponseFuture;
#[cfg(feature = "tonic")]
pub use grpc::RPC_SERVER_DURATION;
pub use layer::{DEFAULT_MAX_SERIES, TelemetryLayer};
pub use series::{REQUEST_DURATION, REQUESTS_IN_FLIGHT, REQUESTS_TOTAL, SERIES_OVERFLOW_TOTAL};
pub use service::TelemetryService;

use crate::request_span::record_on_request_span;

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
