//! [`Call`]: what the layer and the middleware keep about one outgoing call,
//! from its start until its response body ends.

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;
use opentelemetry::trace::Status;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::series::{ClientSeries, HostSeries, Outcome, UNKNOWN_SERVER_ADDRESS};
use crate::labels::{Method, OTHER_METHOD};

/// The target of the call spans.
pub(crate) const TARGET: &str = "multiweb_telemetry::client";

/// The name of the call span (its OpenTelemetry name is in `otel.name`).
pub(crate) const SPAN_NAME: &str = "HTTP client request";

/// Where a call goes, read from its URI (or reqwest's URL).
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) scheme: Option<&'a str>,
    /// The host, without userinfo or port.
    pub(crate) host: Option<&'a str>,
    /// The port written in the URL, if any.
    pub(crate) port: Option<u16>,
    /// The path, without the query string.
    pub(crate) path: &'a str,
}

impl Target<'_> {
    /// The host as `server.address` and the `server_address` label: an
    /// IPv6 address without its brackets.
    fn server_address(&self) -> Option<&str> {
        self.host
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
    }

    /// The port written in the URL, else the scheme's.
    fn server_port(&self) -> Option<u16> {
        self.port.or(match self.scheme {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => None,
        })
    }
}

/// `url.full`: scheme, host, the port if written, and the path; never the
/// userinfo, the query string or the fragment. Formatted only if a layer
/// of the subscriber records the span.
struct FullUrl<'a>(&'a Target<'a>);

impl fmt::Display for FullUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.0;
        if let Some(host) = target.host {
            write!(f, "{}://{host}", target.scheme.unwrap_or("http"))?;
            if let Some(port) = target.port {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(target.path)
    }
}

/// One outgoing call. Its end records the call's duration and ends its span;
/// dropping it unfinished ends it too: with the status already noted (a
/// body dropped before its end), else as cancelled.
#[derive(Debug)]
pub(crate) struct Call {
    span: tracing::Span,
    start: quanta::Instant,
    method: Method,
    host: Arc<HostSeries>,
    series: Arc<ClientSeries>,
    outcome: Option<Outcome>,
    finished: bool,
}

impl Call {
    /// Starts the CLIENT span of the call `target` describes, a child of the
    /// current span, and its clock.
    pub(crate) fn start(series: &Arc<ClientSeries>, target: &Target<'_>) -> Self {
        let method = Method::of(target.method);
        let address = target.server_address();
        let span = tracing::info_span!(
            target: TARGET,
            SPAN_NAME,
            otel.name = span_name(method),
            otel.kind = "client",
            http.request.method = method.as_str(),
            server.address = address,
            // As i64: the bridge exports u64 values as strings.
            server.port = target.server_port().map(i64::from),
            url.full = %FullUrl(target),
        );
        Self {
            span,
            start: quanta::Instant::now(),
            method,
            host: series.host(address.unwrap_or(UNKNOWN_SERVER_ADDRESS)),
            series: Arc::clone(series),
            outcome: None,
            finished: false,
        }
    }

    /// The call's span: the inner service is called and polled inside it.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Writes the call span's `traceparent` and `tracestate` into `headers`
    /// (the caller's context when the span has no OpenTelemetry side).
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        let _entered = self.span.enter();
        crate::trace::inject_context(headers);
    }

    /// Notes the response status: `http.response.status_code`, and the
    /// Error status for a 5xx.
    pub(crate) fn respond(&mut self, status: u16) {
        self.outcome = Some(Outcome::Status(status));
        self.span
            .set_attribute("http.response.status_code", i64::from(status));
        if status >= 500 {
            self.span.set_status(Status::error(""));
        }
    }

    /// Ends the call with a transport error (before a response: the
    /// `status` label is `error`) or a body error (after one: the label
    /// keeps the status code). Either way the span's status is Error, with
    /// `error` as its description.
    pub(crate) fn fail(&mut self, error: String) {
        self.span.set_status(Status::error(error));
        if self.outcome.is_none() {
            self.outcome = Some(Outcome::Error);
        }
        self.finish();
    }

    /// Ends the call: records its duration and ends its span.
    pub(crate) fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let seconds = self.start.elapsed().as_secs_f64();
        let outcome = self.outcome.unwrap_or(Outcome::Cancelled);
        self.host
            .record(self.method, outcome, seconds, &self.series);
        // The span ends now, not when the body holding the call is dropped.
        self.span = tracing::Span::none();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The OpenTelemetry name of a call span: its method, or `HTTP` for a
/// method outside the standard nine (the semantic conventions).
fn span_name(method: Method) -> &'static str {
    match method.as_str() {
        OTHER_METHOD => "HTTP",
        name => name,
    }
}
