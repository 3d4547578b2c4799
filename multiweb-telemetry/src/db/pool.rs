//! [`InstrumentedPool`]: a sqlx pool whose queries are traced and timed.

use std::sync::Arc;

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::{Database, Describe, Either, Execute, Executor};

use super::query::{QueryRecord, RecordedStream, Settings, recorded};
use super::transaction::InstrumentedTransaction;

/// A [`sqlx::Pool`] whose queries each get a CLIENT span, a sample in
/// `db_client_operation_duration_seconds`, and a log line when slow or
/// failed; made by [`instrument`](super::instrument).
///
/// `&InstrumentedPool` is a [`sqlx::Executor`]: pass it where the pool went
/// (`.fetch_all(&db)`). Cloning is cheap and shares the pool.
pub struct InstrumentedPool<DB: Database> {
    /// Shared by the clones; the pool gauges' registry holds it weakly.
    shared: Arc<Shared<DB>>,
}

/// The pool and its settings.
pub(super) struct Shared<DB: Database> {
    pub(super) pool: sqlx::Pool<DB>,
    pub(super) settings: Arc<Settings>,
}

impl<DB: Database> std::fmt::Debug for InstrumentedPool<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedPool")
            .field("pool", &self.shared.pool)
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl<DB: Database> Clone for InstrumentedPool<DB> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<DB: Database> InstrumentedPool<DB> {
    pub(super) fn new(shared: Arc<Shared<DB>>) -> Self {
        Self { shared }
    }

    /// The pool itself, for what is not instrumented: the migrator,
    /// `acquire`, `close`.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.shared.pool
    }

    /// `db.system` of the pool's queries: `postgresql`, `sqlite`, `mysql`,
    /// or `other_sql`.
    pub fn db_system(&self) -> &'static str {
        self.shared.settings.system
    }

    /// Starts a transaction whose queries are instrumented like the pool's.
    /// `BEGIN`, `COMMIT` and `ROLLBACK` themselves get no span.
    pub async fn begin(&self) -> Result<InstrumentedTransaction<DB>, sqlx::Error> {
        Ok(InstrumentedTransaction {
            tx: self.shared.pool.begin().await?,
            settings: Arc::clone(&self.shared.settings),
        })
    }
}

impl<'p, DB> Executor<'p> for &'p InstrumentedPool<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let record = QueryRecord::start(&self.shared.settings, query.sql());
        Box::pin(RecordedStream::new(
            self.shared.pool.fetch_many(query),
            record,
        ))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let record = QueryRecord::start(&self.shared.settings, query.sql());
        Box::pin(recorded(record, self.shared.pool.fetch_optional(query)))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement<'q>, sqlx::Error>>
    where
        'p: 'e,
    {
        self.shared.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<DB>, sqlx::Error>>
    where
        'p: 'e,
    {
        self.shared.pool.describe(sql)
    }
}
