//! [`ResponseBody`]: the response body of [`TelemetryService`](super::TelemetryService).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::state::RequestState;

pin_project! {
    /// The inner body, unchanged. When it has been sent in full, fails, or is
    /// dropped (the state's `Drop`), the request is recorded: its duration
    /// covers the whole body.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        state: Option<RequestState>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, state: Option<RequestState>) -> Self {
        Self { inner, state }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: Buf,
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            None => finish(this.state, None),
            Some(Err(error)) => finish(this.state, Some(&error.to_string())),
            // A gRPC call's status comes in the trailers.
            #[cfg(feature = "tonic")]
            Some(Ok(frame)) => {
                if let (Some(trailers), Some(state)) = (frame.trailers_ref(), this.state.as_mut()) {
                    state.note_grpc_status(trailers);
                }
            }
            #[cfg(not(feature = "tonic"))]
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn finish(state: &mut Option<RequestState>, error: Option<&str>) {
    if let Some(mut state) = state.take() {
        state.finish(error);
    }
}
