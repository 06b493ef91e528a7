//! Access-token revocation for the whole mesh.
//!
//! Access tokens are verified everywhere without calling the auth service,
//! so ending a user's refresh tokens alone leaves their access tokens
//! working until they expire. Each user has a token generation, stamped
//! into every access token (`cloudsec:generation`). Disabling, deleting,
//! signing out everywhere or setting a new password raises it and records
//! "tokens of this user below generation G are dead"; every verifier pulls
//! those rows (`ListTokenRevocations`) and refuses such tokens.
//!
//! A counter rather than a time: `iat` has one-second resolution, so a
//! cut-off time cannot tell a token issued just before a sign-out from one
//! issued just after it in the same second.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::entity::{token_revocation, user};
use crate::error::Result;

/// How far back a pull with `since` looks beyond it, so that a revocation
/// whose transaction committed after a concurrent pull read the table is
/// still seen by the next pull.
pub const OVERLAP: Duration = Duration::from_secs(60);

/// Revokes every access token `user_id` holds, and keeps the revocation
/// listed for as long as one of them can live (`horizon`).
pub(crate) async fn revoke(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
    horizon: Duration,
) -> Result<()> {
    // One statement, so concurrent revocations each get their own step.
    user::Entity::update_many()
        .col_expr(
            user::Column::TokenGeneration,
            Expr::col(user::Column::TokenGeneration).add(1),
        )
        .filter(user::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    let Some(generation) = user::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map(|u| u.token_generation)
    else {
        return Ok(());
    };
    let expires_at = now
        .checked_add_signed(chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    token_revocation::Entity::insert(token_revocation::ActiveModel {
        user_id: Set(user_id),
        min_generation: Set(generation),
        updated_at: Set(now),
        expires_at: Set(expires_at),
    })
    .on_conflict(
        OnConflict::column(token_revocation::Column::UserId)
            .update_columns([
                token_revocation::Column::MinGeneration,
                token_revocation::Column::UpdatedAt,
                token_revocation::Column::ExpiresAt,
            ])
            // A racing revocation that read a lower generation must not
            // lower the bar.
            .action_and_where(
                Expr::col((
                    token_revocation::Entity,
                    token_revocation::Column::MinGeneration,
                ))
                .lt(generation),
            )
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    // Rows past their horizon cover no live token; dropping them here keeps
    // the table as small as the revocations of one token lifetime. The
    // generation itself lives on in the user row.
    crate::cleanup::delete_expired(db, token_revocation::Column::ExpiresAt, now).await?;
    Ok(())
}

/// The lowest generation still accepted for `user_id`, if a revocation is
/// in force.
pub(crate) async fn min_generation(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    Ok(token_revocation::Entity::find_by_id(user_id)
        .filter(token_revocation::Column::ExpiresAt.gt(now))
        .one(db)
        .await?
        .map(|r| r.min_generation))
}

/// The revocations in force, raised after `since` less [`OVERLAP`] (all of
/// them without `since`).
pub(crate) async fn list(
    db: &impl ConnectionTrait,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<token_revocation::Model>> {
    let mut query =
        token_revocation::Entity::find().filter(token_revocation::Column::ExpiresAt.gt(now));
    if let Some(since) = since {
        let from = since
            .checked_sub_signed(chrono::Duration::from_std(OVERLAP).unwrap_or_default())
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        query = query.filter(token_revocation::Column::UpdatedAt.gt(from));
    }
    Ok(query.all(db).await?)
}
