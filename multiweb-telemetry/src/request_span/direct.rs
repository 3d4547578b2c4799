//! The direct path (opt-in): the request's OpenTelemetry span started by
//! the crate itself, its context kept in a [`RequestContext`] extension and
//! attached on every enter. The same path, without an SDK span, passes the
//! caller's context through when the SDK is disabled.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, ContextGuard, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::field::{Empty, Field, Visit};
use tracing::span::{Id, Record};
use tracing_subscriber::Registry;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::{Entered, Kind, RequestInfo, RequestSpan, SPAN_NAME, TARGET, name_of};
use crate::labels::Method;
use crate::log::{RenderedFields, add_fields};
use crate::trace::RequestContext;

/// Starts the request span of `info` with its OpenTelemetry context kept
/// by the crate: an SDK span started with `tracer`, or without a tracer
/// (the SDK disabled) the caller's context, if it sent one (never a local
/// span: ending the request would end it).
pub(super) fn start(info: &RequestInfo<'_>, tracer: Option<&SdkTracer>) -> RequestSpan {
    // Only the fields recorded later: the log lines get their `http.*`
    // fields, and the SDK span its attributes, from here.
    let span = tracing::info_span!(
        target: TARGET,
        SPAN_NAME,
        otel.status_code = Empty,
        user_id = Empty,
        error = Empty,
    );
    let cx = span
        .with_subscriber(|(id, dispatch)| {
            let data = dispatch.downcast_ref::<Registry>()?.span(id)?;
            let shared = info
                .route
                .and_then(|route| RouteCache::get(info.route_cache, route, info.method));
            let cx = match tracer {
                Some(tracer) => {
                    let parent =
                        crate::trace::remote_parent(info.headers).unwrap_or_else(Context::current);
                    let name = match shared {
                        Some((_, shared)) => shared.name.clone(),
                        None => name_of(info.method, info.route),
                    };
                    let otel_span = tracer
                        .span_builder(name)
                        .with_kind(SpanKind::Server)
                        .with_attributes(attributes(info, shared))
                        .start_with_context(tracer, &parent);
                    parent.with_span(otel_span)
                }
                None => crate::trace::remote_parent(info.headers).unwrap_or_default(),
            };
            let mut extensions = data.extensions_mut();
            // The fields the bridged span's lines have: its three `http`
            // fields, then the log-only `path` (see `add_log_path`).
            let url_path = ("url.path", info.path);
            let path = ("path", info.route.unwrap_or(info.path));
            if let Some((_, shared)) = shared {
                add_fields(&mut extensions, Some(&shared.fields), &[url_path, path]);
            } else {
                let method = ("http.request.method", info.method.as_str());
                match info.route {
                    Some(route) => add_fields(
                        &mut extensions,
                        None,
                        &[method, ("http.route", route), url_path, path],
                    ),
                    None => add_fields(&mut extensions, None, &[method, url_path, path]),
                }
            }
            extensions.insert(RequestContext(cx.clone()));
            Some(cx)
        })
        .flatten();
    owning(span, cx)
}

/// `span` with the context the crate keeps for it; without one (a disabled
/// span, `RUST_LOG`), no OpenTelemetry span either.
fn owning(span: tracing::Span, cx: Option<Context>) -> RequestSpan {
    match cx {
        Some(cx) => RequestSpan {
            span,
            kind: Kind::Own(cx),
        },
        None => RequestSpan {
            span,
            kind: Kind::Foreign,
        },
    }
}

/// The span of a gRPC call `span` with the SDK disabled and no bridge: the
/// caller's context, if it sent one, passed through as [`start`] passes it
/// without a tracer (its ids on the call's log lines, passed on by
/// `inject_context`).
#[cfg(feature = "tonic")]
pub(super) fn pass_through(span: tracing::Span, info: &RequestInfo<'_>) -> RequestSpan {
    let cx = span
        .with_subscriber(|(id, dispatch)| {
            let data = dispatch.downcast_ref::<Registry>()?.span(id)?;
            let cx = crate::trace::remote_parent(info.headers).unwrap_or_default();
            data.extensions_mut().insert(RequestContext(cx.clone()));
            Some(cx)
        })
        .flatten();
    owning(span, cx)
}

