//! Cached metric handles per label set, with a cap on how many label sets exist.
//!
//! The hot path of a request does no allocation, takes no lock and does no
//! lookup by metric name: each axum route gets its own service, which keeps
//! the series of the route it serves; the method picks an array slot; the
//! status is found in a short array of slots filled once.
//!
//! Each `(method, path, status)` series also registers its exemplar slots
//! (one per duration bucket, one for the request counter; see
//! [`crate::exemplar`]), filled by the requests whose trace is sampled.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Label};
use rustc_hash::FxHasher;

use crate::exemplar::{SeriesExemplars, SpanIds, bounds_for};
use crate::labels::{Method, OVERFLOW_PATH};

/// Name of the request counter.
pub const REQUESTS_TOTAL: &str = "http_requests_total";
/// Name of the request duration histogram, in seconds.
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Name of the in-flight requests gauge.
pub const REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
pub use crate::metrics::SERIES_OVERFLOW_TOTAL;

/// Status codes kept in lock-free slots per `(method, path)`; more spill
/// into a locked list.
const STATUS_SLOTS: usize = 8;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The handles of every label set one layer has created.
#[derive(Debug)]
pub(crate) struct SeriesCache {
    routes: RwLock<FxMap<Box<str>, Arc<RouteSeries>>>,
    overflow: OnceLock<Arc<RouteSeries>>,
    overflow_total: OnceLock<Counter>,
    /// `(method, path)` label sets created (the in-flight gauge).
    route_sets: AtomicUsize,
    /// `(method, path, status)` label sets created (counter and histogram).
    status_sets: AtomicUsize,
    max_series: usize,
}

/// The series of one route template.
#[derive(Debug)]
pub(crate) struct RouteSeries {
    path: Box<str>,
    methods: [OnceLock<MethodSeries>; Method::COUNT],
    is_overflow: bool,
}

/// The series of one `(method, path)`.
#[derive(Debug)]
struct MethodSeries {
    in_flight: Gauge,
    slots: [OnceLock<StatusSeries>; STATUS_SLOTS],
    spilled: RwLock<Vec<Arc<StatusSeries>>>,
    inserting: Mutex<()>,
}

/// The series of one `(method, path, status)`.
#[derive(Debug)]
struct StatusSeries {
    status: u16,
    requests: Counter,
    duration: Histogram,
    exemplars: Arc<SeriesExemplars>,
}

impl StatusSeries {
    /// Records a request, and its exemplar when its trace is `sampled`.
    fn record(&self, seconds: f64, sampled: Option<SpanIds>) {
        self.requests.increment(1);
        self.duration.record(seconds);
        if let Some(ids) = sampled {
            self.exemplars.observe_and_count(ids, seconds);
        }
    }
}

impl RouteSeries {
    fn new(path: &str, is_overflow: bool) -> Arc<Self> {
        Arc::new(Self {
            path: path.into(),
            methods: Default::default(),
            is_overflow,
        })
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The series of `method` on this route, created on first use if the
    /// cap allows, else the overflow route's.
    /// `diverted` tells whether the overflow route's series was returned
    /// for a route that is not itself the overflow route.
    fn series<'a>(&'a self, method: Method, cache: &'a SeriesCache) -> (&'a MethodSeries, bool) {
        if let Some(series) = self.methods[method.index()].get() {
            return (series, self.is_overflow);
        }
        if self.is_overflow || cache.reserve(&cache.route_sets) {
            let series =
                self.methods[method.index()].get_or_init(|| MethodSeries::new(method, &self.path));
            return (series, self.is_overflow);
        }
        (cache.overflow_route().series(method, cache).0, true)
    }

    /// Counts a request start on `http_requests_in_flight`.
    pub(crate) fn start(&self, method: Method, cache: &SeriesCache) {
        self.series(method, cache).0.in_flight.increment(1.0);
    }

    /// Takes a request that never got a response out of the in-flight gauge.
    pub(crate) fn cancel(&self, method: Method, cache: &SeriesCache) {
        self.series(method, cache).0.in_flight.decrement(1.0);
    }

    /// Counts one finished request and records its duration, with an
    /// exemplar when its trace is `sampled`.
    pub(crate) fn record(
        &self,
        method: Method,
        status: u16,
        seconds: f64,
        sampled: Option<SpanIds>,
        cache: &SeriesCache,
    ) {
        let (series, diverted) = self.series(method, cache);
        series.in_flight.decrement(1.0);
        if diverted {
            cache.count_overflow();
        }
        if let Some(found) = series.find(status) {
            found.record(seconds, sampled);
            return;
        }
        if diverted || self.is_overflow {
            series
                .insert(method, OVERFLOW_PATH, status)
                .record(seconds, sampled);
            return;
        }
        if cache.reserve(&cache.status_sets) {
            series
                .insert(method, &self.path, status)
                .record(seconds, sampled);
            return;
        }
        cache.count_overflow();
        let overflow = cache.overflow_route();
        let (series, _) = overflow.series(method, cache);
        match series.find(status) {
            Some(found) => found.record(seconds, sampled),
            None => series
                .insert(method, &overflow.path, status)
                .record(seconds, sampled),
        }
    }
}

/// Registers the help texts, with the recorder current when the first
/// series of a route is created (the recorder `init` installed, or a test's).
fn describe() {
    metrics::describe_counter!(REQUESTS_TOTAL, "Total number of HTTP requests.");
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "HTTP request duration in seconds, until the response body is sent."
    );
    metrics::describe_gauge!(REQUESTS_IN_FLIGHT, "Number of HTTP requests in flight.");
}

