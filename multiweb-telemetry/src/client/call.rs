//! [`Call`]: what the layer and the middleware keep about one outgoing call,
//! from its start until its response body ends.

use std::sync::Arc;

use http::HeaderMap;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt as _};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

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
/// userinfo, the query string or the fragment. Built piece by piece:
/// `format!` costs about five times more.
fn full_url(target: &Target<'_>) -> String {
    let mut digits = [0; 20];
    let port = target
        .port
        .map(|port| crate::log::decimal(u64::from(port), &mut digits))
        .and_then(|digits| std::str::from_utf8(digits).ok());
    let Some(host) = target.host else {
        return target.path.to_owned();
    };
    let scheme = target.scheme.unwrap_or("http");
    let mut url = String::with_capacity(
        scheme.len() + 3 + host.len() + 1 + port.map_or(0, str::len) + target.path.len(),
    );
    url.push_str(scheme);
    url.push_str("://");
    url.push_str(host);
    if let Some(port) = port {
        url.push(':');
        url.push_str(port);
    }
    url.push_str(target.path);
    url
}

/// One outgoing call. Its end records the call's duration and ends its span;
/// dropping it unfinished ends it too: with the status already noted (a
/// body dropped before its end), else as cancelled.
#[derive(Debug)]
pub(crate) struct Call {
    span: tracing::Span,
    /// The context the request carries on: the call span's, else (no
    /// bridge, the span filtered out) the current one.
    cx: opentelemetry::Context,
    /// Whether `cx` is the call span's own, which the call's attributes
    /// and status go to.
    own: bool,
    start: quanta::Instant,
    method: Method,
    /// The series of the call's host, when metrics are recorded.
    host: Option<Arc<HostSeries>>,
    series: Arc<ClientSeries>,
    outcome: Option<Outcome>,
    finished: bool,
}

impl Call {
    /// Starts the CLIENT span of the call `target` describes, a child of the
    /// current span, and its clock.
    ///
    /// The span's attributes go straight to its OpenTelemetry span, not
    /// through `tracing` fields: the span is never entered, so no log line
    /// would carry them, and each `tracing` field costs every layer of the
    /// subscriber (BENCHMARKS.md). It is never entered because the bridge
    /// ends a span at its last exit, and this one ends with the response
    /// body.
    pub(crate) fn start(series: &Arc<ClientSeries>, target: &Target<'_>) -> Self {
        let start = quanta::Instant::now();
        let method = Method::of(target.method);
        let address = target.server_address();
        let span = tracing::info_span!(
            target: TARGET,
            SPAN_NAME,
            otel.name = span_name(method),
            otel.kind = "client",
        );
        let own_cx = span.context();
        let own = own_cx.span().span_context().is_valid();
        let cx = if own {
            if own_cx.span().is_recording() {
                own_cx
                    .span()
                    .set_attributes(attributes(target, method, address));
            }
            own_cx
        } else {
            crate::trace::context_of(&span)
        };
        Self {
            span,
            cx,
            own,
            start,
            method,
            host: crate::metrics::recording()
                .then(|| series.host(address.unwrap_or(UNKNOWN_SERVER_ADDRESS))),
            series: Arc::clone(series),
            outcome: None,
            finished: false,
        }
    }

    /// Writes the call span's `traceparent` and `tracestate` into `headers`
    /// (the current context's when the span has no OpenTelemetry side).
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        crate::trace::inject(&self.cx, headers);
    }

    /// Notes the response status: `http.response.status_code`, and the
    /// Error status for a 5xx.
    pub(crate) fn respond(&mut self, status: u16) {
        self.outcome = Some(Outcome::Status(status));
        if self.own {
            let otel = self.cx.span();
            otel.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                otel.set_status(Status::error(""));
            }
        }
    }

    /// Ends the call with a transport error (before a response: the
    /// `status` label is `error`) or a body error (after one: the label
    /// keeps the status code). Either way the span's status is Error, with
    /// `error` as its description.
    pub(crate) fn fail(&mut self, error: String) {
        if self.own {
            self.cx.span().set_status(Status::error(error));
        }
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
        if let Some(host) = &self.host {
            let seconds = self.start.elapsed().as_secs_f64();
            let outcome = self.outcome.unwrap_or(Outcome::Cancelled);
            host.record(self.method, outcome, seconds, &self.series);
        }
        // The span ends now, not when the body holding the call is dropped.
        self.span = tracing::Span::none();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The attributes of the call span, known when the call starts.
fn attributes(
    target: &Target<'_>,
    method: Method,
    address: Option<&str>,
) -> impl Iterator<Item = KeyValue> {
    [
        Some(KeyValue::new("http.request.method", method.as_str())),
        address.map(|address| KeyValue::new("server.address", address.to_owned())),
        target
            .server_port()
            .map(|port| KeyValue::new("server.port", i64::from(port))),
        Some(KeyValue::new("url.full", full_url(target))),
    ]
    .into_iter()
    .flatten()
}

/// The OpenTelemetry name of a call span: its method, or `HTTP` for a
/// method outside the standard nine (the semantic conventions).
fn span_name(method: Method) -> &'static str {
    match method.as_str() {
        OTHER_METHOD => "HTTP",
        name => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(
        scheme: Option<&'a str>,
        host: Option<&'a str>,
        port: Option<u16>,
        path: &'a str,
    ) -> Target<'a> {
        Target {
            method: &http::Method::GET,
            scheme,
            host,
            port,
            path,
        }
    }

    #[test]
    fn url_full_has_scheme_host_written_port_and_path() {
        let cases = [
            (
                target(Some("http"), Some("a"), None, "/x"),
                "http://a/x",
                Some(80),
            ),
            (
                target(Some("https"), Some("a"), None, "/"),
                "https://a/",
                Some(443),
            ),
            (
                target(Some("http"), Some("a"), Some(8080), "/x"),
                "http://a:8080/x",
                Some(8080),
            ),
            (
                target(Some("http"), Some("a"), Some(0), ""),
                "http://a:0",
                Some(0),
            ),
            (
                target(Some("http"), Some("[::1]"), Some(65535), "/"),
                "http://[::1]:65535/",
                Some(65535),
            ),
            (target(None, Some("a"), None, "/x"), "http://a/x", None),
            (
                target(None, None, None, "/pkg.Svc/Call"),
                "/pkg.Svc/Call",
                None,
            ),
        ];
        for (target, url, port) in cases {
            assert_eq!(full_url(&target), url);
            assert_eq!(target.server_port(), port, "{url}");
        }
        let v6 = target(Some("http"), Some("[::1]"), None, "/");
        assert_eq!(v6.server_address(), Some("::1"));
    }
}
