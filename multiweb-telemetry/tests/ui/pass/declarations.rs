use multiweb_telemetry::business::{Counter, CounterVec, Gauge, GaugeVec, Histogram, Summary};
use multiweb_telemetry::{business_metric, LabelValue};

#[derive(LabelValue)]
enum PaymentMethod {
    Card,
    BankTransfer,
}

/// Total number of products created
#[business_metric]
static PRODUCTS_CREATED: Counter;

/// Already ends in _total: not doubled
#[business_metric]
static ORDERS_TOTAL: Counter;

/// Number of currently active users
#[business_metric]
pub static ACTIVE_USERS: Gauge;

/// Total number of completed transactions
#[business_metric(labels(method: PaymentMethod))]
static TRANSACTIONS_COMPLETED: CounterVec<PaymentMethod>;

/// Open carts by payment method
#[business_metric(labels(method: PaymentMethod))]
static OPEN_CARTS: GaugeVec<PaymentMethod>;

/// Checkout duration in seconds
#[business_metric(buckets = [0.1, 0.5, 1.0])]
static CHECKOUT_DURATION_SECONDS: Histogram;

/// Basket size
#[business_metric(namespace = "shop")]
static BASKET_ITEMS: Summary;

/// Revenue in cents
#[business_metric(name = "multiweb_revenue_cents_total")]
static REVENUE: Counter;

#[business_metric(count = PRODUCTS_CREATED)]
fn create(ok: bool) -> Result<u32, String> {
    if ok { Ok(1) } else { Err("no".into()) }
}

#[business_metric(count = ORDERS_TOTAL)]
async fn order() {}

fn main() {
    assert_eq!(PRODUCTS_CREATED.name(), "multiweb_products_created_total");
    assert_eq!(ORDERS_TOTAL.name(), "multiweb_orders_total");
    assert_eq!(REVENUE.name(), "multiweb_revenue_cents_total");
    let _ = create(true);
    let _ = order();
    ACTIVE_USERS.set(1.0);
    TRANSACTIONS_COMPLETED.increment(&PaymentMethod::BankTransfer);
    OPEN_CARTS.add(&PaymentMethod::Card, 1.0);
    CHECKOUT_DURATION_SECONDS.record(0.2);
    BASKET_ITEMS.record(3.0);
}
