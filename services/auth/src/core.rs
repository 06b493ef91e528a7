//! The auth domain's shared core: [`AuthCore`] (the database, the hasher,
//! the signing keys, the settings, the outbox) and what every use case
//! needs from it: app clients, token minting, the checks of emails and
//! tenant names. The use cases live beside it, each an `impl AuthCore` of
//! its own: [`crate::signup`] (sign-up and confirmation), [`crate::login`]
//! (login and sessions), [`crate::passwords`], [`crate::mfa`],
//! [`crate::admin`] and [`crate::federation`]. None of it knows gRPC.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudsec_bus::Outbox;
use cloudsec_proto::auth::v1::Jwks;
use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::token::{AccessClaims, Claims, TokenVerifier};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set, SqlErr,
};

use crate::clock::{Clock, SystemClock};
use crate::codes::{self, ConfirmationConfig};
use crate::config::{AuthConfig, LockoutConfig, is_group_name};
use crate::entity::{password_history, user, user_group};
use crate::error::{AuthError, Result};
use crate::keys::{KeyRing, KeyStore, Policy, SigningConfig};
use crate::password::Hasher;
use crate::revocation;
use crate::session::{self, Grant};

pub use cloudsec_runtime::token::ADMIN_SCOPE;

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

/// How long logins last, whom tokens are for, and the lockout rule.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub refresh_ttl: Duration,
    pub client_id: String,
    pub lockout: LockoutConfig,
    /// Earlier passwords a new one may not repeat.
    pub password_history: usize,
    pub confirmation: ConfirmationConfig,
    pub cleanup: crate::cleanup::CleanupConfig,
    /// The scopes each group's members get.
    pub group_scopes: std::collections::BTreeMap<String, Vec<String>>,
    pub password_policy: crate::password::PasswordPolicy,
    /// Registered app clients besides `client_id`.
    pub clients: std::collections::BTreeMap<String, crate::config::AppClientConfig>,
}

/// The app client of a login, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppClient {
    pub(crate) id: String,
    pub(crate) access_ttl: Duration,
    pub(crate) refresh_ttl: Duration,
    /// `None`: every scope the user has.
    pub(crate) scopes: Option<Vec<String>>,
}

impl SessionSettings {
    pub fn from_config(config: &AuthConfig) -> Self {
        Self {
            refresh_ttl: config.refresh_token_ttl,
            client_id: config.client_id.clone(),
            lockout: config.lockout,
            password_history: config.password_history,
            confirmation: config.confirmation.clone(),
            cleanup: config.cleanup,
            group_scopes: config.group_scopes.clone(),
            clients: config.clients.clone(),
            password_policy: config.password_policy,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self::from_config(&AuthConfig::with_database(""))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: Duration,
}

/// What a login or a refresh hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access: AccessToken,
    /// The OpenID Connect ID token of the same login.
    pub id_token: String,
    /// Opaque; shown once.
    pub refresh_token: String,
}

#[derive(Debug, Clone)]
pub struct AuthCore {
    pub(crate) db: DatabaseConnection,
    pub(crate) hasher: Hasher,
    pub(crate) keys: Arc<KeyRing>,
    /// Checks this service's own access tokens, for the sign-out calls;
    /// the key ring keeps its keys current.
    pub(crate) verifier: Arc<TokenVerifier>,
    pub(crate) tokens: TokenSettings,
    pub(crate) sessions: SessionSettings,
    pub(crate) outbox: Outbox,
    pub(crate) clock: Arc<dyn Clock>,
    /// Seals MFA secrets; `None` keeps them in the clear (no key service).
    pub(crate) mfa_sealer: Option<crate::keys::KeySealer>,
    /// Seals confirmation and reset codes for the mailer; without one no
    /// code can be sent (`Auth::build` refuses to start so).
    pub(crate) code_seal: Option<codes::CodeSeal>,
    /// External identity providers, when any are configured.
    pub(crate) federation: Option<Arc<crate::federation::Federation>>,
}

/// What a login gives: tokens, or a challenge to answer first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    Tokens(Tokens),
    Challenge {
        /// `SOFTWARE_TOKEN_MFA` or `MFA_SETUP`.
        name: &'static str,
        /// Opaque and single-use.
        session: String,
    },
}

