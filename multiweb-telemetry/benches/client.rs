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
//!   own cost without the loopback's noise;
//! - `added_by_reqwest_tracing` and `added_by_multiweb_reqwest`: the time a
//!   call through each middleware takes beyond a bare call, the two calls
//!   made in turn in each iteration so that drift cancels;
//!   `added_by_multiweb_reqwest_span_off` the same with the CLIENT span
//!   turned off by `RUST_LOG` (propagation and the metric only).
//!
//! Every contender runs under one dispatch from `build_dispatch()` (logs to
//! a sink, `RUST_LOG=info`, every span sampled, none exported: no endpoint)
//! and one global Prometheus recorder. Every iteration builds its request
//! with `http::Request::get`, which `scripts/bench-instructions.sh` counts
//! (the paired `added_by_*` contenders make two requests an iteration, so
//! that script does not count them).

use std::time::{Duration, Instant};

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
    let peer = with(Some(std::sync::Arc::new(
        reqwest_tracing::TracingMiddleware::default(),
    )));
    let ours = with(Some(std::sync::Arc::new(
        multiweb_telemetry::client::middleware(),
    )));
    for (name, client) in [
        ("client/reqwest_middleware", with(None)),
        ("client/reqwest_tracing", peer.clone()),
        ("client/multiweb_reqwest", ours.clone()),
    ] {
        c.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let response = client.execute(request(&url)).await.unwrap();
                response.bytes().await.unwrap()
            });
        });
    }

    added_by(c, &runtime, &bare, &url, peer, ours);

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

/// The paired contenders: each iteration calls through the bare client and
/// through the middleware, in turn (the order swapped every iteration), and
/// reports the time the middleware's call took beyond the bare one.
/// Contenders run one after another drift apart by several µs over the
/// loopback; here the drift falls on both calls alike. A sample in which the
/// bare calls were slower counts as (almost) zero, which can only overstate
/// the cost. `added_by_multiweb_reqwest_span_off` is the same with
/// `multiweb_telemetry::client=off`: propagation and the metric without the
/// CLIENT span, to show what the span costs.
fn added_by(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    bare: &reqwest::Client,
    url: &str,
    peer: reqwest_middleware::ClientWithMiddleware,
    ours: reqwest_middleware::ClientWithMiddleware,
) {
    let (span_off, _span_off_guard) = Telemetry::builder()
        .log_writer(std::io::sink())
        .log_filter("info,multiweb_telemetry::client=off")
        .sampler(TraceSampler::AlwaysOn)
        .build_dispatch()
        .unwrap();
    for (name, client) in [
        ("client/added_by_reqwest_tracing", peer),
        ("client/added_by_multiweb_reqwest", ours.clone()),
        ("client/added_by_multiweb_reqwest_span_off", ours),
    ] {
        let _span_off = name
            .ends_with("span_off")
            .then(|| tracing::dispatcher::set_default(&span_off));
        c.bench_function(name, |b| {
            b.to_async(runtime).iter_custom(|iters| {
                let (bare, client, url) = (bare.clone(), client.clone(), url.to_owned());
                async move {
                    let (mut plain, mut with) = (Duration::ZERO, Duration::ZERO);
                    for i in 0..iters {
                        for bare_turn in [i % 2 == 0, i % 2 == 1] {
                            let start = Instant::now();
                            if bare_turn {
                                let response = bare.execute(request(&url)).await.unwrap();
                                std::hint::black_box(response.bytes().await.unwrap());
                                plain += start.elapsed();
                            } else {
                                let response = client.execute(request(&url)).await.unwrap();
                                std::hint::black_box(response.bytes().await.unwrap());
                                with += start.elapsed();
                            }
                        }
                    }
                    // Criterion refuses a zero time.
                    with.saturating_sub(plain).max(Duration::from_nanos(1))
                }
            });
        });
    }
}

criterion_group!(benches, client);
criterion_main!(benches);
