//! The histogram handles of outgoing calls per label set, with a cap on how
//! many label sets exist.
//!
//! A call looks its host up once when it starts (a read lock and a hash
//! lookup); when it ends, its `(method, status)` is found in a short list
//! of the host's series, filled once.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use metrics::{Histogram, Label};
use rustc_hash::FxHasher;

use crate::labels::{Method, OVERFLOW_PATH};

/// Name of the histogram of outgoing call durations, in seconds.
pub const REQUEST_DURATION: &str = "http_client_request_duration_seconds";

/// `status` of calls that failed without a response: the connection was
/// refused or reset, a timeout of the client fired, the inner service
/// returned an error.
pub const ERROR_STATUS: &str = "error";

/// `status` of calls dropped by the caller before a response arrived (a
/// `tokio::time::timeout` around the call, the loser of a `select!`).
pub const CANCELLED_STATUS: &str = "cancelled";

/// `server_address` of calls whose URI names no host (a request with only a
/// path and no `Host` header, such as a tonic client built without an
/// origin).
pub const UNKNOWN_SERVER_ADDRESS: &str = "unknown";

/// `server_address` of calls recorded past the series cap
/// ([`ClientLayer::max_series`](super::ClientLayer::max_series)).
pub const OVERFLOW_SERVER_ADDRESS: &str = OVERFLOW_PATH;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// How a call ended, as its `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The server answered with this status code.
    Status(u16),
    /// No response: a transport error.
    Error,
    /// Dropped before a response.
    Cancelled,
}

impl Outcome {
    fn label(self) -> String {
        match self {
            Self::Status(code) => code.to_string(),
            Self::Error => ERROR_STATUS.to_owned(),
            Self::Cancelled => CANCELLED_STATUS.to_owned(),
        }
    }
}

/// The series of every host one layer (or middleware) has called.
#[derive(Debug)]
pub(crate) struct ClientSeries {
    hosts: RwLock<FxMap<Box<str>, Arc<HostSeries>>>,
    overflow: OnceLock<Arc<HostSeries>>,
    /// `(method, server_address, status)` label sets created.
    label_sets: AtomicUsize,
    max_series: usize,
}

/// The series of one `server_address`.
#[derive(Debug)]
pub(crate) struct HostSeries {
    host: Box<str>,
    is_overflow: bool,
    series: RwLock<Vec<(Method, Outcome, Histogram)>>,
}

impl ClientSeries {
    pub(crate) fn new(max_series: usize) -> Self {
        Self {
            hosts: RwLock::default(),
            overflow: OnceLock::new(),
            label_sets: AtomicUsize::new(0),
            max_series,
        }
    }

    /// The series of `host`, created on first use, or the overflow host's
    /// once the cap is reached.
    pub(crate) fn host(&self, host: &str) -> Arc<HostSeries> {
        let found = self
            .hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
            .map(Arc::clone);
        if let Some(found) = found {
            return found;
        }
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = hosts.get(host) {
            return Arc::clone(found);
        }
        if hosts.len() >= self.max_series {
            return Arc::clone(self.overflow());
        }
        let series = HostSeries::new(host, false);
        hosts.insert(host.into(), Arc::clone(&series));
        series
    }

    fn overflow(&self) -> &Arc<HostSeries> {
        self.overflow
            .get_or_init(|| HostSeries::new(OVERFLOW_SERVER_ADDRESS, true))
    }

    /// Takes one label set if the cap allows it.
    fn reserve(&self) -> bool {
        self.label_sets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_series).then_some(n + 1)
            })
            .is_ok()
    }
}

impl HostSeries {
    fn new(host: &str, is_overflow: bool) -> Arc<Self> {
        Arc::new(Self {
            host: host.into(),
            is_overflow,
            series: RwLock::default(),
        })
    }