/// Lowercased and checked; violations are recorded on `field`.
pub(crate) fn normalize_email(field: &str, raw: &str, v: &mut FieldViolations) -> String {
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

pub(crate) fn check_tenant(field: &str, tenant: &str, v: &mut FieldViolations) {
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
    /// Opens the signing keys (making the first on first start; see
    /// [`crate::keys`] for rotation).
    pub async fn new(
        db: DatabaseConnection,
        hasher: Hasher,
        tokens: TokenSettings,
        sessions: SessionSettings,
        outbox: Outbox,
        signing: &SigningConfig,
        secrets: Option<&cloudsec_secrets::Secrets>,
    ) -> Result<Self> {
        for (id, client) in &sessions.clients {
            if let Some(ttl) = client.access_token_ttl
                && (ttl > tokens.access_ttl || ttl.is_zero())
            {
                return Err(AuthError::Internal(format!(
                    "auth.clients.{id}.access_token_ttl must be more than 0s and at most \
                     tokens.access_ttl ({}s): old signing keys stay published only that long",
                    tokens.access_ttl.as_secs()
                )));
            }
            if client.refresh_token_ttl.is_some_and(|t| t.is_zero()) {
                return Err(AuthError::Internal(format!(
                    "auth.clients.{id}.refresh_token_ttl must be more than 0s"
                )));
            }
        }
        let verifier = Arc::new(TokenVerifier::fixed(&tokens.issuer, &tokens.audience));
        let store = KeyStore::from_config(signing, &db, secrets).await?;
        let mfa_sealer = crate::keys::KeySealer::from_config(signing, secrets).await?;
        let code_seal = if secrets.is_some() || sessions.confirmation.kms.is_some() {
            Some(codes::CodeSeal::from_config(&sessions.confirmation, secrets).await?)
        } else {
            None
        };
        let keys = KeyRing::open(
            store,
            Policy::new(signing, tokens.access_ttl),
            signing.check_interval,
            verifier.clone(),
        )
        .await?;
        Ok(Self {
            db,
            hasher,
            keys,
            verifier,
            tokens,
            sessions,
            outbox,
            clock: Arc::new(SystemClock),
            mfa_sealer,
            code_seal,
            federation: None,
        })
    }

    /// The same core, sealing codes with `seal` (tests that keep signing
    /// keys in the clear but must send codes).
    pub fn with_code_seal(mut self, seal: codes::CodeSeal) -> Self {
        self.code_seal = Some(seal);
        self
    }

    /// Whether codes can be sent (a key service seals them).
    pub fn can_send_codes(&self) -> bool {
        self.code_seal.is_some()
    }

    /// The same core, signing users in through these providers too.
    pub fn with_federation(
        mut self,
        providers: std::collections::BTreeMap<String, crate::federation::ProviderConfig>,
    ) -> Result<Self> {
        if !providers.is_empty() {
            self.federation = Some(Arc::new(crate::federation::Federation::new(providers)?));
        }
        Ok(self)
    }

    /// The same core reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.keys.set_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// The keys that verify this service's tokens now.
    pub fn jwks(&self) -> Jwks {
        self.keys.jwks()
    }

    /// The signing keys (rotation, reload).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The app client `id` names; empty is the default one. An unknown id
    /// is the caller's mistake, named before any password is hashed.
    pub(crate) fn app_client(&self, id: &str) -> Result<AppClient> {
        let id = if id.is_empty() {
            self.sessions.client_id.as_str()
        } else {
            id
        };
        let config = match self.sessions.clients.get(id) {
            Some(config) => config.clone(),
            None if id == self.sessions.client_id => crate::config::AppClientConfig::default(),
            None => {
                let mut v = FieldViolations::new();
                v.add("client_id", "is not a registered app client");
                return Err(v.into());
            }
        };
        Ok(AppClient {
            id: id.to_owned(),
            access_ttl: config.access_token_ttl.unwrap_or(self.tokens.access_ttl),
            refresh_ttl: config
                .refresh_token_ttl
                .unwrap_or(self.sessions.refresh_ttl),
            scopes: config.scopes,
        })
    }

    /// A new login of `user`: a refresh-token family and the tokens.
    pub(crate) async fn issue_tokens(
        &self,
        user: &user::Model,
        app: &AppClient,
        now: DateTime<Utc>,
    ) -> Result<Tokens> {
        let grant = Grant {
            user_id: user.id,
            tenant: user.tenant.clone(),
            client_id: app.id.clone(),
            auth_time: now,
            expires_at: now
                .checked_add_signed(to_chrono(app.refresh_ttl))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        };
        let groups = groups_of(&self.db, user.id).await?;
        let access = self.access_token(user, &grant, groups, app, now).await?;
        let id_token = self.id_token(user, &grant, app, now).await?;
        let refresh_token = session::issue(&self.db, &grant, now).await?;
        tracing::info!(user_id = %user.id, "login");
        Ok(Tokens {
            access,
            id_token,
            refresh_token,
        })
    }

    /// Checks an access token issued by this service.
    pub async fn authenticate(&self, access_token: &str) -> Result<AccessClaims> {
        let claims = self.verifier.verify_access(access_token).await?;
        // The service's own calls read revocations from the table, so they
        // take effect here at once rather than at the next pull.
        if let Ok(user_id) = uuid::Uuid::parse_str(&claims.base.sub)
            && let Some(min) =
                revocation::min_generation(&self.db, user_id, self.clock.now()).await?
            && claims.generation < min
        {
            return Err(cloudsec_runtime::token::TokenError::Revoked.into());
        }
        Ok(claims)
    }

    /// `documents`, `tenant:admin` for admins, and what the user's groups
    /// map to, once each.
    fn scopes_of(&self, user: &user::Model, groups: &[String], app: &AppClient) -> String {
        let mut scopes = std::collections::BTreeSet::from(["documents"]);
        if user.is_tenant_admin {
            scopes.insert(ADMIN_SCOPE);
        }
        for group in groups {
            if let Some(mapped) = self.sessions.group_scopes.get(group) {
                scopes.extend(mapped.iter().map(String::as_str));
            }
        }
        if let Some(allowed) = &app.scopes {
            scopes.retain(|s| allowed.iter().any(|a| a == s));
        }
        scopes.into_iter().collect::<Vec<_>>().join(" ")
    }

    pub(crate) async fn access_token(
        &self,
        user: &user::Model,
        grant: &Grant,
        groups: Vec<String>,
        app: &AppClient,
        now: DateTime<Utc>,
    ) -> Result<AccessToken> {
        let now = now.timestamp();
        let ttl = app.access_ttl;
        let claims = AccessClaims {
            base: Claims {
                iss: self.tokens.issuer.clone(),
                sub: user.id.to_string(),
                aud: self.tokens.audience.clone(),
                exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)),
                iat: now,
                nbf: Some(now),
                jti: uuid::Uuid::new_v4().to_string(),
                tenant: user.tenant.clone(),
                // Read from the user and their groups at every refresh, so
                // a demoted admin or a removed member loses the scope with
                // the next access token.
                scope: self.scopes_of(user, &groups, app),
            },
            token_use: "access".into(),
            client_id: grant.client_id.clone(),
            auth_time: Some(grant.auth_time.timestamp()),
            groups,
            generation: user.token_generation,
        };
        let token = self.sign(claims).await?;
        Ok(AccessToken {
            token,
            expires_in: ttl,
        })
    }
}

