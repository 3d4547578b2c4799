//! [`TelemetryBuilder`]: the settings made in code.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::{LogFormat, LogSink, OtlpCompression, OtlpProtocol, Signals, TraceSampler};

/// Configures and installs telemetry.
///
/// Obtain one with [`Telemetry::builder`](crate::Telemetry::builder).
///
/// # Precedence
///
/// Following the OpenTelemetry convention, a setting made on the builder wins
/// over the environment variable for the same thing, which wins over the
/// default. Each setter names its variable and its default.
///
/// | setting | environment variable | default |
/// |---|---|---|
/// | [`service_name`](Self::service_name) | `OTEL_SERVICE_NAME` | `unknown_service:<executable>` |
/// | [`resource_attribute`](Self::resource_attribute) | `OTEL_RESOURCE_ATTRIBUTES` | none |
/// | [`disabled`](Self::disabled) | `OTEL_SDK_DISABLED` | `false` |
/// | [`log_filter`](Self::log_filter) | `RUST_LOG` | `info` |
/// | [`log_format`](Self::log_format) | `MULTIWEB_LOG_FORMAT` (`json` or `pretty`) | `json` |
/// | [`metrics_addr`](Self::metrics_addr) | `MULTIWEB_METRICS_ADDR` | no standalone listener |
/// | [`metrics_token`](Self::metrics_token) | `MULTIWEB_METRICS_TOKEN` | no token |
/// | [`otlp_endpoint`](Self::otlp_endpoint) | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` | none: spans are not exported |
/// | [`otlp_protocol`](Self::otlp_protocol) | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` or `http/protobuf`) | `http/protobuf` |
/// | none | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS` (`key=value` pairs) | none |
/// | none | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds per export request, retries included) | `10000` |
/// | [`otlp_compression`](Self::otlp_compression) | `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, `OTEL_EXPORTER_OTLP_COMPRESSION` (`none` or `gzip`) | `none` |
/// | [`otlp_certificate`](Self::otlp_certificate) | `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CERTIFICATE` (a PEM file of CA certificates) | the platform's trusted roots |
/// | [`otlp_client_certificate`](Self::otlp_client_certificate) | `OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` (PEM, for mTLS) | none |
/// | [`otlp_client_key`](Self::otlp_client_key) | `OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY`, `OTEL_EXPORTER_OTLP_CLIENT_KEY` (PEM, for mTLS) | none |
/// | [`otlp_insecure`](Self::otlp_insecure) | `OTEL_EXPORTER_OTLP_TRACES_INSECURE`, `OTEL_EXPORTER_OTLP_INSECURE` (gRPC endpoints without a scheme) | `false`: TLS |
/// | [`attribute_value_length_limit`](Self::attribute_value_length_limit) | `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` | [`DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT`](crate::DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT) (8192) |
/// | [`sampler`](Self::sampler) | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `parentbased_always_on` |
/// | [`keep_error_traces`](Self::keep_error_traces) | `MULTIWEB_TRACES_KEEP_ERRORS` | `true` |
/// | [`bridge_request_spans`](Self::bridge_request_spans) | none | `true` |
/// | [`log_buffer_bytes`](Self::log_buffer_bytes) | none | 16 MiB |
/// | [`panic_hook`](Self::panic_hook) | none | `true` |
/// | [`signals`](Self::signals) | none | [`Signals::ALL`] |
///
/// An empty environment variable counts as unset, as the OpenTelemetry
/// specification asks.
#[derive(Default)]
#[must_use = "a builder does nothing until `try_init` is called"]
pub struct TelemetryBuilder {
    pub(crate) service_name: Option<String>,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) disabled: Option<bool>,
    pub(crate) log_filter: Option<String>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) metrics_token: Option<String>,
    pub(crate) log_buffer_lines: Option<usize>,
    pub(crate) log_buffer_bytes: Option<usize>,
    pub(crate) default_buckets: Option<Vec<f64>>,
    pub(crate) buckets_for: Vec<(String, Vec<f64>)>,
    pub(crate) process_metrics: Option<bool>,
    pub(crate) bridge_request_spans: Option<bool>,
    pub(crate) log_writer: Option<LogSink>,
    pub(crate) service_version: Option<String>,
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) otlp_protocol: Option<OtlpProtocol>,
    pub(crate) sampler: Option<TraceSampler>,
    pub(crate) keep_error_traces: Option<bool>,
    pub(crate) span_queue_size: Option<usize>,
    pub(crate) otlp_compression: Option<OtlpCompression>,
    pub(crate) otlp_certificate: Option<PathBuf>,
    pub(crate) otlp_client_certificate: Option<PathBuf>,
    pub(crate) otlp_client_key: Option<PathBuf>,
    pub(crate) otlp_insecure: Option<bool>,
    pub(crate) attribute_value_length_limit: Option<usize>,
    pub(crate) panic_hook: Option<bool>,
    pub(crate) signals: Option<Signals>,
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("disabled", &self.disabled)
            .field("log_filter", &self.log_filter)
            .field("log_format", &self.log_format)
            .field("metrics_addr", &self.metrics_addr)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("log_buffer_lines", &self.log_buffer_lines)
            .field("log_buffer_bytes", &self.log_buffer_bytes)
            .field("default_buckets", &self.default_buckets)
            .field("buckets_for", &self.buckets_for)
            .field("process_metrics", &self.process_metrics)
            .field("bridge_request_spans", &self.bridge_request_spans)
            .field("log_writer", &self.log_writer.as_ref().map(|_| "custom"))
            .field("service_version", &self.service_version)
            .field(
                "otlp_endpoint",
                &self
                    .otlp_endpoint
                    .as_deref()
                    .map(super::env::without_userinfo),
            )
            .field("otlp_protocol", &self.otlp_protocol)
            .field("sampler", &self.sampler)
            .field("keep_error_traces", &self.keep_error_traces)
            .field("span_queue_size", &self.span_queue_size)
            .field("otlp_compression", &self.otlp_compression)
            .field("otlp_certificate", &self.otlp_certificate)
            .field("otlp_client_certificate", &self.otlp_client_certificate)
            .field("otlp_client_key", &self.otlp_client_key)
            .field("otlp_insecure", &self.otlp_insecure)
            .field(
                "attribute_value_length_limit",
                &self.attribute_value_length_limit,
            )
            .field("panic_hook", &self.panic_hook)
            .field("signals", &self.signals)
            .finish()
    }
}

