//! Where a span's OpenTelemetry context is: with the `tracing-opentelemetry`
//! bridge, or, for a request span the bridge does not see, in a
//! [`RequestContext`] extension of its own.

use opentelemetry::Context;
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing_core::Dispatch;
use tracing_core::span::Id;
use tracing_subscriber::Registry;
use tracing_subscriber::registry::LookupSpan;

/// The OpenTelemetry context of a request span the bridge does not see,
/// kept in the span's extensions: the SDK span the HTTP layer started
/// itself (with `bridge_request_spans(false)`), or, with the SDK disabled,
/// the caller's context passed through. The JSON layer writes its ids on
/// the request's log lines, and [`current_context`](super::current_context)
/// returns it inside the request.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext(pub(crate) Context);

/// The trace and span ids of `cx`'s span (zero when it has none).
pub(crate) fn ids_of(cx: &Context) -> (TraceId, SpanId) {
    let span = cx.span();
    let ids = span.span_context();
    (ids.trace_id(), ids.span_id())
}

/// The ids the bridge gave span `id`, if the bridge sees it. No span
/// extensions may be borrowed while this runs.
pub(crate) fn bridged_ids(id: &Id, dispatch: &Dispatch) -> Option<(TraceId, SpanId)> {
    tracing_opentelemetry::get_otel_context(id, dispatch).map(|cx| ids_of(&cx))
}

/// The [`RequestContext`] of `span` or of the innermost of its ancestors
/// that has one.
pub(crate) fn request_context_of(span: &tracing::Span) -> Option<Context> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        registry.span(id)?.scope().find_map(|span| {
            span.extensions()
                .get::<RequestContext>()
                .map(|RequestContext(cx)| cx.clone())
        })
    })
    .flatten()
}
