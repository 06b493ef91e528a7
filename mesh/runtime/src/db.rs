//! Database connections: SQLite for the embedded default, PostgreSQL when
//! the URL says `postgres://`. Migrations run at start.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

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
    } else {
        return Err(DbError::Scheme(shown));
    }
    let db = Database::connect(options)
        .await
        .map_err(|source| DbError::Connect {
            url: shown.clone(),
            source,
        })?;
    M::up(&db, None)
        .await
        .map_err(|source| DbError::Migrate { url: shown, source })?;
    Ok(db)
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
