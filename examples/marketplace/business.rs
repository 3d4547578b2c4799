//! The guide's business metrics (its "Business Metrics" dashboard).
//!
//! Each function records one business event.

use metrics::{counter, gauge};

/// How a transaction was paid; a closed set, so it can be a label.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PaymentMethod {
    Card,
    BankTransfer,
}

impl PaymentMethod {
    fn label(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::BankTransfer => "bank_transfer",
        }
    }
}

/// Registers help texts and shows every series at 0 before its first event.
pub(crate) fn declare() {
    metrics::describe_counter!(
        "multiweb_products_created_total",
        "Total number of products created"
    );
    metrics::describe_counter!(
        "multiweb_transactions_completed_total",
        "Total number of completed transactions"
    );
    metrics::describe_gauge!("multiweb_active_users", "Number of currently active users");
    metrics::describe_counter!(
        "multiweb_users_registered_total",
        "Total number of users registered"
    );
    metrics::describe_counter!(
        "multiweb_messages_sent_total",
        "Total number of messages sent"
    );
    metrics::describe_counter!(
        "multiweb_revenue_cents_total",
        "Revenue of completed transactions, in the currency's minor unit (cents)"
    );
    counter!("multiweb_products_created_total").absolute(0);
    for method in [PaymentMethod::Card, PaymentMethod::BankTransfer] {
        counter!("multiweb_transactions_completed_total", "method" => method.label()).absolute(0);
    }
    gauge!("multiweb_active_users").set(0.0);
    counter!("multiweb_users_registered_total").absolute(0);
    counter!("multiweb_messages_sent_total").absolute(0);
    counter!("multiweb_revenue_cents_total").absolute(0);
}

pub(crate) fn product_created() {
    counter!("multiweb_products_created_total").increment(1);
}

pub(crate) fn transaction_completed(method: PaymentMethod, amount_cents: u64) {
    counter!("multiweb_transactions_completed_total", "method" => method.label()).increment(1);
    counter!("multiweb_revenue_cents_total").increment(amount_cents);
}

pub(crate) fn active_users(count: usize) {
    gauge!("multiweb_active_users").set(count as f64);
}

pub(crate) fn user_registered() {
    counter!("multiweb_users_registered_total").increment(1);
}

pub(crate) fn message_sent() {
    counter!("multiweb_messages_sent_total").increment(1);
}
