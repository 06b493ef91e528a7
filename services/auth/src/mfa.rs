//! TOTP multi-factor authentication (RFC 6238: SHA-1, six digits, 30 s
//! steps, one step of drift either way).
//!
//! - **Enrolment:** `AssociateSoftwareToken` makes a 160-bit secret and
//!   keeps it as pending; `VerifySoftwareToken` with a first code makes it
//!   the user's secret and returns ten recovery codes. Secrets are sealed
//!   with the same key service as the signing keys, bound to the user.
//! - **Login:** an enrolled user of a tenant whose mode is not OFF gets a
//!   `SOFTWARE_TOKEN_MFA` challenge instead of tokens; a user of a
//!   REQUIRED tenant without an authenticator gets `MFA_SETUP`. A
//!   challenge is a single-use session (stored as its SHA-256) valid for
//!   three minutes and five wrong codes; wrong codes also count toward the
//!   email's lockout.
//! - **Replay:** the last accepted step is kept, and a code of that step or
//!   an earlier one is refused, so a code works once even within its
//!   window.
//! - **Recovery codes:** ten random codes, stored as SHA-256, each usable
//!   once in place of a TOTP code.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::token::AccessClaims;
use rand::TryRngCore;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use totp_rs::{Algorithm, Builder, Totp};
use uuid::Uuid;

use crate::core::{AppClient, AuthCore, LoginOutcome, Tokens, required, required_fields};
use crate::entity::{mfa_challenge, mfa_recovery_code, mfa_totp, tenant, user};
use crate::error::{AuthError, Result};
use crate::lockout;
use crate::session::{self, sha256_hex};

/// A tenant's MFA mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MfaMode {
    Off,
    #[default]
    Optional,
    Required,
}

impl MfaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MfaMode::Off => "off",
            MfaMode::Optional => "optional",
            MfaMode::Required => "required",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "off" => MfaMode::Off,
            "required" => MfaMode::Required,
            // The safe reading of anything else is the default.
            _ => MfaMode::Optional,
        }
    }
}

/// The challenge names, as Cognito spells them.
pub const SOFTWARE_TOKEN_MFA: &str = "SOFTWARE_TOKEN_MFA";
pub const MFA_SETUP: &str = "MFA_SETUP";

/// How long a login challenge can be answered.
const CHALLENGE_TTL: Duration = Duration::from_secs(180);
/// Wrong codes a challenge survives.
const CHALLENGE_ATTEMPTS: i32 = 5;
const RECOVERY_CODES: usize = 10;
/// The name authenticator apps show above the account.
const ISSUER_LABEL: &str = "cloudsec";

const KIND_TOTP: &str = "totp";
const KIND_SETUP: &str = "setup";

/// What enrolment hands the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// What completing enrolment hands the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub recovery_codes: Vec<String>,
    /// The completed login, when enrolment answered an `MFA_SETUP`.
    pub tokens: Option<Tokens>,
}

/// Who is enrolling: a logged-in user, or a login under `MFA_SETUP`.
#[derive(Debug, Clone, Copy)]
pub enum Enroller<'a> {
    Caller(&'a AccessClaims),
    Session(&'a str),
}

fn totp(secret: &[u8], account: &str) -> Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_issuer(Some(ISSUER_LABEL))
        .with_account_name(account)
        .build()
        .map_err(|e| AuthError::Internal(format!("totp: {e}")))
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| AuthError::Internal(format!("os random: {e}")))?;
    Ok(bytes)
}

/// `xxxxx-xxxxx` from a 32-letter alphabet without look-alikes: 50 bits.
fn recovery_code() -> Result<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789z";
    let bytes = random_bytes::<10>()?;
    let mut code = String::with_capacity(11);
    for (i, b) in bytes.iter().enumerate() {
        if i == 5 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(code)
}

fn recovery_hash(user: Uuid, code: &str) -> String {
    let normalized: String = code
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .collect();
    sha256_hex(format!("{user}:recovery:{normalized}").as_bytes())
}

fn context(user: Uuid) -> Vec<u8> {
    format!("cloudsec-auth-mfa/{user}").into_bytes()
}

/// What an MFA secret's data key is bound to at a key service that binds
/// (KMS): its user.
fn binding(user: Uuid) -> cloudsec_secrets::KeyContext {
    cloudsec_secrets::KeyContext::default()
        .with("purpose", "auth-mfa-secret")
        .with("user", &user.to_string())
}

