//! `init` succeeds once per process; the second call is an error, not a panic.
//! (Its own test binary, so no other test shares the global state.)

use multiweb_telemetry::{Error, Telemetry};

#[test]
fn second_init_is_an_error() {
    let first = Telemetry::builder()
        .log_writer(std::io::sink())
        .try_init()
        .expect("first init succeeds");
    let second = multiweb_telemetry::init();
    assert!(
        matches!(second, Err(Error::AlreadyInitialized)),
        "second init: {second:?}"
    );
    assert_eq!(
        second.unwrap_err().to_string(),
        "telemetry is already initialized: `init()` may succeed only once per process"
    );
    // The first guard still works after the failed second call.
    assert!(
        first
            .render_metrics()
            .contains("# TYPE process_cpu_seconds_total counter")
    );
    first.shutdown();
}
