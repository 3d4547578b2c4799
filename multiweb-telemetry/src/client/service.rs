//! [`ClientService`]: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Authority;
use http::{Request, Response};

use super::body::ResponseBody;
use super::call::{Call, Target};
use super::future::ResponseFuture;
use super::series::ClientSeries;

/// The service made by [`ClientLayer`](super::ClientLayer).
#[derive(Debug, Clone)]
pub struct ClientService<S> {
    inner: S,
    series: Arc<ClientSeries>,
}

impl<S> ClientService<S> {
    pub(crate) fn new(inner: S, series: Arc<ClientSeries>) -> Self {
        Self { inner, series }
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for ClientService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let call = {
            let uri = request.uri();
            let from_header: Option<Authority>;
            let (host, port) = match uri.host() {
                Some(host) => (Some(host), uri.port_u16()),
                // A request with only a path (a tonic client without an
                // origin): the `Host` header, if any, names the server.
                None => {
                    from_header = request
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse().ok());
                    match &from_header {
                        Some(authority) => (Some(authority.host()), authority.port_u16()),
                        None => (None, None),
                    }
                }
            };
            Call::start(
                &self.series,
                &Target {
                    method: request.method(),
                    scheme: uri.scheme_str(),
                    host,
                    port,
                    path: uri.path(),
                },
            )
        };
        call.inject(request.headers_mut());
        ResponseFuture::new(self.inner.call(request), call)
    }
}
