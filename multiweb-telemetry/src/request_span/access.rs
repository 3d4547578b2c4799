//! The access line: one log line per response, a child of the request span.

use std::fmt::{self, Write as _};

use tracing::Level;
use tracing_subscriber::Registry;
use tracing_subscriber::registry::LookupSpan;

use super::layer::NotedError;
use super::{RequestSpanLayer, TARGET};
use crate::labels::Method;
use crate::log::{OwnFields, write_line};

/// What the access line of one response says. Its message reads
/// `GET /api/v1/products/7 status=200 duration=0.003` (the request path,
/// without the query string); its fields are `method`, `path` (the route
/// template, or the request path where no route matched), `status`,
/// `duration` (seconds) and, on failures, `error`, in that order; a gRPC
/// call's line has `rpc.grpc.status_code` after `status`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccessLine<'a> {
    pub(crate) level: Level,
    pub(crate) method: Method,
    /// The route template, or the request path where no route matched.
    pub(crate) path: &'a str,
    /// The request path, without the query string.
    pub(crate) url_path: &'a str,
    pub(crate) status: u16,
    /// A gRPC call's status code.
    pub(crate) grpc_status: Option<u8>,
    pub(crate) duration: f64,
    pub(crate) error: Option<&'a str>,
    /// Whether the server failed (a 5xx, or a gRPC server error): the line
    /// then carries the request's error, if it has none of its own.
    pub(crate) failed: bool,
}

impl AccessLine<'_> {
    /// The line's own fields, in the order the event has them.
    fn write_fields(&self, tail: &Tail, own: &mut OwnFields<'_>) {
        own.message(&[self.method.as_str(), " ", self.url_path, tail.as_str()]);
        own.str("method", self.method.as_str());
        own.str("path", self.path);
        own.i64("status", i64::from(self.status));
        if let Some(code) = self.grpc_status {
            own.i64("rpc.grpc.status_code", i64::from(code));
        }
        own.f64("duration", self.duration);
        if let Some(error) = self.error {
            own.str("error", error);
        }
    }
}

/// The end of the message, ` status=200 duration=0.003`, made on the stack
/// by one function for both ways of writing the line: what
/// `format!(" status={status} duration={duration:.3}")` writes (a test
/// compares them), without `core::fmt`, which cost about 880 instructions
/// per line, a fifth of the access line's cost.
struct Tail {
    /// ` status=` (8), up to 5 digits, ` duration=` (10) and the duration:
    /// a request's duration in seconds has at most 11 digits before the
    /// point (`u64` nanoseconds), and 3 after it.
    bytes: [u8; 64],
    len: usize,
}

impl Tail {
    fn new(status: u16, duration: f64) -> Self {
        let mut tail = Self {
            bytes: [0; 64],
            len: 0,
        };
        tail.push(b" status=");
        tail.push_decimal(u64::from(status));
        tail.push(b" duration=");
        match milliseconds(duration) {
            Some(millis) => {
                tail.push_decimal(millis / 1000);
                let fraction = millis % 1000;
                tail.push(match fraction {
                    0..10 => b".00",
                    10..100 => b".0",
                    _ => b".",
                });
                tail.push_decimal(fraction);
            }
            // Never for a real duration: `write!` only fails past 64 bytes
            // (10^40 seconds), and the tail is then cut, the same on both
            // ways of writing the line.
            None => {
                let _ = write!(tail, "{duration:.3}");
            }
        }
        tail
    }

    /// Appends `bytes` if they fit.
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(room) = self.bytes.get_mut(self.len..end) {
            room.copy_from_slice(bytes);
            self.len = end;
        }
    }

    /// Appends the decimal digits of `value`.
    fn push_decimal(&mut self, value: u64) {
        let mut digits = [0_u8; 20];
        self.push(crate::log::decimal(value, &mut digits));
    }

    fn as_str(&self) -> &str {
        // Only ASCII and whole `write_str` pieces are kept: always UTF-8.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

/// `value` in milliseconds rounded as `{:.3}` rounds it (the exact binary
/// value, ties to even), for values from 0 to 10^15; `None` for others.
fn milliseconds(value: f64) -> Option<u64> {
    if value.is_sign_negative() || !(0.0..1e15).contains(&value) {
        return None;
    }
    // `value` is `mantissa * 2^-shift` exactly; `mantissa * 1000` fits a
    // `u64` (2^53 * 1000 < 2^63).
    let bits = value.to_bits();
    let exponent = (bits >> 52) & 0x7ff;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, shift) = if exponent == 0 {
        (fraction, 1074)
    } else {
        (fraction | (1 << 52), 1075 - exponent)
    };
    let scaled = mantissa * 1000;
    if shift == 0 {
        return Some(scaled);
    }
    if shift >= 64 {
        // Below 2^63 / 2^64: less than half a millisecond.
        return Some(0);
    }
    let whole = scaled >> shift;
    let rest = scaled & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    Some(whole + u64::from(rest > half || (rest == half && whole % 2 == 1)))
}

