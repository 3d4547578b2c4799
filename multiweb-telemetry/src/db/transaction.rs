//! [`InstrumentedTransaction`]: a sqlx transaction whose queries are traced
//! and timed like its pool's.

use std::sync::Arc;

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::{Database, Describe, Either, Execute, Executor};

use super::query::{QueryRecord, RecordedStream, Settings, recorded};

/// A [`sqlx::Transaction`] from [`InstrumentedPool::begin`](super::InstrumentedPool::begin).
///
/// `&mut InstrumentedTransaction` is a [`sqlx::Executor`]:
/// `.execute(&mut tx)`. Dropped without [`commit`](Self::commit), it rolls
/// back, as sqlx's does.
#[derive(Debug)]
pub struct InstrumentedTransaction<DB: Database> {
    pub(super) tx: sqlx::Transaction<'static, DB>,
    pub(super) settings: Arc<Settings>,
}

impl<DB: Database> InstrumentedTransaction<DB> {
    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls the transaction back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl<'t, DB> Executor<'t> for &'t mut InstrumentedTransaction<DB>
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
        't: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let record = QueryRecord::start(&self.settings, query.sql());
        Box::pin(RecordedStream::new(
            (&mut *self.tx).fetch_many(query),
            record,
        ))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        't: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let record = QueryRecord::start(&self.settings, query.sql());
        Box::pin(recorded(record, (&mut *self.tx).fetch_optional(query)))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement<'q>, sqlx::Error>>
    where
        't: 'e,
    {
        (&mut *self.tx).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<DB>, sqlx::Error>>
    where
        't: 'e,
    {
        (&mut *self.tx).describe(sql)
    }
}
