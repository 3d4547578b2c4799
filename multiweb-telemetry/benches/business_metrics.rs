//! The cost of counting a business event, in the same run: a raw atomic
//! add, the `metrics` facade looking the name up on each call, a declared
//! counter, a declared labelled counter, and a function annotated with
//! `#[business_metric(count = ...)]` against the same function without it.
//!
//! ```text
//! cargo bench -p multiweb-telemetry --bench business_metrics
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use multiweb_telemetry::business::{Counter, CounterVec};
use multiweb_telemetry::{LabelValue, business_metric};

#[derive(LabelValue, Clone, Copy)]
enum PaymentMethod {
    Card,
    BankTransfer,
}

/// Total number of products created
#[business_metric]
static PRODUCTS_CREATED: Counter;

/// Total number of completed transactions
#[business_metric(labels(method: PaymentMethod))]
static TRANSACTIONS_COMPLETED: CounterVec<PaymentMethod>;

/// Successful checkouts
#[business_metric]
static CHECKOUTS: Counter;

static RAW: AtomicU64 = AtomicU64::new(0);

#[inline(never)]
fn checkout_plain(amount: u64) -> Result<u64, &'static str> {
    if amount == 0 {
        Err("empty")
    } else {
        Ok(amount * 2)
    }
}

#[inline(never)]
#[business_metric(count = CHECKOUTS)]
fn checkout_counted(amount: u64) -> Result<u64, &'static str> {
    if amount == 0 {
        Err("empty")
    } else {
        Ok(amount * 2)
    }
}

fn business_metrics(c: &mut Criterion) {
    // A real recorder behind the facade, as `init()` installs.
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    c.bench_function("business/raw_atomic_fetch_add", |b| {
        b.iter(|| RAW.fetch_add(1, Ordering::Relaxed));
    });
    c.bench_function("business/metrics_facade_counter", |b| {
        b.iter(|| metrics::counter!("multiweb_products_created_total").increment(1));
    });
    c.bench_function("business/declared_counter", |b| {
        b.iter(|| PRODUCTS_CREATED.increment());
    });
    let methods = [PaymentMethod::Card, PaymentMethod::BankTransfer];
    let mut i = 0_usize;
    c.bench_function("business/declared_labelled_counter", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            TRANSACTIONS_COMPLETED.increment(black_box(&methods[i & 1]));
        });
    });
    c.bench_function("business/function_plain", |b| {
        b.iter(|| checkout_plain(black_box(21)));
    });
    c.bench_function("business/function_counted", |b| {
        b.iter(|| checkout_counted(black_box(21)));
    });
}

criterion_group!(benches, business_metrics);
criterion_main!(benches);
