//! Database connections: SQLite for the embedded default, PostgreSQL when
//! the URL says `postgres://`. Migrations run at start.
//!
//! A [`DatabaseUrl`] may carry a stream of replacement URLs (short-lived
//! credentials from Vault's database engine). The pool then builds new
//! connections with the newest URL and retires, at their next checkout,
//! the idle connections opened before the change, so a swap fails no
//! request and no connection outlives its credentials by more than one
//! use.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use tokio::sync::watch;

use crate::Secret;

/// A service's database URL, as configured (`database_url = "..."`), plus
/// the replacements that dynamic credentials publish.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(from = "Secret")]
pub struct DatabaseUrl {
    url: Secret,
    updates: Option<watch::Receiver<Secret>>,
}

impl DatabaseUrl {
    /// A URL whose credentials change: `updates` holds the current URL and
    /// publishes each new one.
    pub fn dynamic(updates: watch::Receiver<Secret>) -> Self {
        let url = updates.borrow().clone();
        Self {
            url,
            updates: Some(updates),
        }
    }

    /// The URL (the latest one, for dynamic credentials).
    pub fn expose(&self) -> String {
        match &self.updates {
            Some(rx) => rx.borrow().expose().to_owned(),
            None => self.url.expose().to_owned(),
        }
    }

    /// Whether the credentials are replaced while running.
    pub fn is_dynamic(&self) -> bool {
        self.updates.is_some()
    }

    /// The URL without its password, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.expose())
    }
}

impl From<Secret> for DatabaseUrl {
    fn from(url: Secret) -> Self {
        Self { url, updates: None }
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Secret::new(url).into()
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Opaque like `Secret`: a URL may carry credentials in places
        // `redact` does not know (query parameters).
        f.debug_struct("DatabaseUrl")
            .field("url", &"***")
            .field("dynamic", &self.is_dynamic())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database url `{0}`: use sqlite:// or postgres://")]
    Scheme(String),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sea_orm::DbErr },
    #[error("migrations failed on {url}: {source}")]
    Migrate { url: String, source: sea_orm::DbErr },
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Opens a pool to `url` and applies `M`'s pending migrations.
pub async fn connect<M: MigratorTrait>(url: &str) -> Result<DatabaseConnection, DbError> {
    connect_to::<M>(&DatabaseUrl::from(url)).await
}

/// Like [`connect`], following `url`'s credential changes when it has any
/// (PostgreSQL only).
pub async fn connect_to<M: MigratorTrait>(
    database: &DatabaseUrl,
) -> Result<DatabaseConnection, DbError> {
    let url = database.expose();
    let url = url.as_str();
    let shown = redact(url);
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        options
            // One writer at a time is SQLite's rule; a small pool with WAL
            // lets reads proceed while a write waits on the busy timeout.
            .max_connections(4)
            .map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        options.max_connections(16);
        if database.is_dynamic() {
            let swapped = swap_clock();
            let since = swapped.clone();
            // A connection older than the last swap was opened with the
            // previous credentials: drop it at checkout, a fresh one (with
            // the new credentials) takes its place.
            options.map_sqlx_postgres_before_acquire(move |_conn, meta| {
                let fresh = meta.age < since.elapsed();
                Box::pin(async move { Ok(fresh) })
            });
            let db = open::<M>(options, &shown).await?;
            if let Some(updates) = database.updates.clone() {
                follow(db.clone(), updates, swapped);
            }
            return Ok(db);
        }
    } else {
        return Err(DbError::Scheme(shown));
    }
    open::<M>(options, &shown).await
}

async fn open<M: MigratorTrait>(
    options: ConnectOptions,
    shown: &str,
) -> Result<DatabaseConnection, DbError> {
    let db = Database::connect(options)
        .await
        .map_err(|source| DbError::Connect {
            url: shown.to_owned(),
            source,
        })?;
    migrate::<M>(&db).await.map_err(|source| DbError::Migrate {
        url: shown.to_owned(),
        source,
    })?;
    Ok(db)
}

/// Applies `M`'s pending migrations. On PostgreSQL it first takes an
/// advisory lock named after `M`'s migration table, held by a transaction
/// on a connection of its own until the migrations are done: replicas, a
/// migration Job and the components that share the events database start
/// at the same time, and two unlocked runs of one migrator race on the
/// same `CREATE TABLE` (one of them then fails to start). SQLite needs no
/// lock: its writers are serialised by the file lock.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return M::up(db, None).await;
    }
    let table = M::migration_table_name().to_string();
    let lock = db.begin().await?;
    lock.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [migration_lock_key(&table).into()],
    ))
    .await?;
    let outcome = M::up(db, None).await;
    // Committing releases the lock whatever the outcome.
    lock.commit().await?;
    outcome
}

/// A stable 64-bit key for `pg_advisory_xact_lock` (FNV-1a of the name):
/// the same in every process and release.
fn migration_lock_key(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// When the credentials last changed, readable from the pool's callback.
#[derive(Debug, Clone)]
struct SwapClock {
    start: Instant,
    swapped_at_ms: Arc<AtomicU64>,
}

fn swap_clock() -> SwapClock {
    SwapClock {
        start: Instant::now(),
        swapped_at_ms: Arc::new(AtomicU64::new(0)),
    }
}

impl SwapClock {
    fn elapsed(&self) -> Duration {
        let at = Duration::from_millis(self.swapped_at_ms.load(Ordering::Acquire));
        self.start.elapsed().saturating_sub(at)
    }

    fn mark(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.swapped_at_ms.store(now, Ordering::Release);
    }
}

/// Points the pool at each new URL until the publisher goes away.
fn follow(db: DatabaseConnection, mut updates: watch::Receiver<Secret>, swapped: SwapClock) {
    use std::str::FromStr;
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let url = updates.borrow_and_update().clone();
            match sea_orm::sqlx::postgres::PgConnectOptions::from_str(url.expose()) {
                Ok(next) => {
                    db.get_postgres_connection_pool().set_connect_options(next);
                    swapped.mark();
                    tracing::info!(url = %redact(url.expose()), "database credentials replaced");
                }
                Err(error) => {
                    tracing::error!(url = %redact(url.expose()), %error, "new database URL is unusable; keeping the old credentials");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("sqlite://./a.db"), "sqlite://./a.db");
    }
}
