//! One-time codes that prove a user owns their email: sign-up confirmation
//! and password reset.
//!
//! A code is six random digits. The table keeps one code per user and
//! purpose, as a SHA-256 bound to both, so a code for one purpose or user
//! never opens another. The code leaves the service only sealed
//! ([`CodeSeal`]) in the `UserConfirmationRequested` event, under the
//! mailer's key: no other subscriber of the bus, nor a reader of the
//! outbox, can read it. A code dies when it is used, when it expires,
//! after `max_attempts` wrong tries, and when a new one is sent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::TryRngCore;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};
use uuid::Uuid;

use crate::entity::confirmation_code;
use crate::error::{AuthError, Result};
use crate::session::sha256_hex;

pub use crate::config::ConfirmationConfig;

/// Seals codes for the mailer (the auth service) and opens them (the
/// mailer), with envelope encryption under `mailer_key`.
///
/// The sealed code is bound to its event's user, tenant, email, purpose
/// and expiry, so a sealed code copied into another event (a forged one
/// naming the attacker's address) does not open.
#[derive(Debug, Clone)]
pub struct CodeSeal {
    sealer: crate::keys::KeySealer,
}

impl CodeSeal {
    pub fn new(keys: std::sync::Arc<dyn cloudsec_secrets::KeyService>, key_name: &str) -> Self {
        Self {
            sealer: crate::keys::KeySealer::new(keys, key_name),
        }
    }

    /// The seal `config` names: over KMS with `[auth.confirmation.kms]`,
    /// else over the platform's key service. Codes never leave in clear,
    /// so there is no seal without a key service.
    pub async fn from_config(
        config: &ConfirmationConfig,
        secrets: Option<&cloudsec_secrets::Secrets>,
    ) -> Result<Self> {
        if config.mailer_key.is_empty() {
            return Err(AuthError::Internal(
                "auth.confirmation.mailer_key must name a key".into(),
            ));
        }
        if let Some(kms) = &config.kms {
            let keys =
                crate::keys::kms_keys(kms, &config.mailer_key, "auth.confirmation.kms").await?;
            return Ok(Self::new(keys, &config.mailer_key));
        }
        let secrets = secrets.ok_or_else(|| {
            AuthError::Internal(
                "auth.confirmation.mailer_key: confirmation codes are sealed for the mailer, \
                 which needs a [secrets] back end (the local keystore or Vault) or \
                 auth.confirmation.kms"
                    .into(),
            )
        })?;
        let keys = secrets.key_service(&config.transit_mount);
        if let Some(client) = secrets.vault() {
            let transit = cloudsec_secrets::TransitKeys::new(client.clone(), &config.transit_mount);
            // Best effort: a least-privilege token may not create keys; the
            // operator (deploy/ansible) has then made it.
            if let Err(error) = transit.ensure_key(&config.mailer_key).await {
                tracing::debug!(%error, key = %config.mailer_key, "cannot create the transit key (it may exist already)");
            }
            // A key that is not there stops the start, not the first
            // sign-up.
            keys.latest_version(&config.mailer_key).await.map_err(|e| {
                AuthError::Internal(format!(
                    "auth.confirmation.mailer_key `{}` on transit mount `{}`: {e}",
                    config.mailer_key, config.transit_mount
                ))
            })?;
        }
        Ok(Self::new(keys, &config.mailer_key))
    }

    /// What a code's data key is bound to at a key service that binds
    /// (KMS): its user and tenant, never the address (the encryption
    /// context is logged in clear by CloudTrail; the sealed code's own
    /// associated data binds the address, purpose and expiry).
    fn binding(
        event: &cloudsec_proto::events::v1::UserConfirmationRequested,
    ) -> cloudsec_secrets::KeyContext {
        cloudsec_secrets::KeyContext::default()
            .with("purpose", "auth-confirmation-code")
            .with("user", &event.user_id)
            .with("tenant", &event.tenant)
    }

