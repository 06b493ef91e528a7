//! The auth domain: sign-up, login and the published keys. It knows
//! nothing of gRPC.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cloudsec_bus::{Envelope, Outbox};
use cloudsec_proto::auth::v1::Jwks;
use cloudsec_proto::events::v1::UserSignedUp;
use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::token::{Claims, Signer};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    SqlErr, TransactionTrait,
};

use crate::entity::{signing_key, tenant, user};
use crate::error::{AuthError, Result};
use crate::password::{self, Hasher};

/// What the tokens say about who issued them and for whom.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub user_id: String,
    pub tenant: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthCore {
    db: DatabaseConnection,
    hasher: Hasher,
    signer: Arc<Signer>,
    jwks: Jwks,
    tokens: TokenSettings,
    outbox: Outbox,
}

/// Lowercased and checked; violations are recorded on `field`.
fn normalize_email(field: &str, raw: &str, v: &mut FieldViolations) -> String {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if email.is_empty() {
        v.add(field, "is required");
    } else if !valid {
        v.add(field, "must be an email address such as name@example.com");
    }
    email
}

fn check_tenant(field: &str, tenant: &str, v: &mut FieldViolations) {
    let ok = (3..=63).contains(&tenant.len())
        && tenant.starts_with(|c: char| c.is_ascii_lowercase())
        && !tenant.ends_with('-')
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if tenant.is_empty() {
        v.add(field, "is required");
    } else if !ok {
        v.add(
            field,
            "must be 3 to 63 lowercase letters, digits and dashes, starting with a letter",
        );
    }
}

impl AuthCore {
    /// Loads the newest signing key, creating one on first start.
    pub async fn new(
        db: DatabaseConnection,
        hasher: Hasher,
        tokens: TokenSettings,
        outbox: Outbox,
    ) -> Result<Self> {
        let keys = signing_key::Entity::find()
            .order_by_desc(signing_key::Column::CreatedAt)
            .all(&db)
            .await?;
        let signer = match keys.first() {
            Some(k) => Signer::from_pem(&k.kid, &k.private_pem)?,
            None => {
                let signer = tokio::task::spawn_blocking(Signer::generate)
                    .await
                    .map_err(|e| AuthError::Internal(e.to_string()))??;
                signing_key::ActiveModel {
                    kid: Set(signer.kid().to_owned()),
                    private_pem: Set(signer.pem().to_owned()),
                    created_at: Set(Utc::now()),
                }
                .insert(&db)
                .await?;
                tracing::info!(kid = signer.kid(), "created token signing key");
                signer
            }
        };
        // Older keys stay published so tokens they signed verify until expiry.
        let mut jwks = Jwks {
            keys: vec![signer.jwk().clone()],
        };
        for k in keys.iter().skip(1) {
            match Signer::from_pem(&k.kid, &k.private_pem) {
                Ok(old) => jwks.keys.push(old.jwk().clone()),
                Err(error) => {
                    tracing::warn!(kid = %k.kid, %error, "skipping unreadable signing key")
                }
            }
        }
        Ok(Self {
            db,
            hasher,
            signer: Arc::new(signer),
            jwks,
            tokens,
            outbox,
        })
    }

    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Creates `tenant` and its first user, who becomes the tenant's admin.
    pub async fn sign_up(&self, email: &str, password: &str, tenant: &str) -> Result<NewUser> {
        let mut v = FieldViolations::new();
        let email = normalize_email("email", email, &mut v);
        if password.is_empty() {
            v.add("password", "is required");
        } else {
            password::check_policy("password", password, &email, &mut v);
        }
        check_tenant("tenant", tenant, &mut v);
        v.check()?;

        // Cheap checks before the expensive hash; the unique keys below
        // still decide races.
        if user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(AuthError::EmailTaken);
        }
        if tenant::Entity::find_by_id(tenant)
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(AuthError::TenantTaken(tenant.to_owned()));
        }

        let hash = self.hasher.hash(password.to_owned()).await?;
        let id = uuid::Uuid::now_v7();
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let result = async {
            tenant::ActiveModel {
                id: Set(tenant.to_owned()),
                created_at: Set(now),
            }
            .insert(&txn)
            .await
            .map_err(|e| unique_to(e, AuthError::TenantTaken(tenant.to_owned())))?;
            user::ActiveModel {
                id: Set(id),
                email: Set(email.clone()),
                tenant: Set(tenant.to_owned()),
                password_hash: Set(hash),
                is_tenant_admin: Set(true),
                created_at: Set(now),
            }
            .insert(&txn)
            .await
            .map_err(|e| unique_to(e, AuthError::EmailTaken))?;
            let event = UserSignedUp {
                user_id: id.to_string(),
                tenant: tenant.to_owned(),
                email: email.clone(),
                tenant_created: true,
                sign_up_time: Some(prost_types::Timestamp {
                    seconds: now.timestamp(),
                    // Below one billion by construction.
                    nanos: now.timestamp_subsec_nanos() as i32,
                }),
            };
            self.outbox
                .append(
                    &txn,
                    &Envelope::new(crate::EVENT_SOURCE, &event).with_current_trace(),
                )
                .await?;
            Ok::<_, AuthError>(())
        }
        .await;
        match result {
            Ok(()) => {
                txn.commit().await?;
                self.outbox.committed();
            }
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        }
        tracing::info!(user_id = %id, tenant, "user signed up");
        Ok(NewUser {
            user_id: id.to_string(),
            tenant: tenant.to_owned(),
        })
    }

    /// Checks the password and issues an access token. Unknown email and
    /// wrong password give the same error after the same work.
    pub async fn login(&self, email: &str, password: &str) -> Result<AccessToken> {
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
        let found = user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?;
        let phc = found.as_ref().map(|u| u.password_hash.clone());
        if !self.hasher.verify(password.to_owned(), phc).await? {
            tracing::info!("login refused");
            return Err(AuthError::BadCredentials);
        }
        let user = found.ok_or(AuthError::BadCredentials)?;
        let now = Utc::now().timestamp();
        let ttl = self.tokens.access_ttl;
        let claims = Claims {
            iss: self.tokens.issuer.clone(),
            sub: user.id.to_string(),
            aud: self.tokens.audience.clone(),
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: now,
            nbf: Some(now),
            jti: uuid::Uuid::new_v4().to_string(),
            tenant: user.tenant.clone(),
            scope: if user.is_tenant_admin {
                "documents tenant:admin".into()
            } else {
                "documents".into()
            },
        };
        let token = self.signer.sign(&claims)?;
        Ok(AccessToken {
            token,
            expires_in: ttl,
        })
    }
}

fn unique_to(error: sea_orm::DbErr, conflict: AuthError) -> AuthError {
    match error.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => conflict,
        _ => AuthError::Database(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_tenants() {
        let mut v = FieldViolations::new();
        assert_eq!(
            normalize_email("e", " Alice@Example.COM ", &mut v),
            "alice@example.com"
        );
        assert!(v.is_empty());
        for bad in ["", "alice", "a@b", "a@@b.c", "a b@c.d", "@c.d"] {
            let mut v = FieldViolations::new();
            normalize_email("e", bad, &mut v);
            assert!(!v.is_empty(), "{bad}");
        }
        for bad in ["", "ab", "Acme", "-acme", "acme-", "ac_me", &"a".repeat(64)] {
            let mut v = FieldViolations::new();
            check_tenant("t", bad, &mut v);
            assert!(!v.is_empty(), "{bad}");
        }
        let mut v = FieldViolations::new();
        check_tenant("t", "acme-42", &mut v);
        assert!(v.is_empty());
    }
}
