use multiweb_telemetry::business::Gauge;
use multiweb_telemetry::business_metric;

/// Items in the queue
#[business_metric(name = "multiweb_queue_count")]
static QUEUE: Gauge;

fn main() {}
