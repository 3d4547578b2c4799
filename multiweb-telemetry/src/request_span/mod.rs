//! The HTTP layer's request span, in one place: starting it, entering it,
//! recording on it and finishing it, its OpenTelemetry context, its access
//! line, and how the `tracing-opentelemetry` bridge sees it. The HTTP layer
//! calls [`RequestSpan`] and knows nothing of the subscriber.
//!
//! # Two paths
//!
//! **Bridged (the default).** The request span is an ordinary `tracing`
//! span, which the bridge makes into an OpenTelemetry SERVER span from its
//! `otel.*` and `http.*` fields like every other span. Everything a user of
//! `tracing-opentelemetry` expects works on it:
//! `OpenTelemetrySpanExt::{context, set_parent, set_attribute, add_link}`,
//! explicit parents, `.in_current_span()`, `#[instrument]` children and
//! `RUST_LOG` directives that name it. Under [`init`](crate::init)'s
//! subscriber the response status goes to the OpenTelemetry span through
//! `OpenTelemetrySpanExt` (not as a log field), and the access line is
//! written by the JSON layer's line writer without dispatching an event.
//!
//! **Direct (opt-in, [`bridge_request_spans(false)`]).** Under `init`'s
//! subscriber with JSON logs, the layer starts the SDK span itself (no
//! visitor pass, no `String` per attribute; per-route names and log fields
//! made once), keeps its context in a [`RequestContext`] extension, and
//! attaches it on every enter ([`RequestSpanLayer`]); the bridge does not
//! see the span ([`BridgeFilter`]). It costs about a fifth less per request
//! (BENCHMARKS.md), but `OpenTelemetrySpanExt` methods called on the request
//! span itself do not reach its OpenTelemetry span, and a span given it as
//! an explicit parent starts a new trace; `tests/tests/request_span.rs`
//! holds the list. The same path, without an SDK span, passes an incoming
//! `traceparent` through when the SDK is disabled.
//!
//! Which path a request takes is asked of the current subscriber once, in
//! [`RequestSpanLayer::installed`]: under any other subscriber the span is
//! made for whatever bridge that subscriber has.
//!
//! # Dependency order
//!
//! `config` → `labels` → `trace` → `log` → `request_span` → `http` → `lib`
//! (`subscriber`, `guard`): each module imports only modules before it.
//! Check it by reading the `use` lines, skipping comments (doc links to
//! later modules are not imports):
//! `grep -rn "crate::" multiweb-telemetry/src/<module> | grep -v "^[^:]*:[0-9]*: *//"`.
//!
//! [`bridge_request_spans(false)`]: crate::TelemetryBuilder::bridge_request_spans
//! [`RequestContext`]: crate::trace::RequestContext

mod access;
mod direct;
mod layer;

use std::borrow::Cow;
use std::sync::OnceLock;

use http::HeaderMap;
use opentelemetry::trace::{Status, TraceContextExt};
use tracing::field::{Empty, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;

pub(crate) use access::AccessLine;
pub(crate) use direct::RouteCache;
pub(crate) use layer::{BridgeFilter, RequestSpanLayer};

use crate::exemplar::SpanIds;
use crate::labels::Method;
use layer::Mode;

/// The target of the request spans and access log lines.
pub(crate) const TARGET: &str = "multiweb_telemetry::http";

/// The name of the request span (its OpenTelemetry name is in `otel.name`).
pub(crate) const SPAN_NAME: &str = "HTTP request";

/// The name of the request span of a gRPC call (feature `tonic`; its
/// OpenTelemetry name, `package.Service/Method`, is in `otel.name`).
pub(crate) const GRPC_SPAN_NAME: &str = "gRPC request";

/// Whether `meta` is a callsite of the request spans, HTTP or gRPC.
pub(crate) fn is_request_span(meta: &tracing::Metadata<'_>) -> bool {
    matches!(meta.name(), SPAN_NAME | GRPC_SPAN_NAME) && meta.target() == TARGET
}

/// What a request span is made of, known when the request arrives.
pub(crate) struct RequestInfo<'a> {
    pub(crate) method: Method,
    /// The route template, if the request matched one.
    pub(crate) route: Option<&'a str>,
    /// The path, without the query string.
    pub(crate) path: &'a str,
    pub(crate) headers: &'a HeaderMap,
    /// Where the service keeps what the requests of its first route share.
    pub(crate) route_cache: &'a OnceLock<RouteCache>,
}

/// Who makes the OpenTelemetry span of a request.
#[derive(Debug)]
enum Kind {
    /// `init`'s bridge: the status goes through `OpenTelemetrySpanExt`.
    Bridged,
    /// Another subscriber's bridge, if it has one: the status goes through
    /// the `otel.status_code` and `http.response.status_code` fields.
    Foreign,
    /// The crate itself (the direct path, or the caller's context with the
    /// SDK disabled); ended when the request span is dropped.
    Own(opentelemetry::Context),
}

