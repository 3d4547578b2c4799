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