    fn context(event: &cloudsec_proto::events::v1::UserConfirmationRequested) -> Vec<u8> {
        let expires = event.expire_time.map_or(0, |t| t.seconds);
        format!(
            "cloudsec-confirmation-code/v1/{}/{}/{}/{}/{expires}",
            event.user_id, event.tenant, event.email, event.purpose
        )
        .into_bytes()
    }

    /// Puts `code`, sealed, into `event` (whose other fields are final).
    pub async fn seal(
        &self,
        event: &mut cloudsec_proto::events::v1::UserConfirmationRequested,
        code: &str,
    ) -> Result<()> {
        event.sealed_code = self
            .sealer
            .seal_bytes(
                &Self::context(event),
                &Self::binding(event),
                code.as_bytes(),
            )
            .await?;
        Ok(())
    }

    /// The code in `event`, for the mailer that delivers it.
    pub async fn open(
        &self,
        event: &cloudsec_proto::events::v1::UserConfirmationRequested,
    ) -> Result<String> {
        let plain = self
            .sealer
            .open_bytes(
                &Self::context(event),
                &Self::binding(event),
                &event.sealed_code,
            )
            .await?;
        String::from_utf8(plain)
            .map_err(|_| AuthError::Internal("a sealed code is not text".into()))
    }
}

/// What a code is for; the stored name and the event's enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SignUp,
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignUp => "sign_up",
            Purpose::PasswordReset => "password_reset",
        }
    }

    pub(crate) fn event(self) -> cloudsec_proto::events::v1::ConfirmationPurpose {
        use cloudsec_proto::events::v1::ConfirmationPurpose as P;
        match self {
            Purpose::SignUp => P::SignUp,
            Purpose::PasswordReset => P::PasswordReset,
        }
    }
}

/// Digits in a code.
pub const CODE_DIGITS: usize = 6;

fn hash(user: Uuid, purpose: Purpose, code: &str) -> String {
    sha256_hex(format!("{user}:{}:{code}", purpose.as_str()).as_bytes())
}

/// A fresh code, uniformly drawn (rejection sampling, so no digit value is
/// likelier than another).
fn draw() -> Result<String> {
    const SPACE: u32 = 1_000_000;
    // The largest multiple of SPACE below 2^32.
    const LIMIT: u32 = u32::MAX - (u32::MAX % SPACE);
    loop {
        let n = rand::rngs::OsRng
            .try_next_u32()
            .map_err(|e| AuthError::Internal(format!("os random: {e}")))?;
        if n < LIMIT {
            return Ok(format!("{:0width$}", n % SPACE, width = CODE_DIGITS));
        }
    }
}

/// Whether a new code may be sent now: none in flight, or the last one is
/// at least `interval` old.
pub(crate) async fn may_send(
    db: &impl ConnectionTrait,
    user: Uuid,
    purpose: Purpose,
    interval: Duration,
    now: DateTime<Utc>,
) -> Result<bool> {
    let last = confirmation_code::Entity::find_by_id((user, purpose.as_str().to_owned()))
        .one(db)
        .await?;
    Ok(match last {
        None => true,
        Some(code) => now.signed_duration_since(code.created_at) >= to_chrono(interval),
    })
}