/// The span of one request, from its arrival until its response has been
/// sent. Dropping it ends the span.
#[derive(Debug)]
pub(crate) struct RequestSpan {
    span: tracing::Span,
    kind: Kind,
}

/// A request span entered by [`RequestSpan::enter`]; exits it when dropped.
pub(crate) struct Entered<'a> {
    _span: tracing::span::Entered<'a>,
    _context: Option<direct::Attached>,
}

impl Entered<'_> {
    /// The request span's ids, if its trace is sampled. Entering attached
    /// the span's OpenTelemetry context (the bridge's context activation, or
    /// the direct path's own attach), so this reads the current context, a
    /// thread-local, without looking the span up. Under another subscriber
    /// without such a bridge, the current context is whatever the caller
    /// attached.
    #[allow(
        clippy::unused_self,
        reason = "true only while the span is entered, which `self` stands for"
    )]
    pub(crate) fn sampled_ids(&self) -> Option<SpanIds> {
        SpanIds::current_sampled()
    }
}

impl RequestSpan {
    /// Starts the span of the request `info` describes, a child of the
    /// incoming `traceparent` when the headers carry a valid one.
    pub(crate) fn start(info: &RequestInfo<'_>) -> Self {
        match RequestSpanLayer::installed(RequestSpanLayer::mode) {
            Some(Mode::Own(tracer)) => direct::start(info, tracer.as_deref()),
            Some(Mode::Bridged) => Self::bridged(info, Kind::Bridged),
            None => Self::bridged(info, Kind::Foreign),
        }
    }

    /// Starts the span of the gRPC call `info` describes, named and
    /// attributed by the OpenTelemetry RPC conventions (`rpc.system`,
    /// `rpc.service`, `rpc.method`, and `rpc.grpc.status_code` when it
    /// ends); `call` is its service and method, when its path has them. It
    /// goes through the bridge, also on the direct path; with the SDK
    /// disabled, the caller's context passes through as on the direct path.
    #[cfg(feature = "tonic")]
    pub(crate) fn start_grpc(info: &RequestInfo<'_>, call: Option<(&str, &str)>) -> Self {
        let mode = RequestSpanLayer::installed(RequestSpanLayer::mode);
        let (service, method) = call.unzip();
        let span = tracing::info_span!(
            target: TARGET,
            GRPC_SPAN_NAME,
            otel.name = info.path.strip_prefix('/').unwrap_or(info.path),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            user_id = Empty,
            error = Empty,
        );
        match mode {
            // The SDK disabled: no bridge, the caller's context passed through.
            Some(Mode::Own(None)) => {
                add_log_path(&span, info);
                direct::pass_through(span, info)
            }
            Some(_) => Self::continued(span, info, Kind::Bridged),
            None => Self::continued(span, info, Kind::Foreign),
        }
    }

    /// No span (the layer's span is switched off): the access line is still
    /// written, as a root event.
    pub(crate) fn none() -> Self {
        Self {
            span: tracing::Span::none(),
            kind: Kind::Foreign,
        }
    }

    /// A span for the bridge, with every attribute as a field.
    fn bridged(info: &RequestInfo<'_>, kind: Kind) -> Self {
        let name = direct::span_name(info.method, info.route, info.route_cache);
        let span = tracing::info_span!(
            target: TARGET,
            SPAN_NAME,
            otel.name = &*name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = info.method.as_str(),
            http.route = info.route,
            url.path = info.path,
            http.response.status_code = Empty,
            user_id = Empty,
            error = Empty,
        );
        Self::continued(span, info, kind)
    }

    /// `span`, a child of the incoming `traceparent` when the headers carry
    /// a valid one, with the `path` log field under `init`'s subscriber.
    fn continued(span: tracing::Span, info: &RequestInfo<'_>, kind: Kind) -> Self {
        if let Some(parent) = crate::trace::remote_parent(info.headers) {
            // Only fails for a disabled span, which has no parent to set.
            let _ = span.set_parent(parent);
        }
        // Under `init`'s subscriber only: other subscribers' formatters do
        // not read the JSON layer's span fields.
        if matches!(kind, Kind::Bridged) {
            add_log_path(&span, info);
        }
        Self { span, kind }
    }