fn bad_mfa_code() -> AuthError {
    let mut v = FieldViolations::new();
    v.add("code", "is wrong, expired or already used");
    v.into()
}

fn bad_session() -> AuthError {
    AuthError::BadSession
}

impl AuthCore {
    async fn seal_secret(&self, user: Uuid, secret: &[u8]) -> Result<String> {
        use base64::Engine;
        match &self.mfa_sealer {
            Some(sealer) => {
                sealer
                    .seal_bytes(&context(user), &binding(user), secret)
                    .await
            }
            None => Ok(base64::engine::general_purpose::STANDARD.encode(secret)),
        }
    }

    async fn open_secret(&self, user: Uuid, stored: &str) -> Result<Vec<u8>> {
        use base64::Engine;
        match &self.mfa_sealer {
            Some(sealer) => {
                sealer
                    .open_bytes(&context(user), &binding(user), stored)
                    .await
            }
            None if crate::keys::is_sealed(stored) => Err(AuthError::Internal(
                "an MFA secret is sealed but no key service is configured".into(),
            )),
            None => base64::engine::general_purpose::STANDARD
                .decode(stored)
                .map_err(|e| AuthError::Internal(format!("MFA secret: {e}"))),
        }
    }

    async fn tenant_mode(&self, tenant: &str) -> Result<MfaMode> {
        Ok(tenant::Entity::find_by_id(tenant)
            .one(&self.db)
            .await?
            .map_or(MfaMode::default(), |t| MfaMode::parse(&t.mfa_mode)))
    }

    /// The challenge a password-checked login of `user` must pass, if any.
    pub(crate) async fn mfa_challenge(
        &self,
        user: &user::Model,
        app: &AppClient,
        now: DateTime<Utc>,
    ) -> Result<Option<LoginOutcome>> {
        let mode = self.tenant_mode(&user.tenant).await?;
        if mode == MfaMode::Off {
            return Ok(None);
        }
        let enrolled = mfa_totp::Entity::find_by_id(user.id)
            .one(&self.db)
            .await?
            .is_some_and(|t| t.secret.is_some());
        let (kind, name) = match (enrolled, mode) {
            (true, _) => (KIND_TOTP, SOFTWARE_TOKEN_MFA),
            (false, MfaMode::Required) => (KIND_SETUP, MFA_SETUP),
            (false, _) => return Ok(None),
        };
        let (session, hash) = session::mint()?;
        mfa_challenge::ActiveModel {
            session_hash: Set(hash),
            user_id: Set(user.id),
            kind: Set(kind.to_owned()),
            client_id: Set(app.id.clone()),
            attempts: Set(0),
            expires_at: Set(now + chrono::Duration::from_std(CHALLENGE_TTL).unwrap_or_default()),
        }
        .insert(&self.db)
        .await?;
        tracing::info!(user_id = %user.id, challenge = name, "login challenged");
        Ok(Some(LoginOutcome::Challenge { name, session }))
    }

