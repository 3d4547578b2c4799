//! The connection pool gauges, read from every live instrumented pool at
//! each scrape.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use sqlx::Database;

use super::pool::Shared;
use super::{CONNECTIONS_MAX, CONNECTIONS_USAGE};

/// What the gauges read from a pool.
trait PoolStats: Send + Sync {
    /// `(idle, open, max)` connections.
    fn stats(&self) -> (u64, u64, u64);
}

impl<DB: Database> PoolStats for Shared<DB> {
    fn stats(&self) -> (u64, u64, u64) {
        let idle = self.pool.num_idle() as u64;
        let open = u64::from(self.pool.size());
        let max = u64::from(self.pool.options().get_max_connections());
        (idle, open, max)
    }
}

/// Every instrumented pool still in use.
static POOLS: Mutex<Vec<Weak<dyn PoolStats>>> = Mutex::new(Vec::new());

/// Adds a pool to the gauges and sets them, so they are on `/metrics` from
/// the first scrape.
pub(super) fn register<DB: Database>(shared: &Arc<Shared<DB>>) {
    let shared: Arc<dyn PoolStats> = Arc::<Shared<DB>>::clone(shared);
    POOLS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::downgrade(&shared));
    refresh();
}

/// Sets `db_client_connections_usage{state="idle|used"}` and
/// `db_client_connections_max`, summed over the live pools; forgets the
/// pools that were dropped. Called at each scrape.
pub(crate) fn refresh() {
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    if pools.is_empty() {
        // No pool was ever instrumented (or the last one's zeros are set).
        return;
    }
    pools.retain(|pool| pool.strong_count() > 0);
    let (mut idle, mut used, mut max) = (0_u64, 0_u64, 0_u64);
    for pool in pools.iter().filter_map(Weak::upgrade) {
        let (pool_idle, open, pool_max) = pool.stats();
        idle += pool_idle;
        used += open.saturating_sub(pool_idle);
        max += pool_max;
    }
    drop(pools);
    metrics::gauge!(CONNECTIONS_USAGE, "state" => "idle").set(idle as f64);
    metrics::gauge!(CONNECTIONS_USAGE, "state" => "used").set(used as f64);
    metrics::gauge!(CONNECTIONS_MAX).set(max as f64);
}
