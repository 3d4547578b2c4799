//! [`RequestState`]: what the layer keeps about one request until its
//! response completes.

use std::sync::Arc;

use std::borrow::Cow;

#[cfg(feature = "axum")]
use axum::extract::MatchedPath;
use http::Uri;

#[cfg(feature = "tonic")]
use super::grpc::{self, GrpcCall};
use super::series::RouteSeries;
use super::settings::ServiceState;
use crate::exemplar::SpanIds;
use crate::labels::Method;
use crate::request_span::{AccessLine, RequestSpan};

/// Where a request's metric series are.
#[derive(Debug)]
pub(crate) enum Series {
    /// Metrics are off.
    Off,
    /// The service's own route ([`ServiceState::route`]).
    Slot,
    /// Another route, looked up for this request.
    Owned(Arc<RouteSeries>),
}

/// The route template a request matched.
#[derive(Debug)]
pub(crate) enum Route {
    /// axum's, shared with the request's extensions.
    #[cfg(feature = "axum")]
    Matched(MatchedPath),
    /// The layer's route classifier's.
    Classified(Cow<'static, str>),
}

impl Route {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            #[cfg(feature = "axum")]
            Self::Matched(matched) => matched.as_str(),
            Self::Classified(route) => route,
        }
    }
}

/// The span, and what the access line needs, kept only when the span or
/// the access log is on. Dropping it ends the request span.
#[derive(Debug)]
pub(crate) struct SpanAndUri {
    pub(crate) span: RequestSpan,
    /// The request URI and its route, kept only when the access log is on.
    pub(crate) access: Option<(Uri, Option<Route>)>,
    /// The span's ids when its trace is sampled, for the metrics' exemplars.
    pub(crate) sampled: Option<SpanIds>,
}

/// One request in flight. Finishing it records the metrics and writes the
/// access log line. Dropping it unfinished finishes it too once a response
/// exists (a body dropped after or while being sent); before that, a drop
/// while unwinding from a panic counts as a 500, and any other drop (the
/// client went away) only takes it out of `http_requests_in_flight`.
#[derive(Debug)]
pub(crate) struct RequestState {
    service: Arc<ServiceState>,
    start: quanta::Instant,
    series: Series,
    /// Boxed: with metrics only (no trace) the request's future and body,
    /// which axum moves and boxes, stay small (inline costs the metrics-only
    /// configuration about 350 instructions per request).
    pub(crate) span: Option<Box<SpanAndUri>>,
    method: Method,
    status: u16,
    finished: bool,
    /// A gRPC call's path and status (feature `tonic`); boxed, as only
    /// gRPC calls have it.
    #[cfg(feature = "tonic")]
    pub(crate) grpc: Option<Box<GrpcCall>>,
}

impl RequestState {
    pub(crate) fn new(
        service: Arc<ServiceState>,
        start: quanta::Instant,
        method: Method,
        series: Series,
        span: Option<Box<SpanAndUri>>,
    ) -> Self {
        let state = Self {
            service,
            start,
            series,
            span,
            method,
            status: 0,
            finished: false,
            #[cfg(feature = "tonic")]
            grpc: None,
        };
        if let Some(route) = state.route() {
            route.start(state.method, &state.service.layer.series);
        }
        state
    }

    fn route(&self) -> Option<&RouteSeries> {
        match &self.series {
            Series::Off => None,
            Series::Slot => self.service.route.get().map(|route| &**route),
            Series::Owned(route) => Some(route),
        }
    }

    /// Notes the response status on the span (a gRPC call's status is
    /// noted when it ends).
    pub(crate) fn respond(&mut self, status: u16) {
        self.status = status;
        if let Some(span) = &self.span
            && !self.is_grpc()
        {
            span.span.record_status(status);
        }
    }