impl MethodSeries {
    fn new(method: Method, path: &str) -> Self {
        describe();
        Self {
            in_flight: metrics::gauge!(
                REQUESTS_IN_FLIGHT,
                "method" => method.as_str(),
                "path" => path.to_owned()
            ),
            slots: Default::default(),
            spilled: RwLock::default(),
            inserting: Mutex::new(()),
        }
    }

    fn find(&self, status: u16) -> Option<Found<'_>> {
        for slot in &self.slots {
            match slot.get() {
                Some(series) if series.status == status => return Some(Found::Slot(series)),
                Some(_) => {}
                None => return None,
            }
        }
        self.spilled
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| s.status == status)
            .map(|s| Found::Spilled(Arc::clone(s)))
    }

    fn insert(&self, method: Method, path: &str, status: u16) -> Found<'_> {
        let _guard = self
            .inserting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = self.find(status) {
            return found;
        }
        let labels = [
            Label::new("method", method.as_str()),
            Label::new("path", path.to_owned()),
            Label::new("status", status.to_string()),
        ];
        let exemplars = SeriesExemplars::register(
            Some((REQUEST_DURATION, bounds_for(REQUEST_DURATION))),
            Some(REQUESTS_TOTAL),
            labels
                .iter()
                .map(|label| (label.key().to_owned().into(), label.value().to_owned()))
                .collect(),
        );
        let series = StatusSeries {
            status,
            requests: metrics::counter!(REQUESTS_TOTAL, labels.iter()),
            duration: metrics::histogram!(REQUEST_DURATION, labels.iter()),
            exemplars,
        };
        // Under `inserting`, nobody else fills a slot: the first empty one is ours.
        if let Some(slot) = self.slots.iter().find(|slot| slot.get().is_none()) {
            return Found::Slot(slot.get_or_init(|| series));
        }
        let series = Arc::new(series);
        self.spilled
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&series));
        Found::Spilled(series)
    }
}

/// A status series, in a slot or spilled.
enum Found<'a> {
    Slot(&'a StatusSeries),
    Spilled(Arc<StatusSeries>),
}

impl std::ops::Deref for Found<'_> {
    type Target = StatusSeries;

    fn deref(&self) -> &StatusSeries {
        match self {
            Found::Slot(series) => series,
            Found::Spilled(series) => series,
        }
    }
}

impl SeriesCache {
    pub(crate) fn new(max_series: usize) -> Self {
        Self {
            routes: RwLock::default(),
            overflow: OnceLock::new(),
            overflow_total: OnceLock::new(),
            route_sets: AtomicUsize::new(0),
            status_sets: AtomicUsize::new(0),
            max_series,
        }
    }

    fn overflow_route(&self) -> &Arc<RouteSeries> {
        self.overflow
            .get_or_init(|| RouteSeries::new(OVERFLOW_PATH, true))
    }

    fn count_overflow(&self) {
        self.overflow_total
            .get_or_init(|| {
                crate::metrics::describe_series_overflow();
                metrics::counter!(SERIES_OVERFLOW_TOTAL)
            })
            .increment(1);
    }

    /// Takes one label set from `count` if the cap allows it.
    fn reserve(&self, count: &AtomicUsize) -> bool {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_series).then_some(n + 1)
            })
            .is_ok()
    }

    /// The series of route template `path`, created on first use, or the
    /// overflow route once the cap is reached.
    pub(crate) fn route(&self, path: &str) -> Arc<RouteSeries> {
        let found = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .map(Arc::clone);
        if let Some(route) = found {
            return route;
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(route) = routes.get(path) {
            return Arc::clone(route);
        }
        if routes.len() >= self.max_series {
            return Arc::clone(self.overflow_route());
        }
        let route = RouteSeries::new(path, false);
        routes.insert(path.into(), Arc::clone(&route));
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MetricsCapture;

    #[test]
    fn many_statuses_on_one_route_spill_past_the_slots() {
        let capture = MetricsCapture::new();
        capture.run(|| {
            let cache = SeriesCache::new(1_000);
            let route = cache.route("/r");
            for status in (200..220).chain(200..220) {
                let get = Method::of(&http::Method::GET);
                route.start(get, &cache);
                route.record(get, status, 0.01, None, &cache);
            }
        });
        let m = capture.exposition();
        for status in 200..220 {
            let status = status.to_string();
            let labels = [
                ("method", "GET"),
                ("path", "/r"),
                ("status", status.as_str()),
            ];
            assert_eq!(m.value(REQUESTS_TOTAL, &labels), Some(2.0), "{status}");
        }
        assert_eq!(m.value(REQUESTS_IN_FLIGHT, &[("path", "/r")]), Some(0.0));
    }

    #[test]
    fn status_cap_diverts_to_overflow_and_counts() {
        let capture = MetricsCapture::new();
        capture.run(|| {
            let cache = SeriesCache::new(2);
            let route = cache.route("/r");
            for status in [200, 201, 202, 203] {
                let post = Method::of(&http::Method::POST);
                route.start(post, &cache);
                route.record(post, status, 0.01, None, &cache);
            }
        });
        let m = capture.exposition();
        assert_eq!(m.find(REQUESTS_TOTAL, &[("path", "/r")]).count(), 2);
        assert_eq!(
            m.value(REQUESTS_TOTAL, &[("path", "overflow"), ("status", "202")]),
            Some(1.0)
        );
        assert_eq!(
            m.value(REQUESTS_TOTAL, &[("path", "overflow"), ("status", "203")]),
            Some(1.0)
        );
        assert_eq!(m.value(SERIES_OVERFLOW_TOTAL, &[]), Some(2.0));
    }
}
