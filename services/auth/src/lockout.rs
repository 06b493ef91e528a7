//! Progressive lockout of an email after repeated failed logins, and a
//! limit on failed logins per client address.
//!
//! Failures are counted per email string, not per account: an unknown
//! email is locked after the same tries as a known one and gets the same
//! answer, so the lockout cannot be used to find out which accounts exist.
//! A locked email is refused before any password hash is computed, which
//! also keeps a guessing storm from burning the hashing pool.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
};

use crate::config::LockoutConfig;
use crate::entity::login_attempt;
use crate::error::{AuthError, Result};
use crate::session::sha256_hex;

/// The key of an email's counter: the hash of its normalized form.
pub(crate) fn email_key(email: &str) -> String {
    sha256_hex(email.trim().to_lowercase().as_bytes())
}

/// The key of a client address's counter, distinct from every email key.
pub(crate) fn ip_key(ip: std::net::IpAddr) -> String {
    sha256_hex(format!("ip:{ip}").as_bytes())
}

/// Counts a failed login from a client address: a burst of
/// `ip_threshold` failures, each within `ip_window` of the last, locks the
/// address for `ip_window`. A success does not clear it, so one good
/// account cannot launder a password spray.
pub(crate) async fn record_ip_failure(
    db: &DatabaseConnection,
    rule: &LockoutConfig,
    key: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    if rule.ip_threshold == 0 {
        return Ok(());
    }
    let window = chrono::Duration::from_std(rule.ip_window).unwrap_or(chrono::Duration::MAX);
    cloudsec_bus::transaction(db, async |txn| {
        // A quiet spell longer than the window starts the count afresh.
        if let Some(since) = now.checked_sub_signed(window) {
            login_attempt::Entity::update_many()
                .col_expr(login_attempt::Column::Failures, Expr::value(0))
                .filter(login_attempt::Column::EmailHash.eq(key))
                .filter(login_attempt::Column::UpdatedAt.lt(since))
                .exec(txn)
                .await?;
        }
        let failures = count_failure(txn, key, now)
            .await?
            .map_or(0, |r| u32::try_from(r.failures).unwrap_or(0));
        if failures >= rule.ip_threshold {
            crate::metrics::lockout("ip");
            login_attempt::Entity::update(login_attempt::ActiveModel {
                email_hash: Set(key.to_owned()),
                locked_until: Set(now.checked_add_signed(window)),
                ..Default::default()
            })
            .exec(txn)
            .await?;
            tracing::warn!(failures, "client address locked out of logins");
        }
        Ok::<_, AuthError>(())
    })
    .await
}

/// How long the `failures`-th consecutive failure locks the email: nothing
/// below the threshold, then `base` doubling per failure, at most `max`.
pub(crate) fn lock_for(rule: &LockoutConfig, failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(rule.threshold)?;
    // 2^31 × base is past any sane `max`; the cap keeps the shift defined.
    let factor = 1u32.checked_shl(Ord::min(over, 31)).unwrap_or(u32::MAX);
    Some(rule.base.saturating_mul(factor).min(rule.max))
}

/// Whole seconds, rounded up, so "try again in N s" is never too early.
fn ceil_secs(d: chrono::TimeDelta) -> Duration {
    let ms = u64::try_from(d.num_milliseconds()).unwrap_or(0);
    Duration::from_secs(ms.div_ceil(1000))
}

/// Refuses while `key` is locked.
pub(crate) async fn check(db: &impl ConnectionTrait, key: &str, now: DateTime<Utc>) -> Result<()> {
    let row = login_attempt::Entity::find_by_id(key.to_owned())
        .one(db)
        .await?;
    match row.and_then(|r| r.locked_until) {
        Some(until) if until > now => Err(AuthError::LockedOut {
            retry_after: ceil_secs(until - now),
        }),
        _ => Ok(()),
    }
}

/// Adds one failure to `key`'s row (creating it at one) and reads the row
/// back. One statement both creates and increments, so concurrent failures
/// for the same key are all counted.
async fn count_failure(
    txn: &impl ConnectionTrait,
    key: &str,
    now: DateTime<Utc>,
) -> std::result::Result<Option<login_attempt::Model>, sea_orm::DbErr> {
    login_attempt::Entity::insert(login_attempt::ActiveModel {
        email_hash: Set(key.to_owned()),
        failures: Set(1),
        locked_until: Set(None),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(login_attempt::Column::EmailHash)
            .value(
                login_attempt::Column::Failures,
                Expr::col((login_attempt::Entity, login_attempt::Column::Failures)).add(1),
            )
            .value(login_attempt::Column::UpdatedAt, now)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    login_attempt::Entity::find_by_id(key.to_owned())
        .one(txn)
        .await
}

/// Counts one more failure and locks the email when the rule says so.
/// Returns the new count.
pub(crate) async fn record_failure(
    db: &DatabaseConnection,
    rule: &LockoutConfig,
    key: &str,
    now: DateTime<Utc>,
) -> Result<u32> {
    crate::metrics::login_failure();
    cloudsec_bus::transaction(db, async |txn| {
        let row = count_failure(txn, key, now)
            .await?
            .ok_or_else(|| AuthError::Internal("login attempt row vanished".into()))?;
        let failures = u32::try_from(row.failures).unwrap_or(0);
        if let Some(lock) = lock_for(rule, failures) {
            let until = chrono::Duration::from_std(lock)
                .ok()
                .and_then(|lock| now.checked_add_signed(lock))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            login_attempt::Entity::update(login_attempt::ActiveModel {
                email_hash: Set(key.to_owned()),
                locked_until: Set(Some(until)),
                ..Default::default()
            })
            .exec(txn)
            .await?;
            tracing::warn!(failures, lock_secs = lock.as_secs(), "login locked");
            crate::metrics::lockout("email");
        }
        Ok::<_, AuthError>(failures)
    })
    .await
}

/// Forgets the failures after a successful login.
pub(crate) async fn reset(db: &impl ConnectionTrait, key: &str) -> Result<()> {
    login_attempt::Entity::delete_by_id(key.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_threshold_up_to_the_cap() {
        let rule = LockoutConfig::default();
        let secs = |n| lock_for(&rule, n).map(|d| d.as_secs());
        assert_eq!(secs(0), None);
        assert_eq!(secs(4), None);
        assert_eq!(secs(5), Some(30));
        assert_eq!(secs(6), Some(60));
        assert_eq!(secs(9), Some(480));
        assert_eq!(secs(10), Some(900));
        assert_eq!(secs(11), Some(900));
        assert_eq!(secs(u32::MAX), Some(900));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(chrono::TimeDelta::milliseconds(1)).as_secs(), 1);
        assert_eq!(ceil_secs(chrono::TimeDelta::seconds(30)).as_secs(), 30);
        assert_eq!(
            ceil_secs(chrono::TimeDelta::milliseconds(29_001)).as_secs(),
            30
        );
        assert_eq!(ceil_secs(chrono::TimeDelta::seconds(-3)).as_secs(), 0);
    }

    #[test]
    fn email_keys_ignore_case_and_spaces() {
        assert_eq!(
            email_key(" Alice@Example.com"),
            email_key("alice@example.com")
        );
        assert_ne!(email_key("alice@example.com"), email_key("bob@example.com"));
        assert_eq!(email_key("a@b.c").len(), 64);
    }
}