/// The request span's attributes when it starts.
fn attributes(
    info: &RequestInfo<'_>,
    shared: Option<(&StringValue, &MethodCache)>,
) -> Vec<KeyValue> {
    let mut kvs = Vec::with_capacity(4);
    kvs.push(KeyValue::new(
        Key::from_static_str("http.request.method"),
        Value::from(info.method.as_str()),
    ));
    if let Some(route) = info.route {
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
        Value::from(info.path.to_owned()),
    ));
    kvs
}

/// Notes the response status on the SDK span: the attribute, and Error for
/// a 5xx.
pub(super) fn record_status(cx: &Context, status: u16) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        Key::from_static_str("http.response.status_code"),
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(""));
    }
}

/// Ends the SDK span (a passed-through remote context has none to end).
pub(super) fn end(cx: &Context) {
    cx.span().end();
}

/// The span name for `info`'s method and route: made once per route and
/// method when the route is the service's first, else allocated.
pub(super) fn span_name(
    method: Method,
    route: Option<&str>,
    cache: &OnceLock<RouteCache>,
) -> Cow<'static, str> {
    match route.and_then(|route| RouteCache::get(cache, route, method)) {
        Some((_, shared)) => shared.name.clone(),
        None => name_of(method, route),
    }
}

/// What the request spans of one route share, made once: the `http.route`
/// attribute value, and per method the span name and the log fields of the
/// method and route. A service keeps one, for the first route it serves
/// (axum gives each route a service of its own).
#[derive(Debug)]
pub(crate) struct RouteCache {
    route: StringValue,
    methods: [OnceLock<MethodCache>; Method::COUNT],
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
        method: Method,
    ) -> Option<(&'a StringValue, &'a MethodCache)> {
        let this = cache.get_or_init(|| Self::new(route));
        if this.route.as_str() != route {
            return None;
        }
        let shared = this.methods.get(method.index())?.get_or_init(|| {
            let name = name_of(method, Some(route));
            let name = if KEPT_NAMES.fetch_add(1, Ordering::Relaxed) < MAX_KEPT_NAMES {
                Cow::Borrowed(&*Box::leak(name.into_owned().into_boxed_str()))
            } else {
                name
            };
            MethodCache {
                name,
                fields: RenderedFields::new(&[
                    ("http.request.method", method.as_str()),
                    ("http.route", route),
                ]),
            }
        });
        Some((&this.route, shared))
    }
}

/// The request spans entered on one thread, innermost last, each with the
/// context its enter attached (`None` when [`enter`] attached it), so that
/// exits detach in the reverse order of the enters (spans may be exited
/// out of order).
struct AttachedSpans(Vec<(Id, Option<ContextGuard>)>);

impl Drop for AttachedSpans {
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
    static ATTACHED: RefCell<AttachedSpans> = const { RefCell::new(AttachedSpans(Vec::new())) };
    /// The request span [`enter`] is entering, its context already attached.
    static ENTERING: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The context attached by [`enter`], detached when dropped.
pub(super) struct Attached(#[allow(dead_code, reason = "held for its drop")] ContextGuard);

/// Clears [`ENTERING`] when dropped, a panic in a layer's `on_enter`
/// included: a stale mark would make [`on_enter`] skip a later enter of a
/// span reusing the id.
struct ClearEntering;

impl Drop for ClearEntering {
    fn drop(&mut self) {
        let _ = ENTERING.try_with(|entering| entering.set(None));
    }
}

/// Enters the request span `span` whose context is `cx`: attaches the
/// context itself, and tells [`on_enter`] so, which then does not look the
/// span up. Entered any other way (`Span::in_scope`, a task spawned with
/// `.in_current_span()`), the span still gets its context attached.
pub(super) fn enter<'a>(span: &'a tracing::Span, cx: &Context) -> Entered<'a> {
    let context = Attached(cx.clone().attach());
    let entered = match span.id() {
        Some(id) => {
            let _ = ENTERING.try_with(|entering| entering.set(Some(id.into_u64())));
            let _clear = ClearEntering;
            span.enter()
        }
        None => span.enter(),
    };
    Entered {
        _span: entered,
        _context: Some(context),
    }
}

