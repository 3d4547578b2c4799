//! What the layer keeps about one request until its response completes.

use std::sync::Arc;

use http::Uri;
use tracing::{Level, Span};

use super::labels::METHODS;
use super::layer::Instance;
use super::series::RouteSeries;
use crate::log::AccessFields;

/// The target of the request spans and access log lines.
pub(crate) const TARGET: &str = "multiweb_telemetry::http";

/// The name of the request span (its OpenTelemetry name is in `otel.name`).
pub(crate) const SPAN_NAME: &str = "HTTP request";

/// Where a request's metric series are.
#[derive(Debug)]
pub(crate) enum Series {
    /// Metrics are off.
    Off,
    /// The service's own route ([`Instance::route`]).
    Slot,
    /// Another route, looked up for this request.
    Owned(Arc<RouteSeries>),
}

/// The span and the URI, kept only when the span or the access log is on.
/// Dropping it ends the request's OpenTelemetry span.
#[derive(Debug)]
pub(crate) struct Trace {
    pub(crate) span: Span,
    /// The OpenTelemetry context of the request span, when the layer started
    /// its OpenTelemetry span itself (see `trace::request`).
    pub(crate) cx: Option<opentelemetry::Context>,
    /// The request URI, kept only when the access log is on.
    pub(crate) uri: Option<Uri>,
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            opentelemetry::trace::TraceContextExt::span(cx).end();
        }
    }
}

/// One request in flight. Finishing it records the metrics and writes the
/// access log line. Dropping it unfinished finishes it too once a response
/// exists (a body dropped after or while being sent); before that, a drop
/// while unwinding from a panic counts as a 500, and any other drop (the
/// client went away) only takes it out of `http_requests_in_flight`.
#[derive(Debug)]
pub(crate) struct RequestState {
    instance: Arc<Instance>,
    start: quanta::Instant,
    series: Series,
    /// Boxed: with metrics only (no trace) the request's future and body,
    /// which axum moves and boxes, stay small (inline costs the metrics-only
    /// configuration about 350 instructions per request).
    pub(crate) trace: Option<Box<Trace>>,
    method: u8,
    status: u16,
    finished: bool,
}

impl RequestState {
    pub(crate) fn new(
        instance: Arc<Instance>,
        start: quanta::Instant,
        method: usize,
        series: Series,
        trace: Option<Box<Trace>>,
    ) -> Self {
        let state = Self {
            instance,
            start,
            series,
            trace,
            // `METHODS` has 10 entries.
            method: u8::try_from(method).unwrap_or(u8::MAX),
            status: 0,
            finished: false,
        };
        if let Some(route) = state.route() {
            route.start(state.method(), &state.instance.shared.series);
        }
        state
    }

    fn method(&self) -> usize {
        usize::from(self.method).min(METHODS.len() - 1)
    }

    fn route(&self) -> Option<&RouteSeries> {
        match &self.series {
            Series::Off => None,
            Series::Slot => self.instance.route.get().map(|route| &**route),
            Series::Owned(route) => Some(route),
        }
    }

    /// Notes the response status on the span.
    pub(crate) fn respond(&mut self, status: u16) {
        self.status = status;
        if let Some(trace) = &self.trace {
            if let Some(cx) = &trace.cx {
                crate::trace::request::respond(cx, status);
            } else {
                // As i64: the OpenTelemetry bridge exports u64 values as strings.
                trace
                    .span
                    .record("http.response.status_code", i64::from(status));
                if status >= 500 {
                    trace.span.record("otel.status_code", "ERROR");
                }
            }
        }
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
            route.record(self.method(), status, seconds, &self.instance.shared.series);
        }
        if let Some(Trace {
            span,
            uri: Some(uri),
            ..
        }) = self.trace.as_deref()
        {
            let levels = &self.instance.shared.settings.levels;
            let level = match status {
                500.. => levels[2],
                400..500 => levels[1],
                _ => levels[0],
            };
            access_log(
                level,
                span,
                METHODS[self.method()],
                uri.path(),
                i64::from(status),
                seconds,
                error,
            );
        }
    }
}

impl Drop for RequestState {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.status != 0 {
            self.finish(None);
        } else if std::thread::panicking() {
            self.respond(500);
            self.finish(Some("the handler panicked"));
        } else {
            // Cancelled before a response (the client went away): the
            // request is no longer in flight, but it has no status to count.
            self.finished = true;
            if let Some(route) = self.route() {
                route.cancel(self.method(), &self.instance.shared.series);
            }
        }
    }
}