    /// The live challenge `session` names, of `kind`.
    async fn challenge(
        &self,
        session: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<(mfa_challenge::Model, user::Model)> {
        let hash = session::presented_hash(session).ok_or_else(bad_session)?;
        let challenge = mfa_challenge::Entity::find_by_id(hash)
            .one(&self.db)
            .await?
            .filter(|c| c.kind == kind && c.expires_at > now && c.attempts < CHALLENGE_ATTEMPTS)
            .ok_or_else(bad_session)?;
        let user = user::Entity::find_by_id(challenge.user_id)
            .one(&self.db)
            .await?
            .filter(|u| u.disabled_at.is_none())
            .ok_or_else(bad_session)?;
        Ok((challenge, user))
    }

    /// A wrong code: the challenge and the email's lockout count it.
    async fn wrong_code(&self, challenge: &mfa_challenge::Model, user: &user::Model) -> Result<()> {
        mfa_challenge::Entity::update_many()
            .col_expr(
                mfa_challenge::Column::Attempts,
                Expr::col(mfa_challenge::Column::Attempts).add(1),
            )
            .filter(mfa_challenge::Column::SessionHash.eq(&challenge.session_hash))
            .exec(&self.db)
            .await?;
        lockout::record_failure(
            &self.db,
            &self.sessions.lockout,
            &lockout::email_key(&user.email),
            self.clock.now(),
        )
        .await?;
        Ok(())
    }

    /// Accepts `code` for `user`'s authenticator at most once: its step
    /// must be later than the last accepted one, and the update that
    /// records it decides races.
    async fn accept_totp(
        &self,
        user: &user::Model,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let Some(row) = mfa_totp::Entity::find_by_id(user.id).one(&self.db).await? else {
            return Ok(false);
        };
        let Some(stored) = &row.secret else {
            return Ok(false);
        };
        let secret = self.open_secret(user.id, stored).await?;
        let Some(step) = check_code(&secret, &user.email, code, now)? else {
            return Ok(false);
        };
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let updated = mfa_totp::Entity::update_many()
            .col_expr(mfa_totp::Column::LastStep, Expr::value(step))
            .filter(mfa_totp::Column::UserId.eq(user.id))
            .filter(
                sea_orm::Condition::any()
                    .add(mfa_totp::Column::LastStep.is_null())
                    .add(mfa_totp::Column::LastStep.lt(step)),
            )
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 0 {
            tracing::info!(user_id = %user.id, "totp code replayed");
        }
        Ok(updated.rows_affected == 1)
    }

    /// Spends an unused recovery code of `user`.
    async fn accept_recovery(
        &self,
        user: &user::Model,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let updated = mfa_recovery_code::Entity::update_many()
            .col_expr(mfa_recovery_code::Column::UsedAt, Expr::value(now))
            .filter(mfa_recovery_code::Column::UserId.eq(user.id))
            .filter(mfa_recovery_code::Column::CodeHash.eq(recovery_hash(user.id, code)))
            .filter(mfa_recovery_code::Column::UsedAt.is_null())
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 1 {
            tracing::info!(user_id = %user.id, "recovery code used");
        }
        Ok(updated.rows_affected == 1)
    }

    /// Answers a `SOFTWARE_TOKEN_MFA` challenge and completes the login.
    pub async fn respond_to_challenge(&self, session: &str, code: &str) -> Result<Tokens> {
        required_fields(&[("session", session), ("code", code)])?;
        let now = self.clock.now();
        let (challenge, user) = self.challenge(session, KIND_TOTP, now).await?;
        lockout::check(&self.db, &lockout::email_key(&user.email), now).await?;
        let accepted = if code.trim().len() == 6 {
            self.accept_totp(&user, code, now).await?
        } else {
            self.accept_recovery(&user, code, now).await?
        };
        if !accepted {
            self.wrong_code(&challenge, &user).await?;
            return Err(bad_mfa_code());
        }
        // Single use: a second answer with the same session finds nothing.
        let spent = mfa_challenge::Entity::delete_by_id(challenge.session_hash)
            .exec(&self.db)
            .await?;
        if spent.rows_affected == 0 {
            return Err(bad_session());
        }
        lockout::reset(&self.db, &lockout::email_key(&user.email)).await?;
        let app = self.app_client(&challenge.client_id)?;
        self.issue_tokens(&user, &app, now).await
    }

    async fn enroller(
        &self,
        who: Enroller<'_>,
        now: DateTime<Utc>,
    ) -> Result<(user::Model, Option<mfa_challenge::Model>)> {
        match who {
            Enroller::Caller(caller) => {
                let id = Uuid::parse_str(&caller.base.sub)
                    .map_err(|_| cloudsec_runtime::token::TokenError::Malformed)?;
                let user = user::Entity::find_by_id(id)
                    .one(&self.db)
                    .await?
                    .filter(|u| u.disabled_at.is_none())
                    .ok_or_else(|| AuthError::UserNotFound(caller.base.sub.clone()))?;
                Ok((user, None))
            }
            Enroller::Session(session) => {
                let (challenge, user) = self.challenge(session, KIND_SETUP, now).await?;
                Ok((user, Some(challenge)))
            }
        }
    }

    /// Starts enrolment: a new pending secret (an earlier pending one is
    /// replaced; an enrolled one stays until the new one is verified).
    pub async fn associate_software_token(&self, who: Enroller<'_>) -> Result<Enrolment> {
        let now = self.clock.now();
        let (user, _) = self.enroller(who, now).await?;
        if self.tenant_mode(&user.tenant).await? == MfaMode::Off {
            return Err(AuthError::MfaOff);
        }
        let secret = random_bytes::<20>()?;
        let sealed = self.seal_secret(user.id, &secret).await?;
        let totp = totp(&secret, &user.email)?;
        let uri = totp
            .to_url()
            .map_err(|e| AuthError::Internal(format!("otpauth: {e}")))?;
        let qr = qrcode::QrCode::new(uri.as_bytes())
            .map_err(|e| AuthError::Internal(format!("qr code: {e}")))?;
        let svg = qr
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        match mfa_totp::Entity::find_by_id(user.id).one(&self.db).await? {
            Some(row) => {
                let mut row: mfa_totp::ActiveModel = row.into();
                row.pending_secret = Set(Some(sealed));
                row.update(&self.db).await?;
            }
            None => {
                mfa_totp::ActiveModel {
                    user_id: Set(user.id),
                    secret: Set(None),
                    pending_secret: Set(Some(sealed)),
                    last_step: Set(None),
                    enabled_at: Set(None),
                    created_at: Set(now),
                }
                .insert(&self.db)
                .await?;
            }
        }
        tracing::info!(user_id = %user.id, "totp enrolment started");
        Ok(Enrolment {
            secret_base32: totp.secret().to_base32(),
            otpauth_uri: uri,
            qr_svg: svg,
        })
    }

    /// Completes enrolment with a first code: the pending secret becomes the
    /// user's, earlier recovery codes are replaced by ten new ones, and an
    /// `MFA_SETUP` login completes.
    pub async fn verify_software_token(&self, who: Enroller<'_>, code: &str) -> Result<Enrolled> {
        required("code", code)?;
        let now = self.clock.now();
        let (user, challenge) = self.enroller(who, now).await?;
        let row = mfa_totp::Entity::find_by_id(user.id)
            .one(&self.db)
            .await?
            .filter(|r| r.pending_secret.is_some())
            .ok_or(AuthError::NoPendingMfa)?;
        let pending = row.pending_secret.clone().unwrap_or_default();
        let secret = self.open_secret(user.id, &pending).await?;
        let Some(step) = check_code(&secret, &user.email, code, now)? else {
            if let Some(challenge) = &challenge {
                self.wrong_code(challenge, &user).await?;
            }
            return Err(bad_mfa_code());
        };
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| recovery_code())
            .collect::<Result<_>>()?;
        cloudsec_bus::transaction(&self.db, async |txn| {
            let mut active: mfa_totp::ActiveModel = row.into();
            active.secret = Set(Some(pending));
            active.pending_secret = Set(None);
            active.last_step = Set(Some(i64::try_from(step).unwrap_or(i64::MAX)));
            active.enabled_at = Set(Some(now));
            active.update(txn).await?;
            mfa_recovery_code::Entity::delete_many()
                .filter(mfa_recovery_code::Column::UserId.eq(user.id))
                .exec(txn)
                .await?;
            for code in &codes {
                mfa_recovery_code::ActiveModel {
                    user_id: Set(user.id),
                    code_hash: Set(recovery_hash(user.id, code)),
                    used_at: Set(None),
                }
                .insert(txn)
                .await?;
            }
            if let Some(challenge) = &challenge {
                let spent = mfa_challenge::Entity::delete_by_id(challenge.session_hash.clone())
                    .exec(txn)
                    .await?;
                if spent.rows_affected == 0 {
                    return Err(bad_session());
                }
            }
            Ok::<_, AuthError>(())
        })
        .await?;
        tracing::info!(user_id = %user.id, "totp enrolled");
        let tokens = match challenge {
            Some(challenge) => {
                let app = self.app_client(&challenge.client_id)?;
                Some(self.issue_tokens(&user, &app, now).await?)
            }
            None => None,
        };
        Ok(Enrolled {
            recovery_codes: codes,
            tokens,
        })
    }

