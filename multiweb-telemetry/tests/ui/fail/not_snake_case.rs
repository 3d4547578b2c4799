use multiweb_telemetry::business::Counter;
use multiweb_telemetry::business_metric;

/// Orders
#[business_metric(name = "multiweb_Orders_total")]
static ORDERS: Counter;

fn main() {}