impl fmt::Write for Tail {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes `line` as a child of `span`, once `RUST_LOG` lets its event
/// through: under [`init`](crate::init)'s subscriber with JSON logs, whose
/// only consumer of events is the JSON layer, straight to that layer's
/// writer through its line writer (the same bytes, without passing an event
/// through every layer); anywhere else, as an event.
pub(super) fn write(span: &tracing::Span, line: &AccessLine<'_>) {
    // A failure (a 5xx, a gRPC server error) without an error of its own
    // carries the request's (see `NotedError`).
    let noted = (line.failed && line.error.is_none())
        .then(|| noted_error(span))
        .flatten();
    let line = &AccessLine {
        error: line.error.or(noted.as_deref()),
        ..*line
    };
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
                rpc.grpc.status_code,
                duration,
                error
            ) {
                let tail = Tail::new(line.status, line.duration);
                if !written_directly(span, line, &tail) {
                    tracing::event!(
                        target: TARGET,
                        parent: span,
                        $level,
                        message = %format_args!(
                            "{} {}{}",
                            line.method.as_str(),
                            line.url_path,
                            tail.as_str()
                        ),
                        method = line.method.as_str(),
                        path = line.path,
                        status = i64::from(line.status),
                        rpc.grpc.status_code = line.grpc_status.map(i64::from),
                        duration = line.duration,
                        error = line.error,
                    );
                }
            }
        };
    }
    match line.level {
        Level::ERROR => emit!(Level::ERROR),
        Level::WARN => emit!(Level::WARN),
        Level::INFO => emit!(Level::INFO),
        Level::DEBUG => emit!(Level::DEBUG),
        Level::TRACE => emit!(Level::TRACE),
    }
}

/// The error noted on the request span `span`, if any.
fn noted_error(span: &tracing::Span) -> Option<String> {
    span.with_subscriber(|(id, dispatch)| {
        let data = dispatch.downcast_ref::<Registry>()?.span(id)?;
        let extensions = data.extensions();
        extensions
            .get::<NotedError>()
            .map(|NotedError(error)| error.clone())
    })
    .flatten()
}

