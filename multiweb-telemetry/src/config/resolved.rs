//! The settings resolved from the builder, the environment and the defaults.

use std::ffi::OsString;
use std::net::SocketAddr;

use super::env::{
    BoxError, Env, REDACTED, attribute_value_length_limit, otlp_compression, otlp_headers,
    otlp_insecure, otlp_timeout, parse_bool, parse_endpoint, parse_metrics_token,
    parse_resource_attributes, traces_or_general, vars, with_traces_path, without_userinfo,
};
#[cfg(feature = "tls")]
use super::tls;
use super::tls::OtlpTls;
use super::{
    DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT, DEFAULT_BUCKETS, DEFAULT_LOG_BUFFER_BYTES, LogFormat,
    OtlpCompression, OtlpProtocol, Signals, TelemetryBuilder, TraceSampler,
};
use crate::Error;

impl TelemetryBuilder {
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

        let signals = self.signals.unwrap_or_default();
        // Traces off is the SDK disabled: no OpenTelemetry span at all.
        let disabled = !signals.traces()
            || match self.disabled {
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
            Some(token) => parse_metrics_token(token).map_err(|reason| Error::InvalidSetting {
                setting: format!("metrics_token({REDACTED})"),
                reason,
            })?,
            None => env
                .parse(vars::MULTIWEB_METRICS_TOKEN, |raw| {
                    parse_metrics_token(raw).map_err(|expected| (expected, None))
                })?
                .flatten(),
        };

        if self.log_buffer_lines == Some(0) {
            return Err(Error::InvalidSetting {
                setting: "log_buffer_lines(0)".to_owned(),
                reason: "the buffer must hold at least one line",
            });
        }
        let log_buffer_bytes = self.log_buffer_bytes.unwrap_or(DEFAULT_LOG_BUFFER_BYTES);
        if log_buffer_bytes == 0 {
            return Err(Error::InvalidSetting {
                setting: "log_buffer_bytes(0)".to_owned(),
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
            log_buffer_lines: self.log_buffer_lines,
            log_buffer_bytes,
            buckets: self.resolve_buckets()?,
            process_metrics: self.process_metrics.unwrap_or(true),
            signals,
            bridge_request_spans: self.bridge_request_spans.unwrap_or(true),
        })
    }

    /// Where the exporter sends to (with its scheme), and whether that is a
    /// base URL (to which HTTP appends `/v1/traces`) rather than the full URL.
    fn resolve_otlp_endpoint(
        &self,
        env: &Env<'_>,
        protocol: OtlpProtocol,
    ) -> Result<Option<(String, bool)>, Error> {
        let insecure = match self.otlp_insecure {
            Some(insecure) => insecure,
            None => otlp_insecure(env)?.unwrap_or(false),
        };
        let endpoint = |name| env.parse(name, |raw| parse_endpoint(raw, protocol, insecure));
        Ok(if let Some(url) = &self.otlp_endpoint {
            let url = parse_endpoint(url, protocol, insecure).map_err(|(reason, _)| {
                Error::InvalidSetting {
                    setting: format!("otlp_endpoint({:?})", without_userinfo(url)),
                    reason,
                }
            })?;
            Some((url, true))
        } else {
            // The traces variable replaces the general one, which is then
            // not read (it may be meant for other signals or SDKs).
            match endpoint(vars::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)? {
                Some(url) => Some((url, false)),
                None => endpoint(vars::OTEL_EXPORTER_OTLP_ENDPOINT)?.map(|url| (url, true)),
            }
        })
    }

    /// The compression and the attribute value length limit.
    fn resolve_export_options(&self, env: &Env<'_>) -> Result<(OtlpCompression, usize), Error> {
        let compression = match self.otlp_compression {
            Some(compression) => compression,
            None => otlp_compression(env)?.unwrap_or_default(),
        };
        let attribute_value_limit = match self.attribute_value_length_limit {
            Some(limit) => limit,
            None => {
                attribute_value_length_limit(env)?.unwrap_or(DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT)
            }
        };
        Ok((compression, attribute_value_limit))
    }

    /// Without the `tls` feature: no TLS at all, so an `https://` endpoint
    /// or a TLS file is refused rather than failing every export.
    #[cfg(not(feature = "tls"))]
    fn resolve_otlp_tls(&self, env: &Env<'_>, endpoint: &str) -> Result<OtlpTls, Error> {
        let variables = [
            vars::OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
            vars::OTEL_EXPORTER_OTLP_CERTIFICATE,
            vars::OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
            vars::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            vars::OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
            vars::OTEL_EXPORTER_OTLP_CLIENT_KEY,
        ];
        let mut files = self.otlp_certificate.is_some()
            || self.otlp_client_certificate.is_some()
            || self.otlp_client_key.is_some();
        for name in variables {
            files |= env.get(name)?.is_some();
        }
        if files || endpoint.starts_with("https://") {
            return Err(Error::FeatureDisabled {
                what: "an https:// OTLP endpoint, or TLS certificate and key files,",
                feature: "tls",
            });
        }
        Ok(OtlpTls::default())
    }

