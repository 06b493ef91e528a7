//! Login and sessions: passwords to tokens, refresh-token rotation,
//! logout, global sign-out and the revocations verifiers pull.

use chrono::{DateTime, Utc};
use cloudsec_proto::auth::v1::{ListTokenRevocationsResponse, TokenRevocation};
use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::token::AccessClaims;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::core::{AuthCore, LoginOutcome, Tokens, groups_of, required, timestamp};
use crate::entity::user;
use crate::error::{AuthError, Result};
use crate::lockout;
use crate::password;
use crate::revocation;
use crate::session::{self, Rotation};

/// How long a revocation outlives the longest access token: the clock skew
/// verifiers allow plus slack for their pulls.
const REVOCATION_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

impl AuthCore {
    /// Checks the password and issues an access token and a refresh token.
    /// Unknown email and wrong password give the same error after the same
    /// work; so does a locked email, known or not.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<std::net::IpAddr>,
        client_id: &str,
    ) -> Result<LoginOutcome> {
        let app = self.app_client(client_id)?;
        let mut v = FieldViolations::new();
        if email.trim().is_empty() {
            v.add("email", "is required");
        }
        if password.is_empty() {
            v.add("password", "is required");
        }
        if password.chars().count() > password::MAX_LENGTH {
            v.add(
                "password",
                format!("must be at most {} characters", password::MAX_LENGTH),
            );
        }
        v.check()?;
        let email = email.trim().to_lowercase();
        let key = lockout::email_key(&email);
        let ip_key = client.map(lockout::ip_key);
        if let Some(ip_key) = &ip_key {
            lockout::check(&self.db, ip_key, self.clock.now()).await?;
        }
        lockout::check(&self.db, &key, self.clock.now()).await?;
        let found = user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?;
        let phc = found.as_ref().map(|u| u.password_hash.clone());
        let verified = self.hasher.verify(password.to_owned(), phc).await?;
        // Read after hashing: the check above may be a while ago.
        let now = self.clock.now();
        let user = match found {
            // A disabled user gets the answer of a wrong password, so that
            // the state of an account is not revealed either.
            Some(user) if verified && user.disabled_at.is_none() => user,
            _ => {
                let failures =
                    lockout::record_failure(&self.db, &self.sessions.lockout, &key, now).await?;
                if let Some(ip_key) = &ip_key {
                    lockout::record_ip_failure(&self.db, &self.sessions.lockout, ip_key, now)
                        .await?;
                }
                tracing::info!(failures, "login refused");
                return Err(AuthError::BadCredentials);
            }
        };
        if user.confirmed_at.is_none() {
            tracing::info!(user_id = %user.id, "login refused: not confirmed");
            return Err(AuthError::NotConfirmed);
        }
        // The failure count is cleared only once every factor has passed:
        // a right password must not reset the count of wrong MFA codes.
        if let Some(challenge) = self.mfa_challenge(&user, &app, now).await? {
            return Ok(challenge);
        }
        lockout::reset(&self.db, &key).await?;
        Ok(LoginOutcome::Tokens(
            self.issue_tokens(&user, &app, now).await?,
        ))
    }

    /// Spends `refresh_token` for a new access token and its successor.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        required("refresh_token", refresh_token)?;
        let Some(hash) = session::presented_hash(refresh_token) else {
            tracing::info!(reason = "malformed", "refresh refused");
            return Err(AuthError::BadRefreshToken);
        };
        let now = self.clock.now();
        let outcome = cloudsec_bus::transaction(&self.db, async |txn| -> Result<_> {
            match session::rotate(txn, &hash, now).await? {
                Rotation::Rotated { user, .. } if user.disabled_at.is_some() => {
                    Ok(Err("user disabled"))
                }
                Rotation::Rotated { user, grant, token } => {
                    // A client removed from the configuration ends its
                    // logins.
                    let Ok(app) = self.app_client(&grant.client_id) else {
                        return Ok(Err("app client removed"));
                    };
                    let groups = groups_of(txn, user.id).await?;
                    let access = self.access_token(&user, &grant, groups, &app, now).await?;
                    let id_token = self.id_token(&user, &grant, &app, now).await?;
                    Ok(Ok(Tokens {
                        access,
                        id_token,
                        refresh_token: token,
                    }))
                }
                Rotation::Refused(reason) => Ok(Err(reason)),
            }
        })
        .await?;
        // A refusal commits too: reuse detection revokes as it refuses.
        outcome.map_err(|reason| {
            tracing::info!(reason, "refresh refused");
            AuthError::BadRefreshToken
        })
    }

    /// Ends the login `refresh_token` belongs to. Unknown and revoked
    /// tokens succeed too (RFC 7009), so the answer reveals nothing.
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        required("refresh_token", refresh_token)?;
        let Some(hash) = session::presented_hash(refresh_token) else {
            return Ok(());
        };
        if let Some(family) = session::family_of(&self.db, &hash).await? {
            let revoked = session::revoke_family(&self.db, family, self.clock.now()).await?;
            tracing::info!(family_id = %family, revoked, "logout");
        }
        Ok(())
    }

    /// Ends every login of `user_id`: their refresh tokens at once, their
    /// access tokens at every verifier's next revocation pull.
    pub(crate) async fn end_all_logins(
        &self,
        user_id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        // Tokens are verified with leeway, so the revocation outlives the
        // longest access token by a margin.
        let horizon = self.tokens.access_ttl + REVOCATION_MARGIN;
        revocation::revoke(&self.db, user_id, now, horizon).await?;
        session::revoke_user(&self.db, user_id, now).await
    }

    /// The access-token revocations in force, raised after `since` (with
    /// [`revocation::OVERLAP`]), and the time of the answer.
    pub async fn token_revocations(
        &self,
        since: Option<prost_types::Timestamp>,
    ) -> Result<ListTokenRevocationsResponse> {
        let since = match since {
            None => None,
            Some(t) => {
                let at = u32::try_from(t.nanos)
                    .ok()
                    .and_then(|nanos| DateTime::<Utc>::from_timestamp(t.seconds, nanos));
                let Some(at) = at else {
                    let mut v = FieldViolations::new();
                    v.add("since", "is not a valid timestamp");
                    return Err(v.into());
                };
                Some(at)
            }
        };
        let now = self.clock.now();
        let revocations = revocation::list(&self.db, since, now)
            .await?
            .into_iter()
            .map(|r| TokenRevocation {
                user_id: r.user_id.to_string(),
                min_generation: r.min_generation,
                expire_time: Some(timestamp(r.expires_at)),
            })
            .collect();
        Ok(ListTokenRevocationsResponse {
            revocations,
            server_time: Some(timestamp(now)),
        })
    }

    /// Ends every login of the user the access token names.
    pub async fn global_sign_out(&self, caller: &AccessClaims) -> Result<()> {
        let user_id = uuid::Uuid::parse_str(&caller.base.sub)
            .map_err(|_| cloudsec_runtime::token::TokenError::Malformed)?;
        let revoked = self.end_all_logins(user_id, self.clock.now()).await?;
        tracing::info!(%user_id, revoked, "global sign-out");
        Ok(())
    }
}
