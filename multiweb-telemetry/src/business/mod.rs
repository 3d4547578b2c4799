//! Business metrics, declared once with `#[business_metric]`, checked at
//! compile time, and incremented at the cost of an atomic add.
//!
//! ```
//! use multiweb_telemetry::business::{Counter, CounterVec, Gauge};
//! use multiweb_telemetry::{business_metric, LabelValue};
//!
//! /// Total number of products created
//! #[business_metric]
//! static PRODUCTS_CREATED: Counter; // multiweb_products_created_total
//!
//! /// Number of currently active users
//! #[business_metric]
//! static ACTIVE_USERS: Gauge; // multiweb_active_users
//!
//! #[derive(LabelValue)]
//! enum PaymentMethod {
//!     Card,
//!     BankTransfer, // the label value `bank_transfer`
//! }
//!
//! /// Total number of completed transactions
//! #[business_metric(labels(method: PaymentMethod))]
//! static TRANSACTIONS_COMPLETED: CounterVec<PaymentMethod>;
//!
//! /// Counts each call that returns `Ok`.
//! #[business_metric(count = PRODUCTS_CREATED)]
//! fn create_product(name: &str) -> Result<u64, String> {
//!     if name.is_empty() { Err("empty name".into()) } else { Ok(1) }
//! }
//!
//! create_product("Lamp").unwrap();
//! create_product("").unwrap_err();
//! TRANSACTIONS_COMPLETED.increment(&PaymentMethod::Card);
//! ACTIVE_USERS.set(3.0);
//! assert_eq!(PRODUCTS_CREATED.get(), 1);
//! assert_eq!(PRODUCTS_CREATED.name(), "multiweb_products_created_total");
//! assert_eq!(TRANSACTIONS_COMPLETED.get(&PaymentMethod::BankTransfer), 0);
//! ```
//!
//! # Rules checked at compile time
//!
//! - The doc comment is required: it becomes the HELP text.
//! - The name is `<namespace>_<static name in lowercase>` (`namespace =
//!   "..."` changes `multiweb`; `name = "..."` sets it whole). It must be
//!   snake_case; counters get `_total` (added if missing, never doubled);
//!   gauges, histograms and summaries must not end in `_total`; the suffixes
//!   `_bucket`, `_sum`, `_count` and `_created` are reserved; units are base
//!   units (`_seconds`, `_bytes`, not `_milliseconds` or `_kilobytes`).
//! - Label values come from closed sets: an enum deriving [`LabelValue`]. A
//!   `String` label (the guide's `user_id` anti-example) is a compile error.
//! - The same name declared twice is an error at start-up
//!   ([`crate::Error::DuplicateMetric`]) naming both
//!   places.
//!
//! # Export
//!
//! Every declared metric is registered where it is declared (through
//! `inventory`; no central list) and exported on `/metrics` from the first
//! scrape: counters at 0, and labelled metrics with every label value. The
//! statics work before [`init`](crate::init) and in tests: they are plain
//! atomics, and `testing::MetricsCapture` (feature `testing`) renders
//! them too. They are process-wide, so a test running beside others should
//! assert on the change of [`Counter::get`], not on its absolute value.
//!
//! Types: [`Counter`], [`CounterVec`], [`Gauge`], [`GaugeVec`],
//! [`Histogram`] and [`Summary`] (the guide's four metric types).
//!
//! # Exemplars
//!
//! Counters and histograms recorded inside a span whose trace is sampled
//! keep that span's `trace_id` and `span_id` as the exemplar of their sample
//! (a histogram's: of the bucket that counts the value; the newest replaces
//! the old), which the OpenMetrics answer of `/metrics` carries (see
//! [`metrics`](crate::metrics#openmetrics-and-exemplars)). Outside a sampled
//! span, recording costs one more read of the current OpenTelemetry
//! context, a thread-local, and a branch.

mod counter;
mod gauge;
mod histogram;
mod local;
mod meta;

use std::collections::HashMap;

pub use counter::{Counter, CounterVec};
pub use gauge::{Gauge, GaugeVec};
pub use histogram::{Histogram, SUMMARY_WINDOW, Summary};
pub use meta::{Kind, LabelValue, Meta};

use crate::Error;

