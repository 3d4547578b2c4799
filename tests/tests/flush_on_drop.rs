//! Dropping the guard flushes finished spans to the collector, without
//! deadlocking a current-thread runtime. (Its own test binary: it installs
//! the global telemetry.)

use multiweb_telemetry::{OtlpProtocol, Telemetry};
use multiweb_tests::Collector;

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_guard_flushes_spans_on_a_current_thread_runtime() {
    let collector = Collector::start();
    let telemetry = Telemetry::builder()
        .service_name("flush-test")
        .otlp_endpoint(format!("http://{}", collector.grpc))
        .otlp_protocol(OtlpProtocol::Grpc)
        .log_writer(std::io::sink())
        .try_init()
        .unwrap();
    for i in 0..3 {
        let span = tracing::info_span!("unit_of_work", i);
        let _entered = span.enter();
        tracing::info!("working");
    }
    // Still inside the runtime: the flush must not need it.
    drop(telemetry);
    // The exporter is shut down now, so nothing this process does can send a
    // span any more: whatever the collector prints from here on was received
    // before `drop` returned. rotel acknowledges an export before it prints
    // it, so wait for the printout instead of reading it once.
    let spans = collector.wait_for(|spans| spans.len() >= 3);
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names, ["unit_of_work"; 3],
        "every span was exported, once, before drop returned"
    );
    assert_eq!(
        spans[0].resource_attribute("service.name"),
        Some("Str(flush-test)")
    );
}
