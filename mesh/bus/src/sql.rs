//! Raw statements for the few queries sea-query cannot say portably
//! (`FOR UPDATE SKIP LOCKED`, `UPDATE ... RETURNING` over a subquery).
//!
//! Statements are written once with PostgreSQL's `$1` placeholders; on
//! SQLite they become `?1`, SQLite's numbered form, so a parameter may be
//! used twice or out of order on both.

use sea_orm::{DbBackend, Statement, Value};

pub(crate) fn stmt(
    backend: DbBackend,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Statement {
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Milliseconds since the Unix epoch, the bus's one time column type: the
/// same integer on both databases, compared without time-zone rules.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `duration` in whole milliseconds, saturating.
pub(crate) fn ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let pg = stmt(
            DbBackend::Postgres,
            "a = $1 AND b = $2",
            [1.into(), 2.into()],
        );
        assert_eq!(pg.sql, "a = $1 AND b = $2");
        let lite = stmt(DbBackend::Sqlite, "a = $1 AND b = $2", [1.into(), 2.into()]);
        assert_eq!(lite.sql, "a = ?1 AND b = ?2");
    }
}
