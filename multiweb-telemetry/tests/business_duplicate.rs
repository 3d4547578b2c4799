//! The same name declared twice is an error at start-up naming both places.
//! (Its own test binary: it calls the global `init`.)

use multiweb_telemetry::business::Counter;
use multiweb_telemetry::{Error, Telemetry, business_metric};

/// Orders placed
#[business_metric(name = "dup_orders_total")]
static ORDERS: Counter;

/// Orders placed, again
#[business_metric(name = "dup_orders_total")]
static ORDERS_AGAIN: Counter;

#[test]
fn init_names_both_declarations() {
    ORDERS.increment();
    ORDERS_AGAIN.increment();
    let err = Telemetry::builder()
        .log_writer(std::io::sink())
        .try_init()
        .unwrap_err();
    let Error::DuplicateMetric {
        name,
        first,
        second,
    } = &err
    else {
        panic!("expected DuplicateMetric, got {err:?}");
    };
    assert_eq!(*name, "dup_orders_total");
    let mut places = [first.clone(), second.clone()];
    places.sort();
    let file = "multiweb-telemetry/tests/business_duplicate.rs";
    assert_eq!(places, [format!("{file}:12"), format!("{file}:8")]);
    assert_eq!(
        err.to_string(),
        format!("business metric dup_orders_total is declared twice: at {first} and at {second}")
    );
}
