//! Users, products and transactions in a database, through sqlx.
//!
//! SQLite in `marketplace.db` under the working directory by default, or
//! whatever `DATABASE_URL` names (`postgres://...`). sqlx's `Any` driver
//! picks the backend from the URL at run time, so every query below is
//! written once; the schema uses only types `Any` maps on both (`BIGINT`,
//! `TEXT`) and `$N` placeholders, which SQLite reads as positional too. The
//! two schemas differ in how ids are generated, so each backend has its own
//! migration, run by sqlx's migrator.
//!
//! The database may be down at start or go away later: the example keeps
//! serving, requests that need it answer 503, and it recovers by itself
//! (the pool reconnects; the schema is migrated as soon as the database
//! answers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{Any, AnyPoolOptions};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use multiweb_telemetry::db::InstrumentedPool;

/// The database used when `DATABASE_URL` is not set.
pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://marketplace.db?mode=rwc";

/// How long a request waits for a connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Product {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) price_cents: i64,
}

/// Why a store operation failed, as the API answers it.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// The database cannot be reached (or is not migrated yet): 503.
    Unavailable,
    /// A foreign key named a row that does not exist: 422.
    MissingReference,
    /// Anything else the database refused: 500.
    Failed,
}

/// The database behind the API.
pub(crate) struct Store {
    db: InstrumentedPool<Any>,
    migrations: &'static str,
    /// The schema is migrated.
    ready: AtomicBool,
    /// The last query reached the database (for the transitions' log lines).
    reachable: AtomicBool,
}

