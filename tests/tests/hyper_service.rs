//! The HTTP layer on a plain hyper service, without axum: the route
//! classifier names the routes, and the series, span and access line are
//! the ones an axum router gets.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use multiweb_telemetry::testing::MetricsCapture;
use multiweb_tests::{LogBuffer, http_request};
use tower::{Layer as _, ServiceExt as _};

/// The application: a product list and product lookups, as plain hyper.
async fn products(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match request.uri().path() {
        "/api/v1/products/" => (StatusCode::OK, "[]"),
        path if path.starts_with("/api/v1/products/") => (StatusCode::OK, "{\"id\":7}"),
        _ => (StatusCode::NOT_FOUND, "no such product"),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

/// The route templates, as a router would declare them.
fn classify(_: &http::Method, uri: &http::Uri) -> Option<Cow<'static, str>> {
    match uri.path() {
        "/api/v1/products/" => Some(Cow::Borrowed("/api/v1/products/")),
        path if path.starts_with("/api/v1/products/") => {
            Some(Cow::Borrowed("/api/v1/products/{id}"))
        }
        _ => None,
    }
}

#[test]
fn a_plain_hyper_service_gets_the_same_series_and_access_lines() {
    let capture = MetricsCapture::new();
    let logs = LogBuffer::default();
    let (dispatch, guard) = multiweb_telemetry::Telemetry::builder()
        .log_writer(logs.clone())
        .build_dispatch()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let service = multiweb_telemetry::http::layer()
        .route_classifier(classify)
        .layer(tower::service_fn(products));
    // The server runs on this thread (its recorder and subscriber are this
    // thread's); the client on another.
    let client = std::thread::spawn(move || {
        let answers: Vec<u16> = [
            "/api/v1/products/",
            "/api/v1/products/7",
            "/api/v1/products/8?token=x",
            "/elsewhere",
        ]
        .iter()
        .map(|path| http_request(addr, "GET", path, &[], "").status)
        .collect();
        answers
    });
    {
        let _recorder = capture.enter();
        let _subscriber = tracing::dispatcher::set_default(&dispatch);
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            for _ in 0..4 {
                let (stream, _) = listener.accept().await.unwrap();
                let service = service.clone();
                let hyper_service =
                    hyper::service::service_fn(move |request| service.clone().oneshot(request));
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), hyper_service)
                    .await
                    .unwrap();
            }
        });
    }
    assert_eq!(client.join().unwrap(), [200, 200, 200, 404]);
    drop(dispatch);
    drop(guard);
    let metrics = capture.exposition();
    let count = |path: &str, status: &str| {
        metrics.value(
            "http_requests_total",
            &[("method", "GET"), ("path", path), ("status", status)],
        )
    };
    assert_eq!(count("/api/v1/products/", "200"), Some(1.0));
    assert_eq!(count("/api/v1/products/{id}", "200"), Some(2.0));
    assert_eq!(count("unmatched", "404"), Some(1.0));
    assert_eq!(metrics.find("http_requests_total", &[]).count(), 3);
    let access = logs.access_lines();
    assert_eq!(access.len(), 4, "{access:#?}");
    assert_eq!(access[2]["path"], "/api/v1/products/{id}");
    assert_eq!(access[2]["url.path"], "/api/v1/products/8");
    assert_eq!(
        access[2]["message"].as_str().unwrap().split(' ').nth(1),
        Some("/api/v1/products/8")
    );
    assert_eq!(access[3]["path"], "/elsewhere");
    for line in &access {
        assert_eq!(line["trace_id"].as_str().map(str::len), Some(32), "{line}");
        assert!(!line.to_string().contains("token"), "{line}");
    }
}
