//! The OpenTelemetry span of an HTTP request, started by the HTTP layer
//! itself rather than through the `tracing` bridge.
//!
//! The bridge builds a span from a `tracing` span's fields: a visitor pass,
//! a `String` per attribute, and a second pass for every field recorded
//! later. The request span's attributes are known when the request arrives,
//! so with [`init`](crate::init)'s subscriber (JSON logs) the HTTP layer
//! starts the SDK span directly and keeps the `tracing` span for the log
//! lines only (the bridge does not see it). Entering the `tracing` span
//! attaches the OpenTelemetry span's context (the HTTP layer's own enters do
//! it in [`enter`], any other enter goes through [`RequestSpans`]), so the
//! handler's own spans are its children. With the SDK disabled there is no
//! SDK span, and the context is the incoming `traceparent`'s, if any.
//! Fields recorded on the `tracing` span later (`user_id`, `error`,
//! `otel.status_code`) are copied to the SDK span by [`RequestSpans`].
//!
//! With the pretty log format,
//! [`bridge_request_spans`](crate::TelemetryBuilder::bridge_request_spans),
//! or any other subscriber, the request span goes through whatever bridge the
//! subscriber has (its `otel.*` fields steer it). The differences a
//! handler's code can see are listed in [`http`](crate::http#span).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use http::HeaderMap;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, ContextGuard, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Id, Record};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::http::{METHODS, OTHER_METHOD};
use crate::log::{AccessFields, LineSink, RenderedFields};

/// The layer that lets the HTTP layer start request spans with the
/// installed tracer, and copies fields recorded on a request's `tracing`
/// span to its OpenTelemetry span.
pub(crate) struct RequestSpans {
    /// `None` with the SDK disabled: no span is started, and an incoming
    /// `traceparent` passes through as the request's context, as the
    /// OpenTelemetry API does without an SDK.
    tracer: Option<SdkTracer>,
    /// Where the JSON layer writes its lines (see [`write_access_line`]).
    sink: LineSink,
}

impl RequestSpans {
    pub(crate) fn new(tracer: Option<SdkTracer>, sink: LineSink) -> Self {
        Self { tracer, sink }
    }
}

/// The request spans entered on one thread, innermost last, each with the
/// context its enter attached (`None` when [`enter`] attached it), so that
/// exits detach in the reverse order of the enters (spans may be exited
/// out of order).
struct Attached(Vec<(Id, Option<ContextGuard>)>);

impl Drop for Attached {
    /// A span entered and never exited leaves its guard here until the
    /// thread exits; by then OpenTelemetry's own thread-local context may be
    /// gone, and dropping the guard would touch it: forget it instead.
    fn drop(&mut self) {
        for (_, guard) in self.0.drain(..) {
            std::mem::forget(guard);
        }
    }
}

thread_local! {
    static ATTACHED: RefCell<Attached> = const { RefCell::new(Attached(Vec::new())) };
    /// The request span [`enter`] is entering, its context already attached.
    static ENTERING: Cell<Option<u64>> = const { Cell::new(None) };
}

/// A request span entered by [`enter`]: exits it, then detaches its context.
pub(crate) struct Entered<'a> {
    _span: tracing::span::Entered<'a>,
    _context: Option<ContextGuard>,
}

/// Clears [`ENTERING`] when dropped, a panic in a layer's `on_enter`
/// included: a stale mark would make [`RequestSpans::on_enter`] skip a later
/// enter of a span reusing the id.
struct ClearEntering;

impl Drop for ClearEntering {
    fn drop(&mut self) {
        let _ = ENTERING.try_with(|entering| entering.set(None));
    }
}

/// Enters the request span `span` whose context `cx` (stored by [`start`])
/// the caller holds: attaches the context itself, and tells
/// [`RequestSpans::on_enter`] so, which then does not look the span up.
/// Entered any other way (`Span::in_scope`, a task spawned with
/// `.in_current_span()`), the span still gets its context attached.
pub(crate) fn enter<'a>(span: &'a tracing::Span, cx: Option<&Context>) -> Entered<'a> {
    let context = cx.map(|cx| cx.clone().attach());
    let entered = match context.as_ref().and_then(|_| span.id()) {
        Some(id) => {
            let _ = ENTERING.try_with(|entering| entering.set(Some(id.into_u64())));
            let _clear = ClearEntering;
            span.enter()
        }
        None => span.enter(),
    };
    Entered {
        _span: entered,
        _context: context,
    }
}

