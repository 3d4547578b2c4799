//! Traces: OTLP export to a collector (Tempo in the guide), the guide's
//! sampling strategy, and trace context propagation.
//!
//! [`init`](crate::init) bridges `tracing` spans to OpenTelemetry with
//! `tracing-opentelemetry`, so every `#[tracing::instrument]` span becomes an
//! OpenTelemetry span (unless the SDK is disabled, see below), the
//! [HTTP layer](crate::http)'s request span included, and the handler's
//! spans are its children. Every JSON log line inside a span
//! carries its `trace_id` and `span_id`, whether the trace is exported or not
//! (unless the SDK is disabled, see below).
//!
//! Only spans are bridged: log events stay log lines (carrying the
//! `trace_id`), and are not copied into span events, which would cost every
//! request even when its trace is not sampled. A 5xx response marks the
//! request span's status as Error.
//!
//! # Export
//!
//! Spans are exported when an endpoint is configured
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! [`TelemetryBuilder::otlp_endpoint`](crate::TelemetryBuilder::otlp_endpoint))
//! and `OTEL_SDK_DISABLED` is not `true`, over gRPC or HTTP/protobuf
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`), with the headers of
//! `OTEL_EXPORTER_OTLP_HEADERS`. The resource carries `service.name`,
//! `service.version` and `OTEL_RESOURCE_ATTRIBUTES`. For each setting the
//! traces variable (`OTEL_EXPORTER_OTLP_TRACES_*`) replaces the general one.
//!
//! The exporter is this crate's own: it writes each batch's protobuf
//! straight from the finished spans, without the intermediate copies
//! `opentelemetry-otlp` makes (the bytes are the same; a test decodes them
//! and compares them with `opentelemetry-proto`'s conversion).
//!
//! - **TLS**: `https://` endpoints work on both protocols, through rustls
//!   with the ring crypto provider (no OpenSSL): tonic's TLS for gRPC,
//!   hyper-rustls for HTTP. The collector's certificate must chain to the
//!   platform's trusted roots, or to the CA certificates of
//!   `OTEL_EXPORTER_OTLP_CERTIFICATE` (a PEM file, which then replaces
//!   them). For mutual TLS, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and
//!   `OTEL_EXPORTER_OTLP_CLIENT_KEY` name the client's PEM files. The files
//!   are read by `init()`: one that cannot be read, or holds no usable
//!   certificate or key, is an error naming the variable and the file
//!   (never the key's content). A gRPC endpoint without a scheme
//!   (`tempo:4317`) uses TLS unless `OTEL_EXPORTER_OTLP_INSECURE` is `true`.
//! - **Compression**: `OTEL_EXPORTER_OTLP_COMPRESSION=gzip` compresses each
//!   request: `Content-Encoding: gzip` over HTTP, `grpc-encoding: gzip` over
//!   gRPC.
//! - **Retries**, as the OTLP specification says: HTTP 429, 502, 503 and
//!   504, gRPC `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
//!   `UNAVAILABLE` and `DATA_LOSS` (and `RESOURCE_EXHAUSTED` when the
//!   server says with `RetryInfo` when to retry), and a collector that
//!   cannot be reached, are retried with exponential backoff and jitter
//!   (100 ms, doubling up to 5 s), waiting at least what a `Retry-After`
//!   header or a `RetryInfo` asks. A request is retried until
//!   `OTEL_EXPORTER_OTLP_TIMEOUT` (10 s by default) has passed since its
//!   first attempt, or until the queue behind it is full. Any other answer
//!   (400, 401, 403, 413, ...) and a failed TLS handshake (unknown CA,
//!   wrong host name, expired certificate, no TLS on the other end) are
//!   final: the request's spans are dropped at once.
//! - **Limits**: string attribute values of spans, events and links (also
//!   in arrays) are cut to `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else
//!   `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` characters
//!   ([`DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT`](crate::DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT),
//!   8192, by default), whichever code made the span; and a batch whose
//!   request would be larger than 4 MB (under gRPC's usual 4 MiB limit) is
//!   sent in parts, so that one oversized span never takes its neighbours
//!   down (a single span that is still too large is dropped alone).
//!
//! With `OTEL_SDK_DISABLED=true` (or
//! [`TelemetryBuilder::disabled`](crate::TelemetryBuilder::disabled)) no
//! OpenTelemetry span is made, as the OpenTelemetry API behaves without an
//! SDK: the subscriber has no bridge and the HTTP layer starts no span. With
//! JSON logs (the default), an incoming `traceparent` passes through
//! unchanged: the request's log lines carry the caller's `trace_id` and
//! `span_id`, and [`inject_context`] writes the caller's `traceparent`
//! (with the pretty format it does not); without one, log lines carry no ids and nothing is
//! propagated. Without an endpoint (and the SDK on), spans
//! are still made, so that log lines carry their ids, but not exported.
//!
//! Finished spans wait in a bounded queue (2048 by default) and are sent in
//! batches by a thread of their own, with its own runtime: exporting,
//! compressing, TLS and retrying never run on, or wait for, the
//! application's runtime, and the application never waits for the
//! collector. Spans that are given up (a final answer, a failed handshake,
//! retries out of time), spans a full queue refuses, and spans the
//! collector rejects in a partial success are counted, once each, in
//! `multiweb_telemetry_spans_dropped_total`; accepted ones in
//! `multiweb_telemetry_spans_exported_total`. Each cause (export failures,
//! TLS failures, rejections, a full queue, partial successes, oversized
//! spans) is logged at most once a minute, naming the status or the cause.
//!
//! Dropping the [`TelemetryGuard`](crate::TelemetryGuard) exports every
//! finished span still queued, waiting at most 5 s.
//!
//! # Sampling
//!
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` choose the standard
//! sampler; the default is `parentbased_always_on`, or
//! `parentbased_traceidratio` when only the ratio is given. The decision
//! comes from the trace id, so it is the same for every span of a trace, and
//! a remote parent's sampled flag (from `traceparent`) is followed.
//!
//! With a ratio sampler, the guide's rule "keep every error" applies
//! ([`keep_error_traces`](crate::TelemetryBuilder::keep_error_traces), on
//! by default): spans the ratio would drop are still recorded, and held until
//! the trace's local root span ends. If any of them ended with an error
//! status (a 5xx response sets one), the whole local trace is exported;
//! otherwise it is discarded. At most `MAX_PENDING_SPANS` spans (a few
//! megabytes) are held at once; past that, further spans of undecided traces
//! are not kept (an error still marks its trace, so the root is kept).
//! A remote parent's "not sampled" flag always wins.
//!
//! # Propagation
//!
//! The HTTP layer continues an incoming W3C `traceparent`/`tracestate`
//! (with the SDK disabled, passes it through); headers that break the W3C
//! rules in any way (lengths, lowercase hex, zero ids, two `traceparent`s)
//! are ignored and start a new trace. For outgoing calls,
//! [`inject_context`] writes the current span's `traceparent` into a
//! request's headers.

mod context;
#[cfg(feature = "otlp")]
mod otlp;
#[cfg(feature = "otlp")]
mod processor;
mod sampler;
mod traceparent;

use std::time::Duration;

use http::HeaderMap;
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub(crate) use context::{RequestContext, bridged_ids, ids_of};
#[cfg(feature = "otlp")]
#[doc(hidden)]
pub use otlp::BenchExporter as __BenchExporter;
#[cfg(feature = "otlp")]
pub use processor::{MAX_PENDING_SPANS, SPANS_DROPPED, SPANS_EXPORTED};

use crate::Error;
use crate::config::Config;

/// How long dropping the guard waits for queued spans to be exported.
pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The installed tracer provider and the tracer the `tracing` bridge uses;
/// neither when the SDK is disabled (or traces are off).
pub(crate) struct Installed {
    pub(crate) provider: Option<SdkTracerProvider>,
    pub(crate) tracer: Option<SdkTracer>,
}

/// Builds the tracer provider (and, when export is on, the exporter thread).
#[cfg_attr(
    not(feature = "otlp"),
    allow(
        clippy::unnecessary_wraps,
        reason = "only starting the exporter's thread fails (feature `otlp`)"
    )
)]
pub(crate) fn install(config: &Config) -> Result<Installed, Error> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if config.disabled {
        return Ok(Installed {
            provider: None,
            tracer: None,
        });
    }
    let mut resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("telemetry.sdk.language", "rust"))
        .with_attribute(KeyValue::new("telemetry.sdk.name", "multiweb-telemetry"));
    for (key, value) in &config.resource_attributes {
        if key != "service.name" {
            resource = resource.with_attribute(KeyValue::new(key.clone(), value.clone()));
        }
    }
    if let Some(version) = &config.service_version {
        resource = resource.with_attribute(KeyValue::new("service.version", version.clone()));
    }

    let settings = &config.traces;
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler::GuideSampler::new(
            settings.sampler,
            settings.keep_errors,
        ))
        .with_resource(resource.build());
    #[cfg(feature = "otlp")]
    let builder = match &settings.export {
        Some(export) => {
            let export = export.clone();
            let processor = processor::ExportProcessor::start(
                settings.queue_size,
                export.timeout,
                move || otlp::OtlpExporter::new(&export),
            )?;
            builder.with_span_processor(processor)
        }
        None => builder,
    };
    let provider = builder.build();
    let tracer = provider.tracer("multiweb-telemetry");
    Ok(Installed {
        provider: Some(provider),
        tracer: Some(tracer),
    })
}

/// Warns, once the subscriber is in place, that an endpoint is configured
/// but spans are not exported: this build has no OTLP exporter (feature
/// `otlp`). A warning rather than an error: the variable is often set for a
/// whole platform.
pub(crate) fn warn_unexported(config: &Config) {
    #[cfg(not(feature = "otlp"))]
    if config.traces.export.is_some() {
        tracing::warn!(
            target: "multiweb_telemetry::trace",
            "an OTLP endpoint is configured, but this build has no OTLP exporter \
             (the crate's `otlp` feature): spans are not exported"
        );
    }
    #[cfg(feature = "otlp")]
    let _ = config;
}

/// Reads `traceparent`/`tracestate` from request headers.
struct HeaderReader<'a>(&'a HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The remote parent in `headers`' `traceparent`/`tracestate`, if valid.
pub(crate) fn remote_parent(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    // A name made once: looking a `&str` up parses it first.
    static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    if !traceparent::is_valid_in(headers.get_all(&TRACEPARENT)) {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderReader(headers));
    opentelemetry::trace::TraceContextExt::span(&cx)
        .span_context()
        .is_valid()
        .then_some(cx)
}

/// The OpenTelemetry context of the current span: its trace and span ids
/// are the ones the collector receives and the log lines carry.
///
/// The same as `tracing_opentelemetry::OpenTelemetrySpanExt::context` on
/// `Span::current()`, and also right where that cannot see: inside a
/// request span the HTTP layer started itself (the opt-in direct path of
/// [`bridge_request_spans(false)`](crate::TelemetryBuilder::bridge_request_spans)),
/// and, with the SDK disabled, inside a request that brought a
/// `traceparent` (the caller's context, passed through).
///
/// ```
/// use opentelemetry::trace::TraceContextExt;
///
/// let trace_id = multiweb_telemetry::trace::current_context()
///     .span()
///     .span_context()
///     .trace_id();
/// // Outside a span (or before `init`) there is no trace.
/// assert_eq!(trace_id, opentelemetry::trace::TraceId::INVALID);
/// ```
pub fn current_context() -> opentelemetry::Context {
    context_of(&tracing::Span::current())
}

