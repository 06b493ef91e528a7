//! Database pool metrics: size, connections in use and the time a
//! checkout waits.
//!
//! sqlx counts open and idle connections but not waiters, so the wait is
//! measured by a probe: every [`PROBE_INTERVAL`] one connection is checked
//! out and the time it took is kept. A saturated pool shows as a probe
//! that waits. The probe holds only a weak reference, so a pool is closed
//! when its component (and with it the registry) goes away.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sea_orm::{DatabaseConnection, DbBackend};

use super::process::Labels;

/// How often the probe checks a connection out.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// The sqlx pool behind a sea-orm connection.
#[derive(Clone, Debug)]
enum Pool {
    Postgres(sea_orm::sqlx::PgPool),
    Sqlite(sea_orm::sqlx::SqlitePool),
}

impl Pool {
    fn of(db: &DatabaseConnection) -> Option<Self> {
        match db.get_database_backend() {
            DbBackend::Postgres => Some(Self::Postgres(db.get_postgres_connection_pool().clone())),
            DbBackend::Sqlite => Some(Self::Sqlite(db.get_sqlite_connection_pool().clone())),
            _ => None,
        }
    }

    /// Open connections, idle ones and the most the pool opens.
    fn sizes(&self) -> (u32, u32, u32) {
        let idle = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        match self {
            Self::Postgres(p) => (
                p.size(),
                idle(p.num_idle()),
                p.options().get_max_connections(),
            ),
            Self::Sqlite(p) => (
                p.size(),
                idle(p.num_idle()),
                p.options().get_max_connections(),
            ),
        }
    }

    /// Checks one connection out and returns it at once; how long that took.
    async fn probe(&self) -> Option<Duration> {
        let start = Instant::now();
        let ok = match self {
            Self::Postgres(p) => p.acquire().await.is_ok(),
            Self::Sqlite(p) => p.acquire().await.is_ok(),
        };
        ok.then(|| start.elapsed())
    }
}

#[derive(Debug)]
struct Watched {
    name: String,
    pool: Pool,
    /// The last probe's wait, in seconds.
    wait: Mutex<f64>,
}

/// The pools of one registry, encoded as one set of families.
#[derive(Debug, Default)]
pub(crate) struct PoolCollector {
    pools: Mutex<Vec<Arc<Watched>>>,
}

impl PoolCollector {
    /// Starts watching `db` under `name`; `false` when its backend has no
    /// pool to watch.
    pub(crate) fn watch(&self, name: &str, db: &DatabaseConnection) -> bool {
        let Some(pool) = Pool::of(db) else {
            return false;
        };
        let watched = Arc::new(Watched {
            name: name.to_owned(),
            pool,
            wait: Mutex::new(0.0),
        });
        tokio::spawn(probe_every(Arc::downgrade(&watched), PROBE_INTERVAL));
        if let Ok(mut pools) = self.pools.lock() {
            pools.push(watched);
        }
        true
    }
}

async fn probe_every(watched: Weak<Watched>, every: Duration) {
    loop {
        // Strong only while probing, so the pool closes with its registry.
        let Some(pool) = watched.upgrade().map(|w| w.pool.clone()) else {
            return;
        };
        let waited = tokio::time::timeout(Duration::from_secs(30), pool.probe()).await;
        drop(pool);
        let Some(w) = watched.upgrade() else { return };
        let seconds = match waited {
            Ok(Some(d)) => d.as_secs_f64(),
            // A pool that cannot hand out a connection waits "forever";
            // the acquire timeout is the honest bound.
            Ok(None) | Err(_) => 30.0,
        };
        if let Ok(mut wait) = w.wait.lock() {
            *wait = seconds;
        }
        drop(w);
        tokio::time::sleep(every).await;
    }
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let pools = match self.pools.lock() {
            Ok(p) => p.clone(),
            Err(_) => return Ok(()),
        };
        if pools.is_empty() {
            return Ok(());
        }
        let connections = Family::<Labels, Gauge>::default();
        let max = Family::<Labels, Gauge>::default();
        let wait = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for p in &pools {
            let (size, idle, limit) = p.pool.sizes();
            let name = pair("pool", &p.name);
            connections
                .get_or_create(&vec![name.clone(), pair("state", "idle")])
                .set(i64::from(idle));
            connections
                .get_or_create(&vec![name.clone(), pair("state", "in_use")])
                .set(i64::from(size.saturating_sub(idle)));
            max.get_or_create(&vec![name.clone()]).set(i64::from(limit));
            let waited = p.wait.lock().map_or(0.0, |w| *w);
            wait.get_or_create(&vec![name]).set(waited);
        }
        for (name, help, metric) in [
            (
                "db_pool_connections",
                "open database connections, by pool and state (idle, in_use)",
                &connections as &dyn EncodeMetric,
            ),
            (
                "db_pool_max_connections",
                "the most connections the pool opens",
                &max,
            ),
            (
                "db_pool_acquire_wait_seconds",
                "how long the last probe (every 10 s) waited to check a connection out",
                &wait,
            ),
        ] {
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn pools_show_size_use_and_wait() {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        let metrics = super::super::Metrics::new("test");
        metrics.watch_pool("main", &db);
        let text = metrics.encode();
        assert!(
            text.contains("db_pool_max_connections{component=\"test\",pool=\"main\"}"),
            "{text}"
        );
        assert!(
            text.contains("db_pool_connections{component=\"test\",pool=\"main\",state=\"in_use\"}"),
            "{text}"
        );
        assert!(
            text.contains("db_pool_acquire_wait_seconds{component=\"test\",pool=\"main\"}"),
            "{text}"
        );
    }
}
