//! [`ResponseBody`]: the response body of the client layer and middleware.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::call::Call;

pin_project! {
    /// The inner body, unchanged. When it has been read in full, fails, or
    /// is dropped, the call ends: its duration and its span cover the whole
    /// body.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> ResponseBody<B> {
    /// `inner`, ending `call` when it ends: at once if it is empty (a
    /// `204`, a `HEAD`), which a reader need not poll.
    pub(crate) fn new(inner: B, mut call: Option<Call>) -> Self {
        if inner.is_end_stream()
            && let Some(mut ended) = call.take()
        {
            ended.finish();
        }
        Self { inner, call }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
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
            None => {
                if let Some(mut call) = this.call.take() {
                    call.finish();
                }
            }
            Some(Err(error)) => {
                if let Some(mut call) = this.call.take() {
                    call.fail(error.to_string());
                }
            }
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
