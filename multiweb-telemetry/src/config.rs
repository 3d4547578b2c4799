//! The builder, and how settings are resolved from code, the environment and defaults.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;

use crate::Error;

/// Default histogram buckets, in seconds.
///
/// They suit web latency and bracket the guide's thresholds: the `HighLatency`
/// alert (P95 > 0.5 s) and the slow-request log query (`duration > 1.0`).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Default number of log lines buffered before new lines are dropped (and counted).
pub const DEFAULT_LOG_BUFFER_LINES: usize = 128_000;

/// Environment variables the crate reads.
pub(crate) mod vars {
    pub(crate) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    pub(crate) const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    pub(crate) const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    pub(crate) const RUST_LOG: &str = "RUST_LOG";
    pub(crate) const MULTIWEB_METRICS_ADDR: &str = "MULTIWEB_METRICS_ADDR";
    pub(crate) const MULTIWEB_LOG_FORMAT: &str = "MULTIWEB_LOG_FORMAT";
    pub(crate) const MULTIWEB_METRICS_TOKEN: &str = "MULTIWEB_METRICS_TOKEN";
    pub(crate) const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str =
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    pub(crate) const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str =
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    pub(crate) const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    pub(crate) const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    pub(crate) const MULTIWEB_TRACES_KEEP_ERRORS: &str = "MULTIWEB_TRACES_KEEP_ERRORS";
    pub(crate) const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    pub(crate) const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    pub(crate) const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
    pub(crate) const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str =
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// OTLP over gRPC, usually port 4317 (`grpc`).
    Grpc,
    /// OTLP over HTTP with protobuf bodies, usually port 4318 (`http/protobuf`).
    HttpProtobuf,
}

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
/// | none | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds per export request) | `10000` |
/// | none | `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, `OTEL_EXPORTER_OTLP_COMPRESSION` (`none` or `gzip`; this build sends `gzip` uncompressed, with a warning) | `none` |
/// | [`sampler`](Self::sampler) | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `parentbased_always_on` |
/// | [`keep_error_traces`](Self::keep_error_traces) | `MULTIWEB_TRACES_KEEP_ERRORS` | `true` |
/// | [`bridge_request_spans`](Self::bridge_request_spans) | none | `false` |
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
    pub(crate) default_buckets: Option<Vec<f64>>,
    pub(crate) buckets_for: Vec<(String, Vec<f64>)>,
    pub(crate) process_metrics: Option<bool>,
    pub(crate) bridge_request_spans: Option<bool>,
    pub(crate) log_writer: Option<crate::log::LogSink>,
    pub(crate) service_version: Option<String>,
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) otlp_protocol: Option<OtlpProtocol>,
    pub(crate) sampler: Option<TraceSampler>,
    pub(crate) keep_error_traces: Option<bool>,
    pub(crate) span_queue_size: Option<usize>,
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
            .field("default_buckets", &self.default_buckets)
            .field("buckets_for", &self.buckets_for)
            .field("process_metrics", &self.process_metrics)
            .field("bridge_request_spans", &self.bridge_request_spans)
            .field("log_writer", &self.log_writer.as_ref().map(|_| "custom"))
            .field("service_version", &self.service_version)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("otlp_protocol", &self.otlp_protocol)
            .field("sampler", &self.sampler)
            .field("keep_error_traces", &self.keep_error_traces)
            .field("span_queue_size", &self.span_queue_size)
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
    /// `try_init` (a bind failure is an [`Error::BindMetrics`]).
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
    /// Overrides `MULTIWEB_METRICS_TOKEN`. Defaults to no token.
    pub fn metrics_token(mut self, token: impl Into<String>) -> Self {
        self.metrics_token = Some(token.into());
        self
    }

    /// How many log lines may wait for stdout before new ones are dropped.
    /// Dropped lines are counted in `multiweb_telemetry_log_lines_dropped_total`.
    ///
    /// Defaults to [`DEFAULT_LOG_BUFFER_LINES`].
    pub fn log_buffer_lines(mut self, lines: usize) -> Self {
        self.log_buffer_lines = Some(lines);
        self
    }

    /// Writes log lines to `writer` instead of stdout (still through the
    /// non-blocking, bounded buffer). Defaults to stdout.
    pub fn log_writer<W>(mut self, writer: W) -> Self
    where
        W: std::io::Write + Send + 'static,
    {
        self.log_writer = Some(crate::log::LogSink(Box::new(writer)));
        self
    }

    /// Histogram buckets (upper bounds, in the metric's unit) for every
    /// histogram without a more specific setting.
    ///
    /// Defaults to [`DEFAULT_BUCKETS`].
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
    /// `/v1/traces` is appended).
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

    /// Whether the standard `process_*` metrics are exported. Defaults to `true`.
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.process_metrics = Some(enabled);
        self
    }

    /// Whether the HTTP layer's request spans go through the
    /// `tracing-opentelemetry` bridge like every other span, instead of the
    /// layer starting their OpenTelemetry spans itself. Turn it on when the
    /// handlers' code uses `tracing_opentelemetry::OpenTelemetrySpanExt` on
    /// the request span itself, or gives it as an explicit parent (see
    /// [`http`](crate::http#span)); it costs several microseconds per
    /// request. The pretty log format always uses the bridge.
    ///
    /// Defaults to `false`.
    pub fn bridge_request_spans(mut self, bridge: bool) -> Self {
        self.bridge_request_spans = Some(bridge);
        self
    }

    /// Resolves every setting against `env` and the defaults, without
    /// installing anything.
    pub(crate) fn resolve(&self, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Config, Error> {
        let env = Env(env);
        let service_name = match &self.service_name {
            Some(name) => name.clone(),
            None => match env.get(vars::OTEL_SERVICE_NAME)? {
                Some(name) => name.trim().to_owned(),
                None => default_service_name(),
            },
        };

        let mut resource_attributes = env
            .parse(vars::OTEL_RESOURCE_ATTRIBUTES, parse_resource_attributes)?
            .unwrap_or_default();
        for (key, value) in &self.resource_attributes {
            resource_attributes.retain(|(k, _)| k != key);
            resource_attributes.push((key.clone(), value.clone()));
        }

        let disabled = match self.disabled {
            Some(disabled) => disabled,
            None => env
                .parse(vars::OTEL_SDK_DISABLED, |raw| {
                    parse_bool(raw).ok_or(("`true` or `false`", None))
                })?
                .unwrap_or(false),
        };

        let log_format = match self.log_format {
            Some(format) => format,
            None => env
                .parse(vars::MULTIWEB_LOG_FORMAT, |raw| {
                    match raw.trim().to_ascii_lowercase().as_str() {
                        "json" => Ok(LogFormat::Json),
                        "pretty" => Ok(LogFormat::Pretty),
                        _ => Err(("`json` or `pretty`", None)),
                    }
                })?
                .unwrap_or_default(),
        };

        let metrics_addr = match self.metrics_addr {
            Some(addr) => Some(addr),
            None => env.parse(vars::MULTIWEB_METRICS_ADDR, |raw| {
                raw.trim().parse::<SocketAddr>().map_err(|err| {
                    let err: BoxError = Box::new(err);
                    ("a socket address such as `127.0.0.1:9464`", Some(err))
                })
            })?,
        };

        let metrics_token = match &self.metrics_token {
            Some(token) => Some(token.clone()),
            None => env.get(vars::MULTIWEB_METRICS_TOKEN)?,
        }
        .filter(|token| !token.is_empty());

        let log_buffer_lines = self.log_buffer_lines.unwrap_or(DEFAULT_LOG_BUFFER_LINES);
        if log_buffer_lines == 0 {
            return Err(Error::InvalidSetting {
                setting: "log_buffer_lines(0)".to_owned(),
                reason: "the buffer must hold at least one line",
            });
        }

        let traces = self.resolve_traces(&env, disabled)?;

        Ok(Config {
            traces,
            service_version: self.service_version.clone(),
            service_name,
            resource_attributes,
            disabled,
            log_filter: self.resolve_log_filter(&env)?,
            log_format,
            metrics_addr,
            metrics_token,
            log_buffer_lines,
            buckets: self.resolve_buckets()?,
            process_metrics: self.process_metrics.unwrap_or(true),
            bridge_request_spans: self.bridge_request_spans.unwrap_or(false),
        })
    }

    /// Where the exporter sends to, and whether that is a base URL (to which
    /// HTTP appends `/v1/traces`) rather than the full URL.
    fn resolve_otlp_endpoint(&self, env: &Env<'_>) -> Result<Option<(String, bool)>, Error> {
        let endpoint = |name| {
            env.parse(name, |raw| {
                parse_endpoint(raw)?;
                Ok(raw.trim().to_owned())
            })
        };
        Ok(if let Some(url) = &self.otlp_endpoint {
            parse_endpoint(url).map_err(|(reason, _)| Error::InvalidSetting {
                setting: format!("otlp_endpoint({url:?})"),
                reason,
            })?;
            Some((url.trim().to_owned(), true))
        } else {
            // The traces variable replaces the general one, which is then
            // not read (it may be meant for other signals or SDKs).
            match endpoint(vars::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)? {
                Some(url) => Some((url, false)),
                None => endpoint(vars::OTEL_EXPORTER_OTLP_ENDPOINT)?.map(|url| (url, true)),
            }
        })
    }

    fn resolve_traces(&self, env: &Env<'_>, disabled: bool) -> Result<TraceConfig, Error> {
        let endpoint = self.resolve_otlp_endpoint(env)?;
        let protocol = if let Some(protocol) = self.otlp_protocol {
            protocol
        } else {
            {
                let parse = |raw: &str| match raw.trim() {
                    "grpc" => Ok(OtlpProtocol::Grpc),
                    "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
                    _ => Err(("`grpc` or `http/protobuf`", None)),
                };
                match env.parse(vars::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, parse)? {
                    Some(protocol) => protocol,
                    None => env
                        .parse(vars::OTEL_EXPORTER_OTLP_PROTOCOL, parse)?
                        .unwrap_or(OtlpProtocol::HttpProtobuf),
                }
            }
        };
        let sampler = if let Some(sampler) = self.sampler {
            sampler
        } else {
            {
                let arg = env.parse(vars::OTEL_TRACES_SAMPLER_ARG, |raw| {
                    match raw.trim().parse::<f64>() {
                        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                        _ => Err(("a ratio from 0 to 1, such as `0.05`", None)),
                    }
                })?;
                let sampler = env.parse(vars::OTEL_TRACES_SAMPLER, |raw| {
                    let ratio = arg.unwrap_or(1.0);
                    match raw.trim() {
                        "always_on" => Ok(TraceSampler::AlwaysOn),
                        "always_off" => Ok(TraceSampler::AlwaysOff),
                        "traceidratio" => Ok(TraceSampler::TraceIdRatio(ratio)),
                        "parentbased_always_on" => Ok(TraceSampler::ParentBasedAlwaysOn),
                        "parentbased_always_off" => Ok(TraceSampler::ParentBasedAlwaysOff),
                        "parentbased_traceidratio" => {
                            Ok(TraceSampler::ParentBasedTraceIdRatio(ratio))
                        }
                        _ => Err((
                            "one of `always_on`, `always_off`, `traceidratio`, \
                             `parentbased_always_on`, `parentbased_always_off`, \
                             `parentbased_traceidratio`",
                            None,
                        )),
                    }
                })?;
                match (sampler, arg) {
                    (Some(sampler), _) => sampler,
                    (None, Some(ratio)) => TraceSampler::ParentBasedTraceIdRatio(ratio),
                    (None, None) => TraceSampler::ParentBasedAlwaysOn,
                }
            }
        };
        if let TraceSampler::TraceIdRatio(ratio) | TraceSampler::ParentBasedTraceIdRatio(ratio) =
            sampler
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(Error::InvalidSetting {
                setting: format!("sampler({sampler:?})"),
                reason: "the ratio must be from 0 to 1",
            });
        }
        let keep_errors = match self.keep_error_traces {
            Some(keep) => keep,
            None => env
                .parse(vars::MULTIWEB_TRACES_KEEP_ERRORS, |raw| {
                    parse_bool(raw).ok_or(("`true` or `false`", None))
                })?
                .unwrap_or(true),
        };
        let headers = otlp_headers(env)?;
        let timeout = otlp_timeout(env)?;
        let gzip_asked_by = otlp_compression(env)?;
        let queue_size = self.span_queue_size.unwrap_or(2048);
        if queue_size == 0 {
            return Err(Error::InvalidSetting {
                setting: "span_queue_size(0)".to_owned(),
                reason: "the queue must hold at least one span",
            });
        }
        let export = endpoint
            .filter(|_| !disabled)
            .map(|(url, is_base)| OtlpExport {
                endpoint: match protocol {
                    OtlpProtocol::HttpProtobuf if is_base => with_traces_path(&url),
                    _ => url,
                },
                protocol,
                headers,
                timeout,
                gzip_asked_by,
            });
        Ok(TraceConfig {
            export,
            sampler,
            keep_errors,
            queue_size,
        })
    }

    fn resolve_log_filter(&self, env: &Env<'_>) -> Result<tracing_subscriber::EnvFilter, Error> {
        let parse = |directives: &str| tracing_subscriber::EnvFilter::builder().parse(directives);
        if let Some(directives) = &self.log_filter {
            return parse(directives).map_err(|_| Error::InvalidSetting {
                setting: format!("log_filter({directives:?})"),
                reason: "not valid `RUST_LOG` filter directives",
            });
        }
        let from_env = env.parse(vars::RUST_LOG, |raw| {
            parse(raw).map_err(|err| {
                let err: BoxError = Box::new(err);
                (
                    "`RUST_LOG` filter directives such as `info,my_crate=debug`",
                    Some(err),
                )
            })
        })?;
        Ok(from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info")))
    }

    fn resolve_buckets(&self) -> Result<Buckets, Error> {
        let default = match &self.default_buckets {
            Some(bounds) => checked_buckets("histogram_buckets", bounds)?,
            None => DEFAULT_BUCKETS.to_vec(),
        };
        let per_metric = self
            .buckets_for
            .iter()
            .map(|(metric, bounds)| {
                let setting = format!("histogram_buckets_for({metric:?})");
                Ok((metric.clone(), checked_buckets(&setting, bounds)?))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Buckets {
            default,
            per_metric,
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a variable's value was rejected: what was expected, and the parser's error.
type Rejection = (&'static str, Option<BoxError>);

/// Reads environment variables through a lookup function (the process
/// environment, or a map in tests).
struct Env<'a>(&'a dyn Fn(&str) -> Option<OsString>);

impl Env<'_> {
    /// The variable's value; unset and empty are both `None`.
    fn get(&self, name: &'static str) -> Result<Option<String>, Error> {
        match (self.0)(name) {
            None => Ok(None),
            Some(raw) => match raw.into_string() {
                Ok(s) if s.trim().is_empty() => Ok(None),
                Ok(s) => Ok(Some(s)),
                Err(raw) => Err(Error::InvalidEnv {
                    name,
                    value: raw.to_string_lossy().into_owned(),
                    expected: "valid UTF-8",
                    source: None,
                }),
            },
        }
    }

    /// The variable parsed by `parse`, whose error says what was expected.
    fn parse<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, Rejection>,
    ) -> Result<Option<T>, Error> {
        let Some(raw) = self.get(name)? else {
            return Ok(None);
        };
        parse(&raw)
            .map(Some)
            .map_err(|(expected, source)| Error::InvalidEnv {
                name,
                value: raw,
                expected,
                source,
            })
    }
}

/// Trace settings, resolved.
#[derive(Debug, Clone)]
pub(crate) struct TraceConfig {
    /// Where spans are exported, if they are.
    pub(crate) export: Option<OtlpExport>,
    pub(crate) sampler: TraceSampler,
    pub(crate) keep_errors: bool,
    pub(crate) queue_size: usize,
}

/// Where and how spans are exported, resolved.
#[derive(Debug, Clone)]
pub(crate) struct OtlpExport {
    pub(crate) protocol: OtlpProtocol,
    /// For HTTP the full URL (`.../v1/traces`), for gRPC the collector's.
    pub(crate) endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`
    /// (values marked sensitive: `Debug` does not show them).
    pub(crate) headers: http::HeaderMap,
    /// Longest one export request may take.
    pub(crate) timeout: std::time::Duration,
    /// The variable that asked for gzip, which this build cannot do: the
    /// requests go uncompressed, with one warning at start.
    pub(crate) gzip_asked_by: Option<&'static str>,
}

/// Every setting, resolved.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) traces: TraceConfig,
    pub(crate) service_version: Option<String>,
    pub(crate) service_name: String,
    pub(crate) resource_attributes: Vec<(String, String)>,
    #[allow(
        dead_code,
        reason = "folded into `traces.export`; kept for diagnostics"
    )]
    pub(crate) disabled: bool,
    pub(crate) log_filter: tracing_subscriber::EnvFilter,
    pub(crate) log_format: LogFormat,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) metrics_token: Option<String>,
    pub(crate) log_buffer_lines: usize,
    pub(crate) buckets: Buckets,
    pub(crate) process_metrics: bool,
    /// Request spans through the bridge (see `trace::request`).
    pub(crate) bridge_request_spans: bool,
}

/// Histogram bucket settings, checked.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    pub(crate) default: Vec<f64>,
    pub(crate) per_metric: Vec<(String, Vec<f64>)>,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            default: DEFAULT_BUCKETS.to_vec(),
            per_metric: Vec::new(),
        }
    }
}

fn checked_buckets(setting: &str, bounds: &[f64]) -> Result<Vec<f64>, Error> {
    let invalid = |reason| Error::InvalidSetting {
        setting: setting.to_owned(),
        reason,
    };
    if bounds.is_empty() {
        return Err(invalid("at least one bucket bound is needed"));
    }
    if bounds.iter().any(|b| !b.is_finite()) {
        return Err(invalid(
            "bucket bounds must be finite (`+Inf` is always added)",
        ));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("bucket bounds must be strictly increasing"));
    }
    Ok(bounds.to_vec())
}

/// Checks that an OTLP endpoint is an `http` URL with a host. `https` is
/// refused here rather than failing every export later: this build has no
/// TLS.
fn parse_endpoint(raw: &str) -> Result<(), Rejection> {
    const EXPECTED: &str =
        "an http:// URL such as `http://tempo:4317` (this build has no TLS for https://)";
    match raw.trim().parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => Ok(()),
        Ok(_) => Err((EXPECTED, None)),
        Err(err) => Err((EXPECTED, Some(Box::new(err)))),
    }
}

/// The value of the traces variable `traces` if it is set, else of the
/// general one: the signal's own variable replaces the general one, which is
/// then not read (it may be meant for other signals or SDKs).
fn traces_or_general<T>(
    env: &Env<'_>,
    traces: &'static str,
    general: &'static str,
    parse: impl Fn(&str) -> Result<T, Rejection>,
) -> Result<Option<T>, Error> {
    match env.parse(traces, &parse)? {
        Some(value) => Ok(Some(value)),
        None => env.parse(general, &parse),
    }
}

/// The OTLP export headers: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else
/// `OTEL_EXPORTER_OTLP_HEADERS` (not merged: the general headers may carry
/// credentials for another backend). A malformed entry is an error naming
/// the variable, with the value redacted: headers carry credentials.
fn otlp_headers(env: &Env<'_>) -> Result<http::HeaderMap, Error> {
    const EXPECTED: &str = "comma-separated `key=value` pairs with non-empty keys, \
                            valid as HTTP header names and values";
    let parse = |raw: &str| {
        parse_resource_attributes(raw)
            .map_err(|_| (EXPECTED, None))?
            .into_iter()
            .map(|(key, value)| {
                match (
                    http::HeaderName::from_bytes(key.as_bytes()),
                    http::HeaderValue::from_str(&value),
                ) {
                    (Ok(key), Ok(mut value)) => {
                        value.set_sensitive(true);
                        Ok((key, value))
                    }
                    _ => Err((EXPECTED, None)),
                }
            })
            .collect::<Result<Vec<_>, Rejection>>()
            .map(|pairs| {
                // `insert`, not `extend` (which appends): names differing
                // only in case are one header, and the last value wins.
                let mut headers = http::HeaderMap::with_capacity(pairs.len());
                for (key, value) in pairs {
                    headers.insert(key, value);
                }
                headers
            })
    };
    let headers = traces_or_general(
        env,
        vars::OTEL_EXPORTER_OTLP_TRACES_HEADERS,
        vars::OTEL_EXPORTER_OTLP_HEADERS,
        parse,
    )
    .map_err(|err| match err {
        // Header values are credentials: never print them.
        Error::InvalidEnv {
            name,
            expected,
            source,
            ..
        } => Error::InvalidEnv {
            name,
            value: "<redacted>".to_owned(),
            expected,
            source,
        },
        other => other,
    })?;
    Ok(headers.unwrap_or_default())
}

/// The export request timeout: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; 10 s by default.
fn otlp_timeout(env: &Env<'_>) -> Result<std::time::Duration, Error> {
    let parse = |raw: &str| match raw.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(std::time::Duration::from_millis(ms)),
        _ => Err((
            "a whole number of milliseconds above 0, such as `10000`",
            None,
        )),
    };
    let timeout = traces_or_general(
        env,
        vars::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        vars::OTEL_EXPORTER_OTLP_TIMEOUT,
        parse,
    )?;
    Ok(timeout.unwrap_or(std::time::Duration::from_secs(10)))
}

/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else
/// `OTEL_EXPORTER_OTLP_COMPRESSION`: `none` or `gzip` (any case). This build
/// does not compress: `gzip` falls back to uncompressed requests, and the
/// name of the variable that asked for it is returned for the warning at
/// start (a setting shared by a whole platform must not stop the service).
fn otlp_compression(env: &Env<'_>) -> Result<Option<&'static str>, Error> {
    let parse = |raw: &str| {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("none") {
            Ok(false)
        } else if raw.eq_ignore_ascii_case("gzip") {
            Ok(true)
        } else {
            Err(("`none` or `gzip`", None))
        }
    };
    let traces = vars::OTEL_EXPORTER_OTLP_TRACES_COMPRESSION;
    let gzip = match env.parse(traces, parse)? {
        Some(gzip) => gzip.then_some(traces),
        None => env
            .parse(vars::OTEL_EXPORTER_OTLP_COMPRESSION, parse)?
            .and_then(|gzip| gzip.then_some(vars::OTEL_EXPORTER_OTLP_COMPRESSION)),
    };
    Ok(gzip)
}

/// `url` with `/v1/traces` appended to its path (before any query), as the
/// specification says for `OTEL_EXPORTER_OTLP_ENDPOINT` over HTTP.
fn with_traces_path(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!(
                "{}://{}{}/v1/traces{query}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", http::uri::Authority::as_str),
                uri.path().trim_end_matches('/'),
            )
        }
        Err(_) => format!("{}/v1/traces", url.trim_end_matches('/')),
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses `key1=value1,key2=value2` (W3C Baggage octets, values may be percent-encoded).
fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, Rejection> {
    const EXPECTED: Rejection = (
        "comma-separated `key=value` pairs with non-empty keys",
        None,
    );
    let mut attributes = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or(EXPECTED)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(EXPECTED);
        }
        let value = percent_decode(value.trim()).ok_or(EXPECTED)?;
        attributes.retain(|(k, _): &(String, String)| k != key);
        attributes.push((key.to_owned(), value));
    }
    Ok(attributes)
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn default_service_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
    match exe {
        Some(exe) => format!("unknown_service:{exe}"),
        None => "unknown_service".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(builder: &TelemetryBuilder, env: &[(&str, &str)]) -> Result<Config, Error> {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        builder.resolve(&|name| env.get(name).cloned())
    }

    fn env_error(name: &str, value: &str) -> String {
        match resolve(&TelemetryBuilder::default(), &[(name, value)]) {
            Err(err @ Error::InvalidEnv { .. }) => err.to_string(),
            other => panic!("expected InvalidEnv for {name}={value:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_apply_without_environment() {
        let config = resolve(&TelemetryBuilder::default(), &[]).unwrap();
        assert!(config.service_name.starts_with("unknown_service"));
        assert!(!config.disabled);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.metrics_addr, None);
        assert_eq!(config.log_filter.to_string(), "info");
        assert_eq!(config.buckets.default, DEFAULT_BUCKETS);
        assert!(DEFAULT_BUCKETS.contains(&0.5) && DEFAULT_BUCKETS.contains(&1.0));
    }

    #[test]
    fn environment_is_read() {
        let config = resolve(
            &TelemetryBuilder::default(),
            &[
                ("OTEL_SERVICE_NAME", "multiweb-api"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,team=web%20shop",
                ),
                ("OTEL_SDK_DISABLED", "TRUE"),
                ("RUST_LOG", "warn,multiweb=debug"),
                ("MULTIWEB_LOG_FORMAT", "pretty"),
                ("MULTIWEB_METRICS_ADDR", "127.0.0.1:9464"),
            ],
        )
        .unwrap();
        assert_eq!(config.service_name, "multiweb-api");
        assert_eq!(
            config.resource_attributes,
            vec![
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "web shop".to_owned())
            ]
        );
        assert!(config.disabled);
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config.log_filter.to_string(), "multiweb=debug,warn");
    }

    #[test]
    fn builder_wins_over_environment() {
        let builder = TelemetryBuilder::default()
            .service_name("from-code")
            .disabled(false)
            .log_format(LogFormat::Json)
            .metrics_addr("127.0.0.1:1".parse().unwrap())
            .resource_attribute("team", "code");
        let config = resolve(
            &builder,
            &[
                ("OTEL_SERVICE_NAME", "from-env"),
                ("OTEL_SDK_DISABLED", "true"),
                ("MULTIWEB_LOG_FORMAT", "pretty"),
                ("MULTIWEB_METRICS_ADDR", "127.0.0.1:2"),
                ("OTEL_RESOURCE_ATTRIBUTES", "team=env,region=eu"),
            ],
        )
        .unwrap();
        assert_eq!(config.service_name, "from-code");
        assert!(!config.disabled);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(
            config.resource_attributes,
            vec![
                ("region".to_owned(), "eu".to_owned()),
                ("team".to_owned(), "code".to_owned())
            ]
        );
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let config = resolve(
            &TelemetryBuilder::default(),
            &[("OTEL_SDK_DISABLED", ""), ("MULTIWEB_METRICS_ADDR", "  ")],
        )
        .unwrap();
        assert!(!config.disabled);
        assert_eq!(config.metrics_addr, None);
    }

    #[test]
    fn bad_environment_values_name_the_variable_and_value() {
        assert_eq!(
            env_error("MULTIWEB_METRICS_ADDR", "localhost:port"),
            "invalid value \"localhost:port\" for environment variable MULTIWEB_METRICS_ADDR: \
             expected a socket address such as `127.0.0.1:9464`"
        );
        assert_eq!(
            env_error("OTEL_SDK_DISABLED", "yes"),
            "invalid value \"yes\" for environment variable OTEL_SDK_DISABLED: \
             expected `true` or `false`"
        );
        assert_eq!(
            env_error("MULTIWEB_LOG_FORMAT", "xml"),
            "invalid value \"xml\" for environment variable MULTIWEB_LOG_FORMAT: \
             expected `json` or `pretty`"
        );
        assert!(
            env_error("RUST_LOG", "info,[")
                .starts_with("invalid value \"info,[\" for environment variable RUST_LOG")
        );
        assert!(
            env_error("OTEL_RESOURCE_ATTRIBUTES", "novalue").starts_with(
                "invalid value \"novalue\" for environment variable OTEL_RESOURCE_ATTRIBUTES"
            )
        );
        assert!(env_error("OTEL_RESOURCE_ATTRIBUTES", "=x").contains("OTEL_RESOURCE_ATTRIBUTES"));
        assert!(
            env_error("OTEL_RESOURCE_ATTRIBUTES", "k=%zz").contains("OTEL_RESOURCE_ATTRIBUTES")
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_environment_value_is_an_error() {
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(vec![0x66, 0xff]);
        let err = TelemetryBuilder::default()
            .resolve(&|name| (name == "OTEL_SERVICE_NAME").then(|| raw.clone()))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidEnv {
                    name: "OTEL_SERVICE_NAME",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn trace_settings_follow_the_standard_variables() {
        let config = resolve(&TelemetryBuilder::default(), &[]).unwrap();
        assert!(config.traces.export.is_none(), "no endpoint, no export");
        assert_eq!(config.traces.sampler, TraceSampler::ParentBasedAlwaysOn);
        let config_http = resolve(
            &TelemetryBuilder::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318")],
        )
        .unwrap();
        let export = config_http.traces.export.expect("export on");
        assert_eq!(export.protocol, OtlpProtocol::HttpProtobuf, "the default");
        assert!(config.traces.keep_errors);

        let config = resolve(
            &TelemetryBuilder::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.05"),
            ],
        )
        .unwrap();
        let export = config.traces.export.as_ref().expect("export on");
        assert_eq!(export.protocol, OtlpProtocol::Grpc);
        assert_eq!(export.endpoint, "http://tempo:4317", "gRPC: as given");
        assert_eq!(export.timeout, std::time::Duration::from_secs(10));
        assert!(export.headers.is_empty());
        assert_eq!(
            config.traces.sampler,
            TraceSampler::ParentBasedTraceIdRatio(0.05)
        );

        let config = resolve(
            &TelemetryBuilder::default(),
            &[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://tempo:4318/v1/traces",
                ),
                ("OTEL_SDK_DISABLED", "true"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                ("MULTIWEB_TRACES_KEEP_ERRORS", "false"),
            ],
        )
        .unwrap();
        assert!(
            config.traces.export.is_none(),
            "OTEL_SDK_DISABLED turns export off"
        );
        assert_eq!(config.traces.sampler, TraceSampler::TraceIdRatio(0.1));
        assert!(!config.traces.keep_errors);
    }

    #[test]
    fn bad_trace_variables_name_themselves() {
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_TRACES_SAMPLER_ARG", "ten percent"),
            ("MULTIWEB_TRACES_KEEP_ERRORS", "maybe"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "tempo:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://tempo:4318"),
        ] {
            let message = env_error(name, value);
            assert!(
                message.starts_with(&format!(
                    "invalid value {value:?} for environment variable {name}"
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn malformed_otlp_headers_are_errors_that_do_not_print_the_value() {
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            let message = env_error(name, "api-key-s3cret");
            assert_eq!(
                message,
                format!(
                    "invalid value \"<redacted>\" for environment variable {name}: \
                     expected comma-separated `key=value` pairs with non-empty keys, \
                     valid as HTTP header names and values"
                )
            );
            // Not a header name: also an error, still redacted.
            let message = env_error(name, "bad name=s3cret");
            assert!(
                message.starts_with("invalid value \"<redacted>\""),
                "{message}"
            );
        }
        let config = resolve(
            &TelemetryBuilder::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc,tenant=t1"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                    "tenant=t2,x-scope=a%20b,X-Scope=c",
                ),
            ],
        )
        .unwrap();
        let headers = &config.traces.export.expect("export on").headers;
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [("tenant", "t2"), ("x-scope", "c")],
            "the traces variable replaces the general one; one value per \
             header name, in any case, the last"
        );
        assert!(headers.values().all(http::HeaderValue::is_sensitive));
        assert!(!format!("{headers:?}").contains("t2"), "{headers:?}");
    }

    #[test]
    fn otlp_endpoints_resolve_as_the_specification_says() {
        let endpoint = |builder: &TelemetryBuilder, vars: &[(&str, &str)]| {
            resolve(builder, vars)
                .unwrap()
                .traces
                .export
                .expect("export on")
                .endpoint
        };
        let default = TelemetryBuilder::default();
        // HTTP: the general variable is a base URL, the traces one is used as is.
        assert_eq!(
            endpoint(
                &default,
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318/")]
            ),
            "http://tempo:4318/v1/traces"
        );
        assert_eq!(
            endpoint(
                &default,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "http://tempo:4318/custom"
                    ),
                ]
            ),
            "http://tempo:4318/custom"
        );
        assert_eq!(
            endpoint(
                &default,
                &[(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "http://tempo:4318/otlp/?tenant=a"
                )]
            ),
            "http://tempo:4318/otlp/v1/traces?tenant=a",
            "the path goes before the query"
        );
        // The general variable is not read when the traces one is set (it
        // may be meant for other signals: here, with TLS).
        assert_eq!(
            endpoint(
                &default,
                &[
                    (
                        "OTEL_EXPORTER_OTLP_ENDPOINT",
                        "https://metrics.example:4318"
                    ),
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "http://tempo:4318/v1/traces"
                    ),
                ]
            ),
            "http://tempo:4318/v1/traces"
        );
        let in_code = TelemetryBuilder::default().otlp_endpoint("http://tempo:4318");
        assert_eq!(endpoint(&in_code, &[]), "http://tempo:4318/v1/traces");
        let grpc = in_code.otlp_protocol(OtlpProtocol::Grpc);
        assert_eq!(endpoint(&grpc, &[]), "http://tempo:4318");
    }

    #[test]
    fn otlp_timeout_and_compression_are_read_not_ignored() {
        let with = |vars: &[(&str, &str)]| {
            let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318")];
            all.extend_from_slice(vars);
            resolve(&TelemetryBuilder::default(), &all)
                .unwrap()
                .traces
                .export
                .expect("export on")
        };
        assert_eq!(
            with(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")]).timeout,
            std::time::Duration::from_millis(2500)
        );
        // The traces variable wins, and the general one is then not read.
        assert_eq!(
            with(&[
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "junk, not read"),
            ])
            .timeout,
            std::time::Duration::from_millis(700)
        );
        assert_eq!(
            with(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "None")]).gzip_asked_by,
            None
        );
        // gzip is not in this build: uncompressed, with a warning at start.
        assert_eq!(
            with(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP")]).gzip_asked_by,
            Some("OTEL_EXPORTER_OTLP_COMPRESSION")
        );
        assert_eq!(
            with(&[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ])
            .gzip_asked_by,
            None,
            "the traces variable replaces the general one"
        );
        for (name, value, expected) in [
            (
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "10s",
                "a whole number of milliseconds",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "0",
                "a whole number of milliseconds",
            ),
            (
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "brotli",
                "`none` or `gzip`",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                "zstd",
                "`none` or `gzip`",
            ),
        ] {
            let message = env_error(name, value);
            assert!(
                message.starts_with(&format!(
                    "invalid value {value:?} for environment variable {name}: expected {expected}"
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn invalid_buckets_are_rejected() {
        for bounds in [&[][..], &[0.5, 0.1][..], &[0.1, f64::NAN][..]] {
            let builder =
                TelemetryBuilder::default().histogram_buckets_for("latency_seconds", bounds);
            let err = resolve(&builder, &[]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("invalid setting histogram_buckets_for(\"latency_seconds\")"),
                "{err}"
            );
        }
    }
}