/// Writes the line to the JSON layer's writer, if `span`'s subscriber is
/// `init`'s with JSON logs; says whether it did.
fn written_directly(span: &tracing::Span, line: &AccessLine<'_>, tail: &Tail) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        let sink = RequestSpanLayer::of(dispatch)?.sink()?;
        let data = dispatch.downcast_ref::<Registry>()?.span(id)?;
        write_line(
            line.level,
            TARGET,
            |own| line.write_fields(tail, own),
            Some(&data),
            |id| crate::trace::bridged_ids(id, dispatch),
            |bytes| sink(bytes),
        );
        Some(())
    })
    .flatten()
    .is_some()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::log::{Capture, JsonLayer, LineSink, MAX_VALUE_BYTES};

    #[test]
    fn the_tail_reads_like_format() {
        let mut durations = vec![
            0.0,
            -0.0,
            5e-324,
            0.0004,
            0.0005,
            0.0006,
            0.0015,
            0.0025,
            0.003,
            0.0123,
            0.099_96,
            0.25,
            0.999_5,
            0.999_7,
            1.0,
            1.2345,
            61.0,
            12_345.678,
            1.8e10,
            4_503_599_627_370_495.5,
            1e15,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
            -1.0,
        ];
        // Every tie of a half millisecond up to 50 s, its neighbours, and
        // pseudo-random values of every magnitude.
        for half in 0..100_000_u32 {
            let tie = f64::from(half) / 2000.0;
            durations.extend([tie, tie.next_up(), tie.next_down()]);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            durations.push(f64::from_bits(seed >> 2) % 1e6);
        }
        for duration in durations {
            for status in [200, 404, 500] {
                let tail = Tail::new(status, duration);
                let expected = format!(" status={status} duration={duration:.3}");
                if expected.len() <= tail.bytes.len() {
                    assert_eq!(tail.as_str(), expected, "{duration:e}");
                } else {
                    // Past 10^40 seconds: cut.
                    assert!(expected.starts_with(tail.as_str()), "{duration:e}");
                }
            }
        }
    }

    /// The access line written directly is the line its event gives: the
    /// fields in the same order, the span's fields after them, a span field
    /// named like an event field left out, the error only when there is
    /// one, and a message over the limit truncated the same way.
    #[test]
    fn the_line_written_directly_is_the_event_line() {
        let out = Capture::default();
        let writer = out.clone();
        let sink_out = out.clone();
        let sink: LineSink =
            Arc::new(move |line: &[u8]| sink_out.0.lock().unwrap().extend_from_slice(line));
        let subscriber = tracing_subscriber::registry()
            .with(RequestSpanLayer::bridged(Some(sink)))
            .with(JsonLayer::new().with_writer(move || writer.clone()));
        let no_sink = tracing_subscriber::registry().with(JsonLayer::new().with_writer({
            let out = out.clone();
            move || out.clone()
        }));
        let (direct, _direct_guard) = (tracing::Dispatch::new(subscriber), ());
        let event = tracing::Dispatch::new(no_sink);
        let long_path = format!("/{}", "é".repeat(MAX_VALUE_BYTES / 2));
        let at_limit =
            "a".repeat(MAX_VALUE_BYTES - "GET ".len() - " status=500 duration=0.250".len());
        let over_limit = format!("{at_limit}b");
        let cases = [
            (Level::INFO, None, "/x\u{1}", None),
            (Level::ERROR, Some("it \n broke"), "/x\u{1}", None),
            (Level::INFO, None, long_path.as_str(), None),
            (Level::INFO, None, at_limit.as_str(), None),
            (Level::INFO, None, over_limit.as_str(), None),
            (Level::WARN, None, "/pkg.Svc/Get", Some(5)),
        ];
        for (level, error, path, grpc_status) in cases {
            let line = AccessLine {
                level,
                method: Method::of(&http::Method::GET),
                path,
                url_path: path,
                status: 500,
                grpc_status,
                duration: 0.25,
                error,
                failed: false,
            };
            for dispatch in [&direct, &event] {
                tracing::dispatcher::with_default(dispatch, || {
                    let outer = tracing::info_span!("outer", tenant = "a\"b", method = "shadowed");
                    let span = tracing::info_span!(
                        parent: &outer,
                        "HTTP request",
                        user_id = tracing::field::Empty
                    );
                    span.record("user_id", "42");
                    write(&span, &line);
                });
            }
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 * cases.len(), "{text}");
        // After the timestamp, byte for byte.
        let rest = |line: &str| line.split_once("\",\"level\"").unwrap().1.to_owned();
        for pair in lines.chunks(2) {
            assert_eq!(rest(pair[0]), rest(pair[1]));
        }
        assert!(lines[4].contains("éé…\",\"method\""), "truncated message");
        assert!(
            lines[6].contains("duration=0.250\",\"method\""),
            "not truncated at the limit"
        );
        assert!(
            lines[8].contains("duration=0.25…\",\"method\""),
            "truncated one over"
        );
        assert_eq!(
            rest(lines[2]),
            ":\"error\",\"message\":\"GET /x\\u0001 status=500 duration=0.250\",\"method\":\"GET\",\
             \"path\":\"/x\\u0001\",\"status\":500,\"duration\":0.25,\"error\":\"it \\n broke\",\
             \"user_id\":\"42\",\"tenant\":\"a\\\"b\",\"target\":\"multiweb_telemetry::http\"}"
        );
        assert!(!lines[0].contains("\"error\""), "{}", lines[0]);
        assert!(
            rest(lines[10]).contains("\"status\":500,\"rpc.grpc.status_code\":5,\"duration\""),
            "{}",
            lines[10]
        );
    }
}