impl<S> Layer<S> for RequestSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// Entering a request span attaches its context, wherever it is entered
    /// (a task spawned with `.in_current_span()` too), so spans opened inside
    /// are its children, as the bridge's context activation does for others.
    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let guard = if ENTERING
            .try_with(|entering| {
                let ours = entering.get() == Some(id.into_u64());
                if ours {
                    entering.set(None);
                }
                ours
            })
            .unwrap_or(false)
        {
            // `enter` attached the context already; its place in the order
            // of enters is still kept.
            None
        } else {
            match stored_context(id, &ctx) {
                Some(cx) => Some(cx.attach()),
                None => return,
            }
        };
        let _ = ATTACHED.try_with(|attached| attached.borrow_mut().0.push((id.clone(), guard)));
    }

    fn on_exit(&self, id: &Id, _ctx: LayerContext<'_, S>) {
        let _ = ATTACHED.try_with(|attached| {
            let mut attached = attached.borrow_mut();
            if let Some(index) = attached.0.iter().rposition(|(entered, _)| entered == id) {
                let (_, guard) = attached.0.remove(index);
                // Dropped after the borrow ends.
                drop(attached);
                drop(guard);
            }
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let cx = stored_context(id, &ctx);
        // Not under the extensions' lock: the SDK span has its own.
        if let Some(cx) = cx
            && cx.span().is_recording()
        {
            values.record(&mut CopyFields(&cx));
        }
    }
}

/// Whether the current subscriber is the one [`init`](crate::init) installs
/// (with a [`RequestSpans`] layer).
pub(crate) fn is_installed() -> bool {
    tracing::dispatcher::get_default(tracing::Dispatch::is::<RequestSpans>)
}

/// The context [`start`] stored on span `id`, if it is a request span.
fn stored_context<S>(id: &Id, ctx: &LayerContext<'_, S>) -> Option<Context>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = ctx.span(id)?;
    // The callsite first: most spans are not request spans.
    if !crate::http::is_request_span(span.metadata()) {
        return None;
    }
    crate::log::request_context(&span.extensions()).cloned()
}

/// The request's attributes, known when it arrives.
pub(crate) struct RequestAttributes<'a> {
    /// The method's index in [`METHODS`].
    pub(crate) method: usize,
    pub(crate) route: Option<&'a str>,
    /// Where the service keeps what the requests of its first route share.
    pub(crate) route_cache: Option<&'a OnceLock<RouteCache>>,
    pub(crate) path: &'a str,
}

/// What the request spans of one route share, made once: the `http.route`
/// attribute value, and per method the span name and the log fields of the
/// method and route. A service ([`Instance`](crate::http)) keeps one, for
/// the first route it serves (axum gives each route a service of its own).
#[derive(Debug)]
pub(crate) struct RouteCache {
    route: StringValue,
    methods: [OnceLock<MethodCache>; METHODS.len()],
}

#[derive(Debug)]
struct MethodCache {
    /// `METHOD route`; borrowed from a string kept for the process's
    /// lifetime, unless [`MAX_KEPT_NAMES`] were kept already.
    name: Cow<'static, str>,
    fields: RenderedFields,
}

/// Most span names [`RouteCache`]s keep for the process's lifetime (one per
/// route and method, so a few per service); past that, each request span
/// allocates its name. The count is global and never goes down: an
/// application that builds its router again and again (reloads, tests)
/// reaches it sooner, and then simply allocates.
const MAX_KEPT_NAMES: usize = 4096;
static KEPT_NAMES: AtomicUsize = AtomicUsize::new(0);

