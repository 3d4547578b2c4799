//! gRPC calls through the HTTP layer (feature `tonic`): told apart by their
//! `content-type`, named by their path, and counted by the status of the
//! call (`grpc-status`, in the response headers or trailers), never by the
//! HTTP status, which is 200 for most failed calls.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `rpc_server_duration_seconds` | histogram | `rpc_service`, `rpc_method`, `rpc_grpc_status_code` |
//!
//! The labels are the OpenTelemetry RPC attributes (`rpc.service`,
//! `rpc.method`, `rpc.grpc.status_code`, semantic conventions up to 1.37)
//! mapped to Prometheus; the histogram is their `rpc.server.duration`, in
//! seconds as Prometheus names it (the conventions give it in
//! milliseconds). A call the server does not implement (`UNIMPLEMENTED`,
//! as tonic answers any unknown path) is counted under
//! `rpc_service="_OTHER"` and `rpc_method="_OTHER"`, so made-up paths that
//! reach the router create no series. Label sets are capped like the HTTP
//! ones: a path answered with another status before it is routed (an
//! authentication layer's `UNAUTHENTICATED`) takes one, and past the cap
//! calls are recorded under `overflow` and counted in
//! `multiweb_telemetry_http_series_overflow_total`.
//!
//! A response without `grpc-status` takes the status the gRPC
//! specification maps its HTTP status to (`404` is `UNIMPLEMENTED`, `503`
//! is `UNAVAILABLE`, and so on; a `200` without one is `UNKNOWN`), and a
//! response dropped before its status was sent (the client cancelled) is
//! `CANCELLED`; a call cancelled before any response is not counted, as
//! HTTP requests are not.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use http::{HeaderMap, Uri};
use metrics::{Histogram, Label};
use rustc_hash::FxHasher;

use crate::labels::{OTHER_METHOD, OVERFLOW_PATH};

/// Name of the gRPC call duration histogram, in seconds.
pub const RPC_SERVER_DURATION: &str = "rpc_server_duration_seconds";

/// The gRPC status codes, 0 (`OK`) to 16 (`UNAUTHENTICATED`).
const CODES: usize = 17;

/// `OK`.
pub(crate) const OK: u8 = 0;

/// `CANCELLED`: the response was dropped before its status was sent.
pub(crate) const CANCELLED: u8 = 1;

/// `UNKNOWN`: a call that ended without a status.
pub(crate) const UNKNOWN: u8 = 2;

/// `UNIMPLEMENTED`.
const UNIMPLEMENTED: u8 = 12;

/// `INTERNAL`: the handler panicked while the response was sent.
pub(crate) const INTERNAL: u8 = 13;

/// Whether `headers` are a gRPC request's (`content-type:
/// application/grpc`, with or without a `+format` suffix).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| {
            let value = value.as_bytes();
            value.starts_with(b"application/grpc")
                && matches!(value.get(16), None | Some(b'+' | b';'))
        })
}

/// The service and method of a gRPC path, `/package.Service/Method`.
pub(crate) fn service_and_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// The `grpc-status` in `headers` (the response's, or its trailers), if a
/// valid one.
pub(crate) fn status_of(headers: &HeaderMap) -> Option<u8> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    let code: u8 = value.parse().ok()?;
    (usize::from(code) < CODES).then_some(code)
}

/// The status of a response without `grpc-status`, from its HTTP status,
/// as the gRPC specification maps them (`http-grpc-status-mapping.md`);
/// `UNKNOWN` for a `200` without one.
pub(crate) fn from_http(status: u16) -> u8 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => UNIMPLEMENTED,
        429 | 502..=504 => 14,
        _ => UNKNOWN,
    }
}

/// What the layer keeps about one gRPC call until it ends.
#[derive(Debug)]
pub(crate) struct GrpcCall {
    /// The request URI: its path, `/package.Service/Method`, names the call.
    pub(crate) uri: Uri,
    /// The `grpc-status` of the response, once its headers or trailers
    /// carried one.
    pub(crate) code: Option<u8>,
    /// Whether the response ended with its headers (an empty body, which a
    /// server drops without polling it).
    pub(crate) ended: bool,
}

impl GrpcCall {
    /// Notes the status in `headers` (the response's, or its trailers), if
    /// none was noted yet.
    pub(crate) fn note(&mut self, headers: &HeaderMap) {
        if self.code.is_none() {
            self.code = status_of(headers);
        }
    }
}

/// Whether a server answering `code` failed, as the OpenTelemetry RPC
/// conventions say for server spans: `UNKNOWN`, `DEADLINE_EXCEEDED`,
/// `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE` and `DATA_LOSS`. The others
/// are the client's doing.
pub(crate) fn is_server_error(code: u8) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// The histograms of one `(service, method)`, one per status code.
#[derive(Debug)]
struct RpcSeries {
    service: Box<str>,
    method: Box<str>,
    codes: [OnceLock<Histogram>; CODES],
}

impl RpcSeries {
    fn new(service: &str, method: &str) -> Arc<Self> {
        Arc::new(Self {
            service: service.into(),
            method: method.into(),
            codes: Default::default(),
        })
    }

