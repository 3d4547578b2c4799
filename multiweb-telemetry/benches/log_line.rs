//! The cost of one JSON log line: this crate's formatter against
//! `tracing-subscriber`'s own JSON formatter, both writing to a sink.
//!
//! ```text
//! cargo bench -p multiweb-telemetry --bench log_line
//! ```
//!
//! Each iteration logs one access-log-like event inside a request span that
//! carries `method`, `path` and `user_id`, the shape of the guide's log lines.

use criterion::{Criterion, criterion_group, criterion_main};
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;

fn log_one_line() {
    let span = tracing::info_span!(
        "request",
        method = "GET",
        path = "/api/v1/products/",
        user_id = "123"
    );
    let _entered = span.enter();
    tracing::info!(
        status = 200_u64,
        duration = 0.003_f64,
        "GET /api/v1/products/ status=200 duration=0.003"
    );
}

fn bench_with(c: &mut Criterion, name: &str, subscriber: impl Subscriber + Send + Sync + 'static) {
    let _default = tracing::subscriber::set_default(subscriber);
    c.bench_function(name, |b| b.iter(log_one_line));
}

fn json_log_line(c: &mut Criterion) {
    bench_with(
        c,
        "log_line/multiweb_json",
        tracing_subscriber::registry()
            .with(multiweb_telemetry::log::JsonLayer::new().with_writer(std::io::sink)),
    );
    bench_with(
        c,
        "log_line/tracing_subscriber_json",
        tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::sink),
        ),
    );
    bench_with(
        c,
        "log_line/tracing_subscriber_json_flat",
        tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(std::io::sink),
        ),
    );
}

criterion_group!(benches, json_log_line);
criterion_main!(benches);
