//! Outgoing calls (feature `client`): a CLIENT span, trace propagation and
//! a duration histogram for every HTTP call the service makes.
//!
//! Two entry points, which do the same:
//!
//! - [`layer()`] ([`ClientLayer`]), a tower layer for any
//!   `tower::Service<http::Request<B>>` returning `http::Response<B2>`:
//!   hyper-util's client, a tonic `Channel`;
//! - [`middleware()`] ([`ReqwestMiddleware`]), for a
//!   [`reqwest_middleware`] client (reqwest 0.13, reqwest-middleware 0.5).
//!
//! With hyper-util's client:
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Layer, ServiceExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = multiweb_telemetry::client::layer()
//!     .layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
//!
//! // Inside a request handler: the call is a child of the request's span.
//! let request = http::Request::get("http://inventory:8080/api/v1/stock/7").body(Empty::new())?;
//! let response = client.clone().oneshot(request).await?;
//! let stock = response.into_body().collect().await?.to_bytes();
//! # Ok(())
//! # }
//! ```
//!
//! With reqwest (`reqwest_middleware::ClientBuilder` wraps a
//! `reqwest::Client`):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(multiweb_telemetry::client::middleware())
//!     .build();
//!
//! let stock = client
//!     .get("http://inventory:8080/api/v1/stock/7")
//!     .send()
//!     .await?
//!     .text()
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Build the client once and clone it (both are cheap to clone): a layer
//! or a middleware keeps the metric handles of the hosts it has called.
//!
//! # Span
//!
//! Each call gets an OpenTelemetry CLIENT span, a child of the current span
//! (inside a request, the HTTP layer's request span or a span the handler
//! opened), named after the method (`GET`; `HTTP` for a method outside
//! the standard nine), with the attributes of the HTTP semantic conventions:
//!
//! | attribute | value |
//! |---|---|
//! | `http.request.method` | `GET`, …, or `_OTHER` |
//! | `server.address` | the host, e.g. `inventory` or `10.0.0.7` |
//! | `server.port` | the port, written or the scheme's (80, 443) |
//! | `url.full` | scheme, host, port if written, and path: never the userinfo, the query string or the fragment |
//! | `http.response.status_code` | the status code, once the response arrives |
//!
//! A 5xx answer sets the span's status to Error. So does a transport
//! error (the connection refused or reset, a timeout of the client, an
//! error of the inner service), with the error's text as the status
//! description: for the tower layer the inner service's error as it
//! displays itself; for reqwest, reqwest's error and its sources, the URL
//! in it without userinfo, query string or fragment. A 4xx leaves the
//! status unset: it is an answer, and the guide keeps every trace with an
//! error, so a lookup that finds nothing should not keep its trace. (The
//! semantic conventions let a client mark a 4xx as an error; this crate
//! does not.)
//!
//! The span's `tracing` side is an `INFO` span named `HTTP client request`
//! with target `multiweb_telemetry::client`, made into the OpenTelemetry
//! span by the `tracing-opentelemetry` bridge like every other span (its
//! `otel.name` and `otel.kind` fields steer it); the attributes above go
//! straight to the OpenTelemetry span, not through `tracing` fields.
//! `RUST_LOG` decides whether it exists (`multiweb_telemetry::client=off`
//! turns the spans off, not the propagation or the metric). The span is
//! never entered, so the inner service's own spans and log lines belong to
//! the span current at the call (the request's): the bridge ends a span at
//! its last exit, and this one must end with the response body (see
//! Duration below); entering it also cost more than making it
//! (BENCHMARKS.md).
//!
//! # Propagation
//!
//! The request carries the span's W3C `traceparent` and `tracestate`, as
//! [`trace::inject_context`](crate::trace::inject_context) writes them,
//! replacing any the caller had set, so the called service's request span
//! is a child of the call's span. Without a span of its own (turned off by
//! `RUST_LOG`, or the SDK disabled), the call passes on the current
//! context: with the SDK disabled, that is the `traceparent` the request
//! came with, unchanged.
//!
//! # Metric
//!
//! `http_client_request_duration_seconds{method,server_address,status}`,
//! a histogram (the buckets of the other duration histograms), in seconds:
//!
//! - `method`: one of the nine standard methods, or `_OTHER`;
//! - `server_address`: the host alone, never the port, the path or the
//!   query string, so that the series stay few. A request with only a path
//!   (a tonic client built without an origin, see below) takes the host of
//!   its `Host` header, else [`UNKNOWN_SERVER_ADDRESS`];
//! - `status`: the three-digit code (`status=~"5.."` selects what it
//!   means); [`ERROR_STATUS`] (`error`) for a transport error, which never
//!   matches `5..` or `[45]..`; [`CANCELLED_STATUS`] (`cancelled`) for a
//!   call the caller dropped before its response (a
//!   `tokio::time::timeout` around it, the loser of a `select!`), whose span
//!   keeps an unset status.
//!
//! Label sets are capped ([`ClientLayer::max_series`],
//! [`ReqwestMiddleware::max_series`]); past the cap, calls are recorded
//! under `server_address="overflow"` ([`OVERFLOW_SERVER_ADDRESS`]). When
//! [`init`](crate::init)'s [`Signals`](crate::Signals) leave metrics out,
//! nothing is recorded.
//!
//! # Duration
//!
//! The duration runs from the call until the response body has been read
//! to its end, fails, or is dropped, as the server layer's
//! `http_request_duration_seconds` runs until its body is sent: a slow
//! download is part of a slow call. The span ends at the same moment. An
//! empty body (a `204`, a `HEAD` answer) ends the call with the headers; a
//! body that is never read ends it when it is dropped, with its status; a
//! body that fails midway ends it with its status code and an Error span.
//! The response body is wrapped ([`ResponseBody`]); for reqwest, the
//! response stays reqwest's own in everything else (status, headers,
//! extensions, `url()`, `remote_addr()`, `content_length()`, timeouts).
//!
//! # tonic
//!
//! Wrap the `Channel` and build the generated client with an origin, so
//! that each request's URI names the server:
//! `GreeterClient::with_origin(layer.layer(channel), origin)`. With
//! `GreeterClient::new`, requests carry only a path and are labelled
//! `server_address="unknown"`.
//!
//! # What is never recorded
//!
//! No header value (`Authorization`, `Cookie`) reaches a span or a label,
//! and no URL's userinfo, query string or fragment.