    #[cfg_attr(
        not(feature = "tonic"),
        allow(clippy::unused_self, reason = "gRPC calls need the feature")
    )]
    fn is_grpc(&self) -> bool {
        #[cfg(feature = "tonic")]
        return self.grpc.is_some();
        #[cfg(not(feature = "tonic"))]
        false
    }

    /// Notes the `grpc-status` in `headers` (the response's, or its
    /// trailers), for a gRPC call.
    #[cfg(feature = "tonic")]
    pub(crate) fn note_grpc_status(&mut self, headers: &http::HeaderMap) {
        if let Some(call) = &mut self.grpc {
            call.note(headers);
        }
    }

    /// Notes a gRPC call's response: the `grpc-status` in its headers, and
    /// whether its body is already at its end.
    #[cfg(feature = "tonic")]
    pub(crate) fn note_grpc_response(&mut self, headers: &http::HeaderMap, ended: bool) {
        if let Some(call) = &mut self.grpc {
            call.note(headers);
            call.ended = ended;
        }
    }

    /// For a gRPC call whose response is dropped without a status: `INTERNAL`
    /// while unwinding from a panic (with the error for its access line),
    /// `CANCELLED` for a body dropped before its end (the client went away).
    /// An empty body, which the server drops without polling, keeps the
    /// status its HTTP status maps to.
    #[cfg_attr(
        not(feature = "tonic"),
        allow(clippy::unused_self, reason = "gRPC calls need the feature")
    )]
    fn grpc_dropped(&mut self) -> Option<&'static str> {
        #[cfg(feature = "tonic")]
        if let Some(call) = &mut self.grpc
            && call.code.is_none()
        {
            if std::thread::panicking() {
                call.code = Some(grpc::INTERNAL);
                return Some("the handler panicked");
            }
            if !call.ended {
                call.code = Some(grpc::CANCELLED);
            }
        }
        None
    }

    /// Ends a gRPC call: its status (from its `grpc-status`, else from
    /// `status`), recorded in its series and on its span, with the access
    /// line's level index and whether the server failed. `None` for HTTP.
    #[cfg_attr(
        not(feature = "tonic"),
        allow(clippy::unused_self, reason = "gRPC calls need the feature")
    )]
    fn end_grpc(&self, status: u16, seconds: f64) -> Option<(u8, usize, bool)> {
        #[cfg(feature = "tonic")]
        if let Some(call) = &self.grpc {
            let code = call.code.unwrap_or_else(|| grpc::from_http(status));
            if self.service.layer.settings.metrics && crate::metrics::recording() {
                self.service
                    .layer
                    .rpc
                    .record(call.uri.path(), code, seconds);
            }
            let failed = grpc::is_server_error(code);
            if let Some(span) = &self.span {
                span.span.record_grpc_status(code, failed);
            }
            let class = match code {
                grpc::OK => 0,
                _ if failed => 2,
                _ => 1,
            };
            return Some((code, class, failed));
        }
        let _ = (status, seconds);
        None
    }

    /// Records the finished request with the status already noted.
    pub(crate) fn finish(&mut self, error: Option<&str>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let status = if self.status == 0 { 500 } else { self.status };
        let seconds = self.start.elapsed().as_secs_f64();
        if let Some(route) = self.route() {
            let sampled = self.span.as_deref().and_then(|span| match span.sampled {
                Some(ids) => Some(ids),
                // Kept by the guide's "keep every error" rule, though unsampled.
                None if status >= 500 => span.span.kept_error_ids(),
                None => None,
            });
            route.record(
                self.method,
                status,
                seconds,
                sampled,
                &self.service.layer.series,
            );
        }
        // The level's index, and whether the server failed.
        let (grpc_status, class, failed) = match self.end_grpc(status, seconds) {
            Some((code, class, failed)) => (Some(code), class, failed),
            None => match status {
                500.. => (None, 2, true),
                400..500 => (None, 1, false),
                _ => (None, 0, false),
            },
        };
        if let Some(SpanAndUri {
            span,
            access: Some((uri, route)),
            ..
        }) = self.span.as_deref()
        {
            span.access_line(&AccessLine {
                level: self.service.layer.settings.levels[class],
                method: self.method,
                path: route.as_ref().map_or(uri.path(), Route::as_str),
                url_path: uri.path(),
                status,
                grpc_status,
                duration: seconds,
                error,
                failed,
            });
        }
    }
}

impl Drop for RequestState {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.status != 0 {
            let error = self.grpc_dropped();
            self.finish(error);
        } else if std::thread::panicking() {
            self.respond(500);
            self.finish(Some("the handler panicked"));
        } else {
            // Cancelled before a response (the client went away): the
            // request is no longer in flight, but it has no status to count.
            self.finished = true;
            if let Some(route) = self.route() {
                route.cancel(self.method, &self.service.layer.series);
            }
        }
    }
}
