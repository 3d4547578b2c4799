//! Declared business metrics on `/metrics`: exact text before and after
//! increments, and the function form counting only successes.

use multiweb_telemetry::business::{Counter, CounterVec, Gauge, Histogram};
use multiweb_telemetry::testing::{Exposition, MetricsCapture};
use multiweb_telemetry::{LabelValue, business_metric};

#[derive(LabelValue)]
enum PaymentMethod {
    Card,
    BankTransfer,
}

/// Total number of completed transactions
#[business_metric(namespace = "bt", labels(method: PaymentMethod))]
static TRANSACTIONS_COMPLETED: CounterVec<PaymentMethod>;

/// Total number of products created
#[business_metric(namespace = "bt")]
static PRODUCTS_CREATED: Counter;

/// Number of currently active users
#[business_metric(namespace = "bt")]
static ACTIVE_USERS: Gauge;

/// Checkout duration in seconds
#[business_metric(namespace = "bt", buckets = [0.5, 1.0])]
static CHECKOUT_DURATION_SECONDS: Histogram;

/// Counted syncs
#[business_metric(namespace = "bt")]
static SYNC_CALLS: Counter;

/// Counted asyncs
#[business_metric(namespace = "bt")]
static ASYNC_CALLS: Counter;

/// Counted plain calls
#[business_metric(namespace = "bt")]
static PLAIN_CALLS: Counter;

#[business_metric(count = SYNC_CALLS)]
fn sync_call(ok: bool) -> Result<&'static str, String> {
    if ok {
        Ok("done")
    } else {
        Err("failed".to_owned())
    }
}

#[business_metric(count = ASYNC_CALLS)]
async fn async_call(ok: bool) -> std::io::Result<u8> {
    tokio::task::yield_now().await;
    if ok {
        Ok(1)
    } else {
        Err(std::io::Error::other("failed"))
    }
}

#[business_metric(count = PLAIN_CALLS)]
fn plain_call(x: u32) -> u32 {
    x + 1
}

/// The lines of metric family `name`, from its `# HELP` line to the next family.
fn family(text: &str, name: &str) -> String {
    let help = format!("# HELP {name} ");
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with(&help))
        .enumerate()
        .take_while(|(i, line)| !line.is_empty() && (*i == 0 || !line.starts_with("# HELP ")))
        .map(|(_, line)| line)
        .collect();
    lines.join("\n")
}

#[test]
fn declared_metrics_are_exported_at_zero_then_counted() {
    let capture = MetricsCapture::new();
    let before = capture.render();
    assert_eq!(
        family(&before, "bt_transactions_completed_total"),
        "# HELP bt_transactions_completed_total Total number of completed transactions\n\
         # TYPE bt_transactions_completed_total counter\n\
         bt_transactions_completed_total{method=\"card\"} 0\n\
         bt_transactions_completed_total{method=\"bank_transfer\"} 0"
    );
    assert_eq!(
        family(&before, "bt_checkout_duration_seconds"),
        "# HELP bt_checkout_duration_seconds Checkout duration in seconds\n\
         # TYPE bt_checkout_duration_seconds histogram\n\
         bt_checkout_duration_seconds_bucket{le=\"0.5\"} 0\n\
         bt_checkout_duration_seconds_bucket{le=\"1\"} 0\n\
         bt_checkout_duration_seconds_bucket{le=\"+Inf\"} 0\n\
         bt_checkout_duration_seconds_sum 0\n\
         bt_checkout_duration_seconds_count 0"
    );

    TRANSACTIONS_COMPLETED.increment(&PaymentMethod::BankTransfer);
    TRANSACTIONS_COMPLETED.increment_by(&PaymentMethod::BankTransfer, 2);
    PRODUCTS_CREATED.increment();
    ACTIVE_USERS.set(4.0);
    ACTIVE_USERS.add(-1.0);
    CHECKOUT_DURATION_SECONDS.record(0.7);
    CHECKOUT_DURATION_SECONDS.record(0.2);

    let after = capture.render();
    assert_eq!(
        family(&after, "bt_transactions_completed_total"),
        "# HELP bt_transactions_completed_total Total number of completed transactions\n\
         # TYPE bt_transactions_completed_total counter\n\
         bt_transactions_completed_total{method=\"card\"} 0\n\
         bt_transactions_completed_total{method=\"bank_transfer\"} 3"
    );
    assert_eq!(
        family(&after, "bt_products_created_total"),
        "# HELP bt_products_created_total Total number of products created\n\
         # TYPE bt_products_created_total counter\n\
         bt_products_created_total 1"
    );
    assert_eq!(
        family(&after, "bt_active_users"),
        "# HELP bt_active_users Number of currently active users\n\
         # TYPE bt_active_users gauge\n\
         bt_active_users 3"
    );
    assert_eq!(TRANSACTIONS_COMPLETED.get(&PaymentMethod::Card), 0);
    let metrics = Exposition::parse(&after);
    assert_eq!(
        metrics.value("bt_checkout_duration_seconds_bucket", &[("le", "0.5")]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("bt_checkout_duration_seconds_bucket", &[("le", "1")]),
        Some(2.0)
    );
    assert_eq!(
        metrics.value("bt_checkout_duration_seconds_count", &[]),
        Some(2.0)
    );
    assert_eq!(
        metrics.value("bt_checkout_duration_seconds_sum", &[]),
        Some(0.7 + 0.2)
    );
}

#[tokio::test]
async fn the_function_form_counts_only_successes() {
    assert_eq!(sync_call(true), Ok("done"));
    assert!(sync_call(false).is_err());
    assert_eq!(sync_call(true), Ok("done"));
    assert_eq!(SYNC_CALLS.get(), 2);

    assert_eq!(async_call(true).await.unwrap(), 1);
    assert!(async_call(false).await.is_err());
    assert_eq!(ASYNC_CALLS.get(), 1);

    assert_eq!(plain_call(1), 2);
    assert_eq!(plain_call(2), 3);
    assert_eq!(
        PLAIN_CALLS.get(),
        2,
        "a non-Result return counts every call"
    );
}
