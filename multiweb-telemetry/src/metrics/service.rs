//! The `/metrics` tower service.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};

use super::Exporter;

/// The content type of the Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A [`tower::Service`] answering any request with the Prometheus text exposition.
///
/// Create it with [`metrics_service`](super::metrics_service) or
/// [`TelemetryGuard::metrics_service`](crate::TelemetryGuard::metrics_service)
/// and mount it on the route Prometheus scrapes, e.g.
/// `Router::route_service("/metrics", ...)`.
#[derive(Debug, Clone)]
pub struct MetricsService {
    exporter: Option<Arc<Exporter>>,
}

impl MetricsService {
    /// Serves the globally installed exporter (looked up at each request).
    pub(crate) fn new() -> Self {
        Self { exporter: None }
    }

    pub(crate) fn with_exporter(exporter: Arc<Exporter>) -> Self {
        Self {
            exporter: Some(exporter),
        }
    }

    fn respond(&self) -> Response<String> {
        let exporter = self.exporter.as_ref().or_else(|| super::installed());
        let (status, body, content_type) = match exporter {
            Some(exporter) => (StatusCode::OK, exporter.render(), CONTENT_TYPE),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "telemetry is not initialized: call multiweb_telemetry::init() first\n".to_owned(),
                "text/plain; charset=utf-8",
            ),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

impl<B> tower::Service<Request<B>> for MetricsService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        ready(Ok(self.respond()))
    }
}
