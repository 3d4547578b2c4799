//! The `tracing` subscriber [`init`](crate::init) installs: the `RUST_LOG`
//! filter, the OpenTelemetry bridge, the request span's layer, and the log
//! format.

use std::sync::Arc;

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::{Config, LogFormat};
use crate::log::{JsonLayer, LineSink, LogWriter};
use crate::request_span::{BridgeFilter, RequestSpanLayer};

/// The subscriber, as a [`tracing::Dispatch`].
///
/// - The bridge (`tracing-opentelemetry`) makes every span an OpenTelemetry
///   span, request spans included, unless the SDK is disabled
///   (`OTEL_SDK_DISABLED`: then there is no bridge at all, and `tracing`
///   spans stay plain spans) or the request spans take the direct path
///   (`bridge_request_spans(false)` with JSON logs). It sees no events.
/// - The request span's layer tells the HTTP layer which path its spans
///   take and, with JSON logs, where access lines are written.
/// - The JSON layer (or `tracing-subscriber`'s pretty format) writes the
///   lines.
pub(crate) fn dispatch(
    config: &Config,
    writer: &LogWriter,
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> tracing::Dispatch {
    let json = config.log_format == LogFormat::Json;
    let tracer = (!config.disabled).then_some(tracer);
    // The SDK disabled with JSON logs: the direct path without an SDK span,
    // which passes an incoming `traceparent` through.
    let direct = json && (!config.bridge_request_spans || tracer.is_none());
    let sink = json.then(|| {
        let writer = writer.writer.clone();
        let sink: LineSink = Arc::new(move |line: &[u8]| writer.append(line));
        sink
    });
    let bridge = tracer.clone().map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_filter(BridgeFilter { direct })
    });
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
    tracing::Dispatch::new(subscriber)
}
