use multiweb_telemetry::business::Histogram;
use multiweb_telemetry::business_metric;

/// Checkout latency
#[business_metric]
static CHECKOUT_LATENCY_MILLISECONDS: Histogram;

fn main() {}