    /// Records one call's duration under `(method, host, outcome)`, or
    /// under the overflow host when that label set is new and the cap is
    /// reached.
    pub(crate) fn record(
        &self,
        method: Method,
        outcome: Outcome,
        seconds: f64,
        cache: &ClientSeries,
    ) {
        if self.try_record(method, outcome, seconds) {
            return;
        }
        if self.is_overflow || cache.reserve() {
            self.insert(method, outcome).record(seconds);
        } else {
            cache.overflow().record(method, outcome, seconds, cache);
        }
    }

    /// Records on the series of `(method, outcome)` if it exists.
    fn try_record(&self, method: Method, outcome: Outcome, seconds: f64) -> bool {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let found = series
            .iter()
            .find(|(m, o, _)| *m == method && *o == outcome);
        if let Some((_, _, histogram)) = found {
            histogram.record(seconds);
        }
        found.is_some()
    }

    fn insert(&self, method: Method, outcome: Outcome) -> Histogram {
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, histogram)) = series
            .iter()
            .find(|(m, o, _)| *m == method && *o == outcome)
        {
            return histogram.clone();
        }
        describe();
        let labels = [
            Label::new("method", method.as_str()),
            Label::new("server_address", self.host.to_string()),
            Label::new("status", outcome.label()),
        ];
        let histogram = metrics::histogram!(REQUEST_DURATION, labels.iter());
        series.push((method, outcome, histogram.clone()));
        histogram
    }
}

/// Registers the help text, with the recorder current when the first
/// series is created.
fn describe() {
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Duration of outgoing HTTP calls in seconds, until the response body is read or dropped."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MetricsCapture;

    fn get() -> Method {
        Method::of(&http::Method::GET)
    }

    #[test]
    fn calls_are_recorded_per_method_host_and_outcome() {
        let capture = MetricsCapture::new();
        capture.run(|| {
            let cache = ClientSeries::new(100);
            let host = cache.host("inventory");
            for outcome in [Outcome::Status(200), Outcome::Status(200), Outcome::Error] {
                host.record(get(), outcome, 0.01, &cache);
            }
            cache
                .host("inventory")
                .record(get(), Outcome::Cancelled, 0.01, &cache);
        });
        let m = capture.exposition();
        let count = |status| {
            m.value(
                "http_client_request_duration_seconds_count",
                &[
                    ("method", "GET"),
                    ("server_address", "inventory"),
                    ("status", status),
                ],
            )
        };
        assert_eq!(count("200"), Some(2.0));
        assert_eq!(count("error"), Some(1.0));
        assert_eq!(count("cancelled"), Some(1.0));
        assert_eq!(
            m.find("http_client_request_duration_seconds_count", &[])
                .count(),
            3
        );
    }

    #[test]
    fn the_cap_diverts_new_label_sets_and_hosts_to_overflow() {
        let capture = MetricsCapture::new();
        capture.run(|| {
            let cache = ClientSeries::new(2);
            let a = cache.host("a");
            a.record(get(), Outcome::Status(200), 0.01, &cache);
            a.record(get(), Outcome::Status(201), 0.01, &cache);
            // Past the cap: a new status of a known host, then new hosts.
            a.record(get(), Outcome::Status(202), 0.01, &cache);
            cache
                .host("b")
                .record(get(), Outcome::Status(200), 0.01, &cache);
            cache.host("c");
            cache
                .host("d")
                .record(get(), Outcome::Status(200), 0.01, &cache);
        });
        let m = capture.exposition();
        let name = "http_client_request_duration_seconds_count";
        assert_eq!(m.find(name, &[("server_address", "a")]).count(), 2);
        assert_eq!(
            m.value(name, &[("server_address", "overflow"), ("status", "202")]),
            Some(1.0)
        );
        assert_eq!(
            m.value(name, &[("server_address", "overflow"), ("status", "200")]),
            Some(2.0),
            "b is diverted at its first label set, d at its host"
        );
        assert_eq!(m.find(name, &[]).count(), 4);
    }
}
