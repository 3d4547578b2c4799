//! [`RequestSpanLayer`]: what [`init`](crate::init)'s subscriber tells the
//! request span (which path, where its lines go), and [`BridgeFilter`]:
//! what the `tracing-opentelemetry` bridge sees.

use std::sync::Arc;

use std::fmt;

use opentelemetry_sdk::trace::SdkTracer;
use tracing::field::{Field, Visit};
use tracing::span::{Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_core::Dispatch;
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::direct;
use crate::log::LineSink;

/// The layer [`init`](crate::init)'s subscriber carries for the request
/// span: which path it takes, and, with JSON logs, the writer its access
/// lines go to. It notes the request's error for the access line of a 5xx
/// ([`NotedError`]). On the direct path it also attaches a request span's
/// context on every enter and copies fields recorded on it to its SDK span.
pub(crate) struct RequestSpanLayer {
    mode: Mode,
    /// The JSON layer's writer, when the JSON layer is the subscriber's one
    /// consumer of events: the access line is then written without an event.
    sink: Option<LineSink>,
}

/// Which path request spans take.
#[derive(Clone)]
pub(super) enum Mode {
    /// Through the bridge.
    Bridged,
    /// Started by the crate with this tracer (the direct path), or, without
    /// one (the SDK disabled), the caller's context passed through.
    Own(Option<Arc<SdkTracer>>),
}

impl RequestSpanLayer {
    /// Request spans through the bridge; access lines to `sink`, if any.
    pub(crate) fn bridged(sink: Option<LineSink>) -> Self {
        Self {
            mode: Mode::Bridged,
            sink,
        }
    }

    /// Request spans started by the crate with `tracer` (without one, the
    /// caller's context passes through); access lines to `sink`, if any.
    pub(crate) fn direct(tracer: Option<SdkTracer>, sink: Option<LineSink>) -> Self {
        Self {
            mode: Mode::Own(tracer.map(Arc::new)),
            sink,
        }
    }

    pub(super) fn mode(&self) -> Mode {
        self.mode.clone()
    }

    fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Own(_))
    }

    pub(super) fn sink(&self) -> Option<&LineSink> {
        self.sink.as_ref()
    }

    /// The layer in `dispatch`, if it is `init`'s subscriber. This is the
    /// one place that asks what the subscriber is.
    pub(super) fn of(dispatch: &Dispatch) -> Option<&Self> {
        dispatch.downcast_ref::<Self>()
    }

    /// Whether the current subscriber is any at all: with none (`init` with
    /// `Signals::METRICS` alone), a request span and its access line would
    /// be made for nobody.
    pub(crate) fn anyone_listens() -> bool {
        tracing::dispatcher::get_default(|dispatch| {
            !dispatch.is::<tracing_core::subscriber::NoSubscriber>()
        })
    }

    /// `f` of the layer in the current subscriber, if it is `init`'s.
    pub(super) fn installed<T>(f: impl Fn(&Self) -> T) -> Option<T> {
        tracing::dispatcher::get_default(|dispatch| Self::of(dispatch).map(&f))
    }
}

/// The error of a request, for its access line when the response is a 5xx
/// (the guide's scenario 2 prints `path` and `error` of every error line):
/// the `error` recorded on the request span, else the `error` field of the
/// first error-level event inside it.
pub(super) struct NotedError(pub(super) String);

/// Finds the `error` field's value.
struct ErrorField(Option<String>);

