//! One query's telemetry: its CLIENT span, its duration in the histogram,
//! and the warn line of a slow query or the error line of a failed one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use sqlx::Either;
use tracing::field::Empty;

use super::OPERATION_DURATION;
use super::statement::{OPERATION_COUNT, Operation, collection, without_literals};

/// What every query of one instrumented pool shares.
#[derive(Debug)]
pub(crate) struct Settings {
    /// `db.system`: `postgresql`, `sqlite`, `mysql` or `other_sql`.
    pub(crate) system: &'static str,
    pub(crate) slow_threshold: Duration,
    /// The histogram of each operation, registered at its first query: a
    /// lookup by name and labels on every query would cost more than the
    /// rest of the recording.
    histograms: [std::sync::OnceLock<metrics::Histogram>; OPERATION_COUNT],
}

impl Settings {
    pub(crate) fn new(system: &'static str, slow_threshold: Duration) -> Self {
        Self {
            system,
            slow_threshold,
            histograms: std::array::from_fn(|_| std::sync::OnceLock::new()),
        }
    }

    fn histogram(&self, operation: Operation) -> &metrics::Histogram {
        // `index` is below OPERATION_COUNT; the fallback is never taken.
        let slot = self
            .histograms
            .get(operation.index)
            .unwrap_or(&self.histograms[0]);
        slot.get_or_init(|| {
            metrics::histogram!(
                OPERATION_DURATION,
                "db_system" => self.system,
                "db_operation" => operation.name,
            )
        })
    }
}

/// Room for the span name the conventions give, `{operation}
/// {collection}`, without a heap allocation of its own (the bridge copies
/// it).
struct NameBuffer {
    bytes: [u8; 96],
}

impl Default for NameBuffer {
    fn default() -> Self {
        Self { bytes: [0; 96] }
    }
}

impl NameBuffer {
    /// The name; just the operation when the collection does not fit.
    fn write<'a>(&'a mut self, operation: &'static str, collection: Option<&str>) -> &'a str {
        let Some(collection) = collection else {
            return operation;
        };
        let length = operation.len() + 1 + collection.len();
        let Some(out) = self.bytes.get_mut(..length) else {
            return operation;
        };
        out[..operation.len()].copy_from_slice(operation.as_bytes());
        out[operation.len()] = b' ';
        out[operation.len() + 1..].copy_from_slice(collection.as_bytes());
        // Two `str`s and an ASCII space: valid UTF-8.
        std::str::from_utf8(out).unwrap_or(operation)
    }
}

/// A query in flight. Ending it (or dropping it, when the caller stops
/// reading rows early) records its duration and closes its span.
#[derive(Debug)]
pub(crate) struct QueryRecord<'q> {
    settings: Arc<Settings>,
    span: tracing::Span,
    operation: Operation,
    /// The statement, for the slow and failed queries' lines.
    sql: &'q str,
    start: Instant,
    done: bool,
}

impl<'q> QueryRecord<'q> {
    /// Starts the span of the query `sql`. Its fields are computed only
    /// when the span is enabled (inside `info_span!`).
    pub(crate) fn start(settings: &Arc<Settings>, sql: &'q str) -> Self {
        let operation = Operation::of(sql);
        // `info_span!` evaluates the fields only when the span is enabled;
        // the collection is then read once.
        let table = std::cell::LazyCell::new(|| collection(sql));
        let mut name = NameBuffer::default();
        let span = tracing::info_span!(
            target: "multiweb_telemetry::db",
            "db query",
            otel.name = name.write(operation.name, *table),
            otel.kind = "client",
            otel.status_code = Empty,
            db.system = settings.system,
            db.operation.name = operation.name,
            db.collection.name = *table,
            db.query.text = &*without_literals(sql),
            db.response.status_code = Empty,
            error.type = Empty,
        );
        Self {
            settings: Arc::clone(settings),
            span,
            operation,
            sql,
            start: Instant::now(),
            done: false,
        }
    }