mod body;
mod call;
mod future;
mod layer;
mod middleware;
mod series;
mod service;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::{ClientLayer, DEFAULT_MAX_SERIES};
pub use middleware::ReqwestMiddleware;
pub use series::{
    CANCELLED_STATUS, ERROR_STATUS, OVERFLOW_SERVER_ADDRESS, REQUEST_DURATION,
    UNKNOWN_SERVER_ADDRESS,
};
pub use service::ClientService;

/// A [`ClientLayer`] with the default settings.
pub fn layer() -> ClientLayer {
    ClientLayer::new()
}

/// A [`ReqwestMiddleware`] with the default settings.
pub fn middleware() -> ReqwestMiddleware {
    ReqwestMiddleware::new()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use tower::{Layer, Service, ServiceExt, service_fn};

    use crate::testing::MetricsCapture;

    /// A client answering 200 with an empty body.
    fn answering() -> super::ClientService<
        impl Service<
            Request<()>,
            Response = Response<http_body_util::Empty<bytes::Bytes>>,
            Error = Infallible,
            Future: Send,
        > + Clone,
    > {
        super::layer().layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::new()))
        }))
    }

    /// `server_address` comes from the URI's host, else the `Host` header
    /// (a tonic client without an origin), else is `unknown`; an IPv6
    /// address loses its brackets. A call dropped before its response is
    /// `cancelled`.
    #[tokio::test]
    async fn the_server_address_is_the_host_wherever_the_request_names_it() {
        let capture = MetricsCapture::new();
        let _recorder = capture.enter();
        let client = answering();
        let requests = [
            Request::get("http://inventory:8080/api/v1/stock/7?token=x"),
            Request::post("/inventory.Stock/Reserve").header("host", "stock.internal:50051"),
            Request::get("/no/host"),
            Request::get("http://[::1]:8080/x"),
        ];
        for request in requests {
            let response = client
                .clone()
                .oneshot(request.body(()).unwrap())
                .await
                .unwrap();
            drop(response);
        }
        let mut never =
            super::layer().layer(service_fn(|_: Request<()>| {
                std::future::pending::<
                    Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>,
                >()
            }));
        drop(never.call(Request::get("http://slow/").body(()).unwrap()));

        let metrics = capture.exposition();
        let mut series: Vec<_> = metrics
            .find("http_client_request_duration_seconds_count", &[])
            .map(|s| {
                let label = |name| s.label(name).unwrap_or_default().to_owned();
                (label("method"), label("server_address"), label("status"))
            })
            .collect();
        series.sort();
        let expected = [
            ("GET", "::1", "200"),
            ("GET", "inventory", "200"),
            ("GET", "slow", "cancelled"),
            ("GET", "unknown", "200"),
            ("POST", "stock.internal", "200"),
        ]
        .map(|(m, a, s)| (m.to_owned(), a.to_owned(), s.to_owned()));
        assert_eq!(series, expected);
    }
}
