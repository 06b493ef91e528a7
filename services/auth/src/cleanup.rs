//! The sweeper: deletes rows that can no longer matter, so that tables hold
//! what is live rather than everything that ever happened.
//!
//! Every `[auth.cleanup] interval` it removes expired refresh tokens
//! (reuse detection only needs a family while it can still be refreshed),
//! expired confirmation codes, MFA challenge sessions and federation
//! sign-ins, failure counters idle for `failures_ttl` and not locking
//! anything, and sign-ups never confirmed within `unconfirmed_ttl`, with
//! the tenant each one created when nobody else is in it. Each kind is one
//! `DELETE`, safe on several replicas at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudsec_runtime::Shutdown;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::entity::{
    confirmation_code, federation_login, login_attempt, mfa_challenge, refresh_token, tenant, user,
};
use crate::error::Result;

pub use crate::config::CleanupConfig;

/// Rows one sweep deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub refresh_tokens: u64,
    pub confirmation_codes: u64,
    pub mfa_challenges: u64,
    pub federation_logins: u64,
    pub login_attempts: u64,
    pub unconfirmed_users: u64,
    pub empty_tenants: u64,
}

fn before(now: DateTime<Utc>, age: Duration) -> DateTime<Utc> {
    now.checked_sub_signed(chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Deletes the rows of the table `expires_at` belongs to whose expiry is
/// before `now`; returns how many.
pub(crate) async fn delete_expired<C>(
    db: &impl ConnectionTrait,
    expires_at: C,
    now: DateTime<Utc>,
) -> Result<u64>
where
    C: ColumnTrait,
    C::EntityName: EntityTrait,
{
    Ok(C::EntityName::delete_many()
        .filter(expires_at.lt(now))
        .exec(db)
        .await?
        .rows_affected)
}

/// One sweep at `now`.
pub async fn sweep(
    db: &impl ConnectionTrait,
    config: &CleanupConfig,
    now: DateTime<Utc>,
) -> Result<Swept> {
    let refresh_tokens = delete_expired(db, refresh_token::Column::ExpiresAt, now).await?;
    let confirmation_codes = delete_expired(db, confirmation_code::Column::ExpiresAt, now).await?;
    let mfa_challenges = delete_expired(db, mfa_challenge::Column::ExpiresAt, now).await?;
    let federation_logins = delete_expired(db, federation_login::Column::ExpiresAt, now).await?;
    let login_attempts = login_attempt::Entity::delete_many()
        .filter(login_attempt::Column::UpdatedAt.lt(before(now, config.failures_ttl)))
        .filter(
            login_attempt::Column::LockedUntil
                .is_null()
                .or(login_attempt::Column::LockedUntil.lt(now)),
        )
        .exec(db)
        .await?
        .rows_affected;
    // Rows that reference the user go with it (foreign keys cascade).
    let unconfirmed_users = user::Entity::delete_many()
        .filter(user::Column::ConfirmedAt.is_null())
        .filter(user::Column::CreatedAt.lt(before(now, config.unconfirmed_ttl)))
        .exec(db)
        .await?
        .rows_affected;
    // A tenant always keeps its admin (an admin cannot delete themself),
    // so only a removed sign-up leaves one empty.
    let empty_tenants = if unconfirmed_users == 0 {
        0
    } else {
        tenant::Entity::delete_many()
            .filter(
                Expr::col((tenant::Entity, tenant::Column::Id)).not_in_subquery(
                    Query::select()
                        .column(user::Column::Tenant)
                        .from(user::Entity)
                        .to_owned(),
                ),
            )
            .exec(db)
            .await?
            .rows_affected
    };
    Ok(Swept {
        refresh_tokens,
        confirmation_codes,
        mfa_challenges,
        federation_logins,
        login_attempts,
        unconfirmed_users,
        empty_tenants,
    })
}

/// Sweeps with `core`'s database and clock every `interval` until
/// `shutdown`; a failed sweep is logged and retried at the next interval.
pub(crate) fn spawn(core: crate::AuthCore, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = core.sessions.cleanup;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(config.interval) => {}
            }
            match sweep(&core.db, &config, core.clock.now()).await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(?swept, "auth cleanup");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "auth cleanup failed; retrying at the next interval")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_interval_is_refused() {
        let error = toml::from_str::<CleanupConfig>("interval = \"0s\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("must be more than 0s"), "{error}");
        let config: CleanupConfig = toml::from_str("interval = \"30s\"").unwrap();
        assert_eq!(config.interval, Duration::from_secs(30));
        assert_eq!(
            config.unconfirmed_ttl,
            CleanupConfig::default().unconfirmed_ttl
        );
    }
}
