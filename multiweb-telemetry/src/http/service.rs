//! [`TelemetryService`]: the middleware service.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{Request, Response};
use tracing::field::Empty;

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::labels::{METHODS, UNMATCHED_PATH, method_index};
use super::layer::Instance;
use super::request::{RequestState, SPAN_NAME, Series, TARGET, Trace};
use crate::trace::request::{RequestAttributes, span_name};

/// The service made by [`TelemetryLayer`](super::TelemetryLayer).
#[derive(Debug, Clone)]
pub struct TelemetryService<S> {
    inner: S,
    instance: Arc<Instance>,
}

impl<S> TelemetryService<S> {
    pub(crate) fn new(inner: S, instance: Arc<Instance>) -> Self {
        Self { inner, instance }
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for TelemetryService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let instance = &self.instance;
        let settings = &instance.shared.settings;
        if settings.excluded.iter().any(|p| p == request.uri().path()) {
            return ResponseFuture::new(self.inner.call(request), None);
        }
        let start = quanta::Instant::now();
        let method = method_index(request.method());
        let route: Option<Cow<'_, str>> = match &settings.classifier {
            Some(classify) => classify(request.method(), request.uri()),
            None => request
                .extensions()
                .get::<MatchedPath>()
                .map(|matched| Cow::Borrowed(matched.as_str())),
        };

        let series = if settings.metrics {
            let path = route.as_deref().unwrap_or(UNMATCHED_PATH);
            match instance.route.get() {
                Some(own) if own.path() == path => Series::Slot,
                Some(_) => Series::Owned(instance.shared.series.route(path)),
                None => {
                    let found = instance.shared.series.route(path);
                    let own = instance.route.get_or_init(|| Arc::clone(&found));
                    if Arc::ptr_eq(own, &found) {
                        Series::Slot
                    } else {
                        Series::Owned(found)
                    }
                }
            }
        } else {
            Series::Off
        };

        let trace = (settings.span || settings.access_log).then(|| {
            let (span, cx) = if settings.span {
                request_span(instance, method, route.as_deref(), &request)
            } else {
                (tracing::Span::none(), None)
            };
            let uri = settings.access_log.then(|| request.uri().clone());
            Box::new(Trace { span, cx, uri })
        });

        drop(route);
        let state = RequestState::new(Arc::clone(instance), start, method, series, trace);
        let future = {
            let _entered = state
                .trace
                .as_ref()
                .map(|trace| crate::trace::request::enter(&trace.span, trace.cx.as_ref()));
            self.inner.call(request)
        };
        ResponseFuture::new(future, Some(state))
    }
}

/// The SERVER span of one request, and its OpenTelemetry context when the
/// layer starts the OpenTelemetry span itself (see `trace::request`).
fn request_span<B>(
    instance: &Instance,
    method: usize,
    route: Option<&str>,
    request: &Request<B>,
) -> (tracing::Span, Option<opentelemetry::Context>) {
    let method_label = METHODS[method];
    let path = request.uri().path();
    if crate::trace::request::is_installed() {
        // Only the fields recorded later: the layer gives the OpenTelemetry
        // span its attributes and the log lines their fields itself, without
        // a pass through every layer.
        let span = tracing::info_span!(
            target: TARGET,
            SPAN_NAME,
            otel.status_code = Empty,
            user_id = Empty,
            error = Empty,
        );
        let attributes = RequestAttributes {
            method,
            route,
            route_cache: Some(&instance.route_cache),
            path,
        };
        let cx = crate::trace::request::start(&span, &attributes, request.headers());
        return (span, cx);
    }
    // Another subscriber: its `tracing-opentelemetry` bridge, if any, makes
    // the OpenTelemetry span from this span's fields, steered by `otel.*`.
    let name = span_name(method_label, route);
    let span = tracing::info_span!(
        target: TARGET,
        SPAN_NAME,
        otel.name = name.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method_label,
        http.route = route,
        url.path = path,
        http.response.status_code = Empty,
        user_id = Empty,
        error = Empty,
    );
    crate::trace::start_trace(&span, request.headers());
    (span, None)
}
