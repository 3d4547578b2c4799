use multiweb_telemetry::business::Counter;
use multiweb_telemetry::business_metric;

/// Products created
#[business_metric]
static PRODUCTS_CREATED: Counter;

#[business_metric(count = PRODUCTS_CREATED)]
fn create(name: &str) -> Result<u64, String> {
    let id: u64 = name;
    Ok(id)
}

fn main() {}
