//! The `/metrics` tower service.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};

use super::Exporter;
use super::format::Format;

/// A [`tower::Service`] answering any request with the Prometheus text
/// exposition: in the OpenMetrics text format, with exemplars, when the
/// `Accept` header prefers `application/openmetrics-text`, else in the
/// classic text format (see [`metrics`](super#openmetrics-and-exemplars)).
///
/// Create it with [`metrics_service`](super::metrics_service) or
/// [`TelemetryGuard::metrics_service`](crate::TelemetryGuard::metrics_service)
/// and mount it on the route Prometheus scrapes, e.g.
/// `Router::route_service("/metrics", ...)`.
#[derive(Debug, Clone)]
pub struct MetricsService {
    exporter: Option<Arc<Exporter>>,
    token: Option<Arc<str>>,
}

impl MetricsService {
    /// Serves the globally installed exporter (looked up at each request).
    pub(crate) fn new() -> Self {
        Self {
            exporter: None,
            token: None,
        }
    }

    pub(crate) fn with_exporter(exporter: Arc<Exporter>) -> Self {
        Self {
            exporter: Some(exporter),
            token: None,
        }
    }

    /// Answers `401 Unauthorized` unless the request carries
    /// `Authorization: Bearer <token>` (the scheme in any case, as RFC 7235
    /// says). The token is compared in constant time. Prometheus sends it
    /// with `authorization: { credentials: ... }` (or `bearer_token_file`)
    /// in its scrape config. Defaults to no token.
    ///
    /// Surrounding whitespace is trimmed from `token` (a secret file's
    /// trailing newline); an empty token means none. A token with
    /// whitespace, control or non-ASCII characters inside never matches
    /// (`init` refuses such a token).
    #[must_use]
    pub fn require_bearer_token(mut self, token: impl Into<String>) -> Self {
        let token: String = token.into();
        let token = token.trim();
        self.token = (!token.is_empty()).then(|| Arc::from(token));
        self
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| bearer_credentials(value.as_bytes()))
            .unwrap_or_default();
        constant_time_eq(given, expected.as_bytes())
    }

    fn respond(&self, format: Format) -> Response<String> {
        let exporter = self.exporter.as_ref().or_else(|| super::installed());
        let (status, body, content_type) = match exporter {
            Some(exporter) => {
                let body = match format {
                    Format::Classic => exporter.render(),
                    Format::OpenMetrics => exporter.render_openmetrics(),
                };
                (StatusCode::OK, body, format.content_type())
            }
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

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.authorized(request.headers()) {
            let mut response = Response::new("a bearer token is required\n".to_owned());
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return ready(Ok(response));
        }
        ready(Ok(self.respond(Format::negotiate(request.headers()))))
    }
}

/// The token of an `Authorization` value with the `Bearer` scheme: the
/// scheme in any case, then one or more spaces (RFC 7235 `credentials`).
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked("Bearer".len())?;
    (scheme.eq_ignore_ascii_case(b"Bearer") && rest.first() == Some(&b' '))
        .then(|| rest.trim_ascii())
}

/// Compares without an early exit, so the time taken does not tell how many
/// leading bytes matched (the length may still show).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn status(service: MetricsService, authorization: Option<&str>) -> u16 {
        let mut request = Request::get("/metrics");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = service.oneshot(request.body(()).unwrap()).await.unwrap();
        response.status().as_u16()
    }

    #[tokio::test]
    async fn a_required_token_is_checked() {
        let open = MetricsService::new();
        assert_eq!(
            status(open, None).await,
            503,
            "no token: served (uninitialized here)"
        );
        let locked = MetricsService::new().require_bearer_token("s3cret");
        assert_eq!(status(locked.clone(), None).await, 401);
        assert_eq!(status(locked.clone(), Some("Bearer wrong!")).await, 401);
        assert_eq!(status(locked.clone(), Some("Bearer s3cre")).await, 401);
        assert_eq!(status(locked.clone(), Some("s3cret")).await, 401);
        assert_eq!(status(locked, Some("Bearer s3cret")).await, 503);
    }

    #[tokio::test]
    async fn the_scheme_is_case_insensitive_and_the_token_trimmed() {
        let locked = MetricsService::new().require_bearer_token("  s3cret\n");
        for ok in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "Bearer   s3cret",
        ] {
            assert_eq!(status(locked.clone(), Some(ok)).await, 503, "{ok}");
        }
        for refused in [
            "Bearers3cret",
            "Bearer",
            "Bearer ",
            "Basic s3cret",
            "Bearer s3cret x",
        ] {
            assert_eq!(
                status(locked.clone(), Some(refused)).await,
                401,
                "{refused}"
            );
        }
        let open = MetricsService::new().require_bearer_token(" \n");
        assert_eq!(status(open, None).await, 503, "a blank token is no token");
    }
}
