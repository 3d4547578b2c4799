//! [`ResponseFuture`]: the response future of [`TelemetryService`](super::TelemetryService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::state::RequestState;

pin_project! {
    /// Polls the inner service's future inside the request span, and hands
    /// the request's state to the response body, which records it when it
    /// ends or is dropped.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<RequestState>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, state: Option<RequestState>) -> Self {
        Self { inner, state }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    E: std::fmt::Display,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this
                .state
                .as_ref()
                .and_then(|state| state.span.as_ref())
                .map(|span| span.span.enter());
            ready!(this.inner.poll(cx))
        };
        let mut state = this.state.take();
        match result {
            Ok(response) => {
                if let Some(state) = &mut state {
                    state.respond(response.status().as_u16());
                    // A call that fails at once answers with its status in
                    // the headers ("trailers-only").
                    #[cfg(feature = "tonic")]
                    state.note_grpc_response(response.headers(), response.body().is_end_stream());
                }
                Poll::Ready(Ok(response.map(|body| ResponseBody::new(body, state))))
            }
            Err(error) => {
                if let Some(mut state) = state {
                    state.respond(500);
                    state.finish(Some(&error.to_string()));
                }
                Poll::Ready(Err(error))
            }
        }
    }
}
