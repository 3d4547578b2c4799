//! A flood of handler panics while stderr is a pipe nobody reads: the
//! server keeps answering, each panic is one JSON log line at error level
//! with the request's trace ids, and `multiweb_telemetry_panics_total`
//! counts them. (The standard panic hook writes to stderr synchronously: a
//! full pipe blocks the runtime's workers in that write.)

use std::time::Duration;

use multiweb_telemetry::testing::Exposition;
use multiweb_tests::{App, Unread, start_marketplace_unread, try_http_request};

/// How long one request may take before the server counts as frozen.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

const CLIENTS: usize = 4;

/// The trace id sent with panicking request `i`.
fn trace_id(i: usize) -> String {
    format!(
        "{:032x}",
        0x0af7_6519_16cd_43dd_8448_eb21_0000_0000_u128 + i as u128 + 1
    )
}

/// Sends `count` requests to the panicking route, each continuing a trace
/// of its own; every one must be answered with a 500.
fn panic_flood(app: &App, count: usize) {
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            scope.spawn(move || {
                for i in (client..count).step_by(CLIENTS) {
                    let traceparent = format!("00-{}-00f067aa0ba902b7-01", trace_id(i));
                    let response = try_http_request(
                        app.addr,
                        "GET",
                        "/api/v1/debug/panic",
                        &[("traceparent", &traceparent)],
                        "",
                        ANSWER_WITHIN,
                    )
                    .unwrap_or_else(|err| {
                        panic!("panicking request {i} got no answer ({err}): the server froze")
                    });
                    assert_eq!(response.status, 500, "request {i}");
                }
            });
        }
    });
}

fn panics_counted(app: &App) -> Option<f64> {
    let response = try_http_request(app.addr, "GET", "/metrics", &[], "", ANSWER_WITHIN)
        .expect("/metrics answers");
    Exposition::parse(&response.body).value("multiweb_telemetry_panics_total", &[])
}

/// Floods, then checks that the server answers and what the log and the
/// counter say; returns the panic lines.
fn flood_and_check(app: &App, count: usize) -> Vec<serde_json::Value> {
    panic_flood(app, count);
    let health = try_http_request(app.addr, "GET", "/health", &[], "", ANSWER_WITHIN)
        .expect("/health answers after the flood");
    assert_eq!(health.status, 200);

    let lines: Vec<serde_json::Value> = app
        .wait_stdout_count(count, |l| {
            l.contains(r#""target":"multiweb_telemetry::panic""#)
        })
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), count, "one JSON line per panic");
    assert_eq!(panics_counted(app), Some(count as f64));

    let mut seen: Vec<String> = Vec::with_capacity(count);
    for line in &lines {
        assert_eq!(line["level"], "error", "{line}");
        assert_eq!(line["error"], "simulated panic in a handler", "{line}");
        let message = line["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("panicked at examples/marketplace/api.rs:")
                && message.ends_with(": simulated panic in a handler"),
            "{line}"
        );
        // Inside the request span: its fields and the caller's trace.
        assert!(
            line.as_object()
                .unwrap()
                .values()
                .filter(|v| *v == "/api/v1/debug/panic")
                .count()
                >= 1,
            "the request's fields are on the line: {line}"
        );
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");
        seen.push(line["trace_id"].as_str().unwrap_or_default().to_owned());
    }
    seen.sort();
    let mut sent: Vec<String> = (0..count).map(trace_id).collect();
    sent.sort();
    assert_eq!(seen, sent, "each panic line carries its request's trace id");
    lines
}

#[test]
fn a_panic_flood_with_stderr_not_read_leaves_the_server_answering() {
    // Explicitly off: the test's own environment may ask for backtraces.
    let app = start_marketplace_unread(&[], &[("RUST_BACKTRACE", "0")], Some(Unread::Stderr));
    let lines = flood_and_check(&app, 2_000);
    assert!(
        lines.iter().all(|l| l.get("backtrace").is_none()),
        "no backtrace unless RUST_BACKTRACE asks for one"
    );
}

#[test]
fn with_rust_backtrace_each_line_carries_the_backtrace() {
    let app = start_marketplace_unread(&[], &[("RUST_BACKTRACE", "1")], Some(Unread::Stderr));
    let lines = flood_and_check(&app, 200);
    for line in &lines {
        let backtrace = line["backtrace"].as_str().unwrap_or_default();
        assert!(
            backtrace.contains("debug_panic"),
            "the backtrace shows the panicking handler: {line}"
        );
    }
}
