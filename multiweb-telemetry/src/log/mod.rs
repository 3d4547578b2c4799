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
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;

use crate::Error;
use crate::config::{Config, LogFormat};

/// A custom destination for log lines, set with
/// [`TelemetryBuilder::log_writer`](crate::TelemetryBuilder::log_writer).
pub(crate) struct LogSink(pub(crate) Box<dyn io::Write + Send>);

/// What the installed logging keeps alive.
pub(crate) struct InstalledLogs {
    pub(crate) worker: WorkerGuard,
    pub(crate) dropped: ErrorCounter,
}

/// Installs the global subscriber. Fails only if one is already installed.
pub(crate) fn install(config: &Config, sink: Option<LogSink>) -> Result<InstalledLogs, Error> {
    if tracing::dispatcher::has_been_set() {
        return Err(Error::SubscriberAlreadySet);
    }
    let builder = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(config.log_buffer_lines)
        .thread_name("multiweb-log-writer");
    let (writer, worker) = match sink {
        Some(LogSink(sink)) => builder.finish(sink),
        None => builder.finish(io::stdout()),
    };
    let dropped = writer.error_counter();

    let (json, pretty) = match config.log_format {
        LogFormat::Json => (Some(JsonLayer::new().with_writer(writer)), None),
        LogFormat::Pretty => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .pretty()
                    .with_ansi(false)
                    .with_writer(writer),
            ),
        ),
    };
    let subscriber = tracing_subscriber::registry()
        .with(config.log_filter.clone())
        .with(json)
        .with(pretty);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| Error::SubscriberAlreadySet)?;
    // Forward the `log` crate; another logger being there already is not our error.
    let _ = tracing_log::LogTracer::init();
    Ok(InstalledLogs { worker, dropped })
}
