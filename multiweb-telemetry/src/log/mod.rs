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

mod encode;
mod fields;
mod layer;
mod line;
mod timestamp;
mod writer;

pub(crate) use writer::{BufferedWriter, DroppedLines, WriterGuard};

use std::io;

pub use encode::MAX_VALUE_BYTES;
pub(crate) use encode::decimal;
pub(crate) use fields::{RenderedFields, add_fields};
pub use layer::JsonLayer;
pub(crate) use line::{LineSink, OwnFields, write_line};

use crate::Error;
use crate::config::{Config, LogSink};

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

/// A writer that keeps what is written, for unit tests.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
