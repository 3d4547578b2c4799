//! Which failures are retried, and when, as the OTLP specification says:
//! exponential backoff with jitter, a server's `Retry-After` or `RetryInfo`
//! honoured, everything bounded by the export timeout.

use std::hash::BuildHasher;
use std::time::Duration;

/// First wait before a retry.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait the backoff grows to (a server may ask for longer).
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait a server's `Retry-After` or `RetryInfo` is followed for;
/// the export timeout bounds it further.
const MAX_THROTTLE: Duration = Duration::from_secs(60);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The answer is final (a 400, an unknown CA, ...): drop the batch now.
    Never,
    /// A transient failure: retry after the backoff.
    Backoff,
    /// The server asked to wait this long (`Retry-After`, `RetryInfo`).
    After(Duration),
}

impl Retry {
    /// A server's delay, bounded.
    pub(crate) fn after(delay: Duration) -> Self {
        Retry::After(delay.min(MAX_THROTTLE))
    }
}

/// The waits between the attempts of one request.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: INITIAL_BACKOFF,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt: the backoff, doubled each time,
    /// with a random half of it taken off (jitter, so that clients failed
    /// together do not retry together); at least what the server asked.
    pub(crate) fn wait(&mut self, retry: Retry) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        let jittered = base / 2 + base.mul_f64(random_unit() / 2.0);
        match retry {
            Retry::After(asked) => asked.max(jittered),
            Retry::Backoff | Retry::Never => jittered,
        }
    }
}

/// A number in [0, 1): std's randomly keyed hasher, keyed anew each call.
fn random_unit() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(0_u8);
    (bits >> 11) as f64 / (1_u64 << 53) as f64
}

/// How an HTTP status is retried (OTLP/HTTP: 429, 502, 503 and 504 are
/// retryable, a 429 or 503's `Retry-After` is honoured; any other status is
/// final).
pub(crate) fn http_status(status: http::StatusCode, retry_after: Option<&str>) -> Retry {
    match status.as_u16() {
        429 | 503 => retry_after
            .and_then(parse_retry_after)
            .map_or(Retry::Backoff, Retry::after),
        502 | 504 => Retry::Backoff,
        _ => Retry::Never,
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// How a gRPC status is retried (OTLP/gRPC: CANCELLED, DEADLINE_EXCEEDED,
/// ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable, and
/// RESOURCE_EXHAUSTED only when the server says with `RetryInfo` when to
/// retry; a `RetryInfo` delay is honoured).
pub(crate) fn grpc_status(status: &tonic::Status) -> Retry {
    use tonic::Code;
    use tonic_types::StatusExt;
    let asked = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .filter(|delay| !delay.is_zero());
    match (status.code(), asked) {
        (Code::ResourceExhausted | Code::Unavailable, Some(delay)) => Retry::after(delay),
        (
            Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss,
            _,
        ) => Retry::Backoff,
        _ => Retry::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_follow_the_specification() {
        use http::StatusCode;
        for status in [429, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(http_status(status, None), Retry::Backoff, "{status}");
        }
        for status in [400, 401, 403, 404, 413, 500, 501] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(http_status(status, Some("1")), Retry::Never, "{status}");
        }
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(
            http_status(unavailable, Some("1")),
            Retry::After(Duration::from_secs(1))
        );
        assert_eq!(
            http_status(StatusCode::TOO_MANY_REQUESTS, Some(" 3600 ")),
            Retry::After(MAX_THROTTLE),
            "bounded"
        );
        assert_eq!(http_status(unavailable, Some("soon")), Retry::Backoff);
        let in_a_while =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let Retry::After(wait) = http_status(unavailable, Some(&in_a_while)) else {
            panic!("an HTTP date is a delay");
        };
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert_eq!(
            http_status(unavailable, Some("Thu, 01 Jan 1970 00:00:00 GMT")),
            Retry::After(Duration::ZERO),
            "a date in the past: retry now"
        );
    }

    #[test]
    fn grpc_statuses_follow_the_specification() {
        use tonic::Code;
        use tonic_types::{ErrorDetails, StatusExt};
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert_eq!(grpc_status(&tonic::Status::new(code, "")), Retry::Backoff);
        }
        for code in [
            Code::ResourceExhausted,
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
            Code::Unknown,
        ] {
            assert_eq!(grpc_status(&tonic::Status::new(code, "")), Retry::Never);
        }
        let throttled = |code| {
            tonic::Status::with_error_details(
                code,
                "slow down",
                ErrorDetails::with_retry_info(Some(Duration::from_secs(2))),
            )
        };
        for code in [Code::ResourceExhausted, Code::Unavailable] {
            assert_eq!(
                grpc_status(&throttled(code)),
                Retry::After(Duration::from_secs(2))
            );
        }
    }

    #[test]
    fn the_backoff_doubles_with_jitter_and_follows_the_server() {
        let mut backoff = Backoff::default();
        let mut base = INITIAL_BACKOFF;
        for _ in 0..10 {
            let wait = backoff.wait(Retry::Backoff);
            assert!(wait >= base / 2 && wait <= base, "{wait:?} for {base:?}");
            base = (base * 2).min(MAX_BACKOFF);
        }
        let mut backoff = Backoff::default();
        assert_eq!(
            backoff.wait(Retry::After(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        let waits: Vec<Duration> = (0..20)
            .map(|_| Backoff::default().wait(Retry::Backoff))
            .collect();
        assert!(waits.iter().any(|w| *w != waits[0]), "jittered: {waits:?}");
    }
}
