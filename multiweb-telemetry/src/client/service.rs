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
            // A request with only a path (a tonic client without an
            // origin): the `Host` header, if any, names the server.
            let authority = match uri.host() {
                Some(_) => None,
                None => request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<Authority>().ok()),
            };
            let (host, port) = match &authority {
                Some(authority) => (Some(authority.host()), authority.port_u16()),
                None => (uri.host(), uri.port_u16()),
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
        let future = {
            let _entered = call.span().enter();
            self.inner.call(request)
        };
        ResponseFuture::new(future, call)
    }
}