impl Visit for ErrorField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "error" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if field.name() == "error" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "error" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S> Layer<S> for RequestSpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || meta.fields().field("error").is_none() {
            return;
        }
        let Some(request) = ctx
            .event_scope(event)
            .and_then(|mut scope| scope.find(|span| super::is_request_span(span.metadata())))
        else {
            return;
        };
        let mut extensions = request.extensions_mut();
        if extensions.get_mut::<NotedError>().is_none() {
            let mut error = ErrorField(None);
            event.record(&mut error);
            if let Some(error) = error.0 {
                extensions.insert(NotedError(error));
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        if self.is_direct() {
            direct::on_enter(id, || {
                ctx.span(id).and_then(|span| direct::stored_context(&span))
            });
        }
    }

    fn on_exit(&self, id: &Id, _ctx: LayerContext<'_, S>) {
        if self.is_direct() {
            direct::on_exit(id);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if super::is_request_span(span.metadata())
            && let Some(field) = span.metadata().fields().field("error")
            && values.contains(&field)
        {
            let mut error = ErrorField(None);
            values.record(&mut error);
            if let Some(error) = error.0 {
                span.extensions_mut().replace(NotedError(error));
            }
        }
        if self.is_direct() {
            direct::on_record(direct::stored_context(&span), values);
        }
    }
}

/// What the OpenTelemetry bridge sees: spans (but the request spans the
/// crate starts itself, on the direct path), and no events. Log events go
/// to the log (with `trace_id`), not into span events, which
/// `tracing-opentelemetry` would build even for spans the sampler drops.
///
/// Events are refused in `event_enabled`, not in `enabled`: a per-layer
/// filter that says no in `enabled` leaves a mark in a thread-local that
/// only a dispatched event or span clears. An `enabled!` check dispatches
/// nothing (the access line makes one before it is written without an
/// event, and so may the application), and the mark would make the bridge
/// skip the next span opened on that thread (tokio-rs/tracing#2519).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BridgeFilter {
    /// Request spans take the direct path: the bridge does not see them.
    pub(crate) direct: bool,
}

impl BridgeFilter {
    fn wants(self, meta: &tracing::Metadata<'_>) -> bool {
        !(meta.is_span()
            && self.direct
            && meta.name() == super::SPAN_NAME
            && super::is_request_span(meta))
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for BridgeFilter {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: &LayerContext<'_, S>) -> bool {
        self.wants(meta)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if !meta.is_span() {
            // Asked per event, as `tracing-subscriber` expects of a filter
            // that refuses events in `event_enabled`: its debug assertions
            // fail when an event is refused there without an `enabled`
            // pass first.
            tracing::subscriber::Interest::sometimes()
        } else if self.wants(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn event_enabled(&self, _: &tracing::Event<'_>, _: &LayerContext<'_, S>) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogFormat, Signals, Telemetry, TelemetryBuilder};

    /// Which path the subscribers `init` builds give request spans.
    #[test]
    fn the_bridge_unless_asked_otherwise_or_the_sdk_is_off() {
        let mode = |builder: TelemetryBuilder| {
            let (dispatch, _guard) = builder
                .log_writer(std::io::sink())
                .build_dispatch()
                .unwrap();
            let mode = tracing::dispatcher::with_default(&dispatch, || {
                RequestSpanLayer::installed(RequestSpanLayer::mode)
            });
            match mode {
                Some(Mode::Bridged) => "bridged",
                Some(Mode::Own(Some(_))) => "direct",
                Some(Mode::Own(None)) => "pass-through",
                None => "none",
            }
        };
        assert_eq!(mode(Telemetry::builder()), "bridged");
        assert_eq!(
            mode(Telemetry::builder().bridge_request_spans(true)),
            "bridged"
        );
        assert_eq!(
            mode(Telemetry::builder().bridge_request_spans(false)),
            "direct"
        );
        assert_eq!(mode(Telemetry::builder().disabled(true)), "pass-through");
        assert_eq!(
            mode(Telemetry::builder().signals(Signals::LOGS)),
            "pass-through",
            "logs without traces: the SDK is off"
        );
        assert_eq!(
            mode(Telemetry::builder().signals(Signals::TRACES)),
            "bridged"
        );
        assert_eq!(
            mode(Telemetry::builder().signals(Signals::METRICS)),
            "none",
            "no subscriber without logs and traces"
        );
        assert_eq!(
            mode(
                Telemetry::builder()
                    .bridge_request_spans(false)
                    .log_format(LogFormat::Pretty)
            ),
            "bridged",
            "the pretty format always takes the bridge"
        );
        // Not under a subscriber `init` did not build.
        assert!(RequestSpanLayer::installed(RequestSpanLayer::mode).is_none());
    }
}