impl RouteCache {
    fn new(route: &str) -> Self {
        Self {
            route: StringValue::from(Arc::<str>::from(route)),
            methods: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// What the requests with `method` of this cache's route share, when
    /// `route` is that route.
    fn get<'a>(
        cache: &'a OnceLock<Self>,
        route: &str,
        method: usize,
    ) -> Option<(&'a StringValue, &'a MethodCache)> {
        let this = cache.get_or_init(|| Self::new(route));
        if this.route.as_str() != route {
            return None;
        }
        let method_label = METHODS.get(method)?;
        let shared = this.methods.get(method)?.get_or_init(|| {
            let name = span_name(method_label, Some(route));
            let name = if KEPT_NAMES.fetch_add(1, Ordering::Relaxed) < MAX_KEPT_NAMES {
                Cow::Borrowed(&*Box::leak(name.into_boxed_str()))
            } else {
                Cow::Owned(name)
            };
            MethodCache {
                name,
                fields: RenderedFields::new(&[
                    ("http.request.method", method_label),
                    ("http.route", route),
                ]),
            }
        });
        Some((&this.route, shared))
    }
}

/// `METHOD route`, or `METHOD` without a route.
pub(crate) fn span_name(method: &str, route: Option<&str>) -> String {
    let mut name = String::with_capacity(method.len() + 1 + route.map_or(0, str::len));
    name.push_str(method);
    if let Some(route) = route {
        name.push(' ');
        name.push_str(route);
    }
    name
}

/// Starts the SDK span of the request whose `tracing` span is `span`, a
/// child of the incoming `traceparent` when `headers` carry a valid one,
/// stores its context on `span` (and the attributes as its log fields), and
/// returns it. Returns `None` (and does nothing) when `span` is disabled or
/// its subscriber is not the one [`init`](crate::init) installs.
pub(crate) fn start(
    span: &tracing::Span,
    attributes: &RequestAttributes<'_>,
    headers: &HeaderMap,
) -> Option<Context> {
    span.with_subscriber(|(id, dispatch)| {
        let layer = dispatch.downcast_ref::<RequestSpans>()?;
        let data = dispatch.downcast_ref::<Registry>()?.span(id)?;
        let method = METHODS
            .get(attributes.method)
            .copied()
            .unwrap_or(OTHER_METHOD);
        let shared = attributes
            .route
            .zip(attributes.route_cache)
            .and_then(|(route, cache)| RouteCache::get(cache, route, attributes.method));
        let cx = match &layer.tracer {
            Some(tracer) => {
                let parent = super::remote_parent(headers).unwrap_or_else(Context::current);
                let name = match shared {
                    Some((_, shared)) => shared.name.clone(),
                    None => Cow::Owned(span_name(method, attributes.route)),
                };
                let otel_span = tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Server)
                    .with_attributes(span_attributes(method, attributes, shared))
                    .start_with_context(tracer, &parent);
                parent.with_span(otel_span)
            }
            // The SDK is disabled: no span of ours, only the caller's
            // context, if it sent one (never a local span: ending the
            // request would end it).
            None => super::remote_parent(headers).unwrap_or_default(),
        };
        // The context, and the same values as fields of the log lines
        // inside the request.
        let mut extensions = data.extensions_mut();
        if let Some((_, shared)) = shared {
            let values = [("url.path", attributes.path)];
            crate::log::add_request_fields(
                &mut extensions,
                cx.clone(),
                Some(&shared.fields),
                &values,
            );
        } else {
            let mut fields = [("http.request.method", method); 3];
            let mut count = 1;
            if let Some(route) = attributes.route {
                fields[count] = ("http.route", route);
                count += 1;
            }
            fields[count] = ("url.path", attributes.path);
            count += 1;
            let values = fields.get(..count).unwrap_or_default();
            crate::log::add_request_fields(&mut extensions, cx.clone(), None, values);
        }
        Some(cx)
    })
    .flatten()
}

/// The request span's attributes when it starts.
fn span_attributes(
    method: &'static str,
    attributes: &RequestAttributes<'_>,
    shared: Option<(&StringValue, &MethodCache)>,
) -> Vec<KeyValue> {
    let mut kvs = Vec::with_capacity(4);
    kvs.push(KeyValue::new(
        Key::from_static_str("http.request.method"),
        Value::from(method),
    ));
    if let Some(route) = attributes.route {
        let value = match shared {
            Some((route, _)) => route.clone(),
            None => StringValue::from(route.to_owned()),
        };
        kvs.push(KeyValue::new(
            Key::from_static_str("http.route"),
            Value::from(value),
        ));
    }
    kvs.push(KeyValue::new(
        Key::from_static_str("url.path"),
        Value::from(attributes.path.to_owned()),
    ));
    kvs
}

/// Writes the access log line of the request whose `tracing` span is `span`
/// straight to the JSON layer's writer (see
/// [`write_access_line`](crate::log::write_access_line)). Returns `false`
/// (and writes nothing) when `span` is disabled or its subscriber is not the
/// one [`init`](crate::init) installs with JSON logs; the caller then emits
/// the event. The event's callsite must have been found enabled.
pub(crate) fn write_access_line(
    span: &tracing::Span,
    fields: &AccessFields<'_>,
    target: &str,
) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        let layer = dispatch.downcast_ref::<RequestSpans>()?;
        let data = dispatch.downcast_ref::<Registry>()?.span(id)?;
        crate::log::write_access_line(&layer.sink, fields, target, &data);
        Some(())
    })
    .flatten()
    .is_some()
}

/// The OpenTelemetry context stored on `span` by [`start`], if any.
pub(crate) fn context_of(span: &tracing::Span) -> Option<Context> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        // The request span is the current span or one of its ancestors.
        data.scope()
            .find_map(|span| crate::log::request_context(&span.extensions()).cloned())
    })
    .flatten()
}

