//! Passwords: the history a new one must differ from, forgotten-password
//! codes and changing a password.

use chrono::{DateTime, Utc};
use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::token::AccessClaims;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::codes::{self, Purpose};
use crate::core::{AuthCore, bad_code, blank_fields, remember_password, required};
use crate::entity::{password_history, user};
use crate::error::{AuthError, Result};
use crate::lockout;
use crate::password;

impl AuthCore {
    /// Adds to `v` that the new password in `field` is missing or breaks
    /// the tenant-wide policy.
    pub(crate) fn check_new_password(
        &self,
        field: &str,
        password: &str,
        email: &str,
        v: &mut FieldViolations,
    ) {
        if password.is_empty() {
            v.add(field, "is required");
        } else {
            password::check_policy(field, password, email, &self.sessions.password_policy, v);
        }
    }

    /// Refuses `proposed` when it matches the current password or one of
    /// the last `password_history`.
    pub(crate) async fn check_history(
        &self,
        user: &user::Model,
        proposed: &str,
        field: &str,
    ) -> Result<()> {
        let keep = self.sessions.password_history.max(1);
        let history = password_history::Entity::find()
            .filter(password_history::Column::UserId.eq(user.id))
            .order_by_desc(password_history::Column::CreatedAt)
            .limit(keep as u64)
            .all(&self.db)
            .await?;
        let mut earlier: Vec<String> = history.iter().map(|h| h.password_hash.clone()).collect();
        if !earlier.contains(&user.password_hash) {
            earlier.push(user.password_hash.clone());
        }
        for phc in earlier {
            if self.hasher.verify(proposed.to_owned(), Some(phc)).await? {
                let mut v = FieldViolations::new();
                v.add(field, format!("must differ from the last {keep} passwords"));
                return Err(v.into());
            }
        }
        Ok(())
    }

    /// Sets the user's password hash and records it in the history, which
    /// keeps only what the policy needs.
    pub(crate) async fn store_password(
        &self,
        txn: &impl ConnectionTrait,
        user: user::Model,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let user_id = user.id;
        let mut row: user::ActiveModel = user.into();
        row.password_hash = Set(hash.to_owned());
        row.update(txn).await?;
        remember_password(txn, user_id, hash, now).await?;
        let keep: Vec<uuid::Uuid> = password_history::Entity::find()
            .filter(password_history::Column::UserId.eq(user_id))
            .order_by_desc(password_history::Column::CreatedAt)
            .limit(self.sessions.password_history.max(1) as u64)
            .all(txn)
            .await?
            .into_iter()
            .map(|h| h.id)
            .collect();
        password_history::Entity::delete_many()
            .filter(password_history::Column::UserId.eq(user_id))
            .filter(password_history::Column::Id.is_not_in(keep))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Sends a password-reset code to an enabled user. Succeeds whatever
    /// the email, so the answer reveals nothing.
    pub async fn forgot_password(&self, email: &str) -> Result<()> {
        required("email", email)?;
        if let Some(user) = self.find_by_email(email).await?
            && user.disabled_at.is_none()
        {
            let sent = self.maybe_send_code(&user, Purpose::PasswordReset).await?;
            tracing::info!(user_id = %user.id, sent, "password reset requested");
        }
        Ok(())
    }

    /// Sets a new password with a reset code. The code also proves the
    /// email, so an unconfirmed user is confirmed by it. Every login of the
    /// user is revoked and the lockout cleared.
    pub async fn confirm_forgot_password(
        &self,
        email: &str,
        code: &str,
        proposed: &str,
    ) -> Result<()> {
        let mut v = blank_fields(&[("email", email), ("code", code)]);
        self.check_new_password("password", proposed, &email.trim().to_lowercase(), &mut v);
        v.check()?;
        let Some(user) = self
            .find_by_email(email)
            .await?
            .filter(|u| u.disabled_at.is_none())
        else {
            return Err(bad_code());
        };
        let now = self.clock.now();
        let mut presented = codes::Presented {
            user: user.id,
            purpose: Purpose::PasswordReset,
            code,
            max_attempts: self.sessions.confirmation.max_attempts,
            now,
        };
        // Look before the expensive checks, so a wrong code costs no
        // hashing; the code is spent below, with the new password.
        if !codes::peek(&self.db, &presented).await? {
            cloudsec_bus::transaction(&self.db, async |txn| codes::spend(txn, &presented).await)
                .await?;
            return Err(bad_code());
        }
        self.check_history(&user, proposed, "password").await?;
        let hash = self.hasher.hash(proposed.to_owned()).await?;
        let now = self.clock.now();
        presented.now = now;
        let user_id = user.id;
        let key = lockout::email_key(&user.email);
        let spent = cloudsec_bus::transaction(&self.db, async |txn| {
            if !codes::spend(txn, &presented).await? {
                return Ok(false);
            }
            let confirmed = user.confirmed_at.is_some();
            self.store_password(txn, user, &hash, now).await?;
            if !confirmed {
                user::Entity::update_many()
                    .col_expr(
                        user::Column::ConfirmedAt,
                        sea_orm::sea_query::Expr::value(now),
                    )
                    .filter(user::Column::Id.eq(user_id))
                    .exec(txn)
                    .await?;
            }
            Ok::<_, AuthError>(true)
        })
        .await?;
        if !spent {
            return Err(bad_code());
        }
        lockout::reset(&self.db, &key).await?;
        let revoked = self.end_all_logins(user_id, now).await?;
        tracing::info!(%user_id, revoked, "password reset");
        Ok(())
    }

    /// Changes the caller's password: the previous one must be right (failures
    /// count toward the lockout like failed logins), the new one must pass
    /// the policy and differ from the last `password_history` ones. Every
    /// login of the user is then revoked, so a stolen refresh token dies
    /// with the old password.
    pub async fn change_password(
        &self,
        caller: &AccessClaims,
        previous: &str,
        proposed: &str,
    ) -> Result<()> {
        let mut v = FieldViolations::new();
        if previous.is_empty() {
            v.add("previous_password", "is required");
        }
        if proposed.is_empty() {
            v.add("proposed_password", "is required");
        }
        v.check()?;
        let user_id = uuid::Uuid::parse_str(&caller.base.sub)
            .map_err(|_| cloudsec_runtime::token::TokenError::Malformed)?;
        let user = user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AuthError::UserNotFound(caller.base.sub.clone()))?;
        let key = lockout::email_key(&user.email);
        lockout::check(&self.db, &key, self.clock.now()).await?;
        if previous.chars().count() > password::MAX_LENGTH
            || !self
                .hasher
                .verify(previous.to_owned(), Some(user.password_hash.clone()))
                .await?
        {
            lockout::record_failure(&self.db, &self.sessions.lockout, &key, self.clock.now())
                .await?;
            let mut v = FieldViolations::new();
            v.add("previous_password", "is not the current password");
            return Err(v.into());
        }
        let mut v = FieldViolations::new();
        password::check_policy(
            "proposed_password",
            proposed,
            &user.email,
            &self.sessions.password_policy,
            &mut v,
        );
        v.check()?;
        self.check_history(&user, proposed, "proposed_password")
            .await?;
        let hash = self.hasher.hash(proposed.to_owned()).await?;
        let now = self.clock.now();
        self.outbox
            .write(&self.db, async |txn, _| {
                self.store_password(txn, user, &hash, now).await
            })
            .await?;
        lockout::reset(&self.db, &key).await?;
        let revoked = self.end_all_logins(user_id, now).await?;
        tracing::info!(%user_id, revoked, "password changed");
        Ok(())
    }
}
