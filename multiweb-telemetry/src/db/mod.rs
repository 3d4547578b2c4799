//! Database client telemetry for [sqlx](https://docs.rs/sqlx) (feature `sqlx`).
//!
//! One call wraps a pool; queries run through the wrapper get a span,
//! metrics and log lines:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let _telemetry = multiweb_telemetry::init()?;
//! let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
//! let db = multiweb_telemetry::db::instrument(pool);
//! let products: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM products WHERE price_cents < $1")
//!     .bind(5_000)
//!     .fetch_all(&db)
//!     .await?;
//! let mut tx = db.begin().await?;
//! sqlx::query("DELETE FROM carts WHERE id = $1").bind(7).execute(&mut tx).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! # What each query gives
//!
//! - **A CLIENT span** named `{operation} {collection}` (`SELECT products`),
//!   a child of the current span, with the OpenTelemetry database
//!   conventions: `db.system` (`postgresql`, `sqlite`, `mysql`),
//!   `db.operation.name` (`SELECT`), `db.collection.name` (`products`),
//!   and `db.query.text` (the statement without values, see below). A
//!   failed query's span has status Error,
//!   `error.type` and `db.response.status_code` (the SQL state). Its
//!   `tracing` side is an `INFO` span `db query` with target
//!   `multiweb_telemetry::db`.
//! - **A sample in the histogram** `db_client_operation_duration_seconds`
//!   with the labels `db_system` and `db_operation` (the operation keyword,
//!   or `OTHER`: a small closed set). Its default buckets, from 1 ms to 10 s,
//!   are [`DURATION_BUCKETS`]; `histogram_buckets_for` on the builder
//!   replaces them.
//! - **A warn line** `slow database query` with `db.query.text` and
//!   `duration` (seconds) when the query took at least the
//!   [slow threshold](Instrumentation::slow_threshold) (1 s by default).
//! - **An error line** `database query failed` when it failed, with
//!   `db.response.status_code` (the SQL state: `23505` on PostgreSQL, the
//!   extended result code such as `2067` on SQLite), `error.type` and an
//!   `error` text built from the kind of error and the constraint's name.
//!   The database's own message is left out: it may quote values
//!   (`invalid input syntax for type integer: "abc"`, PostgreSQL's `Key
//!   (name)=(kim) already exists` detail).
//!
//! And for the pool, at each scrape: `db_client_connections_usage` with
//! `state="idle"` and `state="used"`, and `db_client_connections_max`, summed
//! over the live instrumented pools.
//!
//! # Statements without values
//!
//! Statements written with bind parameters (`$1`, `?`) hold no values, and
//! their text is recorded as written. A statement built with `format!` may
//! hold literals: every string literal (`'kim'`, `E'..'`, `X'ff'`,
//! `$$...$$`) and number is replaced by `?` before the text reaches the span
//! or a log line, so values never do. Placeholders, identifiers, keywords
//! and comments are kept.
//!
//! # Why a wrapper around the pool
//!
//! sqlx 0.8 makes no span per query. It logs each statement as an event
//! with target `sqlx::query` (`summary`, `db.statement`, `rows_affected`,
//! `rows_returned`, `elapsed`), at `DEBUG` by default and at `WARN` past one
//! second (`ConnectOptions::log_statements` and `log_slow_statements`).
//! Spans built from those events would start after the fact (backdated by
//! `elapsed`), would not know whether the statement failed (the event is the
//! same for a failed statement, and carries no SQL state), and would only
//! exist while the event is enabled: [`init`](crate::init)'s `RUST_LOG`
//! filter is global (`info` by default), so it drops a `DEBUG` event before
//! any layer sees it, and enabling `sqlx::query=debug` to feed a layer would
//! also print every statement as a log line.
//!
//! The maintained peers, sqlx-tracing and sqlx-otel, wrap the pool instead
//! and implement [`sqlx::Executor`] for the wrapper; so does this module.
//! The span starts with the query, the error is at hand with its SQL state,
//! and nothing depends on sqlx's log levels. Only queries run through the
//! wrapper are seen: through `&InstrumentedPool` or `&mut
//! InstrumentedTransaction`, not through a connection taken with
//! `pool().acquire()`. The migrator runs on [`InstrumentedPool::pool`].
//!
//! The span is not entered while sqlx runs the query (its slow and failed
//! lines are written inside it): entering it at every poll, and handing it
//! to SQLite's worker thread, which enters the caller's current span, cost
//! more than the rest of the instrumentation together. Its fields are
//! computed only when it is enabled, and each operation's histogram handle
//! is looked up once. `BENCHMARKS.md` has the cost per query.
//!
//! sqlx's own statement lines would repeat the slow-query warning, so
//! [`instrument`] turns them off for the connections the pool opens from
//! then on (`ConnectOptions::disable_statement_logging`).
//!
//! # Filtering
//!
//! The spans are `INFO`: `RUST_LOG=warn` turns them off (the histogram,
//! gauges and lines still work). Keep them with
//! `RUST_LOG=warn,multiweb_telemetry::db=info`.