/// The OpenTelemetry context of `span`, as [`current_context`] finds the
/// current span's.
pub(crate) fn context_of(span: &tracing::Span) -> opentelemetry::Context {
    let cx = span.context();
    if opentelemetry::trace::TraceContextExt::span(&cx)
        .span_context()
        .is_valid()
    {
        return cx;
    }
    // A request span whose context the crate keeps itself, or a span the
    // bridge does not see inside one: the request's context, else the
    // attached one.
    context::request_context_of(span).unwrap_or_else(opentelemetry::Context::current)
}

/// Writes the current span's W3C `traceparent` (and `tracestate`) into
/// `headers`, so that the service called continues this trace. A trace
/// without a `tracestate` removes any `tracestate` already in `headers`
/// (it belonged to another trace) rather than writing an empty one.
///
/// ```
/// let mut request = http::Request::get("http://inventory/api/v1/stock").body(()).unwrap();
/// multiweb_telemetry::trace::inject_context(request.headers_mut());
/// ```
///
/// Outside a span, or before [`init`](crate::init), it writes nothing.
pub fn inject_context(headers: &mut HeaderMap) {
    inject(&current_context(), headers);
}

/// Writes `cx`'s W3C `traceparent` and `tracestate` into `headers`, as
/// `TraceContextPropagator` does but for an empty `tracestate`, which is
/// removed rather than sent empty; nothing when `cx` has no valid span
/// context.
pub(crate) fn inject(cx: &opentelemetry::Context, headers: &mut HeaderMap) {
    // Names made once: the propagator's `&str` keys are parsed at each call.
    static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    static TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
    let span = opentelemetry::trace::TraceContextExt::span(cx);
    let ids = span.span_context();
    if !ids.is_valid() {
        return;
    }
    if let Ok(value) = http::HeaderValue::from_bytes(&traceparent::encode(ids)) {
        headers.insert(&TRACEPARENT, value);
    }
    let state = ids.trace_state().header();
    match http::HeaderValue::from_str(&state) {
        Ok(value) if !state.is_empty() => {
            headers.insert(&TRACESTATE, value);
        }
        // Another trace's state must not go along with this one.
        _ => {
            headers.remove(&TRACESTATE);
        }
    }
}
