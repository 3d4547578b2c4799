//! Structured logs: one JSON object per line on stdout, for Loki.
//!
//! [`init`](crate::init) installs a `tracing` subscriber with:
//!
//! - an [`EnvFilter`](tracing_subscriber::EnvFilter) from `RUST_LOG` (default `info`);
//! - the [`JsonLayer`] (or `tracing-subscriber`'s pretty format when
//!   `MULTIWEB_LOG_FORMAT=pretty`);
//! - a non-blocking writer with a buffer bounded in bytes
//!   ([`DEFAULT_LOG_BUFFER_BYTES`](crate::DEFAULT_LOG_BUFFER_BYTES)). A log
//!   line costs a short lock and a copy; a thread of its own writes the buffer
//!   to stdout every 20 ms, or sooner when it fills. When stdout is slow or
//!   blocked the application keeps running; lines that do not fit are dropped
//!   and counted in `multiweb_telemetry_log_lines_dropped_total`.
//!
//! Records of the `log` crate are forwarded to the same subscriber.
//!
//! The guard returned by `init` flushes buffered lines when dropped, waiting
//! at most about a second.

mod json;
mod timestamp;
mod writer;

pub(crate) use writer::{BufferedWriter, DroppedLines, WriterGuard};

use std::io;

pub(crate) use json::{
    AccessFields, LineSink, RenderedFields, add_request_fields, decimal, request_context,
    write_access_line,
};
pub use json::{JsonLayer, MAX_VALUE_BYTES};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::Error;
use crate::config::{Config, LogFormat};
use crate::trace::request::RequestSpans;

/// A custom destination for log lines, set with
/// [`TelemetryBuilder::log_writer`](crate::TelemetryBuilder::log_writer).
pub(crate) struct LogSink(pub(crate) Box<dyn io::Write + Send>);

/// The non-blocking log writer, before the subscriber is installed.
pub(crate) struct LogWriter {
    pub(crate) writer: BufferedWriter,
    pub(crate) worker: WriterGuard,
    pub(crate) dropped: DroppedLines,
}

/// Starts the log writer thread for stdout (or `sink`).
pub(crate) fn writer(config: &Config, sink: Option<LogSink>) -> Result<LogWriter, Error> {
    let output: Box<dyn io::Write + Send> = match sink {
        Some(LogSink(sink)) => sink,
        None => Box::new(io::stdout()),
    };
    let (writer, worker, dropped) =
        BufferedWriter::start(output, config.log_buffer_bytes, config.log_buffer_lines).map_err(
            |source| Error::Spawn {
                what: "log writer",
                source,
            },
        )?;
    Ok(LogWriter {
        writer,
        worker,
        dropped,
    })
}

/// Installs the global subscriber made by [`dispatch`].
/// Fails only if a subscriber is already installed.
pub(crate) fn install(
    config: &Config,
    writer: &LogWriter,
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> Result<(), Error> {
    tracing::dispatcher::set_global_default(dispatch(config, writer, tracer))
        .map_err(|_| Error::SubscriberAlreadySet)?;
    // Forward the `log` crate; another logger being there already is not our error.
    let _ = tracing_log::LogTracer::init();
    Ok(())
}

/// The OpenTelemetry layers of [`dispatch`]: the bridge for spans and, with
/// `direct` (the JSON format, whose lines go to that sink), the layer that
/// lets the HTTP layer start its request spans' OpenTelemetry spans itself
/// (see `trace::request`), which the bridge then does not see, and write
/// its access log lines to the sink itself.
///
/// Without a `tracer` (the SDK disabled) there is no bridge: `tracing` spans
/// stay plain spans and log lines get no ids from them; the request layer
/// still writes the access lines, and lets an incoming `traceparent` pass
/// through as the request's context, as the OpenTelemetry API does without
/// an SDK.
///
/// Neither layer implements `on_register_dispatch`, which the `Option`s
/// here would not forward (the JSON layer, which does, is boxed instead).
pub(crate) fn otel_layers<S>(
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    direct: Option<LineSink>,
) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = BridgeFilter {
        direct: direct.is_some(),
    };
    let bridge = tracer.clone().map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_filter(filter)
    });
    Layer::and_then(bridge, direct.map(|sink| RequestSpans::new(tracer, sink)))
}

/// What the OpenTelemetry bridge sees: spans (but the request spans the
/// HTTP layer starts itself, when `direct`), and no events. Log events go to
/// the log (with `trace_id`), not into span events, which
/// `tracing-opentelemetry` would build even for spans the sampler drops.
///
/// Events are refused in `event_enabled`, not in `enabled`: a per-layer
/// filter that says no in `enabled` leaves a mark in a thread-local that
/// only a dispatched event or span clears. An `enabled!` check dispatches
/// nothing (the HTTP layer makes one before writing its access line
/// directly, and so may the application), and the mark would make the
/// bridge skip the next span opened on that thread
/// (tokio-rs/tracing#2519).
#[derive(Debug, Clone, Copy)]
struct BridgeFilter {
    direct: bool,
}

impl BridgeFilter {
    fn wants(self, meta: &tracing::Metadata<'_>) -> bool {
        !(meta.is_span() && self.direct && crate::http::is_request_span(meta))
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for BridgeFilter {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
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

    fn event_enabled(
        &self,
        _: &tracing::Event<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        false
    }
}

/// The subscriber: filter, OpenTelemetry layers, formatter.
pub(crate) fn dispatch(
    config: &Config,
    writer: &LogWriter,
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> tracing::Dispatch {
    let writer = writer.writer.clone();
    let direct = writer.clone();
    // Boxed rather than `Option`al: a box forwards `on_register_dispatch`,
    // which the JSON layer needs to find trace ids.
    let format = match config.log_format {
        LogFormat::Json => JsonLayer::new().with_writer(writer).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .pretty()
            .with_ansi(false)
            .with_writer(writer)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry()
        .with(config.log_filter.clone())
        // The direct request spans hand their fields to the JSON layer
        // only; the pretty format gets them through the `tracing` span.
        // With the SDK disabled (`OTEL_SDK_DISABLED`), no tracer: no bridge
        // and no OpenTelemetry span (see `otel_layers`).
        .with(otel_layers(
            (!config.disabled).then_some(tracer),
            (config.log_format == LogFormat::Json && !config.bridge_request_spans).then(|| {
                let sink: LineSink = std::sync::Arc::new(move |line: &[u8]| direct.append(line));
                sink
            }),
        ))
        .with(format);
    tracing::Dispatch::new(subscriber)
}
