use multiweb_telemetry::business::Counter;
use multiweb_telemetry::business_metric;

#[business_metric]
static SIGNUPS: Counter;

fn main() {
    SIGNUPS.increment();
}
