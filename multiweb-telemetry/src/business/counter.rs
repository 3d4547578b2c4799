//! [`Counter`] and [`CounterVec`].

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::Family;
use super::local::Slot;
use super::meta::{LabelValue, Meta};
use crate::exemplar::{SeriesExemplars, SpanIds};

/// A counter declared with `#[business_metric]`: incrementing it is one
/// relaxed atomic add, and a check of the current span.
///
/// A function annotated with `#[business_metric(count = ...)]` counts into
/// a per-thread shard of the counter instead (no locked instruction);
/// [`get`](Self::get) and `/metrics` report the sum of both.
///
/// Incremented inside a span whose trace is sampled, it keeps the span's
/// ids as the exemplar of its `_total` sample in the OpenMetrics answer of
/// `/metrics` (the newest replaces the old).
#[derive(Debug)]
pub struct Counter {
    meta: &'static Meta,
    value: AtomicU64,
    local: Slot,
    exemplar: OnceLock<Arc<SeriesExemplars>>,
}

impl Counter {
    /// Used by `#[business_metric]`.
    #[doc(hidden)]
    pub const fn new(meta: &'static Meta) -> Self {
        Self {
            meta,
            value: AtomicU64::new(0),
            local: Slot::new(),
            exemplar: OnceLock::new(),
        }
    }

    /// Adds one.
    #[inline]
    pub fn increment(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
        self.offer_exemplar(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn increment_by(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.offer_exemplar(n);
    }

    /// Adds one in the calling thread's shard, or to the shared value when
    /// no shard slot is left.
    #[inline]
    pub(crate) fn increment_local(&self) {
        if !self.local.add(1) {
            self.value.fetch_add(1, Ordering::Relaxed);
        }
        self.offer_exemplar(1);
    }

    /// Keeps an exemplar of an increment by `n` inside a sampled span.
    #[inline]
    fn offer_exemplar(&self, n: u64) {
        if let Some(ids) = SpanIds::current_sampled() {
            self.keep_exemplar(ids, n);
        }
    }

    #[cold]
    #[inline(never)]
    fn keep_exemplar(&self, ids: SpanIds, n: u64) {
        self.exemplar
            .get_or_init(|| SeriesExemplars::register(None, Some(self.meta.name), Vec::new()))
            .count(ids, n as f64);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value
            .load(Ordering::Relaxed)
            .wrapping_add(self.local.sum())
    }

    /// The exported name, e.g. `multiweb_products_created_total`.
    pub fn name(&self) -> &'static str {
        self.meta.name
    }
}

impl Family for Counter {
    fn meta(&self) -> &'static Meta {
        self.meta
    }

    fn render(&self, out: &mut String) {
        self.meta.header(out);
        let _ = writeln!(out, "{} {}", self.meta.name, self.get());
    }
}

/// A counter with one label whose values are the variants of `L`: one
/// atomic per variant, every one exported from the start. Like a
/// [`Counter`], each series keeps an exemplar of its newest increment
/// inside a sampled span.
pub struct CounterVec<L: LabelValue + 'static> {
    meta: &'static Meta,
    slots: &'static [AtomicU64],
    /// One per variant, registered with the first exemplar.
    exemplars: OnceLock<Box<[Arc<SeriesExemplars>]>>,
    label: PhantomData<fn(L)>,
}

impl<L: LabelValue> std::fmt::Debug for CounterVec<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterVec")
            .field("name", &self.meta.name)
            .finish_non_exhaustive()
    }
}

impl<L: LabelValue> CounterVec<L> {
    /// Used by `#[business_metric]`.
    #[doc(hidden)]
    pub const fn new(meta: &'static Meta, slots: &'static [AtomicU64]) -> Self {
        Self {
            meta,
            slots,
            exemplars: OnceLock::new(),
            label: PhantomData,
        }
    }

    /// Adds one to the series of `label`.
    #[inline]
    pub fn increment(&self, label: &L) {
        self.increment_by(label, 1);
    }

    /// Adds `n` to the series of `label`.
    #[inline]
    pub fn increment_by(&self, label: &L, n: u64) {
        if let Some(slot) = self.slots.get(label.index()) {
            slot.fetch_add(n, Ordering::Relaxed);
            if let Some(ids) = SpanIds::current_sampled() {
                self.keep_exemplar(label.index(), ids, n);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn keep_exemplar(&self, index: usize, ids: SpanIds, n: u64) {
        let series = self.exemplars.get_or_init(|| {
            let label = self.meta.label.unwrap_or("label");
            L::VALUES
                .iter()
                .map(|value| {
                    let labels = vec![(label.into(), (*value).to_owned())];
                    SeriesExemplars::register(None, Some(self.meta.name), labels)
                })
                .collect()
        });
        if let Some(series) = series.get(index) {
            series.count(ids, n as f64);
        }
    }

    /// The current value of the series of `label`.
    pub fn get(&self, label: &L) -> u64 {
        self.slots
            .get(label.index())
            .map_or(0, |slot| slot.load(Ordering::Relaxed))
    }

    /// The exported name.
    pub fn name(&self) -> &'static str {
        self.meta.name
    }
}

impl<L: LabelValue> Family for CounterVec<L> {
    fn meta(&self) -> &'static Meta {
        self.meta
    }

    fn render(&self, out: &mut String) {
        self.meta.header(out);
        let label = self.meta.label.unwrap_or("label");
        for (value, slot) in L::VALUES.iter().zip(self.slots) {
            let _ = writeln!(
                out,
                "{}{{{label}=\"{value}\"}} {}",
                self.meta.name,
                slot.load(Ordering::Relaxed)
            );
        }
    }
}
