//! [`TelemetryService`]: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

#[cfg(feature = "axum")]
use axum::extract::MatchedPath;
use http::{Request, Response};

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::settings::ServiceState;
use super::state::{RequestState, Route, Series, SpanAndUri};
use crate::labels::{Method, UNMATCHED_PATH};
use crate::request_span::{Entered, RequestInfo, RequestSpan, RequestSpanLayer};

/// The service made by [`TelemetryLayer`](super::TelemetryLayer).
#[derive(Debug, Clone)]
pub struct TelemetryService<S> {
    inner: S,
    state: Arc<ServiceState>,
}

impl<S> TelemetryService<S> {
    pub(crate) fn new(inner: S, state: Arc<ServiceState>) -> Self {
        Self { inner, state }
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for TelemetryService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let service = &self.state;
        let settings = &service.layer.settings;
        if settings.excluded.iter().any(|p| p == request.uri().path()) {
            return ResponseFuture::new(self.inner.call(request), None);
        }
        let start = quanta::Instant::now();
        let method = Method::of(request.method());
        #[cfg(feature = "tonic")]
        if super::grpc::is_grpc(request.headers()) {
            return self.call_grpc(request, start, method);
        }
        let classified = settings
            .classifier
            .as_ref()
            .and_then(|classify| classify(request.method(), request.uri()));
        // Without a classifier, axum's route template (feature `axum`).
        #[cfg(feature = "axum")]
        let matched = match classified {
            None if settings.classifier.is_none() => request.extensions().get::<MatchedPath>(),
            _ => None,
        };
        #[cfg(feature = "axum")]
        let route = classified
            .as_deref()
            .or_else(|| matched.map(MatchedPath::as_str));
        #[cfg(not(feature = "axum"))]
        let route = classified.as_deref();

        let series = if settings.metrics && crate::metrics::recording() {
            let path = route.unwrap_or(UNMATCHED_PATH);
            match service.route.get() {
                Some(own) if own.path() == path => Series::Slot,
                Some(_) => Series::Owned(service.layer.series.route(path)),
                None => {
                    let found = service.layer.series.route(path);
                    let own = service.route.get_or_init(|| Arc::clone(&found));
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

        let traced = (settings.span || settings.access_log) && RequestSpanLayer::anyone_listens();
        let span = traced.then(|| {
            let span = if settings.span {
                RequestSpan::start(&RequestInfo {
                    method,
                    route,
                    path: request.uri().path(),
                    headers: request.headers(),
                    route_cache: &service.route_cache,
                })
            } else {
                RequestSpan::none()
            };
            // The route again for the access line (an `Arc` clone for axum's).
            let access = settings.access_log.then(|| {
                #[cfg(feature = "axum")]
                let route = match (&classified, matched) {
                    (Some(route), _) => Some(Route::Classified(route.clone())),
                    (None, Some(matched)) => Some(Route::Matched(matched.clone())),
                    (None, None) => None,
                };
                #[cfg(not(feature = "axum"))]
                let route = classified.clone().map(Route::Classified);
                (request.uri().clone(), route)
            });
            Box::new(SpanAndUri {
                span,
                access,
                sampled: None,
            })
        });

        let mut state = RequestState::new(Arc::clone(service), start, method, series, span);
        let (future, sampled) = {
            let entered = state.span.as_ref().map(|span| span.span.enter());
            let sampled = entered.as_ref().and_then(Entered::sampled_ids);
            (self.inner.call(request), sampled)
        };
        if let (Some(ids), Some(span)) = (sampled, state.span.as_deref_mut()) {
            span.sampled = Some(ids);
        }
        ResponseFuture::new(future, Some(state))
    }
}

#[cfg(feature = "tonic")]
impl<S> TelemetryService<S> {
    /// A gRPC call: named by its path, counted by its gRPC status, in
    /// `rpc_server_duration_seconds` instead of the HTTP series.
    fn call_grpc<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
        start: quanta::Instant,
        method: Method,
    ) -> ResponseFuture<S::Future>
    where
        S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let service = &self.state;
        let settings = &service.layer.settings;
        let traced = (settings.span || settings.access_log) && RequestSpanLayer::anyone_listens();
        let span = traced.then(|| {
            let span = if settings.span {
                let path = request.uri().path();
                RequestSpan::start_grpc(
                    &RequestInfo {
                        method,
                        route: None,
                        path,
                        headers: request.headers(),
                        route_cache: &service.route_cache,
                    },
                    super::grpc::service_and_method(path),
                )
            } else {
                RequestSpan::none()
            };
            let access = settings.access_log.then(|| (request.uri().clone(), None));
            Box::new(SpanAndUri {
                span,
                access,
                sampled: None,
            })
        });
        let mut state = RequestState::new(Arc::clone(service), start, method, Series::Off, span);
        state.grpc = Some(Box::new(super::grpc::GrpcCall {
            uri: request.uri().clone(),
            code: None,
            ended: false,
        }));
        let future = {
            let _entered = state.span.as_ref().map(|span| span.span.enter());
            self.inner.call(request)
        };
        ResponseFuture::new(future, Some(state))
    }
}