/// A declared metric, as the exporter sees it.
pub trait Family: Sync {
    /// Its name, HELP, type and place of declaration.
    fn meta(&self) -> &'static Meta;
    /// Appends its text exposition.
    fn render(&self, out: &mut String);
}

/// One declared metric, submitted by `#[business_metric]`.
#[derive(Clone, Copy)]
pub struct Registration(&'static dyn Family);

impl Registration {
    /// Used by `#[business_metric]`.
    #[doc(hidden)]
    pub const fn new(family: &'static dyn Family) -> Self {
        Self(family)
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Registration")
            .field(&self.0.meta().name)
            .finish()
    }
}

inventory::collect!(Registration);

/// Every declared metric, sorted by name.
fn declared() -> Vec<&'static dyn Family> {
    let mut all: Vec<&'static dyn Family> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    all.sort_by_key(|f| f.meta().name);
    all
}

/// Appends the exposition of every declared metric.
pub(crate) fn render(out: &mut String) {
    for family in declared() {
        family.render(out);
        out.push('\n');
    }
}

/// Fails when two declarations export the same name.
pub(crate) fn check_duplicates() -> Result<(), Error> {
    let mut seen: HashMap<&'static str, &'static Meta> = HashMap::new();
    for family in declared() {
        let meta = family.meta();
        if let Some(first) = seen.insert(meta.name, meta) {
            return Err(Error::DuplicateMetric {
                name: meta.name,
                first: first.location(),
                second: meta.location(),
            });
        }
    }
    Ok(())
}

/// Implemented by metrics a function annotation can count.
pub trait Increment {
    /// Adds one.
    fn increment_by_one(&self);
}

impl Increment for Counter {
    /// Adds one to the calling thread's shard of the counter: a plain load
    /// and store instead of a locked add, which would wait for the stores
    /// the function just made (`BENCHMARKS.md` has the measurements).
    #[inline]
    fn increment_by_one(&self) {
        self.increment_local();
    }
}

/// Used by the code `#[business_metric]` generates.
#[doc(hidden)]
pub mod __private {
    pub use inventory;

    use super::{Counter, CounterVec, Gauge, GaugeVec, Histogram, Kind, LabelValue, Meta, Summary};

    static PLACEHOLDER_META: Meta = Meta::new("placeholder", "", Kind::Counter, None, "", 0);

    /// A value of each metric type, emitted in place of a declaration that
    /// has a compile error, so that uses elsewhere add no errors of their own.
    pub trait Placeholder {
        const PLACEHOLDER: Self;
    }

    impl Placeholder for Counter {
        const PLACEHOLDER: Self = Counter::new(&PLACEHOLDER_META);
    }
    impl Placeholder for Gauge {
        const PLACEHOLDER: Self = Gauge::new(&PLACEHOLDER_META);
    }
    impl Placeholder for Histogram {
        const PLACEHOLDER: Self = Histogram::new(&PLACEHOLDER_META, &[], &[]);
    }
    #[allow(
        clippy::declare_interior_mutable_const,
        reason = "only ever copied into a static"
    )]
    impl Placeholder for Summary {
        const PLACEHOLDER: Self = Summary::new(&PLACEHOLDER_META);
    }
    impl<L: LabelValue> Placeholder for CounterVec<L> {
        const PLACEHOLDER: Self = CounterVec::new(&PLACEHOLDER_META, &[]);
    }
    impl<L: LabelValue> Placeholder for GaugeVec<L> {
        const PLACEHOLDER: Self = GaugeVec::new(&PLACEHOLDER_META, &[]);
    }

    /// `Result` values count when `Ok`.
    pub trait IsSuccess {
        fn __multiweb_is_success(&self) -> bool;
    }

    impl<T, E> IsSuccess for Result<T, E> {
        #[inline]
        fn __multiweb_is_success(&self) -> bool {
            self.is_ok()
        }
    }

    /// Any other return value counts (chosen by auto-ref when the value is
    /// not a `Result`).
    pub trait AlwaysSuccess {
        fn __multiweb_is_success(&self) -> bool;
    }

    impl<T> AlwaysSuccess for &T {
        #[inline]
        fn __multiweb_is_success(&self) -> bool {
            true
        }
    }
}
