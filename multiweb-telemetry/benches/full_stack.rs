//! The added cost per request of a whole telemetry stack (metrics, request
//! span, access log, span export to a running collector at ratio 0.1),
//! against what users assemble by hand today, in the same run.
//!
//! ```text
//! bash scripts/install-test-tools.sh   # installs the rotel collector into .venv
//! cargo bench -p multiweb-telemetry --bench full_stack
//! ```
//!
//! - hand-made: tower-http `TraceLayer` + `tracing-opentelemetry` with the
//!   SDK's batch span processor and the OTLP exporter + `tracing-subscriber`'s
//!   JSON layer + axum-prometheus;
//! - multiweb: `http::layer()` with a dispatch from `build_dispatch()`, with
//!   and without the keep-every-error rule, and with it over https (a TLS
//!   proxy in front of the collector) with gzip (`multiweb_tls_gzip`).
//!
//! Both export OTLP/HTTP to a rotel collector started by the benchmark (its
//! blackhole exporter discards what it receives), sample at ratio 0.1 with a
//! parent-based sampler, write logs to a sink, and record metrics into one
//! global Prometheus recorder. Each runs under its own thread-local dispatch.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tower::ServiceExt;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;

use multiweb_telemetry::{OtlpCompression, OtlpProtocol, Telemetry, TraceSampler};

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rotel_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("ROTEL_AGENT") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    std::fs::read_dir(&venv)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.is_file())
        .expect(
            "rotel-agent not found: run `bash scripts/install-test-tools.sh` or set ROTEL_AGENT",
        )
}

fn start_collector() -> (Collector, String, std::net::SocketAddr) {
    let port = |l: std::net::TcpListener| l.local_addr().unwrap().port();
    let grpc = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let http = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let child = Command::new(rotel_agent())
        .args(["start", "--exporter", "blackhole", "--otlp-grpc-endpoint"])
        .arg(format!("127.0.0.1:{grpc}"))
        .arg("--otlp-http-endpoint")
        .arg(format!("127.0.0.1:{http}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rotel");
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (
        Collector(child),
        format!("http://127.0.0.1:{http}"),
        std::net::SocketAddr::from(([127, 0, 0, 1], http)),
    )
}

fn router() -> Router {
    Router::new().route("/api/v1/products/", get(|| async { "[]" }))
}

fn bench_app(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    dispatch: &tracing::Dispatch,
    app: Router,
) {
    let app = app.with_state(());
    tracing::dispatcher::with_default(dispatch, || {
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
    });
}

fn hand_made(
    endpoint: &str,
    runtime: &tokio::runtime::Runtime,
) -> (tracing::Dispatch, SdkTracerProvider) {
    let exporter = {
        let _entered = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .build()
            .unwrap()
    };
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::TokioCurrentThread,
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            0.1,
        ))))
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("hand-made")))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::sink),
        );
    (tracing::Dispatch::new(subscriber), provider)
}

fn full_stack(c: &mut Criterion) {
    let (_collector, endpoint, http_addr) = start_collector();
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

    let none = tracing::Dispatch::none();
    bench_app(c, &runtime, "full_stack/no_telemetry", &none, router());

    let (dispatch, provider) = hand_made(&endpoint, &runtime);
    bench_app(
        c,
        &runtime,
        "full_stack/hand_made",
        &dispatch,
        router()
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(axum_prometheus::PrometheusMetricLayer::new()),
    );
    let _ = provider.shutdown();

    for (name, keep_errors, bridge) in [
        ("full_stack/multiweb_keep_errors", true, true),
        ("full_stack/multiweb_ratio_only", false, true),
        ("full_stack/multiweb_direct", true, false),
    ] {
        let (dispatch, guard) = Telemetry::builder()
            .log_writer(std::io::sink())
            .log_filter("info")
            .otlp_endpoint(endpoint.clone())
            .otlp_protocol(OtlpProtocol::HttpProtobuf)
            .sampler(TraceSampler::ParentBasedTraceIdRatio(0.1))
            .keep_error_traces(keep_errors)
            .bridge_request_spans(bridge)
            .build_dispatch()
            .unwrap();
        bench_app(
            c,
            &runtime,
            name,
            &dispatch,
            router().layer(multiweb_telemetry::http::layer()),
        );
        drop(guard);
    }

    // The same stack exporting over https (a TLS-terminating proxy in front
    // of rotel) with gzip: what TLS and compression on the exporter thread
    // add per request.
    let certificates = multiweb_tests::tls::Certificates::new();
    let proxy = multiweb_tests::tls::TlsProxy::start(&certificates, http_addr, http_addr, false);
    let (dispatch, guard) = Telemetry::builder()
        .log_writer(std::io::sink())
        .log_filter("info")
        .otlp_endpoint(proxy.url())
        .otlp_protocol(OtlpProtocol::HttpProtobuf)
        .otlp_compression(OtlpCompression::Gzip)
        .otlp_certificate(certificates.path("ca.pem"))
        .sampler(TraceSampler::ParentBasedTraceIdRatio(0.1))
        .build_dispatch()
        .unwrap();
    bench_app(
        c,
        &runtime,
        "full_stack/multiweb_tls_gzip",
        &dispatch,
        router().layer(multiweb_telemetry::http::layer()),
    );
    drop(guard);
}

criterion_group!(benches, full_stack);
criterion_main!(benches);
