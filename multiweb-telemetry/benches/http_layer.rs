//! The added cost per request of HTTP middleware, through an axum router
//! called in-process (`oneshot`, trivial handler), peers in the same run.
//!
//! ```text
//! cargo bench -p multiweb-telemetry --bench http_layer
//! ```
//!
//! One global Prometheus recorder (the exporter both metric layers use) and
//! one global subscriber (this crate's JSON layer writing to a sink, every
//! level enabled) serve every contender, so only the middleware differs.
//! The router is finalized with `with_state(())` first, as `axum::serve`
//! does; without it axum rebuilds every route, layers included, per request.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;

fn router() -> Router {
    Router::new().route("/api/v1/products/", get(|| async { "[]" }))
}

fn bench_app(c: &mut Criterion, runtime: &tokio::runtime::Runtime, name: &str, app: Router) {
    // What `axum::serve` does: turn the handlers into routes once, not per request.
    let app = app.with_state(());
    c.bench_function(name, |b| {
        b.to_async(runtime).iter(|| {
            let app = app.clone();
            async move {
                let request = Request::get("/api/v1/products/")
                    .body(Body::empty())
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                response.into_body().collect().await.unwrap()
            }
        });
    });
}

fn http_layer(c: &mut Criterion) {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(multiweb_telemetry::DEFAULT_BUCKETS)
        .unwrap()
        .install_recorder()
        .unwrap();
    // As `init()` does: fold histogram samples into buckets periodically.
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            handle.run_upkeep();
        }
    });
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(multiweb_telemetry::log::JsonLayer::new().with_writer(std::io::sink)),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    bench_app(c, &runtime, "http_layer/no_layer", router());
    bench_app(
        c,
        &runtime,
        "http_layer/axum_prometheus",
        router().layer(axum_prometheus::PrometheusMetricLayer::new()),
    );
    bench_app(
        c,
        &runtime,
        "http_layer/tower_http_trace",
        router().layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        ),
    );
    bench_app(
        c,
        &runtime,
        "http_layer/multiweb_metrics_only",
        router().layer(
            multiweb_telemetry::http::layer()
                .span(false)
                .access_log(false),
        ),
    );
    bench_app(
        c,
        &runtime,
        // The floor: what any layer costs in axum (its service is boxed and cloned per request).
        "http_layer/identity_layer",
        router().layer(tower::util::MapResponseLayer::new(
            |r: axum::response::Response| r,
        )),
    );
    bench_app(
        c,
        &runtime,
        "http_layer/multiweb_full",
        router().layer(multiweb_telemetry::http::layer()),
    );
    // `init` with `Signals::METRICS` installs no subscriber: the default
    // layer then records metrics only, at the cost of `multiweb_metrics_only`.
    tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
        bench_app(
            c,
            &runtime,
            "http_layer/multiweb_default_without_subscriber",
            router().layer(multiweb_telemetry::http::layer()),
        );
    });
}

criterion_group!(benches, http_layer);
criterion_main!(benches);