impl Store {
    /// A store over `url`; connects lazily, so a database that is down does
    /// not stop the example from starting.
    pub(crate) fn open(url: &str) -> Result<Arc<Self>, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy(url)?;
        let db = multiweb_telemetry::db::instrument(pool);
        let migrations = match db.db_system() {
            "postgresql" => include_str!("migrations/postgres/0001_init.sql"),
            "sqlite" => include_str!("migrations/sqlite/0001_init.sql"),
            other => {
                return Err(sqlx::Error::Configuration(
                    format!("DATABASE_URL: {other} is not supported; use sqlite:// or postgres://")
                        .into(),
                ));
            }
        };
        Ok(Arc::new(Self {
            db,
            migrations,
            ready: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
        }))
    }

    /// `db.system` of the database: `sqlite` or `postgresql`.
    pub(crate) fn system(&self) -> &'static str {
        self.db.db_system()
    }

    /// Migrates the schema now if the database answers; otherwise keeps
    /// trying every second in the background, and meanwhile requests that
    /// need the database answer 503.
    pub(crate) async fn migrate_now_or_later(self: &Arc<Self>) {
        if self.try_migrate().await.is_ok() {
            return;
        }
        let store = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if store.try_migrate().await.is_ok() {
                    return;
                }
            }
        });
    }

    /// One attempt; logs the first failure and the success.
    async fn try_migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self.migrate().await {
            Ok(()) => {
                self.ready.store(true, Ordering::Release);
                self.reached();
                tracing::info!(db.system = self.system(), "database ready");
                Ok(())
            }
            Err(err) => {
                if self.reachable.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        error = %err,
                        db.system = self.system(),
                        "database not reachable; answering 503 and retrying every second"
                    );
                }
                Err(err)
            }
        }
    }

    async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        Migrator::new(Migrations(self.migrations))
            .await?
            .run(self.db.pool())
            .await
    }

    /// Whether the database answers (and is migrated).
    pub(crate) async fn is_up(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self
                .checked(sqlx::query("SELECT 1").execute(&self.db).await)
                .is_ok()
    }

    pub(crate) async fn products(&self) -> Result<Vec<Product>, StoreError> {
        self.ensure_ready()?;
        let rows: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT id, name, price_cents FROM products ORDER BY id LIMIT 100")
                .fetch_all(&self.db)
                .await
                .map_err(|e| self.failure(&e))?;
        self.reached();
        Ok(rows.into_iter().map(Product::from).collect())
    }

    pub(crate) async fn product(&self, id: i64) -> Result<Option<Product>, StoreError> {
        self.ensure_ready()?;
        let row: Option<(i64, String, i64)> =
            sqlx::query_as("SELECT id, name, price_cents FROM products WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db)
                .await
                .map_err(|e| self.failure(&e))?;
        self.reached();
        Ok(row.map(Product::from))
    }

    pub(crate) async fn create_product(
        &self,
        name: String,
        price_cents: i64,
    ) -> Result<Product, StoreError> {
        self.ensure_ready()?;
        let (id,): (i64,) =
            sqlx::query_as("INSERT INTO products (name, price_cents) VALUES ($1, $2) RETURNING id")
                .bind(&name)
                .bind(price_cents)
                .fetch_one(&self.db)
                .await
                .map_err(|e| self.failure(&e))?;
        self.reached();
        Ok(Product {
            id,
            name,
            price_cents,
        })
    }

    pub(crate) async fn register_user(&self, name: &str) -> Result<i64, StoreError> {
        self.ensure_ready()?;
        let (id,): (i64,) = sqlx::query_as("INSERT INTO users (name) VALUES ($1) RETURNING id")
            .bind(name)
            .fetch_one(&self.db)
            .await
            .map_err(|e| self.failure(&e))?;
        self.reached();
        Ok(id)
    }

    pub(crate) async fn user_exists(&self, id: i64) -> Result<bool, StoreError> {
        self.ensure_ready()?;
        let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| self.failure(&e))?;
        self.reached();
        Ok(row.is_some())
    }

    /// Records a completed transaction; `product_id` must name a product.
    pub(crate) async fn record_transaction(
        &self,
        user_id: Option<i64>,
        product_id: Option<i64>,
        amount_cents: i64,
        method: &str,
    ) -> Result<(), StoreError> {
        self.ensure_ready()?;
        let mut tx = self.db.begin().await.map_err(|e| self.failure(&e))?;
        sqlx::query(
            "INSERT INTO transactions (user_id, product_id, amount_cents, method) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(product_id)
        .bind(amount_cents)
        .bind(method)
        .execute(&mut tx)
        .await
        .map_err(|e| self.failure(&e))?;
        tx.commit().await.map_err(|e| self.failure(&e))?;
        self.reached();
        Ok(())
    }

    fn ensure_ready(&self) -> Result<(), StoreError> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Unavailable)
        }
    }

    fn checked<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.reached();
                Ok(value)
            }
            Err(err) => Err(self.failure(&err)),
        }
    }

    /// Notes that the database answered; logs the recovery after an outage.
    fn reached(&self) {
        if !self.reachable.swap(true, Ordering::AcqRel) {
            tracing::info!(db.system = self.system(), "database reachable again");
        }
    }

    /// Classifies a failure; logs the start of an outage once. The failed
    /// query itself was already logged by the instrumentation.
    fn failure(&self, err: &sqlx::Error) -> StoreError {
        match err {
            sqlx::Error::Database(db)
                if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
            {
                StoreError::MissingReference
            }
            // PostgreSQL shutting down or the connection lost (SQL states
            // 57P01-57P03 and class 08) is an outage, not a refusal.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")) =>
            {
                self.outage(err)
            }
            sqlx::Error::Database(_)
            | sqlx::Error::RowNotFound
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. } => StoreError::Failed,
            _ => self.outage(err),
        }
    }

    fn outage(&self, err: &sqlx::Error) -> StoreError {
        if self.reachable.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %err, "database unavailable; answering 503 until it is back");
        }
        StoreError::Unavailable
    }
}

impl From<(i64, String, i64)> for Product {
    fn from((id, name, price_cents): (i64, String, i64)) -> Self {
        Self {
            id,
            name,
            price_cents,
        }
    }
}

/// The schema of one backend, compiled into the example, for sqlx's
/// migrator.
#[derive(Debug)]
struct Migrations(&'static str);

impl<'s> MigrationSource<'s> for Migrations {
    fn resolve(
        self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>>
    {
        Box::pin(async move {
            Ok(vec![Migration::new(
                1,
                "init".into(),
                MigrationType::Simple,
                self.0.into(),
                false,
            )])
        })
    }
}
