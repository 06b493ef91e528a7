//! Sign-up and confirmation: a new tenant and its first user, the codes
//! that prove the email (sealed for the mailer), resends.

use chrono::{DateTime, Utc};
use cloudsec_bus::Envelope;
use cloudsec_proto::events::v1::{UserConfirmationRequested, UserSignedUp};
use cloudsec_runtime::FieldViolations;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::codes::{self, Purpose};
use crate::core::{
    AuthCore, NewUser, bad_code, check_tenant, normalize_email, remember_password, required,
    required_fields, timestamp, unique_to,
};
use crate::entity::{tenant, user};
use crate::error::{AuthError, Result};

/// The event of a new user, appended with the change that made them.
pub(crate) fn signed_up(
    id: uuid::Uuid,
    tenant: &str,
    email: &str,
    tenant_created: bool,
    now: DateTime<Utc>,
) -> Envelope {
    let event = UserSignedUp {
        user_id: id.to_string(),
        tenant: tenant.to_owned(),
        email: email.to_owned(),
        tenant_created,
        sign_up_time: Some(timestamp(now)),
    };
    Envelope::new(crate::EVENT_SOURCE, &event).with_current_trace()
}

impl AuthCore {
    /// Creates `tenant` and its first user, who becomes the tenant's admin.
    pub async fn sign_up(&self, email: &str, password: &str, tenant: &str) -> Result<NewUser> {
        let mut v = FieldViolations::new();
        let email = normalize_email("email", email, &mut v);
        self.check_new_password("password", password, &email, &mut v);
        check_tenant("tenant", tenant, &mut v);
        v.check()?;

        // Tenant names are public (they appear in every token and URL a
        // tenant's people share), so a taken one is said plainly; the
        // unique key below still decides races.
        if tenant::Entity::find_by_id(tenant)
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(AuthError::TenantTaken(tenant.to_owned()));
        }

