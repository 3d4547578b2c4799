//! The exporter thread's work per span: this crate's OTLP exporter against
//! `opentelemetry-otlp` 0.33's span exporter, each sending the same batch
//! of 512 finished spans over OTLP/HTTP to a running rotel collector, in the
//! same run, uncompressed and with gzip.
//!
//! ```text
//! bash scripts/install-test-tools.sh   # installs the rotel collector into .venv
//! cargo bench -p multiweb-telemetry --bench otlp_export
//! bash scripts/bench-instructions.sh otlp_export own opentelemetry_otlp clone_only
//! ```
//!
//! `opentelemetry-otlp` takes the batch by value: behind this crate's
//! processor it would be handed the drained spans, so the clone each
//! iteration makes for it is outside criterion's timing (`iter_batched`);
//! under callgrind it is counted, and `clone_only` measures it alone, to be
//! subtracted. Each iteration makes one `http::Request` (the marker
//! `scripts/bench-instructions.sh` counts), so its "per request" is per
//! batch: divide by 512 for a span.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};

use multiweb_telemetry::trace::__BenchExporter;

const BATCH: usize = 512;

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

/// rotel on 127.0.0.1; the OTLP/HTTP traces URL.
fn start_collector() -> (Collector, String) {
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
        format!("http://127.0.0.1:{http}/v1/traces"),
    )
}

/// A batch as the marketplace example makes it: request spans with the
/// HTTP attributes, each with a handler span under it.
fn batch() -> Vec<SpanData> {
    let scope = InstrumentationScope::builder("multiweb-telemetry").build();
    let start = SystemTime::now();
    (0..BATCH)
        .map(|i| {
            let server = i % 2 == 0;
            let trace = TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_0000_0000 + (i / 2) as u128);
            SpanData {
                span_context: SpanContext::new(
                    trace,
                    SpanId::from(i as u64 + 1),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::NONE,
                ),
                parent_span_id: if server {
                    SpanId::INVALID
                } else {
                    SpanId::from(i as u64)
                },
                parent_span_is_remote: false,
                span_kind: if server {
                    SpanKind::Server
                } else {
                    SpanKind::Internal
                },
                name: if server {
                    "GET /api/v1/products/".into()
                } else {
                    "list_products".into()
                },
                start_time: start,
                end_time: start + Duration::from_micros(1500),
                attributes: if server {
                    vec![
                        KeyValue::new("http.request.method", "GET"),
                        KeyValue::new("http.route", "/api/v1/products/"),
                        KeyValue::new("url.path", "/api/v1/products/"),
                        KeyValue::new("http.response.status_code", 200_i64),
                        KeyValue::new("user_id", "42"),
                    ]
                } else {
                    vec![KeyValue::new("page", 1_i64)]
                },
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: Status::Unset,
                instrumentation_scope: scope.clone(),
            }
        })
        .collect()
}

fn otlp_export(c: &mut Criterion) {
    let (_collector, endpoint) = start_collector();
    let resource = Resource::builder_empty()
        .with_service_name("marketplace")
        .build();
    let spans = batch();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("otlp_export");
    group.throughput(Throughput::Elements(BATCH as u64));

    for (name, gzip) in [("own", false), ("own_gzip", true)] {
        let mut own = __BenchExporter::http(&endpoint, gzip);
        own.set_resource(&resource);
        assert!(own.export(&spans), "rotel accepts the batch");
        group.bench_function(name, |b| {
            b.iter(|| {
                let _marker = http::Request::get("/").body(());
                assert!(own.export(&spans));
            });
        });
    }

    for (name, gzip) in [
        ("opentelemetry_otlp", false),
        ("opentelemetry_otlp_gzip", true),
    ] {
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone());
        if gzip {
            builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        let mut exporter = {
            let _entered = runtime.enter();
            builder.build().unwrap()
        };
        exporter.set_resource(&resource);
        assert!(runtime.block_on(exporter.export(spans.clone())).is_ok());
        group.bench_function(name, |b| {
            b.iter_batched(
                || spans.clone(),
                |spans| {
                    let _marker = http::Request::get("/").body(());
                    assert!(runtime.block_on(exporter.export(spans)).is_ok());
                },
                BatchSize::SmallInput,
            );
        });
    }

    group.bench_function("clone_only", |b| {
        b.iter_batched(
            || (),
            |()| {
                let _marker = http::Request::get("/").body(());
                spans.clone()
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, otlp_export);
criterion_main!(benches);
