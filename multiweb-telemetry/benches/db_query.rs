//! The added cost per query of the `sqlx` instrumentation (`db::instrument`:
//! a CLIENT span, a histogram sample, the statement without literals),
//! against a bare sqlx query under `tracing-subscriber`'s default handling
//! of sqlx's own events, in the same run.
//!
//! ```text
//! cargo bench -p multiweb-telemetry --features sqlx --bench db_query
//! ```
//!
//! Every contender runs `SELECT id, name, price_cents FROM products WHERE id
//! = $1` (one row) on an in-memory SQLite pool of one connection, awaited on
//! a current-thread runtime:
//!
//! - `sqlx_fmt_default` (the peer): the pool as sqlx makes it, under
//!   `tracing_subscriber::fmt()` with its default `INFO` level, which turns
//!   sqlx's `DEBUG` statement events off;
//! - `sqlx_fmt_statements`: the same with `sqlx::query=debug`, so each
//!   statement is formatted as a log line (to a sink): what sqlx's events
//!   cost when they are used;
//! - `multiweb_bare_pool`: the bare pool under `init`'s subscriber (from
//!   `build_dispatch`), to separate the subscriber from the instrumentation;
//! - `multiweb_instrumented`: the instrumented pool under that subscriber,
//!   every span sampled (the default sampler), no exporter, metrics into a
//!   global Prometheus recorder;
//! - `multiweb_instrumented_ratio_0_1`: the same at the guide's sampling
//!   (parent-based, ratio 0.1);
//! - `multiweb_instrumented_spans_off`: the same with `RUST_LOG=warn`, which
//!   turns the spans off (the histogram stays).
//!
//! SQLite runs each statement on a worker thread of its own, which sees the
//! global subscriber (the `fmt` one here) for sqlx's events. The time
//! reported is the **CPU time of the calling thread** per query, where the
//! instrumentation does all its work (span, histogram, statement text):
//! unlike wall time, which is mostly the two thread hand-offs to and from
//! SQLite's worker, it barely moves with the load of a shared machine. It
//! leaves out the worker's own CPU, the same for every contender but
//! `sqlx_fmt_statements`, whose statement lines are written there.

use std::hint::black_box;

use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Executor, Sqlite};
use tracing_subscriber::EnvFilter;

use multiweb_telemetry::{Telemetry, TraceSampler};

const QUERY: &str = "SELECT id, name, price_cents FROM products WHERE id = $1";

async fn pool() -> sqlx::Pool<Sqlite> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .expect("SQLite in memory");
    pool.execute(
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents BIGINT NOT NULL);
         INSERT INTO products (name, price_cents) VALUES ('Keyboard', 4900), ('Monitor', 19900);",
    )
    .await
    .expect("schema");
    pool
}

async fn one_query<'e, E>(executor: E) -> (i64, String, i64)
where
    E: Executor<'e, Database = Sqlite>,
{
    sqlx::query_as(QUERY)
        .bind(black_box(2_i64))
        .fetch_one(executor)
        .await
        .expect("a row")
}

/// Measures `query` by the calling thread's CPU time.
fn on_cpu_time(b: &mut Bencher<'_>, runtime: &tokio::runtime::Runtime, query: impl AsyncFn()) {
    b.iter_custom(|iters| {
        let start = cpu_time::ThreadTime::now();
        for _ in 0..iters {
            runtime.block_on(query());
        }
        start.elapsed()
    });
}

fn db_query(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let (filter, reload) = tracing_subscriber::reload::Layer::new(EnvFilter::new("info"));
    tracing::subscriber::set_global_default({
        use tracing_subscriber::layer::SubscriberExt as _;
        tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
    })
    .expect("global subscriber");

    let bare = runtime.block_on(pool());
    let mut group = c.benchmark_group("db_query");
    group.bench_function("sqlx_fmt_default", |b| {
        on_cpu_time(b, &runtime, async || drop(one_query(&bare).await));
    });
    reload
        .reload(EnvFilter::new("info,sqlx::query=debug"))
        .expect("reload");
    group.bench_function("sqlx_fmt_statements", |b| {
        on_cpu_time(b, &runtime, async || drop(one_query(&bare).await));
    });
    reload.reload(EnvFilter::new("info")).expect("reload");

    let (dispatch, _guard) = Telemetry::builder()
        .log_writer(std::io::sink())
        .build_dispatch()
        .expect("dispatch");
    tracing::dispatcher::with_default(&dispatch, || {
        group.bench_function("multiweb_bare_pool", |b| {
            on_cpu_time(b, &runtime, async || drop(one_query(&bare).await));
        });
        let instrumented = multiweb_telemetry::db::instrument(runtime.block_on(pool()));
        group.bench_function("multiweb_instrumented", |b| {
            on_cpu_time(b, &runtime, async || drop(one_query(&instrumented).await));
        });
    });
    let (sampled, _sampled_guard) = Telemetry::builder()
        .log_writer(std::io::sink())
        .sampler(TraceSampler::ParentBasedTraceIdRatio(0.1))
        .build_dispatch()
        .expect("dispatch");
    tracing::dispatcher::with_default(&sampled, || {
        let instrumented = multiweb_telemetry::db::instrument(runtime.block_on(pool()));
        group.bench_function("multiweb_instrumented_ratio_0_1", |b| {
            on_cpu_time(b, &runtime, async || drop(one_query(&instrumented).await));
        });
    });
    let (quiet, _quiet_guard) = Telemetry::builder()
        .log_writer(std::io::sink())
        .log_filter("warn")
        .build_dispatch()
        .expect("dispatch");
    tracing::dispatcher::with_default(&quiet, || {
        let instrumented = multiweb_telemetry::db::instrument(runtime.block_on(pool()));
        group.bench_function("multiweb_instrumented_spans_off", |b| {
            on_cpu_time(b, &runtime, async || drop(one_query(&instrumented).await));
        });
    });
    group.finish();
}

criterion_group!(benches, db_query);
criterion_main!(benches);
