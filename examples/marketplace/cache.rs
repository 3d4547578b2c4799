//! An optional Redis cache of product reads (`REDIS_URL`).
//!
//! `GET /api/v1/products/{id}` looks in Redis first (`product:{id}`, kept
//! five minutes) and only then in the database: Redis counts the hits and
//! misses that redis_exporter exports as `redis_keyspace_hits_total` and
//! `redis_keyspace_misses_total`, the guide's hit ratio. The cache is a
//! convenience: when Redis is down, reads go to the database and the
//! example says so once in its log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::store::Product;

/// How long a product stays cached, in seconds.
const TTL_SECONDS: u64 = 300;

pub(crate) struct Cache {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    /// The last command reached Redis (for the transitions' log lines).
    reachable: AtomicBool,
}

impl Cache {
    /// A cache at `url`; connects in the background (see [`Cache::connect`]).
    pub(crate) fn open(url: &str) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(Self {
            client: redis::Client::open(url)?,
            connection: OnceCell::new(),
            reachable: AtomicBool::new(true),
        }))
    }

    /// Connects as soon as Redis answers, retrying every second; the
    /// connection then reconnects by itself.
    pub(crate) fn connect(self: &Arc<Self>) {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(1)))
                .set_number_of_retries(1);
            loop {
                match ConnectionManager::new_with_config(cache.client.clone(), config.clone()).await
                {
                    Ok(manager) => {
                        let _ = cache.connection.set(manager);
                        tracing::info!("cache ready");
                        return;
                    }
                    Err(err) => cache.unreachable(&err),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Whether Redis answers `PING`.
    pub(crate) async fn is_up(&self) -> bool {
        let Some(mut connection) = self.connection.get().cloned() else {
            return false;
        };
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
        pong.is_ok()
    }

    /// The cached product `id`, if Redis has it.
    pub(crate) async fn product(&self, id: i64) -> Option<Product> {
        let mut connection = self.connection.get()?.clone();
        match connection.get::<_, Option<String>>(key(id)).await {
            Ok(cached) => {
                self.reached();
                cached.and_then(|json| serde_json::from_str(&json).ok())
            }
            Err(err) => {
                self.unreachable(&err);
                None
            }
        }
    }

    /// Caches `product`.
    pub(crate) async fn put(&self, product: &Product) {
        let Some(connection) = self.connection.get() else {
            return;
        };
        let Ok(json) = serde_json::to_string(product) else {
            return;
        };
        let mut connection = connection.clone();
        match connection
            .set_ex::<_, _, ()>(key(product.id), json, TTL_SECONDS)
            .await
        {
            Ok(()) => self.reached(),
            Err(err) => self.unreachable(&err),
        }
    }

    fn reached(&self) {
        if !self.reachable.swap(true, Ordering::AcqRel) {
            tracing::info!("cache reachable again");
        }
    }

    fn unreachable(&self, err: &redis::RedisError) {
        if self.reachable.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %err, "cache unavailable; reading from the database");
        }
    }
}

fn key(id: i64) -> String {
    format!("product:{id}")
}
