//! The instrumentation against SQLite in memory, with the crate's bridge
//! and JSON layer and a local metrics recorder.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::trace::SpanData;
use tracing_subscriber::layer::SubscriberExt as _;

use super::{CONNECTIONS_MAX, CONNECTIONS_USAGE, Instrumentation, InstrumentedPool};
use crate::log::JsonLayer;
use crate::testing::MetricsCapture;

/// The pool gauges sum every live pool of the process: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn json(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[derive(Clone, Debug, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for Exported {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl Exported {
    /// Waits (bounded) until `count` spans of each name have ended: SQLite's
    /// worker thread holds the span of the command it runs, and may drop it
    /// (ending it, and its parent) just after the caller got its answer.
    fn wait_for(&self, expected: &[(&str, usize)]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while expected
            .iter()
            .any(|(name, count)| self.named(name).len() < *count)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "spans never ended: {:?}",
                self.0
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn named(&self, name: &str) -> Vec<SpanData> {
        let spans = self.0.lock().unwrap();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// A bridge like `init`'s and its JSON layer over an in-memory exporter, a local
/// recorder, and one instrumented in-memory SQLite pool with a table.
struct Harness {
    exported: Exported,
    logs: Logs,
    metrics: MetricsCapture,
    db: InstrumentedPool<sqlx::Sqlite>,
    _default: tracing::subscriber::DefaultGuard,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

async fn harness(instrumentation: Instrumentation) -> Harness {
    let serial = SERIAL.lock().await;
    let exported = Exported::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_location(false)
                .with_threads(false)
                .with_target(false),
        )
        .with(JsonLayer::new().with_writer(move || writer.clone()));
    let default = tracing::subscriber::set_default(subscriber);
    let metrics = MetricsCapture::new();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(3)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let db = metrics.run(|| instrumentation.instrument(pool));
    sqlx::query("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
        .execute(db.pool())
        .await
        .unwrap();
    Harness {
        exported,
        logs,
        metrics,
        db,
        _default: default,
        _serial: serial,
    }
}

#[tokio::test]
async fn each_query_gets_a_client_span_with_the_conventions_and_a_duration_sample() {
    let h = harness(Instrumentation::new()).await;
    let _recorder = h.metrics.enter();
    let handler = tracing::info_span!("handler");
    async {
        // A literal in the text: it never reaches the span.
        sqlx::query("INSERT INTO products (name) VALUES ('Lamp'), ($1)")
            .bind("Desk")
            .execute(&h.db)
            .await
            .unwrap();
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM products WHERE id > $1 ORDER BY id")
                .bind(0)
                .fetch_all(&h.db)
                .await
                .unwrap();
        assert_eq!(rows.len(), 2);
        let one: Option<(String,)> = sqlx::query_as("SELECT name FROM products WHERE id = $1")
            .bind(2)
            .fetch_optional(&h.db)
            .await
            .unwrap();
        assert_eq!(one.unwrap().0, "Desk");
    }
    .instrument_in(&handler)
    .await;
    drop(handler);

    h.exported.wait_for(&[
        ("handler", 1),
        ("INSERT products", 1),
        ("SELECT products", 2),
    ]);
    let parent = h.exported.named("handler").remove(0);
    let insert = h.exported.named("INSERT products").remove(0);
    assert_eq!(insert.span_kind, SpanKind::Client);
    assert_eq!(insert.parent_span_id, parent.span_context.span_id());
    assert_eq!(insert.status, Status::Unset);
    for (key, value) in [
        ("db.system", "sqlite"),
        ("db.operation.name", "INSERT"),
        ("db.collection.name", "products"),
        (
            "db.query.text",
            "INSERT INTO products (name) VALUES (?), ($1)",
        ),
    ] {
        assert_eq!(attribute(&insert, key).as_deref(), Some(value), "{key}");
    }
    assert!(
        insert
            .attributes
            .iter()
            .all(|kv| !kv.key.as_str().starts_with("otel.")),
        "otel.* fields steer the bridge; they are not attributes"
    );
    let selects = h.exported.named("SELECT products");
    assert_eq!(selects.len(), 2);
    assert_eq!(
        attribute(&selects[0], "db.query.text").as_deref(),
        Some("SELECT id, name FROM products WHERE id > $1 ORDER BY id")
    );
    assert_eq!(
        attribute(&selects[1], "db.query.text").as_deref(),
        Some("SELECT name FROM products WHERE id = $1")
    );

    let metrics = h.metrics.exposition();
    let count = |operation: &str| {
        metrics.value(
            "db_client_operation_duration_seconds_count",
            &[("db_system", "sqlite"), ("db_operation", operation)],
        )
    };
    assert_eq!(count("INSERT"), Some(1.0));
    assert_eq!(count("SELECT"), Some(2.0));
    assert!(
        metrics
            .value(
                "db_client_operation_duration_seconds_bucket",
                &[("db_operation", "SELECT"), ("le", "0.001")]
            )
            .is_some(),
        "the database buckets start at 1 ms"
    );
    assert!(
        !h.logs.text().contains("\"level\":\"warn\""),
        "no slow line under the default threshold: {}",
        h.logs.text()
    );
}

#[tokio::test]
async fn a_failed_query_gives_an_error_span_and_an_error_line_without_values() {
    let h = harness(Instrumentation::new()).await;
    let _recorder = h.metrics.enter();
    sqlx::query("INSERT INTO products (name) VALUES ($1)")
        .bind("secret-value-1")
        .execute(&h.db)
        .await
        .unwrap();
    let error = sqlx::query("INSERT INTO products (name) VALUES ($1)")
        .bind("secret-value-1")
        .execute(&h.db)
        .await
        .unwrap_err();
    assert!(matches!(error, sqlx::Error::Database(_)));

    h.exported.wait_for(&[("INSERT products", 2)]);
    let spans = h.exported.named("INSERT products");
    assert_eq!(spans.len(), 2);
    let failed = &spans[1];
    assert_eq!(failed.status, Status::error(""));
    // SQLITE_CONSTRAINT_UNIQUE
    assert_eq!(
        attribute(failed, "db.response.status_code").as_deref(),
        Some("2067")
    );
    assert_eq!(
        attribute(failed, "error.type").as_deref(),
        Some("unique_violation")
    );

    let lines = h.logs.json();
    let errors: Vec<_> = lines.iter().filter(|l| l["level"] == "error").collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    let line = errors[0];
    assert_eq!(line["message"], "database query failed");
    assert_eq!(line["db.response.status_code"], "2067");
    assert_eq!(line["db.system"], "sqlite");
    assert_eq!(line["db.operation.name"], "INSERT");
    assert_eq!(
        line["db.query.text"],
        "INSERT INTO products (name) VALUES ($1)"
    );
    assert_eq!(line["error"], "unique violation (SQL state 2067)", "{line}");
    assert_eq!(
        line["trace_id"],
        failed.span_context.trace_id().to_string(),
        "the line is inside the query's span"
    );
    let everything = format!("{}{:?}", h.logs.text(), h.exported.0.lock().unwrap());
    assert!(!everything.contains("secret-value-1"), "a value leaked");
    assert_eq!(
        h.metrics.exposition().value(
            "db_client_operation_duration_seconds_count",
            &[("db_operation", "INSERT")]
        ),
        Some(2.0),
        "failed queries are timed too"
    );
}

#[tokio::test]
async fn a_slow_query_gets_one_warn_line_with_its_statement_and_duration() {
    let h = harness(Instrumentation::new().slow_threshold(Duration::ZERO)).await;
    let mut tx = h.db.begin().await.unwrap();
    sqlx::query("INSERT INTO products (name) VALUES ('Chair')")
        .execute(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    h.exported.wait_for(&[("INSERT products", 1)]);
    let lines = h.logs.json();
    let warnings: Vec<_> = lines.iter().filter(|l| l["level"] == "warn").collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert_eq!(warnings[0]["message"], "slow database query");
    assert_eq!(
        warnings[0]["db.query.text"],
        "INSERT INTO products (name) VALUES (?)"
    );
    assert!(warnings[0]["duration"].as_f64().unwrap() >= 0.0);
    assert_eq!(warnings[0]["slow_threshold"], 0.0);
    assert_eq!(
        h.exported.named("INSERT products").len(),
        1,
        "a transaction's queries are instrumented"
    );
    assert!(!h.logs.text().contains("Chair"));
}

#[tokio::test]
async fn pool_gauges_count_idle_and_used_connections_at_each_refresh() {
    let h = harness(Instrumentation::new()).await;
    let held = h.db.pool().acquire().await.unwrap();
    // Let the connection the table was made with return to the pool (sqlx
    // returns connections from a task of its own).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (open, idle) = (h.db.pool().size(), h.db.pool().num_idle());
    h.metrics.run(super::refresh_pool_gauges);
    let metrics = h.metrics.exposition();
    assert_eq!(
        metrics.value(CONNECTIONS_USAGE, &[("state", "used")]),
        Some(f64::from(open) - idle as f64)
    );
    assert!(open as usize > idle, "the held connection is used");
    assert_eq!(
        metrics.value(CONNECTIONS_USAGE, &[("state", "idle")]),
        Some(idle as f64)
    );
    assert_eq!(metrics.value(CONNECTIONS_MAX, &[]), Some(3.0));
    drop(held);
    drop(h.db);
    // A dropped pool leaves the gauges at the next refresh.
    h.metrics.run(super::refresh_pool_gauges);
    assert_eq!(
        h.metrics.exposition().value(CONNECTIONS_MAX, &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn any_pools_name_their_backend() {
    let _serial = SERIAL.lock().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .connect("sqlite::memory:")
        .await
        .unwrap();
    assert_eq!(super::instrument(pool).db_system(), "sqlite");
}

/// `Instrument::instrument` with a borrowed span.
trait InstrumentIn: std::future::Future + Sized {
    fn instrument_in(self, span: &tracing::Span) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, span.clone())
    }
}

impl<F: std::future::Future> InstrumentIn for F {}
