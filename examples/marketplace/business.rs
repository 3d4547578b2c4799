//! The guide's business metrics (its "Business Metrics" dashboard), declared
//! once with `#[business_metric]`: each doc comment is the HELP text, and
//! every series is on `/metrics` at 0 from the first scrape.

use multiweb_telemetry::business::{Counter, CounterVec, Gauge};
use multiweb_telemetry::{LabelValue, business_metric};

/// How a transaction was paid; a closed set, so it can be a label.
#[derive(Debug, Clone, Copy, serde::Deserialize, LabelValue)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PaymentMethod {
    Card,
    BankTransfer,
}

/// Total number of products created
#[business_metric]
pub(crate) static PRODUCTS_CREATED: Counter;

/// Total number of completed transactions
#[business_metric(labels(method: PaymentMethod))]
pub(crate) static TRANSACTIONS_COMPLETED: CounterVec<PaymentMethod>;

/// Number of currently active users
#[business_metric]
pub(crate) static ACTIVE_USERS: Gauge;

/// Total number of users registered
#[business_metric]
pub(crate) static USERS_REGISTERED: Counter;

/// Total number of messages sent
#[business_metric]
pub(crate) static MESSAGES_SENT: Counter;

/// Revenue of completed transactions, in the currency's minor unit (cents)
#[business_metric]
pub(crate) static REVENUE_CENTS: Counter;
