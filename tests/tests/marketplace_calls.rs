//! The marketplace example calls a second service: a transaction is
//! charged with the payment stub the example starts on a port of its own,
//! through `multiweb_telemetry::client::middleware()`. In a real collector
//! (rotel) the trace shows SERVER → CLIENT → SERVER across the two
//! services, under one trace id; the call is on the marketplace's
//! `/metrics`.

use multiweb_telemetry::testing::Exposition;
use multiweb_tests::{Collector, ExportedSpan, http_request, start_marketplace};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

#[test]
fn a_transaction_is_charged_with_the_payment_service_under_one_trace() {
    let collector = Collector::start();
    let endpoint = format!("http://{}", collector.grpc);
    let app = start_marketplace(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "marketplace-calls"),
        ],
    );
    let traceparent = format!("00-{TRACE}-{CALLER}-01");
    let response = http_request(
        app.addr,
        "POST",
        "/api/v1/transactions/",
        &[("traceparent", &traceparent), ("x-user-id", "1000")],
        r#"{"amount_cents":1299,"method":"card"}"#,
    );
    assert_eq!(response.status, 201, "{}", response.body);

    let metrics = Exposition::parse(&app.get("/metrics", &[]).body);
    let calls = metrics
        .find("http_client_request_duration_seconds_count", &[])
        .collect::<Vec<_>>();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        calls[0].labels,
        [
            ("method".to_owned(), "POST".to_owned()),
            ("server_address".to_owned(), "127.0.0.1".to_owned()),
            ("status".to_owned(), "200".to_owned()),
        ]
    );
    assert_eq!(calls[0].value, 1.0);

    let service = |span: &ExportedSpan, name: &str| {
        span.resource_attribute("service.name") == Some(&format!("Str({name})")[..])
    };
    let spans = collector.wait_for(|spans| {
        let ours = spans.iter().filter(|s| s.trace_id == TRACE);
        ours.filter(|s| s.kind != "SPAN_KIND_INTERNAL").count() >= 3
    });
    let find = |name: &str, kind: &str, service_name: &str| {
        spans
            .iter()
            .find(|s| {
                s.trace_id == TRACE && s.name == name && s.kind == kind && service(s, service_name)
            })
            .unwrap_or_else(|| panic!("no {kind} span {name} of {service_name} in {spans:#?}"))
    };
    let request = find(
        "POST /api/v1/transactions/",
        "SPAN_KIND_SERVER",
        "marketplace-calls",
    );
    let call = find("POST", "SPAN_KIND_CLIENT", "marketplace-calls");
    let charge = find("POST /v1/charges", "SPAN_KIND_SERVER", "payment");
    assert_eq!(request.parent_id, CALLER);
    assert_eq!(call.parent_id, request.span_id, "{call:#?}");
    assert_eq!(charge.parent_id, call.span_id, "{charge:#?}");
    let url = call.attribute("url.full").expect("url.full");
    assert!(
        url.starts_with("Str(http://127.0.0.1:") && url.ends_with("/v1/charges)"),
        "{url}"
    );
    assert_eq!(
        call.attribute("http.response.status_code"),
        Some("Int(200)")
    );
    assert_eq!(call.status, "STATUS_CODE_UNSET");
    // The stub's handler span is a child of its request span.
    let authorize = find("authorize_charge", "SPAN_KIND_INTERNAL", "payment");
    assert_eq!(authorize.parent_id, charge.span_id);
}
