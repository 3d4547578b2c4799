//! Structured logs: one JSON object per line on stdout, for Loki.
//!
//! [`init`](crate::init) installs a `tracing` subscriber with:
//!
//! - an [`EnvFilter`](tracing_subscriber::EnvFilter) from `RUST_LOG` (default `info`);
//! - the [`JsonLayer`] (or `tracing-subscriber`'s pretty format when
//!   `MULTIWEB_LOG_FORMAT=pretty`);
//! - a non-blocking writer with a bounded buffer
//!   ([`DEFAULT_LOG_BUFFER_LINES`](crate::DEFAULT_LOG_BUFFER_LINES) lines). When stdout
//!   is slow or blocked the application keeps running; lines that do not fit
//!   are dropped and counted in `multiweb_telemetry_log_lines_dropped_total`.
//!
//! Records of the `log` crate are forwarded to the same subscriber.
//!
//! The guard returned by `init` flushes buffered lines when dropped, waiting
//! at most about a second.

mod json;
mod timestamp;

use std::io;

pub use json::{JsonLayer, MAX_VALUE_BYTES};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::Error;
use crate::config::{Config, LogFormat};

/// A custom destination for log lines, set with
/// [`TelemetryBuilder::log_writer`](crate::TelemetryBuilder::log_writer).
pub(crate) struct LogSink(pub(crate) Box<dyn io::Write + Send>);

/// The non-blocking log writer, before the subscriber is installed.
pub(crate) struct LogWriter {
    writer: NonBlocking,
    pub(crate) worker: WorkerGuard,
    pub(crate) dropped: ErrorCounter,
}

/// Starts the non-blocking writer thread for stdout (or `sink`).
pub(crate) fn writer(config: &Config, sink: Option<LogSink>) -> LogWriter {
    let builder = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(config.log_buffer_lines)
        .thread_name("multiweb-log-writer");
    let (writer, worker) = match sink {
        Some(LogSink(sink)) => builder.finish(sink),
        None => builder.finish(io::stdout()),
    };
    let dropped = writer.error_counter();
    LogWriter {
        writer,
        worker,
        dropped,
    }
}

/// Installs the global subscriber: filter, OpenTelemetry bridge, formatter.
/// Fails only if a subscriber is already installed.
pub(crate) fn install(
    config: &Config,
    writer: &LogWriter,
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> Result<(), Error> {
    let writer = writer.writer.clone();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false);
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
        .with(otel)
        .with(format);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| Error::SubscriberAlreadySet)?;
    // Forward the `log` crate; another logger being there already is not our error.
    let _ = tracing_log::LogTracer::init();
    Ok(())
}