    /// Removes the caller's authenticator and recovery codes, proven with
    /// one of its codes (see the RPC's contract).
    pub async fn delete_software_token(&self, caller: &AccessClaims, code: &str) -> Result<()> {
        required("code", code)?;
        let user_id = Uuid::parse_str(&caller.base.sub)
            .map_err(|_| cloudsec_runtime::token::TokenError::Malformed)?;
        let user = user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AuthError::UserNotFound(caller.base.sub.clone()))?;
        let enrolled = mfa_totp::Entity::find_by_id(user.id)
            .one(&self.db)
            .await?
            .is_some_and(|row| row.secret.is_some());
        if !enrolled {
            return Err(AuthError::NoAuthenticator);
        }
        if self.tenant_mode(&user.tenant).await? == MfaMode::Required {
            return Err(AuthError::MfaRequired);
        }
        let key = lockout::email_key(&user.email);
        let now = self.clock.now();
        lockout::check(&self.db, &key, now).await?;
        let proven = self.accept_totp(&user, code, now).await?
            || self.accept_recovery(&user, code.trim(), now).await?;
        if !proven {
            lockout::record_failure(&self.db, &self.sessions.lockout, &key, now).await?;
            return Err(bad_mfa_code());
        }
        cloudsec_bus::transaction(&self.db, async |txn| {
            remove_authenticator(txn, user.id).await?;
            Ok::<_, AuthError>(())
        })
        .await?;
        tracing::info!(user_id = %user.id, "authenticator removed by its user");
        Ok(())
    }

    /// Sets the caller's tenant's mode (tenant admins).
    pub async fn set_tenant_mfa_mode(&self, caller: &AccessClaims, mode: MfaMode) -> Result<()> {
        if !caller.base.is_tenant_admin() {
            return Err(AuthError::NotAdmin);
        }
        tenant::Entity::update_many()
            .col_expr(tenant::Column::MfaMode, Expr::value(mode.as_str()))
            .filter(tenant::Column::Id.eq(&caller.base.tenant))
            .exec(&self.db)
            .await?;
        tracing::info!(tenant = %caller.base.tenant, mode = mode.as_str(), "tenant mfa mode set");
        Ok(())
    }
}

