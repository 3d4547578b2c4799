use multiweb_telemetry::business::Gauge;
use multiweb_telemetry::business_metric;

/// Users
#[business_metric]
static USERS_TOTAL: Gauge;

fn main() {}