/// The claims of an ID token: OpenID Connect's, in Cognito's shape.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    /// The app client the login was for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    pub jti: String,
    pub token_use: String,
    pub email: String,
    /// Whether the user proved they own the email (a confirmation or
    /// reset code, or an admin who created the user).
    pub email_verified: bool,
    #[serde(rename = "cognito:username")]
    pub username: String,
    pub tenant: String,
}

/// What [`AuthCore::openid_configuration`] states.
pub const CLAIMS_SUPPORTED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "jti",
    "token_use",
    "email",
    "email_verified",
    "cognito:username",
    "cognito:groups",
    "client_id",
    "scope",
    "tenant",
];

impl AuthCore {
    pub(crate) async fn id_token(
        &self,
        user: &user::Model,
        grant: &Grant,
        app: &AppClient,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let now = now.timestamp();
        let ttl = i64::try_from(app.access_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = IdClaims {
            iss: self.tokens.issuer.clone(),
            sub: user.id.to_string(),
            aud: grant.client_id.clone(),
            exp: now.saturating_add(ttl),
            iat: now,
            auth_time: grant.auth_time.timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
            token_use: "id".into(),
            email: user.email.clone(),
            email_verified: user.confirmed_at.is_some(),
            username: user.id.to_string(),
            tenant: user.tenant.clone(),
        };
        self.sign(claims).await
    }

    /// `claims` signed with the active key, on tokio's blocking pool: an
    /// RSA-2048 signature is about a quarter of a millisecond of CPU (two
    /// per login or refresh), well past what a task should run between
    /// awaits, and every request queued behind it on the worker would wait
    /// that long. (The login-storm benchmark, with all request work on one
    /// CPU, showed no difference either way: docs/benchmarks.md.)
    async fn sign<C: serde::Serialize + Send + 'static>(&self, claims: C) -> Result<String> {
        let signer = self.keys.signer();
        tokio::task::spawn_blocking(move || signer.sign_claims(&claims))
            .await
            .map_err(|e| AuthError::Internal(format!("the signing task ended: {e}")))?
            .map_err(Into::into)
    }