    fn record(&self, code: u8, seconds: f64) {
        let Some(slot) = self.codes.get(usize::from(code)) else {
            return;
        };
        slot.get_or_init(|| {
            metrics::describe_histogram!(
                RPC_SERVER_DURATION,
                metrics::Unit::Seconds,
                "gRPC call duration in seconds, until the response has been sent."
            );
            let labels = [
                Label::new("rpc_service", self.service.to_string()),
                Label::new("rpc_method", self.method.to_string()),
                Label::new("rpc_grpc_status_code", code.to_string()),
            ];
            metrics::histogram!(RPC_SERVER_DURATION, labels.iter())
        })
        .record(seconds);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The gRPC series of one layer, at most `max` `(service, method)` pairs.
#[derive(Debug)]
pub(crate) struct RpcSeriesCache {
    /// By path, `/package.Service/Method`.
    calls: RwLock<FxMap<Box<str>, Arc<RpcSeries>>>,
    other: OnceLock<Arc<RpcSeries>>,
    overflow: OnceLock<Arc<RpcSeries>>,
    count: AtomicUsize,
    max: usize,
}

impl RpcSeriesCache {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            calls: RwLock::default(),
            other: OnceLock::new(),
            overflow: OnceLock::new(),
            count: AtomicUsize::new(0),
            max,
        }
    }

    /// Records one call of `path` that ended with `code` after `seconds`.
    pub(crate) fn record(&self, path: &str, code: u8, seconds: f64) {
        self.series(path, code).record(code, seconds);
    }

    fn series(&self, path: &str, code: u8) -> Arc<RpcSeries> {
        let call = service_and_method(path).filter(|_| code != UNIMPLEMENTED);
        let Some((service, method)) = call else {
            return Arc::clone(
                self.other
                    .get_or_init(|| RpcSeries::new(OTHER_METHOD, OTHER_METHOD)),
            );
        };
        if let Some(found) = self
            .calls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
        {
            return Arc::clone(found);
        }
        let mut calls = self.calls.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = calls.get(path) {
            return Arc::clone(found);
        }
        if self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_err()
        {
            crate::metrics::describe_series_overflow();
            metrics::counter!(crate::metrics::SERIES_OVERFLOW_TOTAL).increment(1);
            return Arc::clone(
                self.overflow
                    .get_or_init(|| RpcSeries::new(OVERFLOW_PATH, OVERFLOW_PATH)),
            );
        }
        let series = RpcSeries::new(service, method);
        calls.insert(path.into(), Arc::clone(&series));
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MetricsCapture;

    #[test]
    fn grpc_requests_are_told_by_their_content_type() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(value),
            );
            is_grpc(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("application/grpc;charset=utf-8"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn paths_and_statuses_parse_strictly() {
        assert_eq!(
            service_and_method("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check"))
        );
        for bad in ["", "/", "//Check", "/svc/", "/svc", "/a/b/c", "svc/m"] {
            assert_eq!(service_and_method(bad), None, "{bad:?}");
        }
        let status = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", http::HeaderValue::from_static(value));
            status_of(&headers)
        };
        assert_eq!(status("0"), Some(0));
        assert_eq!(status("16"), Some(16));
        assert_eq!(status("17"), None);
        assert_eq!(status("-1"), None);
        assert_eq!(status("ok"), None);
        assert_eq!(status_of(&HeaderMap::new()), None);
    }

    #[test]
    fn http_statuses_map_as_the_grpc_specification_says() {
        let mapped: Vec<u8> = [200, 400, 401, 403, 404, 429, 500, 502, 503, 504, 418]
            .into_iter()
            .map(from_http)
            .collect();
        assert_eq!(mapped, [2, 13, 16, 7, 12, 14, 2, 14, 14, 14, 2]);
    }

    #[test]
    fn calls_are_series_by_service_method_and_code_and_made_up_paths_are_not() {
        let capture = MetricsCapture::new();
        capture.run(|| {
            let cache = RpcSeriesCache::new(2);
            cache.record("/pkg.Svc/Get", 0, 0.01);
            cache.record("/pkg.Svc/Get", 0, 0.02);
            cache.record("/pkg.Svc/Get", 5, 0.01);
            cache.record("/pkg.Svc/Put", 13, 0.01);
            // Made up: UNIMPLEMENTED, whatever the path.
            for i in 0..100 {
                cache.record(&format!("/made.Up{i}/X"), UNIMPLEMENTED, 0.001);
            }
            // Past the cap of two pairs.
            cache.record("/pkg.Svc/Delete", 0, 0.01);
        });
        let m = capture.exposition();
        let count = |service: &str, method: &str, code: &str| {
            m.value(
                "rpc_server_duration_seconds_count",
                &[
                    ("rpc_service", service),
                    ("rpc_method", method),
                    ("rpc_grpc_status_code", code),
                ],
            )
        };
        assert_eq!(count("pkg.Svc", "Get", "0"), Some(2.0));
        assert_eq!(count("pkg.Svc", "Get", "5"), Some(1.0));
        assert_eq!(count("pkg.Svc", "Put", "13"), Some(1.0));
        assert_eq!(count("_OTHER", "_OTHER", "12"), Some(100.0));
        assert_eq!(count("overflow", "overflow", "0"), Some(1.0));
        assert_eq!(m.find("rpc_server_duration_seconds_count", &[]).count(), 5);
    }
}
