//! Exemplars: the trace and span ids of a sampled request or business
//! event, kept beside the histogram bucket or counter it was recorded in, so
//! that the OpenMetrics answer of `/metrics` links a latency bucket to a
//! trace (see [`crate::metrics`] for the format).
//!
//! Neither the `metrics` facade nor `metrics-exporter-prometheus` knows
//! exemplars, so they are kept here, beside the handles:
//!
//! - the HTTP layer's series (cached handles per `(method, path, status)`)
//!   each register one [`SeriesExemplars`]: a slot per bucket of
//!   `http_request_duration_seconds` plus one for `http_requests_total`;
//! - a `#[business_metric]` counter or histogram registers one the first
//!   time it is recorded inside a sampled span.
//!
//! At each scrape, [`Index::collect`] gathers the registered slots, and the
//! OpenMetrics writer puts each exemplar on the sample whose name and label
//! set it was registered with.
//!
//! # Cost
//!
//! Only spans whose trace is sampled (and local: a caller's span passed
//! through has no span of ours behind it) give exemplars. Finding out is
//! one read of the current OpenTelemetry context, a thread-local, and a
//! branch ([`SpanIds::current_sampled`]); an unsampled request or event
//! pays nothing more. A sampled one reads the clock and writes one slot
//! (two for the HTTP layer: the bucket and the counter), each behind an
//! uncontended lock that a writer never waits for: when a scrape or another
//! writer holds it, the new exemplar is dropped and the one there stays.
//! The slots of a series are allocated with its first exemplar.

mod registry;

use std::sync::{Mutex, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, SystemTime};

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};

pub(crate) use registry::{Index, SeriesExemplars, bounds_for, set_buckets};

/// The trace and span ids an exemplar links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanIds {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
}

impl SpanIds {
    /// The ids of the current OpenTelemetry span, if its trace is sampled
    /// and the span is this process's own. A read of the thread-local
    /// context, without cloning it.
    #[inline]
    pub(crate) fn current_sampled() -> Option<Self> {
        Context::map_current(|cx| Self::sampled(cx.span().span_context()))
    }

    /// The ids of `span`, if its trace is sampled and the span is local.
    #[inline]
    pub(crate) fn sampled(span: &SpanContext) -> Option<Self> {
        if span.is_sampled() && !span.is_remote() {
            Some(Self::of(span))
        } else {
            None
        }
    }

    /// The ids of `span`, whatever its sampling.
    pub(crate) fn of(span: &SpanContext) -> Self {
        Self {
            trace_id: span.trace_id(),
            span_id: span.span_id(),
        }
    }
}

/// One exemplar: the span it links to, the value recorded, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    pub(crate) ids: SpanIds,
    pub(crate) value: f64,
    /// Since the Unix epoch.
    pub(crate) time: Duration,
}

impl Exemplar {
    /// An exemplar of `value`, recorded now.
    pub(crate) fn now(ids: SpanIds, value: f64) -> Self {
        Self {
            ids,
            value,
            time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
}

/// The newest exemplar of one bucket or counter.
#[derive(Debug, Default)]
pub(crate) struct Slot(Mutex<Option<Exemplar>>);

impl Slot {
    pub(crate) const fn new() -> Self {
        Self(Mutex::new(None))
    }

    /// Replaces the exemplar, unless the slot is being read or written right
    /// now: then the new one is dropped (a writer never waits).
    pub(crate) fn store(&self, exemplar: Exemplar) {
        match self.0.try_lock() {
            Ok(mut slot) => *slot = Some(exemplar),
            Err(TryLockError::Poisoned(poisoned)) => *poisoned.into_inner() = Some(exemplar),
            Err(TryLockError::WouldBlock) => {}
        }
    }

    pub(crate) fn load(&self) -> Option<Exemplar> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A series' slots, allocated with its first exemplar.
#[derive(Debug, Default)]
pub(crate) struct Slots(OnceLock<Box<[Slot]>>);

impl Slots {
    pub(crate) const fn new() -> Self {
        Self(OnceLock::new())
    }

    /// Stores `exemplar` in slot `index` of `len` slots.
    pub(crate) fn store(&self, len: usize, index: usize, exemplar: Exemplar) {
        let slots = self
            .0
            .get_or_init(|| (0..len).map(|_| Slot::new()).collect());
        if let Some(slot) = slots.get(index) {
            slot.store(exemplar);
        }
    }

    /// The exemplar in slot `index`, if any.
    pub(crate) fn load(&self, index: usize) -> Option<Exemplar> {
        self.0.get()?.get(index)?.load()
    }

    /// Whether no exemplar was ever stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.get().is_none()
    }
}

/// The bucket (an index into `bounds`, or `bounds.len()` for `+Inf`) a
/// value falls in: the first whose bound is at least the value, as
/// histograms count (`le` is inclusive).
pub(crate) fn bucket_index(bounds: &[f64], value: f64) -> usize {
    bounds.partition_point(|bound| *bound < value)
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceFlags, TraceState};

    use super::*;

    fn span(sampled: bool, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            remote,
            TraceState::default(),
        )
    }

    #[test]
    fn only_sampled_local_spans_give_ids() {
        assert_eq!(
            SpanIds::sampled(&span(true, false)),
            Some(SpanIds {
                trace_id: TraceId::from_bytes([1; 16]),
                span_id: SpanId::from_bytes([2; 8]),
            })
        );
        assert_eq!(SpanIds::sampled(&span(false, false)), None);
        assert_eq!(
            SpanIds::sampled(&span(true, true)),
            None,
            "a caller's span passed through is not ours"
        );
        assert_eq!(SpanIds::sampled(&SpanContext::empty_context()), None);
    }

    #[test]
    fn the_current_context_tells() {
        assert_eq!(SpanIds::current_sampled(), None, "no span");
        let cx = Context::new().with_remote_span_context(span(true, false));
        let _attached = cx.attach();
        assert!(SpanIds::current_sampled().is_some());
        {
            let unsampled = Context::new().with_remote_span_context(span(false, false));
            let _attached = unsampled.attach();
            assert_eq!(SpanIds::current_sampled(), None);
        }
        assert!(SpanIds::current_sampled().is_some());
    }

    #[test]
    fn the_newest_exemplar_replaces_the_old() {
        let ids = SpanIds::of(&span(true, false));
        let slots = Slots::new();
        assert!(slots.is_empty());
        assert_eq!(slots.load(0), None);
        slots.store(3, 1, Exemplar::now(ids, 0.5));
        slots.store(3, 1, Exemplar::now(ids, 0.7));
        assert_eq!(slots.load(1).map(|e| e.value), Some(0.7));
        assert_eq!(slots.load(0), None);
        slots.store(3, 7, Exemplar::now(ids, 0.9));
        assert_eq!(slots.load(7), None, "out of range: dropped");
    }

    #[test]
    fn values_fall_in_the_first_bucket_whose_bound_holds_them() {
        let bounds = [0.1, 0.5, 1.0];
        assert_eq!(bucket_index(&bounds, 0.0), 0);
        assert_eq!(bucket_index(&bounds, 0.1), 0, "le is inclusive");
        assert_eq!(bucket_index(&bounds, 0.10001), 1);
        assert_eq!(bucket_index(&bounds, 1.0), 2);
        assert_eq!(bucket_index(&bounds, 7.0), 3, "+Inf");
    }
}