impl TelemetryBuilder {
    /// The service name, reported as `service.name`.
    ///
    /// Overrides `OTEL_SERVICE_NAME`. Defaults to `unknown_service:<executable name>`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds a resource attribute. Attributes set here are added to, and win
    /// over, those from `OTEL_RESOURCE_ATTRIBUTES`. Defaults to none.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }

    /// Turns tracing off, as `OTEL_SDK_DISABLED=true` asks of an
    /// OpenTelemetry SDK: no OpenTelemetry span is made (`tracing` spans
    /// stay plain spans), so log lines carry no `trace_id`/`span_id` of
    /// their own; with JSON logs an incoming `traceparent` passes through
    /// unchanged, as the OpenTelemetry API does without an SDK (the
    /// request's lines carry the caller's ids, outgoing calls continue the
    /// caller's trace). Logs (with their request fields) and metrics stay
    /// on. To keep ids in every log line without exporting anything, leave
    /// the SDK on and configure no endpoint.
    ///
    /// Overrides `OTEL_SDK_DISABLED`. Defaults to `false`.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = Some(disabled);
        self
    }

    /// The log filter, in `RUST_LOG` syntax (e.g. `info,my_crate=debug`).
    ///
    /// Overrides `RUST_LOG`. Defaults to `info`.
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = Some(directives.into());
        self
    }

    /// The log format.
    ///
    /// Overrides `MULTIWEB_LOG_FORMAT`. Defaults to [`LogFormat::Json`].
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = Some(format);
        self
    }

    /// Serves `/metrics` on a listener of its own at `addr`, bound during
    /// `try_init` (a bind failure is an [`Error::BindMetrics`](crate::Error::BindMetrics)).
    ///
    /// Overrides `MULTIWEB_METRICS_ADDR`. Defaults to no standalone listener:
    /// mount [`metrics_service`](crate::metrics::metrics_service) on your router instead.
    pub fn metrics_addr(mut self, addr: SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Requires `Authorization: Bearer <token>` on `/metrics`, both on the
    /// standalone listener and on [`TelemetryGuard::metrics_service`](crate::TelemetryGuard::metrics_service).
    ///
    /// Surrounding whitespace is trimmed, from this setting as from
    /// `MULTIWEB_METRICS_TOKEN` (a token read from a secret file keeps its
    /// trailing newline). A token with whitespace, control or non-ASCII
    /// characters inside could never match a header, and
    /// [`try_init`](Self::try_init) refuses it with an error that names the
    /// setting, never the token; so does an empty one, which means no token.
    ///
    /// Overrides `MULTIWEB_METRICS_TOKEN`. Defaults to no token.
    pub fn metrics_token(mut self, token: impl Into<String>) -> Self {
        self.metrics_token = Some(token.into());
        self
    }

    /// How many log lines may wait for stdout before new ones are dropped,
    /// on top of the [byte bound](Self::log_buffer_bytes), which is what
    /// bounds the buffer's memory. Dropped lines are counted in
    /// `multiweb_telemetry_log_lines_dropped_total`.
    ///
    /// Defaults to no line bound (it was 128,000 lines, which let long lines
    /// take gigabytes while stdout was stalled).
    #[deprecated(note = "the log buffer is bounded in bytes: use `log_buffer_bytes`")]
    pub fn log_buffer_lines(mut self, lines: usize) -> Self {
        self.log_buffer_lines = Some(lines);
        self
    }

    /// How many bytes of log lines may wait for stdout (the batch being
    /// written included) before new lines are dropped. Dropped lines are
    /// counted in `multiweb_telemetry_log_lines_dropped_total`; a line
    /// longer than the whole bound is always dropped. The buffers' memory
    /// stays within about twice this.
    ///
    /// Defaults to [`DEFAULT_LOG_BUFFER_BYTES`](crate::DEFAULT_LOG_BUFFER_BYTES) (16 MiB).
    pub fn log_buffer_bytes(mut self, bytes: usize) -> Self {
        self.log_buffer_bytes = Some(bytes);
        self
    }

    /// Writes log lines to `writer` instead of stdout (still through the
    /// non-blocking, bounded buffer). Defaults to stdout.
    pub fn log_writer<W>(mut self, writer: W) -> Self
    where
        W: std::io::Write + Send + 'static,
    {
        self.log_writer = Some(LogSink(Box::new(writer)));
        self
    }

    /// Histogram buckets (upper bounds, in the metric's unit) for every
    /// histogram without a more specific setting.
    ///
    /// Defaults to [`DEFAULT_BUCKETS`](crate::DEFAULT_BUCKETS).
    pub fn histogram_buckets(mut self, bounds: &[f64]) -> Self {
        self.default_buckets = Some(bounds.to_vec());
        self
    }

    /// Histogram buckets for the histogram named exactly `metric`.
    ///
    /// Defaults to the buckets of [`histogram_buckets`](Self::histogram_buckets).
    pub fn histogram_buckets_for(mut self, metric: impl Into<String>, bounds: &[f64]) -> Self {
        self.buckets_for.push((metric.into(), bounds.to_vec()));
        self
    }

    /// The service version, reported as `service.version`. Defaults to none
    /// (or `service.version` from `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// Where spans are exported: the collector's base URL, such as
    /// `http://tempo:4317` for gRPC or `http://tempo:4318` for HTTP (where
    /// `/v1/traces` is appended); `https://` for TLS (see
    /// [`otlp_certificate`](Self::otlp_certificate)). For gRPC, `host:port`
    /// without a scheme uses TLS unless [`otlp_insecure`](Self::otlp_insecure).
    ///
    /// Overrides `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`. Defaults to none: without an endpoint
    /// spans are not exported, but trace and span ids still appear in logs
    /// (unless the SDK is [`disabled`](Self::disabled)).
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP transport. Overrides `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` and
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`. Defaults to [`OtlpProtocol::HttpProtobuf`],
    /// as the OpenTelemetry specification says.
    pub fn otlp_protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.otlp_protocol = Some(protocol);
        self
    }

    /// Whether export requests are compressed. Overrides
    /// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` and
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`. Defaults to [`OtlpCompression::None`].
    pub fn otlp_compression(mut self, compression: OtlpCompression) -> Self {
        self.otlp_compression = Some(compression);
        self
    }

    /// A PEM file of the CA certificates that the collector's certificate
    /// must chain to, for `https://` endpoints; they replace the platform's
    /// trusted roots. Read at [`try_init`](Self::try_init): a file that cannot
    /// be read or holds no certificate is an error naming it.
    ///
    /// Overrides `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` and
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`. Defaults to none: the platform's
    /// trusted roots.
    pub fn otlp_certificate(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.otlp_certificate = Some(pem_file.into());
        self
    }

    /// A PEM file of the client certificate (chain) presented to a collector
    /// that requires mutual TLS; needs [`otlp_client_key`](Self::otlp_client_key).
    ///
    /// Overrides `OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE` and
    /// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`. Defaults to none.
    pub fn otlp_client_certificate(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.otlp_client_certificate = Some(pem_file.into());
        self
    }

    /// A PEM file of the private key of the
    /// [client certificate](Self::otlp_client_certificate) (PKCS#8, PKCS#1
    /// or SEC1). Read at [`try_init`](Self::try_init), and checked to match
    /// the certificate; its content never appears in an error.
    ///
    /// Overrides `OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY` and
    /// `OTEL_EXPORTER_OTLP_CLIENT_KEY`. Defaults to none.
    pub fn otlp_client_key(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.otlp_client_key = Some(pem_file.into());
        self
    }

    /// Whether a gRPC endpoint given without a scheme (`tempo:4317`) is
    /// reached in plaintext (`true`) or over TLS (`false`). Endpoints with
    /// `http://` or `https://` say it themselves.
    ///
    /// Overrides `OTEL_EXPORTER_OTLP_TRACES_INSECURE` and
    /// `OTEL_EXPORTER_OTLP_INSECURE`. Defaults to `false`.
    pub fn otlp_insecure(mut self, insecure: bool) -> Self {
        self.otlp_insecure = Some(insecure);
        self
    }

    /// The longest attribute value exported, in characters: longer strings
    /// (also in arrays) of span, event and link attributes are cut to it
    /// when spans are exported, whichever code made them.
    ///
    /// Overrides `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` and
    /// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`. Defaults to
    /// [`DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT`](crate::DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT).
    pub fn attribute_value_length_limit(mut self, chars: usize) -> Self {
        self.attribute_value_length_limit = Some(chars);
        self
    }

    /// Which traces are kept. Overrides `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`. Defaults to
    /// [`TraceSampler::ParentBasedAlwaysOn`]; with only
    /// `OTEL_TRACES_SAMPLER_ARG` set, to
    /// [`TraceSampler::ParentBasedTraceIdRatio`] with that ratio.
    pub fn sampler(mut self, sampler: TraceSampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// Whether a trace that a ratio sampler would drop is kept anyway when
    /// one of its spans ends with an error status (a 5xx response), as the
    /// guide's sampling strategy asks. A remote parent's "not sampled" flag
    /// is still respected. See [`trace`](crate::trace) for the memory it holds.
    ///
    /// Overrides `MULTIWEB_TRACES_KEEP_ERRORS`. Defaults to `true`.
    pub fn keep_error_traces(mut self, keep: bool) -> Self {
        self.keep_error_traces = Some(keep);
        self
    }

    /// How many finished spans may wait for export before new ones are
    /// dropped (and counted in `multiweb_telemetry_spans_dropped_total`).
    /// Defaults to 2048.
    pub fn span_queue_size(mut self, spans: usize) -> Self {
        self.span_queue_size = Some(spans);
        self
    }

    /// Whether [`try_init`](Self::try_init) installs the panic hook that logs
    /// each panic as one JSON line at error level (with the request's
    /// fields and trace ids) through the non-blocking log writer, and counts
    /// it in `multiweb_telemetry_panics_total`. A hook set before is called
    /// after it, unless it is the standard hook, whose synchronous write to
    /// stderr can block the panicking thread when stderr is not read. When
    /// the guard is dropped, panics go to the previous hook again. See
    /// [`metrics::PANICS`](crate::metrics::PANICS).
    ///
    /// Without it, panics go to whatever hook is set (the standard one
    /// writes them to stderr). Defaults to `true`.
    pub fn panic_hook(mut self, install: bool) -> Self {
        self.panic_hook = Some(install);
        self
    }

    /// Which signals to set up: logs, traces, metrics, or a combination
    /// (see [`Signals`]). A signal that is off costs nothing per request:
    /// with [`Signals::METRICS`] alone no `tracing` subscriber and no log
    /// thread are started, and the HTTP layer records metrics only.
    ///
    /// Defaults to [`Signals::ALL`].
    pub fn signals(mut self, signals: Signals) -> Self {
        self.signals = Some(signals);
        self
    }

    /// Whether the standard `process_*` metrics are exported. Defaults to `true`.
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.process_metrics = Some(enabled);
        self
    }

    /// Whether the HTTP layer's request spans go through the
    /// `tracing-opentelemetry` bridge like every other span, so that
    /// `tracing_opentelemetry::OpenTelemetrySpanExt` (`context`,
    /// `set_parent`, `set_attribute`, `add_link`) and explicit parents work
    /// on them as on any span.
    ///
    /// `false` opts in to the direct path: with JSON logs, the layer starts
    /// the request's OpenTelemetry span itself, about a fifth cheaper per
    /// request (see BENCHMARKS.md), but then `OpenTelemetrySpanExt` methods
    /// called on the request span itself do not reach its OpenTelemetry
    /// span, and a span given it as an explicit parent starts a new trace
    /// (spans opened inside it are its children either way; see
    /// [`http`](crate::http#span)). The pretty log format always uses the
    /// bridge.
    ///
    /// Defaults to `true`.
    pub fn bridge_request_spans(mut self, bridge: bool) -> Self {
        self.bridge_request_spans = Some(bridge);
        self
    }
}
