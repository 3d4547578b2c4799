//! [`Histogram`] and [`Summary`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::Family;
use super::meta::Meta;
use crate::exemplar::{SeriesExemplars, SpanIds};

/// A histogram declared with `#[business_metric]` (`buckets = [...]`, in the
/// metric's base unit; the crate's default latency buckets otherwise).
/// Recording is a bucket search, two atomic updates and a check of the
/// current span.
///
/// Recorded inside a span whose trace is sampled, it keeps the span's ids
/// as the exemplar of the bucket that counts the value, in the OpenMetrics
/// answer of `/metrics` (the newest replaces the old).
#[derive(Debug)]
pub struct Histogram {
    meta: &'static Meta,
    bounds: &'static [f64],
    /// One per bound, then `+Inf`; then the sum (f64 bits) and the count.
    slots: &'static [AtomicU64],
    exemplars: OnceLock<Arc<SeriesExemplars>>,
}

impl Histogram {
    /// Used by `#[business_metric]`.
    #[doc(hidden)]
    pub const fn new(
        meta: &'static Meta,
        bounds: &'static [f64],
        slots: &'static [AtomicU64],
    ) -> Self {
        Self {
            meta,
            bounds,
            slots,
            exemplars: OnceLock::new(),
        }
    }

    fn sum_slot(&self) -> Option<&AtomicU64> {
        self.slots.get(self.bounds.len() + 1)
    }

    /// Records one observation.
    #[inline]
    pub fn record(&self, value: f64) {
        let bucket = self.bounds.partition_point(|b| *b < value);
        if let Some(slot) = self.slots.get(bucket) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(sum) = self.sum_slot() {
            let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
        }
        if let Some(ids) = SpanIds::current_sampled() {
            self.keep_exemplar(ids, value);
        }
    }

    #[cold]
    #[inline(never)]
    fn keep_exemplar(&self, ids: SpanIds, value: f64) {
        self.exemplars
            .get_or_init(|| {
                let histogram = Some((self.meta.name, Arc::from(self.bounds)));
                SeriesExemplars::register(histogram, None, Vec::new())
            })
            .observe(ids, value);
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.slots
            .iter()
            .take(self.bounds.len() + 1)
            .map(|s| s.load(Ordering::Relaxed))
            .sum()
    }
}

impl Family for Histogram {
    fn meta(&self) -> &'static Meta {
        self.meta
    }

    fn render(&self, out: &mut String) {
        self.meta.header(out);
        let name = self.meta.name;
        let mut cumulative = 0;
        for (bound, slot) in self.bounds.iter().zip(self.slots) {
            cumulative += slot.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        if let Some(inf) = self.slots.get(self.bounds.len()) {
            cumulative += inf.load(Ordering::Relaxed);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self
            .sum_slot()
            .map_or(0.0, |s| f64::from_bits(s.load(Ordering::Relaxed)));
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// How many recent observations a [`Summary`] keeps for its quantiles.
pub const SUMMARY_WINDOW: usize = 1024;

/// A summary declared with `#[business_metric]`: quantiles 0.5, 0.9 and
/// 0.99 over the last [`SUMMARY_WINDOW`] observations, plus `_sum` and
/// `_count`.
///
/// Prefer a [`Histogram`]: quantiles of a summary are computed in each
/// instance and cannot be aggregated across instances (the average of two
/// P95s is not a P95), while histogram buckets can be summed and
/// `histogram_quantile` applied to the total.
#[derive(Debug)]
pub struct Summary {
    meta: &'static Meta,
    state: Mutex<SummaryState>,
}

#[derive(Debug)]
struct SummaryState {
    window: Vec<f64>,
    next: usize,
    sum: f64,
    count: u64,
}

impl Summary {
    /// Used by `#[business_metric]`.
    #[doc(hidden)]
    pub const fn new(meta: &'static Meta) -> Self {
        Self {
            meta,
            state: Mutex::new(SummaryState {
                window: Vec::new(),
                next: 0,
                sum: 0.0,
                count: 0,
            }),
        }
    }

    /// Records one observation.
    pub fn record(&self, value: f64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.window.len() < SUMMARY_WINDOW {
            state.window.push(value);
        } else {
            let next = state.next;
            state.window[next] = value;
        }
        state.next = (state.next + 1) % SUMMARY_WINDOW;
        state.sum += value;
        state.count += 1;
    }
}

impl Family for Summary {
    fn meta(&self) -> &'static Meta {
        self.meta
    }

    fn render(&self, out: &mut String) {
        self.meta.header(out);
        let (mut window, sum, count) = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (state.window.clone(), state.sum, state.count)
        };
        window.sort_by(f64::total_cmp);
        let name = self.meta.name;
        for q in [0.5, 0.9, 0.99] {
            let value = if window.is_empty() {
                f64::NAN
            } else {
                // Nearest rank.
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "a rank within the window"
                )]
                let rank = ((q * window.len() as f64).ceil() as usize).clamp(1, window.len());
                window[rank - 1]
            };
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {value}");
        }
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}
