//! [`ReqwestMiddleware`]: the `reqwest-middleware` middleware.

use std::sync::Arc;

use reqwest::ResponseBuilderExt as _;
use reqwest_middleware::{Middleware, Next};

use super::body::ResponseBody;
use super::call::{Call, Target};
use super::layer::DEFAULT_MAX_SERIES;
use super::series::ClientSeries;

/// A [`reqwest_middleware::Middleware`] giving every call of a
/// `reqwest_middleware::ClientWithMiddleware` a CLIENT span, the
/// `traceparent` and `tracestate` headers, and
/// `http_client_request_duration_seconds`, as
/// [`ClientLayer`](super::ClientLayer) does for tower clients. See the
/// [module docs](super).
///
/// The response is the one reqwest made (status, headers, extensions,
/// [`url`](reqwest::Response::url), [`remote_addr`](reqwest::Response::remote_addr),
/// [`content_length`](reqwest::Response::content_length) and timeouts
/// unchanged), its body wrapped to see when it has been read.
///
/// Middlewares run in the order they were added: add this one after a
/// retry middleware to give each attempt its own span and sample.
#[derive(Debug, Clone)]
pub struct ReqwestMiddleware {
    series: Arc<ClientSeries>,
}

impl Default for ReqwestMiddleware {
    fn default() -> Self {
        Self::new()
    }
}

impl ReqwestMiddleware {
    /// A middleware with the default settings.
    pub fn new() -> Self {
        Self {
            series: Arc::new(ClientSeries::new(DEFAULT_MAX_SERIES)),
        }
    }

    /// The most label sets `http_client_request_duration_seconds` may have;
    /// as [`ClientLayer::max_series`](super::ClientLayer::max_series).
    ///
    /// Defaults to [`DEFAULT_MAX_SERIES`].
    #[must_use]
    pub fn max_series(self, max: usize) -> Self {
        Self {
            series: Arc::new(ClientSeries::new(max)),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for ReqwestMiddleware {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let mut call = {
            let url = request.url();
            Call::start(
                &self.series,
                &Target {
                    method: request.method(),
                    scheme: Some(url.scheme()),
                    host: url.host_str(),
                    port: url.port(),
                    path: url.path(),
                },
            )
        };
        call.inject(request.headers_mut());
        let outcome = next.run(request, extensions).await;
        match outcome {
            Ok(response) => {
                call.respond(response.status().as_u16());
                Ok(with_call(response, call))
            }
            Err(error) => {
                call.fail(error_text(&error));
                Err(error)
            }
        }
    }
}

/// `response` with its body wrapped to end `call` when it ends. reqwest
/// converts to and from `http::Response`, which keeps everything but the
/// URL; the URL is carried over in the extension reqwest reads it from.
fn with_call(response: reqwest::Response, call: Call) -> reqwest::Response {
    let mut url = http::Response::builder().url(response.url().clone());
    let (mut parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
    if let Some(extension) = url.extensions_mut() {
        parts.extensions.extend(std::mem::take(extension));
    }
    let body = reqwest::Body::wrap(ResponseBody::new(body, Some(call)));
    reqwest::Response::from(http::Response::from_parts(parts, body))
}

/// The error and its sources, as the span's status description. reqwest
/// names the URL in its errors: written there without userinfo, query
/// string or fragment.
fn error_text(error: &reqwest_middleware::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        let mut safe = url.clone();
        // Only fail for URLs that cannot have userinfo: nothing to remove.
        let _ = safe.set_username("");
        let _ = safe.set_password(None);
        safe.set_query(None);
        safe.set_fragment(None);
        text = text.replace(url.as_str(), safe.as_str());
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