    /// Ends the query: its duration, its span's outcome, and a warn line if
    /// it was slow or an error line if it failed.
    pub(crate) fn finish(&mut self, error: Option<&sqlx::Error>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.start.elapsed();
        let seconds = elapsed.as_secs_f64();
        self.settings.histogram(self.operation).record(seconds);
        let slow = elapsed >= self.settings.slow_threshold;
        if error.is_none() && !slow {
            return;
        }
        // The lines are written inside the span, which carries their ids.
        let span = &self.span;
        let _entered = span.enter();
        if let Some(error) = error {
            let failure = Failure::of(error);
            span.record("otel.status_code", "ERROR");
            span.record("error.type", failure.kind);
            if let Some(code) = &failure.code {
                span.record("db.response.status_code", &**code);
            }
            tracing::error!(
                target: "multiweb_telemetry::db",
                error = %failure,
                duration = seconds,
                db.system = self.settings.system,
                db.operation.name = self.operation.name,
                db.query.text = %without_literals(self.sql),
                db.response.status_code = failure.code.as_deref(),
                error.type = failure.kind,
                "database query failed"
            );
        }
        if slow {
            tracing::warn!(
                target: "multiweb_telemetry::db",
                duration = seconds,
                slow_threshold = self.settings.slow_threshold.as_secs_f64(),
                db.system = self.settings.system,
                db.operation.name = self.operation.name,
                db.query.text = %without_literals(self.sql),
                "slow database query"
            );
        }
    }
}

impl Drop for QueryRecord<'_> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// A failed query, described without any value: the SQL state (or the
/// driver's code), the kind of error, and the constraint, never the
/// database's message, which may quote the values (`invalid input syntax
/// for type integer: "abc"`, `Key (name)=(kim) already exists`).
struct Failure<'a> {
    /// `error.type`: the SQL state, else the kind of failure.
    kind: &'static str,
    code: Option<std::borrow::Cow<'a, str>>,
    error: &'a sqlx::Error,
}

impl<'a> Failure<'a> {
    fn of(error: &'a sqlx::Error) -> Self {
        let (kind, code) = match error {
            sqlx::Error::Database(db) => {
                let kind = match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => "unique_violation",
                    sqlx::error::ErrorKind::ForeignKeyViolation => "foreign_key_violation",
                    sqlx::error::ErrorKind::NotNullViolation => "not_null_violation",
                    sqlx::error::ErrorKind::CheckViolation => "check_violation",
                    _ => "database_error",
                };
                (kind, db.code())
            }
            sqlx::Error::PoolTimedOut => ("pool_timed_out", None),
            sqlx::Error::PoolClosed => ("pool_closed", None),
            sqlx::Error::Io(_) => ("io", None),
            sqlx::Error::Tls(_) => ("tls", None),
            sqlx::Error::Protocol(_) => ("protocol", None),
            sqlx::Error::RowNotFound => ("row_not_found", None),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => ("decode", None),
            sqlx::Error::Configuration(_) => ("configuration", None),
            sqlx::Error::WorkerCrashed => ("worker_crashed", None),
            _ => ("other", None),
        };
        Self { kind, code, error }
    }
}

impl std::fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.error {
            sqlx::Error::Database(db) => {
                f.write_str(self.kind.replace('_', " ").as_str())?;
                if let Some(code) = &self.code {
                    write!(f, " (SQL state {code})")?;
                }
                if let Some(constraint) = db.constraint() {
                    write!(f, " on constraint {constraint}")?;
                }
                Ok(())
            }
            // Driver-side failures name no value: the connection, the pool,
            // the column index and type.
            other => write!(f, "{other}"),
        }
    }
}

pin_project_lite::pin_project! {
    /// A result stream that ends its query's record when it ends, fails, or
    /// is dropped.
    pub(crate) struct RecordedStream<'q, S> {
        #[pin]
        inner: S,
        record: QueryRecord<'q>,
    }
}

impl<'q, S> RecordedStream<'q, S> {
    pub(crate) fn new(inner: S, record: QueryRecord<'q>) -> Self {
        Self { inner, record }
    }
}

impl<S, Q, R> Stream for RecordedStream<'_, S>
where
    S: Stream<Item = Result<Either<Q, R>, sqlx::Error>>,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let polled = this.inner.poll_next(cx);
        match &polled {
            Poll::Ready(Some(Err(error))) => this.record.finish(Some(error)),
            Poll::Ready(None) => this.record.finish(None),
            _ => {}
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// Awaits `future` (one query returning at most one row) and ends its
/// record with its outcome.
pub(crate) async fn recorded<T, F>(
    mut record: QueryRecord<'_>,
    future: F,
) -> Result<Option<T>, sqlx::Error>
where
    F: std::future::Future<Output = Result<Option<T>, sqlx::Error>>,
{
    let result = future.await;
    match &result {
        Ok(_) => record.finish(None),
        Err(error) => record.finish(Some(error)),
    }
    result
}
