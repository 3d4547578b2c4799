//! Settings: the public builder ([`builder`]), the environment variables
//! and their parsers ([`env`]), and the settings resolved from both
//! ([`resolved`]). Code wins over the environment, which wins over the
//! defaults.

mod builder;
mod env;
mod resolved;
mod signals;
#[cfg(test)]
mod tests;
mod tls;
#[cfg(test)]
#[cfg(feature = "tls")]
mod tls_tests;

pub use builder::TelemetryBuilder;
pub use signals::Signals;

/// A custom destination for log lines, set with
/// [`TelemetryBuilder::log_writer`].
pub(crate) struct LogSink(pub(crate) Box<dyn std::io::Write + Send>);
#[cfg(feature = "otlp")]
pub(crate) use resolved::OtlpExport;
pub(crate) use resolved::{Buckets, Config};
#[cfg(feature = "otlp")]
pub(crate) use tls::OtlpTls;
#[cfg(feature = "tls")]
pub(crate) use tls::provider as tls_provider;

/// Default histogram buckets, in seconds.
///
/// They suit web latency and bracket the guide's thresholds: the `HighLatency`
/// alert (P95 > 0.5 s) and the slow-request log query (`duration > 1.0`).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Default number of log lines buffered before new lines are dropped (and counted).
#[deprecated(note = "the log buffer is bounded in bytes: see `DEFAULT_LOG_BUFFER_BYTES`")]
pub const DEFAULT_LOG_BUFFER_LINES: usize = 128_000;

/// Default size of the log buffer, in bytes: 16 MiB. Lines waiting for
/// stdout (and the batch being written) never hold more; lines that do not
/// fit are dropped and counted in `multiweb_telemetry_log_lines_dropped_total`.
///
/// That is about 50,000 typical request lines (300 bytes), or a second of a
/// busy service's logs with stdout stalled, and 650 of the longest lines the
/// JSON format writes (three values cut at 8 KiB each).
pub const DEFAULT_LOG_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// OTLP over gRPC, usually port 4317 (`grpc`).
    Grpc,
    /// OTLP over HTTP with protobuf bodies, usually port 4318 (`http/protobuf`).
    HttpProtobuf,
}

/// Compression of OTLP export requests (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtlpCompression {
    /// Requests are sent as they are (`none`). The default.
    #[default]
    None,
    /// Requests are gzip-compressed (`gzip`): `Content-Encoding: gzip` over
    /// HTTP, `grpc-encoding: gzip` over gRPC.
    Gzip,
}

/// Default longest exported attribute value, in characters
/// (`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`): longer string values are cut to
/// it when spans are exported. The same as the longest value a log line
/// carries (8 KiB), so a long `url.path` is cut alike in both.
pub const DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT: usize = 8 * 1024;

/// The standard samplers of `OTEL_TRACES_SAMPLER`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TraceSampler {
    /// Keep every trace (`always_on`).
    AlwaysOn,
    /// Keep no trace (`always_off`).
    AlwaysOff,
    /// Keep this fraction of traces, decided from the trace id (`traceidratio`).
    TraceIdRatio(f64),
    /// Follow the parent's sampled flag; for root spans keep every trace
    /// (`parentbased_always_on`, the specification's default).
    ParentBasedAlwaysOn,
    /// Follow the parent's sampled flag; for root spans keep none (`parentbased_always_off`).
    ParentBasedAlwaysOff,
    /// Follow the parent's sampled flag; for root spans keep this fraction
    /// (`parentbased_traceidratio`).
    ParentBasedTraceIdRatio(f64),
}

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line, for Loki (`MULTIWEB_LOG_FORMAT=json`). The default.
    #[default]
    Json,
    /// Human-readable multi-line output for local development (`MULTIWEB_LOG_FORMAT=pretty`).
    Pretty,
}
