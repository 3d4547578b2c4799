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
use super::statement::{Summary, without_literals};

/// What every query of one instrumented pool shares.
#[derive(Debug)]
pub(crate) struct Settings {
    /// `db.system`: `postgresql`, `sqlite`, `mysql` or `other_sql`.
    pub(crate) system: &'static str,
    pub(crate) slow_threshold: Duration,
}

/// A query in flight. Ending it (or dropping it, when the caller stops
/// reading rows early) records its duration and closes its span.
#[derive(Debug)]
pub(crate) struct QueryRecord<'q> {
    settings: Arc<Settings>,
    span: tracing::Span,
    operation: &'static str,
    /// The statement, for the slow and failed queries' lines.
    sql: &'q str,
    start: Instant,
    rows: u64,
    done: bool,
}

impl<'q> QueryRecord<'q> {
    /// Starts the span of the query `sql`.
    pub(crate) fn start(settings: &Arc<Settings>, sql: &'q str) -> Self {
        let summary = Summary::of(sql);
        let span = tracing::info_span!(
            target: "multiweb_telemetry::db",
            "db query",
            otel.name = Empty,
            otel.kind = "client",
            otel.status_code = Empty,
            db.system = settings.system,
            db.operation.name = summary.operation,
            db.collection.name = Empty,
            db.query.text = Empty,
            db.response.returned_rows = Empty,
            db.response.status_code = Empty,
            error.type = Empty,
        );
        if !span.is_disabled() {
            // The name the conventions give: `{operation} {collection}`.
            match summary.collection {
                Some(collection) => {
                    span.record(
                        "otel.name",
                        tracing::field::display(format_args!("{} {collection}", summary.operation)),
                    );
                    span.record("db.collection.name", collection);
                }
                None => {
                    span.record("otel.name", summary.operation);
                }
            }
            span.record("db.query.text", &*without_literals(sql));
        }
        Self {
            settings: Arc::clone(settings),
            span,
            operation: summary.operation,
            sql,
            start: Instant::now(),
            rows: 0,
            done: false,
        }
    }

    /// The query's span, to run its work in.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    fn row(&mut self) {
        self.rows += 1;
    }

    /// Ends the query: its duration, its span's outcome, and a warn line if
    /// it was slow or an error line if it failed.
    pub(crate) fn finish(&mut self, error: Option<&sqlx::Error>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.start.elapsed();
        let seconds = elapsed.as_secs_f64();
        metrics::histogram!(
            OPERATION_DURATION,
            "db_system" => self.settings.system,
            "db_operation" => self.operation,
        )
        .record(seconds);
        let span = &self.span;
        span.record("db.response.returned_rows", self.rows);
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
                db.operation.name = self.operation,
                db.query.text = %without_literals(self.sql),
                db.response.status_code = failure.code.as_deref(),
                error.type = failure.kind,
                "database query failed"
            );
        }
        if elapsed >= self.settings.slow_threshold {
            tracing::warn!(
                target: "multiweb_telemetry::db",
                duration = seconds,
                slow_threshold = self.settings.slow_threshold.as_secs_f64(),
                db.system = self.settings.system,
                db.operation.name = self.operation,
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
        let polled = {
            let _entered = this.record.span().enter();
            this.inner.poll_next(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(Either::Right(_)))) => this.record.row(),
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

/// Runs `future` (one query returning at most one row) inside its record's
/// span and ends the record with its outcome.
pub(crate) async fn recorded<T, F>(
    mut record: QueryRecord<'_>,
    future: F,
) -> Result<Option<T>, sqlx::Error>
where
    F: std::future::Future<Output = Result<Option<T>, sqlx::Error>>,
{
    let result = tracing::Instrument::instrument(future, record.span().clone()).await;
    match &result {
        Ok(row) => {
            if row.is_some() {
                record.row();
            }
            record.finish(None);
        }
        Err(error) => record.finish(Some(error)),
    }
    result
}
