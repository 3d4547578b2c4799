//! Where exemplars are registered, and the [`Index`] a scrape looks them up in.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use super::{Exemplar, Slots, SpanIds, bucket_index};
use crate::config::{Buckets, DEFAULT_BUCKETS};

/// Every registered series; dead entries (a dropped layer's) are pruned at
/// each scrape.
static REGISTERED: Mutex<Vec<Weak<SeriesExemplars>>> = Mutex::new(Vec::new());

/// The bucket bounds the installed recorder uses.
static BUCKETS: OnceLock<Buckets> = OnceLock::new();

/// Tells which bucket bounds the installed recorder uses, so that exemplars
/// of histograms recorded through the `metrics` facade go in the bucket their
/// value is counted in. The first call wins.
pub(crate) fn set_buckets(buckets: &Buckets) {
    let _ = BUCKETS.set(buckets.clone());
}

/// The bucket bounds of histogram `name`: its own, else the default ones of
/// the installed recorder, else [`DEFAULT_BUCKETS`].
pub(crate) fn bounds_for(name: &str) -> Arc<[f64]> {
    match BUCKETS.get() {
        Some(buckets) => buckets
            .per_metric
            .iter()
            .find(|(metric, _)| metric == name)
            .map_or(&buckets.default, |(_, bounds)| bounds)
            .as_slice()
            .into(),
        None => DEFAULT_BUCKETS.into(),
    }
}

/// The exemplar slots of one labelled series: the buckets of a histogram,
/// a counter, or both (the HTTP layer's duration and request count share
/// their labels).
#[derive(Debug)]
pub(crate) struct SeriesExemplars {
    /// The histogram's `_bucket` sample name and its bounds.
    histogram: Option<(String, Arc<[f64]>)>,
    /// The counter's sample name, e.g. `http_requests_total`.
    counter: Option<&'static str>,
    /// Sorted by name.
    labels: Box<[(Cow<'static, str>, String)]>,
    /// One per bucket (`+Inf` last), then the counter's.
    slots: Slots,
}

impl SeriesExemplars {
    /// Registers the exemplars of the series labelled `labels` of histogram
    /// `histogram` (its name and bucket bounds) and of counter `counter`.
    /// They are rendered as long as the returned value lives.
    pub(crate) fn register(
        histogram: Option<(&str, Arc<[f64]>)>,
        counter: Option<&'static str>,
        mut labels: Vec<(Cow<'static, str>, String)>,
    ) -> Arc<Self> {
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let series = Arc::new(Self {
            histogram: histogram.map(|(name, bounds)| (format!("{name}_bucket"), bounds)),
            counter,
            labels: labels.into_boxed_slice(),
            slots: Slots::new(),
        });
        REGISTERED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&series));
        series
    }

    fn buckets(&self) -> usize {
        self.histogram
            .as_ref()
            .map_or(0, |(_, bounds)| bounds.len() + 1)
    }

    fn len(&self) -> usize {
        self.buckets() + usize::from(self.counter.is_some())
    }

    /// Keeps an exemplar of an observation of `value` in the histogram's
    /// bucket that counts it.
    pub(crate) fn observe(&self, ids: SpanIds, value: f64) {
        self.keep(Exemplar::now(ids, value), true, false);
    }

    /// Keeps an exemplar of an increment of the counter by `value`.
    pub(crate) fn count(&self, ids: SpanIds, value: f64) {
        self.keep(Exemplar::now(ids, value), false, true);
    }

    /// Keeps an exemplar of an observation of `value`, and one of an
    /// increment of the counter by one, with one clock read.
    pub(crate) fn observe_and_count(&self, ids: SpanIds, value: f64) {
        let observed = Exemplar::now(ids, value);
        self.keep(observed, true, false);
        self.keep(
            Exemplar {
                value: 1.0,
                ..observed
            },
            false,
            true,
        );
    }

    fn keep(&self, exemplar: Exemplar, bucket: bool, counter: bool) {
        let index = match (&self.histogram, &self.counter) {
            // An exemplar's value must lie in its bucket's range: NaN lies in none.
            (Some((_, bounds)), _) if bucket && !exemplar.value.is_nan() => {
                bucket_index(bounds, exemplar.value)
            }
            (_, Some(_)) if counter => self.buckets(),
            _ => return,
        };
        self.slots.store(self.len(), index, exemplar);
    }

    /// Adds this series' exemplars to `index`.
    fn add_to(&self, index: &mut Index) {
        let mut labels: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(name, value)| (&**name, value.as_str()))
            .collect();
        if let Some((sample, bounds)) = &self.histogram {
            for (i, le) in bounds.iter().copied().chain([f64::INFINITY]).enumerate() {
                if let Some(exemplar) = self.slots.load(i) {
                    index.insert(sample, &mut labels, Some(le), exemplar);
                }
            }
        }
        if let Some(sample) = self.counter
            && let Some(exemplar) = self.slots.load(self.buckets())
        {
            index.insert(sample, &mut labels, None, exemplar);
        }
    }
}

/// The exemplars of one scrape, by the sample they go on: a counter's
/// `_total` sample, or a histogram's `_bucket` sample and its `le`.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_sample: HashMap<String, Exemplar>,
    key: String,
}