    /// OpenID Connect discovery, as far as it is true of this service.
    pub fn openid_configuration(&self) -> cloudsec_proto::auth::v1::OpenIdConfiguration {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        cloudsec_proto::auth::v1::OpenIdConfiguration {
            issuer: self.tokens.issuer.clone(),
            jwks_uri: format!(
                "{}/.well-known/jwks.json",
                self.tokens.issuer.trim_end_matches('/')
            ),
            id_token_signing_alg_values_supported: strings(&["RS256"]),
            subject_types_supported: strings(&["public"]),
            // Tokens come from the password login and refresh calls; there
            // is no authorization endpoint (no code flow) to advertise.
            response_types_supported: strings(&["token", "id_token"]),
            scopes_supported: strings(&["documents", ADMIN_SCOPE]),
            claims_supported: strings(CLAIMS_SUPPORTED),
            grant_types_supported: strings(&["password", "refresh_token"]),
        }
    }
}

/// A user's groups, sorted.
pub(crate) async fn groups_of(
    db: &impl ConnectionTrait,
    user_id: uuid::Uuid,
) -> Result<Vec<String>> {
    Ok(user_group::Entity::find()
        .filter(user_group::Column::UserId.eq(user_id))
        .order_by_asc(user_group::Column::GroupName)
        .all(db)
        .await?
        .into_iter()
        .map(|g| g.group_name)
        .collect())
}

pub(crate) fn check_group(group: &str) -> Result<()> {
    if !is_group_name(group) {
        let mut v = FieldViolations::new();
        v.add("group", "must be 1 to 64 letters, digits, `-`, `_` and `.`");
        return Err(v.into());
    }
    Ok(())
}

/// Records a password hash in the user's history.
pub(crate) async fn remember_password(
    db: &impl ConnectionTrait,
    user_id: uuid::Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    password_history::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        user_id: Set(user_id),
        password_hash: Set(hash.to_owned()),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The one answer for every code that does not open.
pub(crate) fn bad_code() -> AuthError {
    let mut v = FieldViolations::new();
    v.add("code", "is wrong or has expired; ask for a new one");
    v.into()
}

/// "is required" on each of `fields` (name, value) that is blank, for a
/// caller that may add violations of its own before checking.
pub(crate) fn blank_fields(fields: &[(&str, &str)]) -> FieldViolations {
    let mut v = FieldViolations::new();
    for (field, value) in fields {
        if value.trim().is_empty() {
            v.add(*field, "is required");
        }
    }
    v
}

/// Refuses a request with any of `fields` (name, value) blank, naming
/// every one.
pub(crate) fn required_fields(fields: &[(&str, &str)]) -> Result<()> {
    Ok(blank_fields(fields).check()?)
}

pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Below one billion by construction.
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub(crate) fn required(field: &str, value: &str) -> Result<()> {
    required_fields(&[(field, value)])
}

pub(crate) fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

pub(crate) fn unique_to(error: sea_orm::DbErr, conflict: AuthError) -> AuthError {
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
