//! Refresh tokens: minting, rotation with reuse detection, revocation.
//!
//! A token is 256 random bits, base64url; the table keeps only its SHA-256.
//! Every token descending from one login shares a family. Exchanging a
//! token marks it rotated and mints its successor; presenting a rotated
//! token again means two parties hold it (a stolen copy, or the real client
//! after the thief), so the whole family is revoked. Revocation always
//! covers a whole family, which is why a family with any revoked member is
//! dead: a successor minted while a revocation ran cannot outlive it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entity::{refresh_token, user};
use crate::error::{AuthError, Result};

const TOKEN_BYTES: usize = 32;

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash a presented token is stored under, or `None` when it cannot be
/// one of ours, which spares the database a lookup.
pub(crate) fn presented_hash(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    (bytes.len() == TOKEN_BYTES).then(|| sha256_hex(token.trim().as_bytes()))
}

pub(crate) fn mint() -> Result<(String, String)> {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| AuthError::Internal(format!("os random: {e}")))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = sha256_hex(token.as_bytes());
    Ok((token, hash))
}

/// Who a new family of tokens is for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) user_id: Uuid,
    pub(crate) tenant: String,
    pub(crate) client_id: String,
    pub(crate) auth_time: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Stores a new token and returns it; `family` is `None` for a login.
async fn insert(
    db: &impl ConnectionTrait,
    grant: &Grant,
    family: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<String> {
    let (token, hash) = mint()?;
    refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        token_hash: Set(hash),
        family_id: Set(family.unwrap_or_else(Uuid::now_v7)),
        user_id: Set(grant.user_id),
        tenant: Set(grant.tenant.clone()),
        client_id: Set(grant.client_id.clone()),
        auth_time: Set(grant.auth_time),
        issued_at: Set(now),
        expires_at: Set(grant.expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(token)
}

/// The first token of a login.
pub(crate) async fn issue(
    db: &impl ConnectionTrait,
    grant: &Grant,
    now: DateTime<Utc>,
) -> Result<String> {
    insert(db, grant, None, now).await
}

/// The outcome of presenting a token inside a write transaction.
#[derive(Debug)]
pub(crate) enum Rotation {
    /// The token was spent; `token` is its successor.
    Rotated {
        user: Box<user::Model>,
        grant: Grant,
        token: String,
    },
    /// Refused; the reason is for the log only.
    Refused(&'static str),
}

/// Spends the token stored under `hash`, locking its row first. The caller
/// commits even a refusal, since reuse detection revokes as it refuses.
pub(crate) async fn rotate(
    txn: &DatabaseTransaction,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Rotation> {
    let Some(row) = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .lock_exclusive()
        .one(txn)
        .await?
    else {
        return Ok(Rotation::Refused("unknown"));
    };
    if row.revoked_at.is_some() {
        return Ok(Rotation::Refused("revoked"));
    }
    if row.rotated_at.is_some() {
        let revoked = revoke_family(txn, row.family_id, now).await?;
        tracing::warn!(
            family_id = %row.family_id,
            user_id = %row.user_id,
            revoked,
            "refresh token reused, login revoked"
        );
        return Ok(Rotation::Refused("reused"));
    }
    if row.expires_at <= now {
        return Ok(Rotation::Refused("expired"));
    }
    let revoked_members = refresh_token::Entity::find()
        .filter(refresh_token::Column::FamilyId.eq(row.family_id))
        .filter(refresh_token::Column::RevokedAt.is_not_null())
        .count(txn)
        .await?;
    if revoked_members > 0 {
        revoke_family(txn, row.family_id, now).await?;
        return Ok(Rotation::Refused("login revoked"));
    }
    let Some(user) = user::Entity::find_by_id(row.user_id).one(txn).await? else {
        revoke_family(txn, row.family_id, now).await?;
        return Ok(Rotation::Refused("user gone"));
    };
    refresh_token::ActiveModel {
        id: Set(row.id),
        rotated_at: Set(Some(now)),
        ..Default::default()
    }
    .update(txn)
    .await?;
    let grant = Grant {
        user_id: row.user_id,
        tenant: row.tenant,
        client_id: row.client_id,
        auth_time: row.auth_time,
        // A login lives as long as its first token: rotation never extends it.
        expires_at: row.expires_at,
    };
    let token = insert(txn, &grant, Some(row.family_id), now).await?;
    Ok(Rotation::Rotated {
        user: Box::new(user),
        grant,
        token,
    })
}

/// The family of the token stored under `hash`, if any.
pub(crate) async fn family_of(db: &impl ConnectionTrait, hash: &str) -> Result<Option<Uuid>> {
    Ok(refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(db)
        .await?
        .map(|row| row.family_id))
}

/// Revokes every token of a login; returns how many were not yet revoked.
pub(crate) async fn revoke_family(
    db: &impl ConnectionTrait,
    family: Uuid,
    now: DateTime<Utc>,
) -> Result<u64> {
    revoke_where(db, refresh_token::Column::FamilyId.eq(family), now).await
}

/// Revokes every token of a user; returns how many were not yet revoked.
pub(crate) async fn revoke_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64> {
    revoke_where(db, refresh_token::Column::UserId.eq(user_id), now).await
}

/// Revokes the tokens `which` selects; returns how many were not yet
/// revoked (a revoked token keeps its first revocation time).
async fn revoke_where(
    db: &impl ConnectionTrait,
    which: impl IntoCondition,
    now: DateTime<Utc>,
) -> Result<u64> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(which)
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_256_bit_base64url_and_recognized() {
        let (token, hash) = mint().unwrap();
        assert_eq!(token.len(), 43);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(presented_hash(&token).as_deref(), Some(hash.as_str()));
        assert_ne!(mint().unwrap().0, token);
    }

    #[test]
    fn foreign_strings_are_not_tokens() {
        for bad in [
            "",
            "abc",
            "not base64 at all!",
            &"A".repeat(44),
            &"A".repeat(42),
        ] {
            assert_eq!(presented_hash(bad), None, "{bad}");
        }
    }
}