/// Stores a new code for `user` (replacing any earlier one) and returns it
/// in clear, with its expiry, for the event.
pub(crate) async fn issue(
    db: &impl ConnectionTrait,
    user: Uuid,
    purpose: Purpose,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>)> {
    let code = draw()?;
    let expires_at = now
        .checked_add_signed(to_chrono(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    confirmation_code::Entity::insert(confirmation_code::ActiveModel {
        user_id: Set(user),
        purpose: Set(purpose.as_str().to_owned()),
        code_hash: Set(hash(user, purpose, &code)),
        attempts: Set(0),
        created_at: Set(now),
        expires_at: Set(expires_at),
    })
    .on_conflict(
        OnConflict::columns([
            confirmation_code::Column::UserId,
            confirmation_code::Column::Purpose,
        ])
        .update_columns([
            confirmation_code::Column::CodeHash,
            confirmation_code::Column::Attempts,
            confirmation_code::Column::CreatedAt,
            confirmation_code::Column::ExpiresAt,
        ])
        .to_owned(),
    )
    .exec(db)
    .await?;
    Ok((code, expires_at))
}

/// A code someone typed, and what it is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presented<'a> {
    pub user: Uuid,
    pub purpose: Purpose,
    pub code: &'a str,
    /// Wrong tries after which the code is dead.
    pub max_attempts: u32,
    pub now: DateTime<Utc>,
}

/// The stored code and whether the presented one opens it now.
async fn check(
    db: &impl ConnectionTrait,
    presented: &Presented<'_>,
) -> Result<Option<(confirmation_code::Model, bool)>> {
    let Presented {
        user,
        purpose,
        code,
        max_attempts,
        now,
    } = *presented;
    let Some(stored) = confirmation_code::Entity::find_by_id((user, purpose.as_str().to_owned()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let live = stored.expires_at > now
        && u32::try_from(stored.attempts).unwrap_or(u32::MAX) < max_attempts;
    let code = code.trim();
    let right = code.len() == CODE_DIGITS
        && code.bytes().all(|b| b.is_ascii_digit())
        && hash(user, purpose, code) == stored.code_hash;
    Ok(Some((stored, live && right)))
}

/// Whether `presented` would open the live code, without spending it or
/// counting a try.
pub(crate) async fn peek(db: &impl ConnectionTrait, presented: &Presented<'_>) -> Result<bool> {
    Ok(check(db, presented).await?.is_some_and(|(_, opens)| opens))
}

/// Spends `presented` if it is the live code of `user` for `purpose`.
/// A wrong code counts a try (and kills the code at `max_attempts`); a
/// right one is deleted. Run it in the transaction that acts on success,
/// so a code is spent exactly when its effect commits.
pub(crate) async fn spend(db: &impl ConnectionTrait, presented: &Presented<'_>) -> Result<bool> {
    let Some((stored, opens)) = check(db, presented).await? else {
        return Ok(false);
    };
    let Presented {
        user,
        purpose,
        max_attempts,
        now,
        ..
    } = *presented;
    let attempts = stored.attempts.saturating_add(1);
    let dead =
        stored.expires_at <= now || u32::try_from(attempts).unwrap_or(u32::MAX) >= max_attempts;
    if opens || dead {
        confirmation_code::Entity::delete_by_id((user, purpose.as_str().to_owned()))
            .exec(db)
            .await?;
        return Ok(opens);
    }
    let mut row: confirmation_code::ActiveModel = stored.into();
    row.attempts = Set(attempts);
    row.update(db).await?;
    Ok(false)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_bound_to_user_and_purpose() {
        let code = draw().unwrap();
        assert_eq!(code.len(), CODE_DIGITS);
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_ne!(
            hash(a, Purpose::SignUp, &code),
            hash(b, Purpose::SignUp, &code)
        );
        assert_ne!(
            hash(a, Purpose::SignUp, &code),
            hash(a, Purpose::PasswordReset, &code)
        );
    }

    #[test]
    fn config_defaults_and_parse() {
        let c: ConfirmationConfig = toml::from_str("").unwrap();
        assert_eq!(c, ConfirmationConfig::default());
        assert!(c.required);
        assert_eq!(c.max_attempts, 5);
        let c: ConfirmationConfig =
            toml::from_str("required = false\ncode_ttl = \"1h\"\nmax_attempts = 3\n").unwrap();
        assert!(!c.required);
        assert_eq!(c.code_ttl, Duration::from_secs(3600));
        assert!(toml::from_str::<ConfirmationConfig>("requird = false").is_err());
    }
}