impl Index {
    /// The exemplars of every registered series.
    pub(crate) fn collect() -> Self {
        let series: Vec<Arc<SeriesExemplars>> = {
            let mut registered = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
            registered.retain(|series| series.strong_count() > 0);
            registered.iter().filter_map(Weak::upgrade).collect()
        };
        let mut index = Self::default();
        for series in series.iter().filter(|series| !series.slots.is_empty()) {
            series.add_to(&mut index);
        }
        index
    }

    /// Whether there is no exemplar at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_sample.is_empty()
    }

    /// Keeps `exemplar` for the sample, unless a newer one is there (two
    /// layers recording the same series each keep one).
    pub(crate) fn insert(
        &mut self,
        sample: &str,
        labels: &mut [(&str, &str)],
        le: Option<f64>,
        exemplar: Exemplar,
    ) {
        write_key(&mut self.key, sample, labels, le);
        match self.by_sample.get_mut(self.key.as_str()) {
            Some(kept) if kept.time >= exemplar.time => {}
            Some(kept) => *kept = exemplar,
            None => {
                self.by_sample.insert(self.key.clone(), exemplar);
            }
        }
    }

    /// The exemplar of sample `sample` with labels `labels` (in any order,
    /// without `le`) and, for a histogram bucket, bound `le`.
    pub(crate) fn find(
        &mut self,
        sample: &str,
        labels: &mut [(&str, &str)],
        le: Option<f64>,
    ) -> Option<Exemplar> {
        write_key(&mut self.key, sample, labels, le);
        self.by_sample.get(self.key.as_str()).copied()
    }
}

/// Writes the key of a sample: its name, its labels sorted by name, and its
/// bucket bound, each part prefixed with its length.
fn write_key(key: &mut String, sample: &str, labels: &mut [(&str, &str)], le: Option<f64>) {
    labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    key.clear();
    let _ = write!(key, "{}:{sample}", sample.len());
    for (name, value) in labels.iter() {
        let _ = write!(key, "{}:{name}{}:{value}", name.len(), value.len());
    }
    if let Some(le) = le {
        // The bits: `1`, `1.0` and `1e0` are one bound.
        let _ = write!(key, "le:{:x}", le.to_bits());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;

    fn ids(n: u8) -> SpanIds {
        SpanIds {
            trace_id: TraceId::from_bytes([n; 16]),
            span_id: SpanId::from_bytes([n; 8]),
        }
    }

    fn labels(path: &str) -> Vec<(Cow<'static, str>, String)> {
        // Not in name order: the index sorts them.
        vec![
            (Cow::Borrowed("path"), path.to_owned()),
            (Cow::Borrowed("method"), "GET".to_owned()),
        ]
    }

    #[test]
    fn exemplars_are_found_by_sample_labels_and_bound() {
        let bounds: Arc<[f64]> = Arc::from([0.1, 0.5, 1.0].as_slice());
        let series = SeriesExemplars::register(
            Some(("registry_test_seconds", bounds)),
            Some("registry_test_total"),
            labels("/registry-test"),
        );
        let untouched = SeriesExemplars::register(None, Some("registry_test_total"), labels("/b"));
        series.observe_and_count(ids(1), 0.3);
        series.observe(ids(2), 7.0);
        let mut index = Index::collect();
        let mut labels = [("path", "/registry-test"), ("method", "GET")];
        let bucket = |index: &mut Index, labels: &mut [(&str, &str)], le| {
            index
                .find("registry_test_seconds_bucket", labels, Some(le))
                .map(|e| (e.ids, e.value))
        };
        assert_eq!(bucket(&mut index, &mut labels, 0.5), Some((ids(1), 0.3)));
        assert_eq!(bucket(&mut index, &mut labels, 0.1), None);
        assert_eq!(
            bucket(&mut index, &mut labels, f64::INFINITY),
            Some((ids(2), 7.0))
        );
        let counted = index.find("registry_test_total", &mut labels, None);
        assert_eq!(counted.map(|e| (e.ids, e.value)), Some((ids(1), 1.0)));
        let mut other = [("method", "GET"), ("path", "/b")];
        assert_eq!(index.find("registry_test_total", &mut other, None), None);

        // A scrape running in another test holds the series until it ends.
        let weak = Arc::downgrade(&series);
        drop((series, untouched));
        while weak.strong_count() > 0 {
            std::thread::yield_now();
        }
        let mut index = Index::collect();
        assert_eq!(
            index.find("registry_test_total", &mut labels, None),
            None,
            "a dropped series is no longer rendered"
        );
    }

    #[test]
    fn of_two_series_with_one_label_set_the_newest_exemplar_wins() {
        let first = SeriesExemplars::register(None, Some("registry_twice_total"), vec![]);
        let second = SeriesExemplars::register(None, Some("registry_twice_total"), vec![]);
        let at = |n: u8, secs| Exemplar {
            ids: ids(n),
            value: 1.0,
            time: Duration::from_secs(secs),
        };
        first.keep(at(1, 20), false, true);
        second.keep(at(2, 10), false, true);
        let mut index = Index::collect();
        let found = index.find("registry_twice_total", &mut [], None);
        assert_eq!(found.map(|e| e.ids), Some(ids(1)));
    }

    #[test]
    fn nan_is_in_no_bucket() {
        let series = SeriesExemplars::register(
            Some(("registry_nan", Arc::from([1.0].as_slice()))),
            None,
            vec![],
        );
        series.observe(ids(3), f64::NAN);
        series.count(ids(3), 1.0);
        assert!(series.slots.is_empty(), "nothing was kept");
    }
}
