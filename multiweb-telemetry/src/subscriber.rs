//! The `tracing` subscriber [`init`](crate::init) installs: the `RUST_LOG`
//! filter, the OpenTelemetry bridge, the request span's layer, and the log
//! format.

use std::sync::Arc;

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::{Config, LogFormat};
use crate::log::{JsonLayer, LineSink, LogWriter};
use crate::request_span::{BridgeFilter, RequestSpanLayer};

/// The subscriber, as a [`tracing::Dispatch`]; none without logs and
/// traces (`Signals::METRICS`): `tracing` then costs nothing.
///
/// - The bridge (`tracing-opentelemetry`) makes every span an OpenTelemetry
///   span, request spans included, unless the SDK is disabled
///   (`OTEL_SDK_DISABLED`: then there is no bridge at all, and `tracing`
///   spans stay plain spans) or the request spans take the direct path
///   (`bridge_request_spans(false)` with JSON logs). It sees no events.
/// - The request span's layer tells the HTTP layer which path its spans
///   take and, with JSON logs, where access lines are written.
/// - The JSON layer (or `tracing-subscriber`'s pretty format) writes the
///   lines; without logs (`Signals::TRACES` alone), every event is
///   disabled where it is written.
pub(crate) fn dispatch(
    config: &Config,
    writer: Option<&LogWriter>,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Option<tracing::Dispatch> {
    let Some(writer) = writer else {
        return tracer.map(|tracer| without_logs(config, tracer));
    };
    let json = config.log_format == LogFormat::Json;
    // The SDK disabled with JSON logs: the direct path without an SDK span,
    // which passes an incoming `traceparent` through.
    let direct = json && (!config.bridge_request_spans || tracer.is_none());
    let sink = json.then(|| {
        let writer = writer.writer.clone();
        let sink: LineSink = Arc::new(move |line: &[u8]| writer.append(line));
        sink
    });
    let bridge = tracer.clone().map(|tracer| bridge(tracer, direct));
    let request_spans = if direct {
        RequestSpanLayer::direct(tracer, sink)
    } else {
        RequestSpanLayer::bridged(sink)
    };
    // Boxed rather than `Option`al: a box forwards `on_register_dispatch`,
    // which the JSON layer needs to find trace ids.
    let format = if json {
        JsonLayer::new().with_writer(writer.writer.clone()).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .pretty()
            .with_ansi(false)
            .with_writer(writer.writer.clone())
            .boxed()
    };
    // Neither the bridge (an `Option`) nor the request span's layer
    // implements `on_register_dispatch`, which `Option` would not forward.
    let subscriber = tracing_subscriber::registry()
        .with(config.log_filter.clone())
        .with(bridge)
        .with(request_spans)
        .with(format);
    Some(tracing::Dispatch::new(subscriber))
}

/// Traces without logs: the filter, the bridge and the request span's layer
/// (no line to write: events are disabled where they are written).
fn without_logs(config: &Config, tracer: opentelemetry_sdk::trace::SdkTracer) -> tracing::Dispatch {
    let subscriber = tracing_subscriber::registry()
        .with(config.log_filter.clone())
        .with(tracing_subscriber::filter::filter_fn(spans_only))
        .with(bridge(tracer, false))
        .with(RequestSpanLayer::bridged(None));
    tracing::Dispatch::new(subscriber)
}

/// Without logs, nothing consumes events.
fn spans_only(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
}

/// The `tracing-opentelemetry` bridge for spans (not for the request spans
/// on the `direct` path), with no events.
fn bridge<S>(tracer: opentelemetry_sdk::trace::SdkTracer, direct: bool) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(BridgeFilter { direct })
}

#[cfg(test)]
mod tests {
    use crate::{Signals, Telemetry};

    /// Traces without logs: spans are made, events are disabled where they
    /// are written.
    #[test]
    fn without_logs_no_event_is_enabled() {
        let (dispatch, _guard) = Telemetry::builder()
            .signals(Signals::TRACES)
            .build_dispatch()
            .unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            assert!(!tracing::enabled!(tracing::Level::ERROR));
            assert!(!tracing::info_span!("a span").is_disabled());
        });
        let (dispatch, _guard) = Telemetry::builder()
            .signals(Signals::TRACES | Signals::LOGS)
            .log_writer(std::io::sink())
            .build_dispatch()
            .unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            assert!(tracing::enabled!(tracing::Level::ERROR));
        });
    }
}
