//! [`ResponseFuture`]: the response future of [`ClientService`](super::ClientService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::call::Call;

pin_project! {
    /// Notes the inner service's answer on the call, and hands the call to
    /// the response body, which ends it when it ends or is dropped.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, call: Call) -> Self {
        Self {
            inner,
            call: Some(call),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    E: std::fmt::Display,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = this.call.take();
        match result {
            Ok(response) => {
                if let Some(call) = &mut call {
                    call.respond(response.status().as_u16());
                }
                Poll::Ready(Ok(response.map(|body| ResponseBody::new(body, call))))
            }
            Err(error) => {
                if let Some(mut call) = call {
                    call.fail(error.to_string());
                }
                Poll::Ready(Err(error))
            }
        }
    }
}
