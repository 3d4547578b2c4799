use multiweb_telemetry::business_metric;

/// Requests per user
#[business_metric(labels(user_id: String))]
static REQUESTS_BY_USER: multiweb_telemetry::business::CounterVec<String>;

fn main() {}