/// Entering a request span attaches its context, wherever it is entered
/// (a task spawned with `.in_current_span()` too), so spans opened inside
/// are its children, as the bridge's context activation does for others.
/// `stored` looks the span's context up, when [`enter`] did not attach it.
pub(super) fn on_enter(id: &Id, stored: impl FnOnce() -> Option<Context>) {
    let entered_by_us = ENTERING
        .try_with(|entering| {
            let ours = entering.get() == Some(id.into_u64());
            if ours {
                entering.set(None);
            }
            ours
        })
        .unwrap_or(false);
    let guard = if entered_by_us {
        // `enter` attached the context already; its place in the order of
        // enters is still kept.
        None
    } else {
        match stored() {
            Some(cx) => Some(cx.attach()),
            None => return,
        }
    };
    let _ = ATTACHED.try_with(|attached| attached.borrow_mut().0.push((id.clone(), guard)));
}

/// Detaches what the matching enter attached.
pub(super) fn on_exit(id: &Id) {
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

/// Copies fields recorded on a request span (`user_id`, `error`,
/// `otel.status_code`) to its SDK span, whose context is `stored`.
pub(super) fn on_record(stored: Option<Context>, values: &Record<'_>) {
    // Not under the extensions' lock: the SDK span has its own.
    if let Some(cx) = stored
        && cx.span().is_recording()
    {
        values.record(&mut CopyFields(&cx));
    }
}

/// The context [`start`] stored on a request span.
pub(super) fn stored_context<'a, R: LookupSpan<'a>>(span: &SpanRef<'a, R>) -> Option<Context> {
    // The callsite first: most spans are not request spans.
    if !super::is_request_span(span.metadata()) {
        return None;
    }
    span.extensions()
        .get::<RequestContext>()
        .map(|RequestContext(cx)| cx.clone())
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

    use super::*;
    use crate::Telemetry;

    fn current_span_id() -> opentelemetry::trace::SpanId {
        Context::current().span().span_context().span_id()
    }

    #[test]
    fn a_route_cache_keeps_its_first_route_and_one_name_per_method() {
        let get_method = Method::of(&http::Method::GET);
        let cache = OnceLock::new();
        let (route, get) = RouteCache::get(&cache, "/a/{id}", get_method).unwrap();
        assert_eq!(route.as_str(), "/a/{id}");
        assert_eq!(get.name, "GET /a/{id}");
        let (_, again) = RouteCache::get(&cache, "/a/{id}", get_method).unwrap();
        assert!(
            std::ptr::eq(get.name.as_ref(), again.name.as_ref()),
            "the name is made once"
        );
        let post = Method::of(&http::Method::POST);
        let (_, posts) = RouteCache::get(&cache, "/a/{id}", post).unwrap();
        assert_eq!(posts.name, "POST /a/{id}");
        assert!(
            RouteCache::get(&cache, "/b", get_method).is_none(),
            "only the first route is kept"
        );
    }

    /// Entered by the HTTP layer inside an enter of its own (and the other
    /// way round), the request span's context is attached for exactly the
    /// enters, and detached in the reverse order.
    #[test]
    fn nested_enters_of_a_request_span_detach_in_order() {
        let (dispatch, _guard) = Telemetry::builder()
            .log_writer(std::io::sink())
            .bridge_request_spans(false)
            .build_dispatch()
            .unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            let headers = HeaderMap::new();
            let cache = OnceLock::new();
            let request = RequestSpan::start(&RequestInfo {
                method: Method::of(&http::Method::GET),
                route: Some("/"),
                path: "/",
                headers: &headers,
                route_cache: &cache,
            });
            let Kind::Own(cx) = &request.kind else {
                panic!("a direct request span: {request:?}");
            };
            let id = cx.span().span_context().span_id();
            let none = current_span_id();
            assert_ne!(id, none);

            // The layer's enter inside another enter.
            let outer = request.span.enter();
            assert_eq!(current_span_id(), id);
            {
                let _inner = request.enter();
                assert_eq!(current_span_id(), id);
            }
            assert_eq!(current_span_id(), id, "the outer enter's context stays");
            drop(outer);
            assert_eq!(current_span_id(), none);

            // Another enter inside the layer's.
            {
                let _outer = request.enter();
                request.span.in_scope(|| assert_eq!(current_span_id(), id));
                assert_eq!(current_span_id(), id, "the layer's context stays");
            }
            assert_eq!(current_span_id(), none);
        });
    }
}
