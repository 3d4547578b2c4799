//! Random `traceparent`, `tracestate` and `baggage` headers never cause a
//! panic or an error response; an invalid `traceparent` starts a new trace.
//! In-process, with a dispatch of this test's own (`build_dispatch`).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use multiweb_telemetry::Telemetry;
use tower::ServiceExt;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items[i]
    }

    /// A header value: often almost valid, sometimes garbage, sometimes huge.
    fn header(&mut self) -> String {
        const PARTS: &[&str] = &[
            "00",
            "ff",
            "01",
            "-",
            "--",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00000000000000000000000000000000",
            "00f067aa0ba902b7",
            "0000000000000000",
            "zz",
            "é",
            "=",
            ",",
            ";",
            " ",
            "\t",
            "key=value",
            "a=b=c",
            "%",
            "%ZZ",
            "ĀĀ",
            "x",
        ];
        let len = self.next() % 12;
        let mut value: String = (0..len).map(|_| self.pick(PARTS)).collect();
        if self.next().is_multiple_of(50) {
            value.push_str(&"9".repeat(10_000));
        }
        value
    }
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn random_trace_headers_never_break_a_request() {
    let logs = Sink::default();
    let (dispatch, guard) = Telemetry::builder()
        .log_writer(logs.clone())
        .build_dispatch()
        .unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(multiweb_telemetry::http::layer());
    let mut generator = Gen(0x5eed_1234_abcd_9876);
    let given = "4bf92f3577b34da6a3ce929d0e0e4736";
    for i in 0..2_000_u32 {
        let mut request = Request::get("/");
        for name in ["traceparent", "tracestate", "baggage"] {
            let value = generator.header();
            if i.is_multiple_of(10) && name == "traceparent" {
                continue;
            }
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                request = request.header(name, value);
            }
        }
        // Every tenth request carries a valid parent, to show it is followed.
        if i.is_multiple_of(10) {
            request = request.header("traceparent", format!("00-{given}-00f067aa0ba902b7-01"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {i}");
    }
    drop(guard);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2_000, "one access line per request");
    let continued = lines.iter().filter(|l| l["trace_id"] == given).count();
    assert_eq!(
        continued, 200,
        "exactly the requests with a valid traceparent continue it"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["trace_id"].as_str().is_some_and(|t| t.len() == 32))
    );
}

/// The access line's `trace_id` for one request carrying `traceparent`.
async fn trace_id_for(app: &Router, logs: &Sink, traceparent: &str) -> String {
    logs.0.lock().unwrap().clear();
    let request = Request::get("/")
        .header("traceparent", traceparent)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200, "{traceparent:?}");
    // The request ends with its body.
    drop(response);
    // The access line is written through the non-blocking writer: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        if let Some(line) = text.lines().next() {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            return line["trace_id"].as_str().unwrap_or_default().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no access line");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Malformed `traceparent` headers, the W3C Trace Context rules they
/// break, and the trace id a lenient parser reads from them.
const MALFORMED: &[(&str, &str)] = &[
    ("00-1-1-01", "short ids, read as 000…0001"),
    (
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "a 31-digit trace id, left-padded",
    ),
    (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0f067aa0ba902b7-01",
        "a 15-digit parent id",
    ),
    (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "one-digit flags",
    ),
    (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
        "flags with a sign",
    ),
    (
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "a trace id with a sign",
    ),
    (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b7-01",
        "a parent id with a sign",
    ),
    (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",
        "version 00 with a fifth field",
    ),
    (
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "version ff",
    ),
    (
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.future",
        "a future version whose flags are not followed by a dash",
    ),
];

/// What a lenient parser reads as the trace id: the second field as a
/// number, left-padded.
fn lenient_trace_id(traceparent: &str) -> Option<String> {
    let field = traceparent.split('-').nth(1)?;
    u128::from_str_radix(field, 16)
        .ok()
        .map(|id| format!("{id:032x}"))
}

#[tokio::test]
async fn malformed_traceparent_starts_a_new_trace() {
    let logs = Sink::default();
    let (dispatch, _guard) = Telemetry::builder()
        .log_writer(logs.clone())
        .build_dispatch()
        .unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(multiweb_telemetry::http::layer());

    for (traceparent, broken) in MALFORMED {
        let trace_id = trace_id_for(&app, &logs, traceparent).await;
        assert_eq!(trace_id.len(), 32, "{traceparent}: a trace of its own");
        assert_ne!(
            Some(&trace_id),
            lenient_trace_id(traceparent).as_ref(),
            "{traceparent} ({broken}) must start a new trace"
        );
    }

    // Valid ones continue, a future version with more fields included, and
    // whitespace around the value (not part of an HTTP field value) is fine.
    for traceparent in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t",
    ] {
        assert_eq!(
            trace_id_for(&app, &logs, traceparent).await,
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{traceparent:?} continues"
        );
    }
}