mod gauges;
mod pool;
mod query;
mod statement;
#[cfg(test)]
mod tests;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use sqlx::{ConnectOptions as _, Database};

pub use pool::InstrumentedPool;
pub use transaction::InstrumentedTransaction;

pub(crate) use gauges::refresh as refresh_pool_gauges;

/// Name of the histogram of query durations, in seconds.
pub const OPERATION_DURATION: &str = "db_client_operation_duration_seconds";

/// Name of the gauge of open connections, by `state` (`idle`, `used`).
pub const CONNECTIONS_USAGE: &str = "db_client_connections_usage";

/// Name of the gauge of the pools' maximum number of connections.
pub const CONNECTIONS_MAX: &str = "db_client_connections_max";

/// Default buckets of [`OPERATION_DURATION`], in seconds: the ones the
/// OpenTelemetry conventions advise for database operations, which start
/// lower than HTTP's.
pub const DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// How queries are instrumented; [`instrument`] uses the defaults.
///
/// ```no_run
/// # async fn run() -> Result<(), sqlx::Error> {
/// use std::time::Duration;
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// let db = multiweb_telemetry::db::Instrumentation::new()
///     .slow_threshold(Duration::from_millis(200))
///     .instrument(pool);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Instrumentation {
    slow_threshold: Duration,
}

impl Default for Instrumentation {
    fn default() -> Self {
        Self {
            slow_threshold: Duration::from_secs(1),
        }
    }
}

impl Instrumentation {
    /// The default instrumentation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queries taking at least this long get a `slow database query` warn
    /// line. Defaults to 1 s, sqlx's own slow-statement threshold.
    #[must_use]
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }

    /// Wraps `pool`: see the [module docs](self).
    ///
    /// Call it after [`init`](crate::init), so that the metrics'
    /// descriptions reach the recorder.
    pub fn instrument<DB: Database>(&self, pool: sqlx::Pool<DB>) -> InstrumentedPool<DB> {
        let system = system_of(&pool);
        pool.set_connect_options(
            (*pool.connect_options())
                .clone()
                .disable_statement_logging(),
        );
        metrics::describe_histogram!(
            OPERATION_DURATION,
            metrics::Unit::Seconds,
            "Duration of database client operations."
        );
        metrics::describe_gauge!(
            CONNECTIONS_USAGE,
            "Connections of the database client pools, by state (idle, used)."
        );
        metrics::describe_gauge!(
            CONNECTIONS_MAX,
            "Maximum number of connections of the database client pools."
        );
        let shared = Arc::new(pool::Shared {
            pool,
            settings: Arc::new(query::Settings::new(system, self.slow_threshold)),
        });
        gauges::register(&shared);
        InstrumentedPool::new(shared)
    }
}

/// Wraps `pool` with the default [`Instrumentation`]: see the
/// [module docs](self).
pub fn instrument<DB: Database>(pool: sqlx::Pool<DB>) -> InstrumentedPool<DB> {
    Instrumentation::new().instrument(pool)
}

/// `db.system` of a pool: from the driver, or for sqlx's `Any` driver from
/// the scheme of its URL.
fn system_of<DB: Database>(pool: &sqlx::Pool<DB>) -> &'static str {
    match DB::NAME {
        "PostgreSQL" => "postgresql",
        "SQLite" => "sqlite",
        "MySQL" => "mysql",
        // Only `Any` is asked for its URL: some drivers do not implement it.
        "Any" => match pool.connect_options().to_url_lossy().scheme() {
            "postgres" | "postgresql" => "postgresql",
            "sqlite" => "sqlite",
            "mysql" => "mysql",
            "mariadb" => "mariadb",
            _ => "other_sql",
        },
        _ => "other_sql",
    }
}