/// Notes the response status on a request's SDK span: the attribute, and
/// Error for a 5xx.
pub(crate) fn respond(cx: &Context, status: u16) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        Key::from_static_str("http.response.status_code"),
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(""));
    }
}

/// Copies recorded fields to the SDK span as attributes; the bridge's
/// `otel.status_code` convention sets the status.
struct CopyFields<'a>(&'a Context);

impl CopyFields<'_> {
    fn set(&self, field: &Field, value: Value) {
        let name = field.name();
        if name == "otel.status_code" {
            let value = value.as_str();
            if value.eq_ignore_ascii_case("error") {
                self.0.span().set_status(Status::error(""));
            } else if value.eq_ignore_ascii_case("ok") {
                self.0.span().set_status(Status::Ok);
            }
        } else if !name.starts_with("otel.") {
            self.0
                .span()
                .set_attribute(KeyValue::new(Key::from_static_str(name), value));
        }
    }
}

impl Visit for CopyFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::from(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.set(field, Value::from(value)),
            Err(_) => self.set(field, Value::from(value.to_string())),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use opentelemetry::Context;
    use opentelemetry::trace::TraceContextExt;

    use super::{METHODS, OnceLock, RequestAttributes, RouteCache, enter, start};
    use crate::{LogFormat, Telemetry};

    fn current_span_id() -> opentelemetry::trace::SpanId {
        Context::current().span().span_context().span_id()
    }

    #[test]
    fn a_route_cache_keeps_its_first_route_and_one_name_per_method() {
        let cache = OnceLock::new();
        let (route, get) = RouteCache::get(&cache, "/a/{id}", 0).unwrap();
        assert_eq!(route.as_str(), "/a/{id}");
        assert_eq!(get.name, "GET /a/{id}");
        let (_, again) = RouteCache::get(&cache, "/a/{id}", 0).unwrap();
        assert!(
            std::ptr::eq(get.name.as_ref(), again.name.as_ref()),
            "the name is made once"
        );
        let post = METHODS.iter().position(|m| *m == "POST").unwrap();
        let (_, posts) = RouteCache::get(&cache, "/a/{id}", post).unwrap();
        assert_eq!(posts.name, "POST /a/{id}");
        assert!(
            RouteCache::get(&cache, "/b", 0).is_none(),
            "only the first route is kept"
        );
        assert!(RouteCache::get(&cache, "/a/{id}", METHODS.len()).is_none());
    }

    /// Entered by the HTTP layer inside an enter of its own (and the other
    /// way round), the request span's context is attached for exactly the
    /// enters, and detached in the reverse order.
    #[test]
    fn nested_enters_of_a_request_span_detach_in_order() {
        let (dispatch, _guard) = Telemetry::builder()
            .log_writer(std::io::sink())
            .build_dispatch()
            .unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!(target: "multiweb_telemetry::http", "HTTP request");
            let attributes = RequestAttributes {
                method: 0,
                route: Some("/"),
                route_cache: None,
                path: "/",
            };
            assert_eq!(crate::http::METHODS[0], "GET");
            let cx = start(&span, &attributes, &HeaderMap::new()).expect("a direct request span");
            let id = cx.span().span_context().span_id();
            let none = current_span_id();
            assert_ne!(id, none);

            // The layer's enter inside another enter.
            let outer = span.enter();
            assert_eq!(current_span_id(), id);
            {
                let _inner = enter(&span, Some(&cx));
                assert_eq!(current_span_id(), id);
            }
            assert_eq!(current_span_id(), id, "the outer enter's context stays");
            drop(outer);
            assert_eq!(current_span_id(), none);

            // Another enter inside the layer's.
            {
                let _outer = enter(&span, Some(&cx));
                span.in_scope(|| assert_eq!(current_span_id(), id));
                assert_eq!(current_span_id(), id, "the layer's context stays");
            }
            assert_eq!(current_span_id(), none);
        });
    }

    /// Which subscribers `init` builds start request spans directly.
    #[test]
    fn direct_request_spans_with_json_logs_unless_bridged() {
        let direct = |builder: crate::TelemetryBuilder| {
            let (dispatch, _guard) = builder
                .log_writer(std::io::sink())
                .build_dispatch()
                .unwrap();
            tracing::dispatcher::with_default(&dispatch, super::is_installed)
        };
        assert!(direct(Telemetry::builder()));
        assert!(!direct(Telemetry::builder().bridge_request_spans(true)));
        assert!(!direct(Telemetry::builder().log_format(LogFormat::Pretty)));
        // Not under a subscriber `init` did not build.
        assert!(!super::is_installed());
    }
}