    /// The TLS files, read and checked.
    #[cfg(feature = "tls")]
    fn resolve_otlp_tls(&self, env: &Env<'_>, _endpoint: &str) -> Result<OtlpTls, Error> {
        let ca = tls::path_setting(
            self.otlp_certificate
                .as_ref()
                .map(|path| ("otlp_certificate", path)),
            env,
            vars::OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
            vars::OTEL_EXPORTER_OTLP_CERTIFICATE,
        )?;
        let cert = tls::path_setting(
            self.otlp_client_certificate
                .as_ref()
                .map(|path| ("otlp_client_certificate", path)),
            env,
            vars::OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
            vars::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
        )?;
        let key = tls::path_setting(
            self.otlp_client_key
                .as_ref()
                .map(|path| ("otlp_client_key", path)),
            env,
            vars::OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
            vars::OTEL_EXPORTER_OTLP_CLIENT_KEY,
        )?;
        let roots = match ca {
            Some((origin, path)) => Some(tls::roots(origin, &path)?),
            None => None,
        };
        let client = match (cert, key) {
            (Some(cert), Some(key)) => {
                Some(tls::client_identity((cert.0, &cert.1), (key.0, &key.1))?)
            }
            (None, None) => None,
            (Some((origin, path)), None) => {
                return Err(origin.error(
                    &path,
                    "a client certificate given with its key \
                     (OTEL_EXPORTER_OTLP_CLIENT_KEY or `otlp_client_key`)",
                    None,
                ));
            }
            (None, Some((origin, path))) => {
                return Err(origin.error(
                    &path,
                    "a client key given with its certificate \
                     (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE or `otlp_client_certificate`)",
                    None,
                ));
            }
        };
        Ok(OtlpTls { roots, client })
    }

    fn resolve_traces(&self, env: &Env<'_>, disabled: bool) -> Result<TraceConfig, Error> {
        let protocol = match self.otlp_protocol {
            Some(protocol) => protocol,
            None => traces_or_general(
                env,
                vars::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
                vars::OTEL_EXPORTER_OTLP_PROTOCOL,
                |raw| match raw.trim() {
                    "grpc" => Ok(OtlpProtocol::Grpc),
                    "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
                    _ => Err(("`grpc` or `http/protobuf`", None)),
                },
            )?
            .unwrap_or(OtlpProtocol::HttpProtobuf),
        };
        let endpoint = self.resolve_otlp_endpoint(env, protocol)?;
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
        let (compression, attribute_value_limit) = self.resolve_export_options(env)?;
        let queue_size = self.span_queue_size.unwrap_or(2048);
        if queue_size == 0 {
            return Err(Error::InvalidSetting {
                setting: "span_queue_size(0)".to_owned(),
                reason: "the queue must hold at least one span",
            });
        }
        let export = match endpoint.filter(|_| !disabled) {
            Some((url, is_base)) => Some(OtlpExport {
                // Read only when spans are exported.
                tls: self.resolve_otlp_tls(env, &url)?,
                endpoint: match protocol {
                    OtlpProtocol::HttpProtobuf if is_base => with_traces_path(&url),
                    _ => url,
                },
                protocol,
                headers,
                timeout,
                compression,
                attribute_value_limit,
            }),
            None => None,
        };
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

/// Trace settings, resolved.
#[derive(Debug, Clone)]
#[cfg_attr(
    not(feature = "otlp"),
    allow(dead_code, reason = "read by the exporter (feature `otlp`)")
)]
pub(crate) struct TraceConfig {
    /// Where spans are exported, if they are.
    pub(crate) export: Option<OtlpExport>,
    pub(crate) sampler: TraceSampler,
    pub(crate) keep_errors: bool,
    pub(crate) queue_size: usize,
}

/// Where and how spans are exported, resolved.
#[derive(Debug, Clone)]
#[cfg_attr(
    not(feature = "tls"),
    allow(dead_code, reason = "read by the exporter (features `otlp`, `tls`)")
)]
pub(crate) struct OtlpExport {
    pub(crate) protocol: OtlpProtocol,
    /// For HTTP the full URL (`.../v1/traces`), for gRPC the collector's.
    pub(crate) endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`
    /// (values marked sensitive: `Debug` does not show them).
    pub(crate) headers: http::HeaderMap,
    /// Longest one export request may take.
    pub(crate) timeout: std::time::Duration,
    pub(crate) compression: OtlpCompression,
    /// The CA bundle and the client certificate, read and checked.
    pub(crate) tls: OtlpTls,
    /// The longest string attribute value exported, in characters.
    pub(crate) attribute_value_limit: usize,
}

/// Every setting, resolved.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) traces: TraceConfig,
    pub(crate) service_version: Option<String>,
    pub(crate) service_name: String,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) disabled: bool,
    pub(crate) log_filter: tracing_subscriber::EnvFilter,
    pub(crate) log_format: LogFormat,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) metrics_token: Option<String>,
    /// A bound in lines besides the one in bytes (deprecated setting).
    pub(crate) log_buffer_lines: Option<usize>,
    pub(crate) log_buffer_bytes: usize,
    pub(crate) buckets: Buckets,
    pub(crate) process_metrics: bool,
    /// Which signals `init` sets up.
    pub(crate) signals: Signals,
    /// Request spans through the bridge (see `request_span`).
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

fn default_service_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
    match exe {
        Some(exe) => format!("unknown_service:{exe}"),
        None => "unknown_service".to_owned(),
    }
}
