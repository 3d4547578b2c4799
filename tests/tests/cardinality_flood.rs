//! A cardinality flood: 1,000,000 requests with random paths, random
//! methods and random `x-user-id`s keep `/metrics` within the series cap,
//! and resident memory grows by less than 10 MB after the first 10,000.
//! (Its own test binary, so its memory is its own.)

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use axum::routing::get;
use multiweb_telemetry::testing::MetricsCapture;
use tower::ServiceExt;

const REQUESTS: u64 = 1_000_000;
const CAP: usize = 500;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn a_million_random_requests_stay_within_the_cap_and_memory_bound() {
    let capture = MetricsCapture::new();
    let _recorder = capture.enter();
    // Worst case for cardinality: the route classifier returns raw paths.
    let app = Router::new()
        .route("/api/v1/products/{id}", get(|| async { "ok" }))
        .layer(
            multiweb_telemetry::http::layer()
                .max_series(CAP)
                .span(false)
                .access_log(false)
                .route_classifier(|_, uri| Some(uri.path().to_owned().into())),
        );
    let methods = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::from_bytes(b"BREW").unwrap(),
        Method::from_bytes(b"X-RANDOM").unwrap(),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut baseline = 0;
    for i in 0..REQUESTS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let method = methods[usize::try_from(seed % 5).unwrap()].clone();
        let request = Request::builder()
            .method(method)
            .uri(format!("/u/{seed:x}/{}", i % 97))
            .header("x-user-id", (seed >> 8).to_string())
            .body(Body::empty())
            .unwrap();
        let _ = app.clone().oneshot(request).await.unwrap();
        // What the upkeep thread and scrapes do in a running service.
        if i % 50_000 == 49_999 {
            let _ = capture.render();
        }
        if i == 10_000 {
            let _ = capture.render();
            baseline = resident_bytes();
        }
    }
    let exposition = capture.exposition();
    let requests = exposition.find("http_requests_total", &[]).count();
    let in_flight = exposition.find("http_requests_in_flight", &[]).count();
    let buckets = exposition
        .find("http_request_duration_seconds_count", &[])
        .count();
    // Each cap, plus overflow series (one per method, and per status: all 404 here).
    for (name, count) in [
        ("requests", requests),
        ("in flight", in_flight),
        ("durations", buckets),
    ] {
        assert!(count <= CAP + 5, "{name}: {count} label sets");
    }
    assert!(
        exposition
            .value("multiweb_telemetry_http_series_overflow_total", &[])
            .unwrap()
            > 990_000.0
    );
    let text = capture.render();
    assert!(
        !text.contains("x-user-id") && !text.contains("user_id"),
        "no user id label"
    );
    let growth = resident_bytes().saturating_sub(baseline);
    assert!(
        growth < 10 * 1024 * 1024,
        "resident memory grew by {growth} bytes"
    );
}
