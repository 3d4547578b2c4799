//! `--http-layer peer`: the same application with the stack users assemble
//! by hand today instead of `multiweb_telemetry::init()`, for the load
//! comparison of `scripts/load.sh`: tower-http's `TraceLayer`,
//! `tracing-opentelemetry` with the SDK's batch span processor and the
//! `opentelemetry-otlp` exporter, `tracing-subscriber`'s JSON format, and
//! `axum-prometheus`. It reads the same variables the crate reads for the
//! comparison (`OTEL_EXPORTER_OTLP_ENDPOINT`, gRPC; `OTEL_TRACES_SAMPLER_ARG`,
//! a parent-based ratio) and logs to stdout, at `info`.

use axum::Router;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt as _;

/// Flushes the spans when dropped.
pub(crate) struct PeerGuard(SdkTracerProvider);

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// Installs the hand-made subscriber; must run inside the tokio runtime
/// (the exporter's gRPC channel and the batch processor use it).
pub(crate) fn install() -> Result<PeerGuard, Box<dyn std::error::Error>> {
    let ratio = std::env::var("OTEL_TRACES_SAMPLER_ARG")
        .ok()
        .and_then(|ratio| ratio.parse().ok())
        .unwrap_or(1.0);
    let mut provider = SdkTracerProvider::builder().with_sampler(Sampler::ParentBased(Box::new(
        Sampler::TraceIdRatioBased(ratio),
    )));
    if let Ok(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        provider = provider.with_span_processor(processor);
    }
    let provider = provider.build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("marketplace")))
        .with(tracing_subscriber::fmt::layer().json());
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(PeerGuard(provider))
}

/// The hand-made layers around `app`, and `/metrics` from axum-prometheus.
pub(crate) fn layers(app: Router) -> Router {
    let (prometheus, handle) = axum_prometheus::PrometheusMetricLayer::pair();
    app.route(
        "/metrics",
        axum::routing::get(move || std::future::ready(handle.render())),
    )
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
            .on_response(DefaultOnResponse::new().level(Level::INFO)),
    )
    .layer(prometheus)
}