/// Deletes `user`'s authenticator, enrolled or pending, and recovery
/// codes; returns whether there was an authenticator.
pub(crate) async fn remove_authenticator(db: &impl ConnectionTrait, user: Uuid) -> Result<bool> {
    let removed = mfa_totp::Entity::delete_by_id(user).exec(db).await?;
    mfa_recovery_code::Entity::delete_many()
        .filter(mfa_recovery_code::Column::UserId.eq(user))
        .exec(db)
        .await?;
    Ok(removed.rows_affected > 0)
}

/// The step `code` matches at `now`, within one step of drift.
fn check_code(secret: &[u8], account: &str, code: &str, now: DateTime<Utc>) -> Result<Option<u64>> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let at = u64::try_from(now.timestamp()).unwrap_or(0);
    Ok(totp(secret, account)?.check(code, at))
}

/// The current code of a base32 secret at `at` (tests, tools).
pub fn code_at(secret_base32: &str, at: DateTime<Utc>) -> Option<String> {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).ok()?;
    let totp = totp(secret.as_bytes(), "x").ok()?;
    Some(
        totp.generate(u64::try_from(at.timestamp()).ok()?)
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_random_and_normalized() {
        let a = recovery_code().unwrap();
        let b = recovery_code().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 11);
        assert_eq!(a.as_bytes()[5], b'-');
        let user = Uuid::now_v7();
        assert_eq!(
            recovery_hash(user, &a),
            recovery_hash(user, &a.to_uppercase().replace('-', " "))
        );
        assert_ne!(recovery_hash(user, &a), recovery_hash(Uuid::now_v7(), &a));
    }

    #[test]
    fn codes_match_their_step_and_one_either_side() {
        let secret = random_bytes::<20>().unwrap();
        let base32 = totp(&secret, "x").unwrap().secret().to_base32();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let code = code_at(&base32, t0).unwrap();
        let step = 1_800_000_000 / 30;
        assert_eq!(check_code(&secret, "x", &code, t0).unwrap(), Some(step));
        let later = t0 + chrono::Duration::seconds(30);
        assert_eq!(check_code(&secret, "x", &code, later).unwrap(), Some(step));
        let too_late = t0 + chrono::Duration::seconds(90);
        assert_eq!(check_code(&secret, "x", &code, too_late).unwrap(), None);
        assert_eq!(check_code(&secret, "x", "12345", t0).unwrap(), None);
        assert_eq!(check_code(&secret, "x", "abcdef", t0).unwrap(), None);
    }
}