        // Hashed before the email is looked at, so that a taken email
        // costs the same time as a new one.
        let hash = self.hasher.hash(password.to_owned()).await?;
        let hash_copy = hash.clone();
        let id = uuid::Uuid::now_v7();
        // A taken email gets the answer a new one gets, and nothing is
        // created: like login, sign-up does not say which accounts exist.
        // The owner of the address loses nothing; whoever typed it never
        // receives a code.
        let pretend = || {
            tracing::info!(
                tenant,
                "sign-up for a registered email; answered as new, nothing created"
            );
            Ok(NewUser {
                user_id: id.to_string(),
                tenant: tenant.to_owned(),
            })
        };
        if user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?
            .is_some()
        {
            return pretend();
        }
        let now = self.clock.now();
        let confirm = self.sessions.confirmation.required;
        let created = self
            .outbox
            .write(&self.db, async |txn, events| {
                tenant::ActiveModel {
                    id: Set(tenant.to_owned()),
                    created_at: Set(now),
                    mfa_mode: Set(crate::mfa::MfaMode::default().as_str().to_owned()),
                }
                .insert(txn)
                .await
                .map_err(|e| unique_to(e, AuthError::TenantTaken(tenant.to_owned())))?;
                user::ActiveModel {
                    id: Set(id),
                    email: Set(email.clone()),
                    tenant: Set(tenant.to_owned()),
                    password_hash: Set(hash),
                    is_tenant_admin: Set(true),
                    created_at: Set(now),
                    disabled_at: Set(None),
                    confirmed_at: Set((!confirm).then_some(now)),
                    token_generation: Set(0),
                }
                .insert(txn)
                .await
                .map_err(|e| unique_to(e, AuthError::EmailTaken))?;
                remember_password(txn, id, &hash_copy, now).await?;
                if confirm {
                    events.push(
                        self.send_code(txn, id, tenant, &email, Purpose::SignUp, now)
                            .await?,
                    );
                }
                events.push(signed_up(id, tenant, &email, true, now));
                Ok::<_, AuthError>(())
            })
            .await;
        match created {
            Ok(()) => {}
            // The email was taken between the look and the insert.
            Err(AuthError::EmailTaken) => return pretend(),
            Err(e) => return Err(e),
        }
        tracing::info!(user_id = %id, tenant, "user signed up");
        Ok(NewUser {
            user_id: id.to_string(),
            tenant: tenant.to_owned(),
        })
    }

    /// Stores a new code for `purpose` in the caller's transaction and
    /// returns the event that delivers it, sealed for the mailer.
    pub(crate) async fn send_code(
        &self,
        txn: &impl ConnectionTrait,
        user_id: uuid::Uuid,
        tenant: &str,
        email: &str,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<Envelope> {
        let ttl = match purpose {
            Purpose::SignUp => self.sessions.confirmation.code_ttl,
            Purpose::PasswordReset => self.sessions.confirmation.reset_code_ttl,
        };
        let (code, expires_at) = codes::issue(txn, user_id, purpose, ttl, now).await?;
        let mut event = UserConfirmationRequested {
            user_id: user_id.to_string(),
            tenant: tenant.to_owned(),
            email: email.to_owned(),
            purpose: purpose.event() as i32,
            expire_time: Some(timestamp(expires_at)),
            sealed_code: String::new(),
        };
        self.code_seal
            .as_ref()
            .ok_or_else(|| AuthError::Internal("no key service seals codes for the mailer".into()))?
            .seal(&mut event, &code)
            .await?;
        Ok(Envelope::new(crate::EVENT_SOURCE, &event).with_current_trace())
    }

    /// The user with `email`, for the code flows (which answer the same
    /// whether or not one exists).
    pub(crate) async fn find_by_email(&self, email: &str) -> Result<Option<user::Model>> {
        let email = email.trim().to_lowercase();
        Ok(user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?)
    }

    /// Sends a code when `user` may get one now; a code sent under
    /// `resend_interval` ago is left alone, so the flows cannot be used to
    /// flood a mailbox.
    pub(crate) async fn maybe_send_code(
        &self,
        user: &user::Model,
        purpose: Purpose,
    ) -> Result<bool> {
        let now = self.clock.now();
        self.outbox
            .write(&self.db, async |txn, events| {
                if !codes::may_send(
                    txn,
                    user.id,
                    purpose,
                    self.sessions.confirmation.resend_interval,
                    now,
                )
                .await?
                {
                    return Ok(false);
                }
                events.push(
                    self.send_code(txn, user.id, &user.tenant, &user.email, purpose, now)
                        .await?,
                );
                Ok::<_, AuthError>(true)
            })
            .await
    }

    /// Confirms the sign-up of `email` with `code`. Unknown emails, users
    /// already confirmed and wrong, expired or spent codes all get one
    /// answer.
    pub async fn confirm_sign_up(&self, email: &str, code: &str) -> Result<()> {
        required_fields(&[("email", email), ("code", code)])?;
        let Some(user) = self.find_by_email(email).await? else {
            return Err(bad_code());
        };
        let now = self.clock.now();
        let presented = codes::Presented {
            user: user.id,
            purpose: Purpose::SignUp,
            code,
            max_attempts: self.sessions.confirmation.max_attempts,
            now,
        };
        // A wrong code commits too: it counts a try.
        let confirmed = self
            .outbox
            .write(&self.db, async |txn, _| {
                if user.confirmed_at.is_some() || !codes::spend(txn, &presented).await? {
                    return Ok(false);
                }
                let user_id = user.id;
                let mut row: user::ActiveModel = user.into();
                row.confirmed_at = Set(Some(now));
                row.update(txn).await?;
                tracing::info!(%user_id, "sign-up confirmed");
                Ok::<_, AuthError>(true)
            })
            .await?;
        if confirmed { Ok(()) } else { Err(bad_code()) }
    }

    /// Sends a new sign-up code to an unconfirmed, enabled user. Succeeds
    /// whatever the email, so the answer reveals nothing.
    pub async fn resend_confirmation_code(&self, email: &str) -> Result<()> {
        required("email", email)?;
        if let Some(user) = self.find_by_email(email).await?
            && user.confirmed_at.is_none()
            && user.disabled_at.is_none()
        {
            let sent = self.maybe_send_code(&user, Purpose::SignUp).await?;
            tracing::info!(user_id = %user.id, sent, "confirmation code requested");
        }
        Ok(())
    }
}