/// Emits the access log line as a child of the request span.
fn access_log(
    level: Level,
    span: &Span,
    method: &str,
    path: &str,
    status: i64,
    duration: f64,
    error: Option<&str>,
) {
    let tail = MessageTail::new(status, duration);
    // Under `init`'s subscriber with JSON logs, the line is written without
    // dispatching the event (the same bytes, a third of the cost, and no
    // `message` string built); the callsite's filter still decides.
    macro_rules! emit {
        ($level:expr) => {
            if tracing::enabled!(
                kind: tracing::metadata::Kind::EVENT,
                target: TARGET,
                $level,
                message,
                method,
                path,
                status,
                duration,
                error
            ) {
                let fields = AccessFields {
                    level: $level,
                    message_tail: tail.as_bytes(),
                    method,
                    path,
                    status,
                    duration,
                    error,
                };
                if !crate::trace::request::write_access_line(span, &fields, TARGET) {
                    let message = fields.message();
                    let message = message.as_str();
                    tracing::event!(
                        target: TARGET,
                        parent: span,
                        $level,
                        message,
                        method,
                        path,
                        status,
                        duration,
                        error,
                    )
                }
            }
        };
    }
    match level {
        Level::ERROR => emit!(Level::ERROR),
        Level::WARN => emit!(Level::WARN),
        Level::INFO => emit!(Level::INFO),
        Level::DEBUG => emit!(Level::DEBUG),
        Level::TRACE => emit!(Level::TRACE),
    }
}

/// The end of the access line's message, ` status=200 duration=0.003`, on
/// the stack: the message `GET /api/v1/products/ status=200 duration=0.003`
/// is what `format!("{method} {path} status={status} duration={duration:.3}")`
/// writes (but for durations within 1e-12 of a half millisecond, which may
/// round the other way), without the formatting machinery, which cost more
/// than the rest of the access log line.
struct MessageTail {
    /// ASCII: ` status=` (8), up to 20 digits, ` duration=` (10), up to 20
    /// digits, `.` and 3 digits.
    bytes: [u8; 64],
    len: usize,
}

impl MessageTail {
    fn new(status: i64, duration: f64) -> Self {
        let mut tail = Self {
            bytes: [0; 64],
            len: 0,
        };
        let mut digits = [0_u8; 20];
        tail.push(b" status=");
        tail.push(crate::log::decimal(status.unsigned_abs(), &mut digits));
        tail.push(b" duration=");
        // Milliseconds, rounded; `as` saturates (a duration is never negative or NaN).
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "saturating on purpose"
        )]
        let millis = (duration * 1000.0).round() as u64;
        tail.push(crate::log::decimal(millis / 1000, &mut digits));
        let fraction = millis % 1000;
        tail.push(match fraction {
            0..10 => b".00",
            10..100 => b".0",
            _ => b".",
        });
        tail.push(crate::log::decimal(fraction, &mut digits));
        tail
    }

    fn push(&mut self, text: &[u8]) {
        let end = self.len + text.len();
        if let Some(room) = self.bytes.get_mut(self.len..end) {
            room.copy_from_slice(text);
            self.len = end;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::MessageTail;
    use crate::log::AccessFields;

    fn access_message(method: &str, path: &str, status: i64, duration: f64) -> String {
        let tail = MessageTail::new(status, duration);
        AccessFields {
            level: tracing::Level::INFO,
            message_tail: tail.as_bytes(),
            method,
            path,
            status,
            duration,
            error: None,
        }
        .message()
    }

    #[test]
    fn access_message_reads_like_format() {
        for duration in [
            0.0, 0.0004, 0.0006, 0.003, 0.0123, 0.099_96, 0.25, 0.999_7, 1.0, 1.234_49, 61.0,
            12_345.678,
        ] {
            for status in [200, 404, 500] {
                assert_eq!(
                    access_message("GET", "/api/v1/products/", status, duration),
                    format!("GET /api/v1/products/ status={status} duration={duration:.3}"),
                );
            }
        }
        // A decimal tie: either neighbour is right.
        let message = access_message("GET", "/", 200, 1.2345);
        assert!(
            message.ends_with("duration=1.234") || message.ends_with("duration=1.235"),
            "{message}"
        );
    }
}
