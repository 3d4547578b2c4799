//! The added cost per outgoing call of the client layer and middleware,
//! against a bare client and against reqwest-tracing, in the same run.
//!
//! ```text
//! cargo bench -p multiweb-telemetry --features client --bench client
//! ```
//!
//! Each iteration GETs `/ok` from a local axum server (its own thread and
//! runtime, two bytes of body) and reads the body, on a current-thread
//! runtime, through:
//!
//! - `reqwest`: a bare `reqwest::Client`;
//! - `reqwest_middleware`: the same client in a
//!   `reqwest_middleware::ClientWithMiddleware` without middleware (what
//!   every middleware pays);
//! - `reqwest_tracing`: with reqwest-tracing 0.7's `TracingMiddleware`, its
//!   plain `tracing` span (its OpenTelemetry features stop at opentelemetry
//!   0.32, so it injects no `traceparent` here; the span still becomes an
//!   OpenTelemetry span through the bridge);
//! - `multiweb_reqwest`: with `client::middleware()`;
//! - `hyper` and `multiweb_hyper`: hyper-util's legacy client, bare and
//!   under `client::layer()`;
//! - `in_process` and `multiweb_in_process`: a tower service answering at
//!   once, without a socket, bare and under `client::layer()`: the layer's
//!   own cost without the loopback's noise.
//!
//! Every contender runs under one dispatch from `build_dispatch()` (logs to
//! a sink, `RUST_LOG=info`, every span sampled, none exported: no endpoint)
//! and one global Prometheus recorder. Every iteration builds its request
//! with `http::Request::get`, which `scripts/bench-instructions.sh` counts.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

use multiweb_telemetry::{Telemetry, TraceSampler};

/// Starts the called server on a thread of its own; its address.
fn start_server() -> std::net::SocketAddr {
    let (bound, addr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            bound.send(listener.local_addr().unwrap()).unwrap();
            let app = Router::new().route("/ok", get(|| async { "ok" }));
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr.recv().unwrap()
}

fn request(url: &str) -> reqwest::Request {
    let request = http::Request::get(url).body(Vec::new()).unwrap();
    reqwest::Request::try_from(request).unwrap()
}

fn client(c: &mut Criterion) {
    let addr = start_server();
    let url = format!("http://{addr}/ok");
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(multiweb_telemetry::DEFAULT_BUCKETS)
        .unwrap()
        .install_recorder()
        .unwrap();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            handle.run_upkeep();
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (dispatch, _guard) = Telemetry::builder()
        .log_writer(std::io::sink())
        .log_filter("info")
        .sampler(TraceSampler::AlwaysOn)
        .build_dispatch()
        .unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);

    let bare = reqwest::Client::builder().no_proxy().build().unwrap();
    c.bench_function("client/reqwest", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = bare.execute(request(&url)).await.unwrap();
            response.bytes().await.unwrap()
        });
    });

    let with = |middleware: Option<std::sync::Arc<dyn reqwest_middleware::Middleware>>| {
        let builder = reqwest_middleware::ClientBuilder::new(bare.clone());
        match middleware {
            Some(middleware) => builder.with_arc(middleware),
            None => builder,
        }
        .build()
    };
    for (name, client) in [
        ("client/reqwest_middleware", with(None)),
        (
            "client/reqwest_tracing",
            with(Some(std::sync::Arc::new(
                reqwest_tracing::TracingMiddleware::default(),
            ))),
        ),
        (
            "client/multiweb_reqwest",
            with(Some(std::sync::Arc::new(
                multiweb_telemetry::client::middleware(),
            ))),
        ),
    ] {
        c.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let response = client.execute(request(&url)).await.unwrap();
                response.bytes().await.unwrap()
            });
        });
    }

    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    c.bench_function("client/hyper", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = http::Request::get(&url).body(Empty::new()).unwrap();
            let response = hyper.request(request).await.unwrap();
            response.into_body().collect().await.unwrap()
        });
    });
    let layered = multiweb_telemetry::client::layer().layer(hyper.clone());
    c.bench_function("client/multiweb_hyper", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = http::Request::get(&url).body(Empty::new()).unwrap();
            let response = layered.clone().oneshot(request).await.unwrap();
            response.into_body().collect().await.unwrap()
        });
    });

    let answer = tower::service_fn(|_: http::Request<Empty<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
            Bytes::from_static(b"ok"),
        )))
    });
    c.bench_function("client/in_process", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = http::Request::get(&url).body(Empty::new()).unwrap();
            let response = answer.oneshot(request).await.unwrap();
            response.into_body().collect().await.unwrap()
        });
    });
    let layered = multiweb_telemetry::client::layer().layer(answer);
    c.bench_function("client/multiweb_in_process", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = http::Request::get(&url).body(Empty::new()).unwrap();
            let response = layered.clone().oneshot(request).await.unwrap();
            response.into_body().collect().await.unwrap()
        });
    });
}

criterion_group!(benches, client);
criterion_main!(benches);