    /// Enters the span: spans the handler opens are its children, and the
    /// current OpenTelemetry context is its own.
    pub(crate) fn enter(&self) -> Entered<'_> {
        match &self.kind {
            Kind::Own(cx) => direct::enter(&self.span, cx),
            Kind::Bridged | Kind::Foreign => Entered {
                _span: self.span.enter(),
                _context: None,
            },
        }
    }

    /// Notes the response status: `http.response.status_code`, and the
    /// Error status for a 5xx.
    pub(crate) fn record_status(&self, status: u16) {
        match &self.kind {
            Kind::Own(cx) => direct::record_status(cx, status),
            Kind::Bridged | Kind::Foreign => {
                self.record_outcome("http.response.status_code", status.into(), status >= 500);
            }
        }
    }

    /// Notes the status of a gRPC call: `rpc.grpc.status_code`, and the
    /// Error status when `failed` (the server's fault).
    #[cfg(feature = "tonic")]
    pub(crate) fn record_grpc_status(&self, code: u8, failed: bool) {
        self.record_outcome("rpc.grpc.status_code", code.into(), failed);
    }

    /// Sets `attribute` to `value`, and the Error status when `failed`, on
    /// a span made for a bridge.
    fn record_outcome(&self, attribute: &'static str, value: i64, failed: bool) {
        match &self.kind {
            // gRPC spans are never the crate's own.
            Kind::Own(_) => {}
            Kind::Bridged => {
                self.span.set_attribute(attribute, value);
                if failed {
                    self.span.set_status(Status::error(""));
                }
            }
            Kind::Foreign => {
                // As i64: the bridge exports u64 values as strings.
                self.span.record(attribute, value);
                if failed {
                    self.span.record("otel.status_code", "ERROR");
                }
            }
        }
    }

    /// The ids of a span recorded though its trace is not sampled (the
    /// guide's "keep every error" rule, see [`crate::trace`]), for a 5xx
    /// response: [`init`](crate::init)'s span processor exports the traces
    /// of such spans, whose status the response made Error. `None` under
    /// another subscriber, whose processor may not.
    pub(crate) fn kept_error_ids(&self) -> Option<SpanIds> {
        let bridged;
        let cx = match &self.kind {
            Kind::Own(cx) => cx,
            Kind::Bridged => {
                bridged = self.span.context();
                &bridged
            }
            Kind::Foreign => return None,
        };
        let span = cx.span();
        let ids = span.span_context();
        (span.is_recording() && ids.is_valid() && !ids.is_remote()).then(|| SpanIds::of(ids))
    }

    /// Writes the request's access line, a child of the span (see
    /// [`AccessLine`]).
    pub(crate) fn access_line(&self, line: &AccessLine<'_>) {
        access::write(&self.span, line);
    }
}

impl Drop for RequestSpan {
    /// Dropped when the response has been sent (or dropped): the span ends
    /// now, as `http_request_duration_seconds` measures, not at the
    /// handler's last poll.
    fn drop(&mut self) {
        match &self.kind {
            Kind::Own(cx) => direct::end(cx),
            // `tracing-opentelemetry` ends a span at its last exit: one more
            // enter and exit make that now.
            Kind::Bridged | Kind::Foreign => drop(self.span.enter()),
        }
    }
}

/// Records `value` as `field` on the current request's span (found among
/// the current span's ancestors), or on the current span when the
/// subscriber is not built on `tracing_subscriber::Registry`.
pub(crate) fn record_on_request_span(field_name: &str, value: &str) {
    let recorded = tracing::dispatcher::get_default(|dispatch| {
        // Inside `get_default`, `Span::current()` would not see `dispatch`:
        // ask it directly.
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return false;
        };
        let Some(current) = dispatch.current_span().id().cloned() else {
            return true;
        };
        let Some(span) = registry.span(&current) else {
            return true;
        };
        if let Some(request) = span.scope().find(|s| is_request_span(s.metadata())) {
            let meta = request.metadata();
            if let Some(field) = meta.fields().field(field_name) {
                let values = [(&field, Some(&value as &dyn Value))];
                let values = meta.fields().value_set(&values);
                dispatch.record(&request.id(), &tracing::span::Record::new(&values));
            }
        }
        true
    });
    if !recorded {
        tracing::Span::current().record(field_name, value);
    }
}

/// Gives the lines inside `span` a `path` field: the route template, or the
/// request path where no route matched (the guide's scenario 2 shows
/// `path` and `error` of every error line). A log field only, added where
/// the JSON layer keeps its span fields: as an attribute it would repeat
/// `http.route` or `url.path` on every exported span.
fn add_log_path(span: &tracing::Span, info: &RequestInfo<'_>) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(data) = dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .and_then(|registry| registry.span(id))
        {
            let path = info.route.unwrap_or(info.path);
            crate::log::add_fields(&mut data.extensions_mut(), None, &[("path", path)]);
        }
    });
}

/// `METHOD route`, or `METHOD` without a route.
fn name_of(method: Method, route: Option<&str>) -> Cow<'static, str> {
    let method = method.as_str();
    match route {
        None => Cow::Borrowed(method),
        Some(route) => {
            let mut name = String::with_capacity(method.len() + 1 + route.len());
            name.push_str(method);
            name.push(' ');
            name.push_str(route);
            Cow::Owned(name)
        }
    }
}
