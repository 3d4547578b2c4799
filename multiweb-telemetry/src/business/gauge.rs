//! [`Gauge`] and [`GaugeVec`].

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Family;
use super::meta::{LabelValue, Meta};

fn add(slot: &AtomicU64, delta: f64) {
    let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + delta).to_bits())
    });
}

/// A gauge declared with `#[business_metric]`; its value is an `f64`.
#[derive(Debug)]
pub struct Gauge {
    meta: &'static Meta,
    value: AtomicU64,
}

impl Gauge {
    /// Used by `#[business_metric]`.
    #[doc(hidden)]
    pub const fn new(meta: &'static Meta) -> Self {
        Self {
            meta,
            value: AtomicU64::new(0),
        }
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: f64) {
        self.value.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Adds `delta` (negative to subtract).
    #[inline]
    pub fn add(&self, delta: f64) {
        add(&self.value, delta);
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::Relaxed))
    }

    /// The exported name.
    pub fn name(&self) -> &'static str {
        self.meta.name
    }
}

impl Family for Gauge {
    fn meta(&self) -> &'static Meta {
        self.meta
    }

    fn render(&self, out: &mut String) {
        self.meta.header(out);
        let _ = writeln!(out, "{} {}", self.meta.name, self.get());
    }
}

/// A gauge with one label whose values are the variants of `L`.
pub struct GaugeVec<L: LabelValue + 'static> {
    meta: &'static Meta,
    slots: &'static [AtomicU64],
    label: PhantomData<fn(L)>,
}

impl<L: LabelValue> std::fmt::Debug for GaugeVec<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaugeVec")
            .field("name", &self.meta.name)
            .finish_non_exhaustive()
    }
}

impl<L: LabelValue> GaugeVec<L> {
    /// Used by `#[business_metric]`.
    #[doc(hidden)]
    pub const fn new(meta: &'static Meta, slots: &'static [AtomicU64]) -> Self {
        Self {
            meta,
            slots,
            label: PhantomData,
        }
    }

    /// Sets the series of `label`.
    pub fn set(&self, label: &L, value: f64) {
        if let Some(slot) = self.slots.get(label.index()) {
            slot.store(value.to_bits(), Ordering::Relaxed);
        }
    }

    /// Adds `delta` to the series of `label`.
    pub fn add(&self, label: &L, delta: f64) {
        if let Some(slot) = self.slots.get(label.index()) {
            add(slot, delta);
        }
    }

    /// The current value of the series of `label`.
    pub fn get(&self, label: &L) -> f64 {
        self.slots
            .get(label.index())
            .map_or(0.0, |slot| f64::from_bits(slot.load(Ordering::Relaxed)))
    }
}

impl<L: LabelValue> Family for GaugeVec<L> {
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
                f64::from_bits(slot.load(Ordering::Relaxed))
            );
        }
    }
}
