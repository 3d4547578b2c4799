//! `Signals::METRICS`: metrics in one line, and nothing else per request.
//! (Its own test binary: `init` installs global state once per process.)

use std::io;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use http_body_util::BodyExt;
use multiweb_telemetry::{Signals, Telemetry};
use tower::ServiceExt;

/// Counts what is written to it: with logs off, nothing may be.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<usize>>);

impl io::Write for Written {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        *self.0.lock().unwrap() += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn metrics_only_installs_no_subscriber_and_the_layer_records_metrics_only() {
    let written = Written::default();
    let telemetry = Telemetry::builder()
        .signals(Signals::METRICS)
        .log_writer(written.clone())
        .try_init()
        .expect("init");
    assert!(
        !tracing::dispatcher::has_been_set(),
        "no subscriber without logs and traces"
    );
    let app = Router::new()
        .route("/api/v1/products/", get(|| async { "[]" }))
        .route(
            "/api/v1/debug/error",
            get(|| async {
                tracing::error!(error = "boom", "failed");
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "")
            }),
        )
        .layer(multiweb_telemetry::http::layer());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for uri in [
            "/api/v1/products/",
            "/api/v1/products/",
            "/api/v1/debug/error",
        ] {
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            response.into_body().collect().await.unwrap();
        }
    });
    let exposition = telemetry.render_metrics();
    let series = |line: &str| exposition.lines().any(|l| l == line);
    assert!(
        series(r#"http_requests_total{method="GET",path="/api/v1/products/",status="200"} 2"#),
        "{exposition}"
    );
    assert!(
        series(r#"http_requests_total{method="GET",path="/api/v1/debug/error",status="500"} 1"#),
        "{exposition}"
    );
    assert!(exposition.contains("# TYPE process_cpu_seconds_total counter"));
    assert!(
        !exposition.contains("multiweb_telemetry_panics_total"),
        "no panic hook without logs"
    );
    drop(telemetry);
    assert_eq!(*written.0.lock().unwrap(), 0, "no log line at all");
}
