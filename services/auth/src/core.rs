//! The auth domain: sign-up, login, refresh and sign-out, and the
//! published keys. It knows nothing of gRPC.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudsec_bus::{Envelope, Outbox};
use cloudsec_proto::auth::v1::{Jwks, ListTokenRevocationsResponse, TokenRevocation};
use cloudsec_proto::events::v1::{UserConfirmationRequested, UserSignedUp};
use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::token::{AccessClaims, Claims, TokenVerifier};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
};

use crate::clock::{Clock, SystemClock};
use crate::codes::{self, ConfirmationConfig, Purpose};
use crate::config::{AuthConfig, LockoutConfig};
use crate::entity::{
    mfa_challenge, mfa_recovery_code, mfa_totp, password_history, tenant, user, user_group,
};
use crate::error::{AuthError, Result};
use crate::keys::{KeyRing, KeyStore, Policy, SigningConfig};
use crate::lockout;
use crate::password::{self, Hasher};
use crate::revocation;
use crate::session::{self, Grant, Rotation};

/// The scope that makes a user their tenant's admin.
pub const ADMIN_SCOPE: &str = "tenant:admin";

/// How long a revocation outlives the longest access token: the clock skew
/// verifiers allow plus slack for their pulls.
const REVOCATION_MARGIN: Duration = Duration::from_secs(60);

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
    keys: Arc<KeyRing>,
    /// Checks this service's own access tokens, for the sign-out calls;
    /// the key ring keeps its keys current.
    verifier: Arc<TokenVerifier>,
    tokens: TokenSettings,
    pub(crate) sessions: SessionSettings,
    outbox: Outbox,
    pub(crate) clock: Arc<dyn Clock>,
    /// Seals MFA secrets; `None` keeps them in the clear (no key service).
    pub(crate) mfa_sealer: Option<crate::keys::KeySealer>,
    /// Seals confirmation and reset codes for the mailer; without one no
    /// code can be sent (`Auth::build` refuses to start so).
    code_seal: Option<codes::CodeSeal>,
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
        let mfa_sealer = crate::keys::KeySealer::from_config(signing, secrets).await;
        let code_seal = match secrets {
            Some(_) => Some(codes::CodeSeal::from_config(&sessions.confirmation, secrets).await?),
            None => None,
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

    /// Creates `tenant` and its first user, who becomes the tenant's admin.
    pub async fn sign_up(&self, email: &str, password: &str, tenant: &str) -> Result<NewUser> {
        let mut v = FieldViolations::new();
        let email = normalize_email("email", email, &mut v);
        if password.is_empty() {
            v.add("password", "is required");
        } else {
            password::check_policy(
                "password",
                password,
                &email,
                &self.sessions.password_policy,
                &mut v,
            );
        }
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
        let txn = self.db.begin().await?;
        let result = async {
            tenant::ActiveModel {
                id: Set(tenant.to_owned()),
                created_at: Set(now),
                mfa_mode: Set(crate::mfa::MfaMode::default().as_str().to_owned()),
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
                disabled_at: Set(None),
                confirmed_at: Set((!confirm).then_some(now)),
                token_generation: Set(0),
            }
            .insert(&txn)
            .await
            .map_err(|e| unique_to(e, AuthError::EmailTaken))?;
            remember_password(&txn, id, &hash_copy, now).await?;
            if confirm {
                self.send_code(&txn, id, tenant, &email, Purpose::SignUp, now)
                    .await?;
            }
            let event = UserSignedUp {
                user_id: id.to_string(),
                tenant: tenant.to_owned(),
                email: email.clone(),
                tenant_created: true,
                sign_up_time: Some(timestamp(now)),
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
            Err(AuthError::EmailTaken) => {
                txn.rollback().await?;
                return pretend();
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
        let access = self.access_token(user, &grant, groups, app, now)?;
        let id_token = self.id_token(user, &grant, app, now)?;
        let refresh_token = session::issue(&self.db, &grant, now).await?;
        tracing::info!(user_id = %user.id, "login");
        Ok(Tokens {
            access,
            id_token,
            refresh_token,
        })
    }

    /// Spends `refresh_token` for a new access token and its successor.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        required("refresh_token", refresh_token)?;
        let Some(hash) = session::presented_hash(refresh_token) else {
            tracing::info!(reason = "malformed", "refresh refused");
            return Err(AuthError::BadRefreshToken);
        };
        let now = self.clock.now();
        let txn = session::begin_write(&self.db).await?;
        let result = async {
            match session::rotate(&txn, &hash, now).await? {
                Rotation::Rotated { user, .. } if user.disabled_at.is_some() => {
                    Ok(Err("user disabled"))
                }
                Rotation::Rotated { user, grant, token } => {
                    // A client removed from the configuration ends its
                    // logins.
                    let Ok(app) = self.app_client(&grant.client_id) else {
                        return Ok(Err("app client removed"));
                    };
                    let groups = groups_of(&txn, user.id).await?;
                    let access = self.access_token(&user, &grant, groups, &app, now)?;
                    let id_token = self.id_token(&user, &grant, &app, now)?;
                    Ok(Ok(Tokens {
                        access,
                        id_token,
                        refresh_token: token,
                    }))
                }
                Rotation::Refused(reason) => Ok(Err(reason)),
            }
        }
        .await;
        match result {
            Ok(outcome) => {
                // A refusal commits too: reuse detection revokes as it refuses.
                txn.commit().await?;
                outcome.map_err(|reason| {
                    tracing::info!(reason, "refresh refused");
                    AuthError::BadRefreshToken
                })
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
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

    /// Ends every login of `user_id`: their refresh tokens at once, their
    /// access tokens at every verifier's next revocation pull.
    async fn end_all_logins(&self, user_id: uuid::Uuid, now: DateTime<Utc>) -> Result<u64> {
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

    /// Refuses `proposed` when it matches the current password or one of
    /// the last `password_history`.
    async fn check_history(&self, user: &user::Model, proposed: &str, field: &str) -> Result<()> {
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
    async fn store_password(
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

    /// Stores a new code for `purpose` and appends the event that delivers
    /// it, in the caller's transaction.
    async fn send_code(
        &self,
        txn: &impl ConnectionTrait,
        user_id: uuid::Uuid,
        tenant: &str,
        email: &str,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<()> {
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
        self.outbox
            .append(
                txn,
                &Envelope::new(crate::EVENT_SOURCE, &event).with_current_trace(),
            )
            .await?;
        Ok(())
    }

    /// The user with `email`, for the code flows (which answer the same
    /// whether or not one exists).
    async fn find_by_email(&self, email: &str) -> Result<Option<user::Model>> {
        let email = email.trim().to_lowercase();
        Ok(user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?)
    }

    /// Sends a code when `user` may get one now; a code sent under
    /// `resend_interval` ago is left alone, so the flows cannot be used to
    /// flood a mailbox.
    async fn maybe_send_code(&self, user: &user::Model, purpose: Purpose) -> Result<bool> {
        let now = self.clock.now();
        let txn = session::begin_write(&self.db).await?;
        let result = async {
            if !codes::may_send(
                &txn,
                user.id,
                purpose,
                self.sessions.confirmation.resend_interval,
                now,
            )
            .await?
            {
                return Ok(false);
            }
            self.send_code(&txn, user.id, &user.tenant, &user.email, purpose, now)
                .await?;
            Ok::<_, AuthError>(true)
        }
        .await;
        match result {
            Ok(sent) => {
                txn.commit().await?;
                if sent {
                    self.outbox.committed();
                }
                Ok(sent)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }

    /// Confirms the sign-up of `email` with `code`. Unknown emails, users
    /// already confirmed and wrong, expired or spent codes all get one
    /// answer.
    pub async fn confirm_sign_up(&self, email: &str, code: &str) -> Result<()> {
        code_fields(email, code)?;
        let Some(user) = self.find_by_email(email).await? else {
            return Err(bad_code());
        };
        let now = self.clock.now();
        let max = self.sessions.confirmation.max_attempts;
        let txn = session::begin_write(&self.db).await?;
        let result = async {
            if user.confirmed_at.is_some()
                || !codes::spend(&txn, user.id, Purpose::SignUp, code, max, now).await?
            {
                return Ok(false);
            }
            let user_id = user.id;
            let mut row: user::ActiveModel = user.into();
            row.confirmed_at = Set(Some(now));
            row.update(&txn).await?;
            tracing::info!(%user_id, "sign-up confirmed");
            Ok::<_, AuthError>(true)
        }
        .await;
        match result {
            // A wrong code commits too: it counts a try.
            Ok(confirmed) => {
                txn.commit().await?;
                if confirmed { Ok(()) } else { Err(bad_code()) }
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
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
        let mut v = FieldViolations::new();
        if email.trim().is_empty() {
            v.add("email", "is required");
        }
        if code.trim().is_empty() {
            v.add("code", "is required");
        }
        if proposed.is_empty() {
            v.add("password", "is required");
        } else {
            password::check_policy(
                "password",
                proposed,
                &email.trim().to_lowercase(),
                &self.sessions.password_policy,
                &mut v,
            );
        }
        v.check()?;
        let Some(user) = self
            .find_by_email(email)
            .await?
            .filter(|u| u.disabled_at.is_none())
        else {
            return Err(bad_code());
        };
        let now = self.clock.now();
        let max = self.sessions.confirmation.max_attempts;
        // Look before the expensive checks, so a wrong code costs no
        // hashing; the code is spent below, with the new password.
        if !codes::peek(&self.db, user.id, Purpose::PasswordReset, code, max, now).await? {
            let txn = session::begin_write(&self.db).await?;
            codes::spend(&txn, user.id, Purpose::PasswordReset, code, max, now).await?;
            txn.commit().await?;
            return Err(bad_code());
        }
        self.check_history(&user, proposed, "password").await?;
        let hash = self.hasher.hash(proposed.to_owned()).await?;
        let now = self.clock.now();
        let user_id = user.id;
        let key = lockout::email_key(&user.email);
        let txn = session::begin_write(&self.db).await?;
        let result = async {
            if !codes::spend(&txn, user_id, Purpose::PasswordReset, code, max, now).await? {
                return Ok(false);
            }
            let confirmed = user.confirmed_at.is_some();
            self.store_password(&txn, user, &hash, now).await?;
            if !confirmed {
                user::Entity::update_many()
                    .col_expr(
                        user::Column::ConfirmedAt,
                        sea_orm::sea_query::Expr::value(now),
                    )
                    .filter(user::Column::Id.eq(user_id))
                    .exec(&txn)
                    .await?;
            }
            Ok::<_, AuthError>(true)
        }
        .await;
        match result {
            Ok(true) => txn.commit().await?,
            Ok(false) => {
                txn.commit().await?;
                return Err(bad_code());
            }
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
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
        let txn = self.db.begin().await?;
        match self.store_password(&txn, user, &hash, now).await {
            Ok(()) => txn.commit().await?,
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        }
        lockout::reset(&self.db, &key).await?;
        let revoked = self.end_all_logins(user_id, now).await?;
        tracing::info!(%user_id, revoked, "password changed");
        Ok(())
    }

    /// Ends every login of `user_id`, a user of the admin's own tenant.
    pub async fn admin_global_sign_out(&self, caller: &AccessClaims, user_id: &str) -> Result<()> {
        let target = self.tenant_user(caller, user_id).await?;
        let revoked = self.end_all_logins(target.id, self.clock.now()).await?;
        tracing::info!(user_id = %target.id, admin = %caller.base.sub, revoked, "admin global sign-out");
        Ok(())
    }

    /// The user `user_id` of the caller's tenant, for a tenant admin; a user
    /// of another tenant is indistinguishable from a missing one.
    async fn tenant_user(&self, caller: &AccessClaims, user_id: &str) -> Result<user::Model> {
        if !caller
            .base
            .scope
            .split_whitespace()
            .any(|s| s == ADMIN_SCOPE)
        {
            return Err(AuthError::NotAdmin);
        }
        required("user_id", user_id)?;
        let Ok(id) = uuid::Uuid::parse_str(user_id) else {
            let mut v = FieldViolations::new();
            v.add("user_id", "must be a user id (a UUID)");
            return Err(v.into());
        };
        user::Entity::find_by_id(id)
            .filter(user::Column::Tenant.eq(&caller.base.tenant))
            .one(&self.db)
            .await?
            .ok_or_else(|| AuthError::UserNotFound(user_id.to_owned()))
    }

    /// An admin must not lock themself out of their tenant by mistake.
    fn not_self(caller: &AccessClaims, target: &user::Model, what: &str) -> Result<()> {
        if caller.base.sub == target.id.to_string() {
            let mut v = FieldViolations::new();
            v.add("user_id", format!("an admin cannot {what} themself"));
            return Err(v.into());
        }
        Ok(())
    }

    /// Adds a user to the caller's tenant (tenant admins only).
    pub async fn admin_create_user(
        &self,
        caller: &AccessClaims,
        email: &str,
        password: &str,
        tenant_admin: bool,
    ) -> Result<NewUser> {
        if !caller
            .base
            .scope
            .split_whitespace()
            .any(|s| s == ADMIN_SCOPE)
        {
            return Err(AuthError::NotAdmin);
        }
        let mut v = FieldViolations::new();
        let email = normalize_email("email", email, &mut v);
        if password.is_empty() {
            v.add("password", "is required");
        } else {
            password::check_policy(
                "password",
                password,
                &email,
                &self.sessions.password_policy,
                &mut v,
            );
        }
        v.check()?;
        if user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(AuthError::EmailTaken);
        }
        let hash = self.hasher.hash(password.to_owned()).await?;
        let hash_copy = hash.clone();
        let id = uuid::Uuid::now_v7();
        let now = self.clock.now();
        let tenant = caller.base.tenant.clone();
        let txn = self.db.begin().await?;
        let result = async {
            user::ActiveModel {
                id: Set(id),
                email: Set(email.clone()),
                tenant: Set(tenant.clone()),
                password_hash: Set(hash),
                is_tenant_admin: Set(tenant_admin),
                created_at: Set(now),
                disabled_at: Set(None),
                // The admin vouches for the address.
                confirmed_at: Set(Some(now)),
                token_generation: Set(0),
            }
            .insert(&txn)
            .await
            .map_err(|e| unique_to(e, AuthError::EmailTaken))?;
            remember_password(&txn, id, &hash_copy, now).await?;
            let event = UserSignedUp {
                user_id: id.to_string(),
                tenant: tenant.clone(),
                email: email.clone(),
                tenant_created: false,
                sign_up_time: Some(timestamp(now)),
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
        tracing::info!(user_id = %id, %tenant, admin = %caller.base.sub, tenant_admin, "user created by an admin");
        Ok(NewUser {
            user_id: id.to_string(),
            tenant,
        })
    }

    /// Disables (and signs out) or enables a user of the caller's tenant.
    pub async fn admin_set_disabled(
        &self,
        caller: &AccessClaims,
        user_id: &str,
        disabled: bool,
    ) -> Result<()> {
        let target = self.tenant_user(caller, user_id).await?;
        if disabled {
            Self::not_self(caller, &target, "disable")?;
        }
        let now = self.clock.now();
        let id = target.id;
        let mut row: user::ActiveModel = target.into();
        row.disabled_at = Set(disabled.then_some(now));
        row.update(&self.db).await?;
        if disabled {
            let revoked = self.end_all_logins(id, now).await?;
            tracing::info!(user_id = %id, admin = %caller.base.sub, revoked, "user disabled");
        } else {
            tracing::info!(user_id = %id, admin = %caller.base.sub, "user enabled");
        }
        Ok(())
    }

    /// Removes the authenticator, recovery codes and open challenges of a
    /// user of the caller's tenant, and ends their logins (the lost device
    /// may be in someone else's hands).
    pub async fn admin_reset_mfa(&self, caller: &AccessClaims, user_id: &str) -> Result<()> {
        let target = self.tenant_user(caller, user_id).await?;
        Self::not_self(caller, &target, "reset the MFA of")?;
        let id = target.id;
        let txn = self.db.begin().await?;
        let result = async {
            let removed = mfa_totp::Entity::delete_many()
                .filter(mfa_totp::Column::UserId.eq(id))
                .exec(&txn)
                .await?
                .rows_affected;
            mfa_recovery_code::Entity::delete_many()
                .filter(mfa_recovery_code::Column::UserId.eq(id))
                .exec(&txn)
                .await?;
            mfa_challenge::Entity::delete_many()
                .filter(mfa_challenge::Column::UserId.eq(id))
                .exec(&txn)
                .await?;
            Ok::<_, AuthError>(removed)
        }
        .await;
        let removed = match result {
            Ok(removed) => {
                txn.commit().await?;
                removed
            }
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        };
        let revoked = self.end_all_logins(id, self.clock.now()).await?;
        tracing::info!(user_id = %id, admin = %caller.base.sub, had_authenticator = removed > 0, revoked, "user mfa reset");
        Ok(())
    }

    /// Adds (or removes) a user of the caller's tenant to (from) `group`;
    /// idempotent. Tokens list the change from the next one on.
    pub async fn admin_set_group(
        &self,
        caller: &AccessClaims,
        user_id: &str,
        group: &str,
        member: bool,
    ) -> Result<()> {
        check_group(group)?;
        let target = self.tenant_user(caller, user_id).await?;
        if member {
            let row = user_group::ActiveModel {
                user_id: Set(target.id),
                group_name: Set(group.to_owned()),
                created_at: Set(self.clock.now()),
            };
            match user_group::Entity::insert(row).exec(&self.db).await {
                Ok(_) => {}
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            user_group::Entity::delete_many()
                .filter(user_group::Column::UserId.eq(target.id))
                .filter(user_group::Column::GroupName.eq(group))
                .exec(&self.db)
                .await?;
        }
        tracing::info!(user_id = %target.id, group, member, admin = %caller.base.sub, "group membership");
        Ok(())
    }

    /// The groups of the caller's tenant: name, member ids and the scopes
    /// they grant, sorted by name (tenant admins).
    pub async fn list_groups(
        &self,
        caller: &AccessClaims,
    ) -> Result<Vec<(String, Vec<String>, Vec<String>)>> {
        if !caller
            .base
            .scope
            .split_whitespace()
            .any(|s| s == ADMIN_SCOPE)
        {
            return Err(AuthError::NotAdmin);
        }
        let members: Vec<uuid::Uuid> = user::Entity::find()
            .filter(user::Column::Tenant.eq(&caller.base.tenant))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        let mut groups: std::collections::BTreeMap<String, Vec<String>> =
            std::collections::BTreeMap::new();
        for row in user_group::Entity::find()
            .filter(user_group::Column::UserId.is_in(members))
            .all(&self.db)
            .await?
        {
            groups
                .entry(row.group_name)
                .or_default()
                .push(row.user_id.to_string());
        }
        Ok(groups
            .into_iter()
            .map(|(name, mut ids)| {
                ids.sort();
                let scopes = self
                    .sessions
                    .group_scopes
                    .get(&name)
                    .cloned()
                    .unwrap_or_default();
                (name, ids, scopes)
            })
            .collect())
    }

    /// Deletes a user of the caller's tenant with every login of theirs.
    pub async fn admin_delete_user(&self, caller: &AccessClaims, user_id: &str) -> Result<()> {
        let target = self.tenant_user(caller, user_id).await?;
        Self::not_self(caller, &target, "delete")?;
        let id = target.id;
        self.end_all_logins(id, self.clock.now()).await?;
        user::Entity::delete_by_id(id).exec(&self.db).await?;
        tracing::info!(user_id = %id, admin = %caller.base.sub, "user deleted");
        Ok(())
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

    fn access_token(
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
        let token = self.keys.signer().sign_claims(&claims)?;
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
    fn id_token(
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
        Ok(self.keys.signer().sign_claims(&claims)?)
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
async fn groups_of(db: &impl ConnectionTrait, user_id: uuid::Uuid) -> Result<Vec<String>> {
    Ok(user_group::Entity::find()
        .filter(user_group::Column::UserId.eq(user_id))
        .order_by_asc(user_group::Column::GroupName)
        .all(db)
        .await?
        .into_iter()
        .map(|g| g.group_name)
        .collect())
}

/// 1 to 64 letters, digits, `-`, `_` and `.`.
pub(crate) fn is_group_name(group: &str) -> bool {
    (1..=64).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_group(group: &str) -> Result<()> {
    if !is_group_name(group) {
        let mut v = FieldViolations::new();
        v.add("group", "must be 1 to 64 letters, digits, `-`, `_` and `.`");
        return Err(v.into());
    }
    Ok(())
}

/// Records a password hash in the user's history.
async fn remember_password(
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
fn bad_code() -> AuthError {
    let mut v = FieldViolations::new();
    v.add("code", "is wrong or has expired; ask for a new one");
    v.into()
}

fn code_fields(email: &str, code: &str) -> Result<()> {
    let mut v = FieldViolations::new();
    if email.trim().is_empty() {
        v.add("email", "is required");
    }
    if code.trim().is_empty() {
        v.add("code", "is required");
    }
    Ok(v.check()?)
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Below one billion by construction.
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn required(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        let mut v = FieldViolations::new();
        v.add(field, "is required");
        return Err(v.into());
    }
    Ok(())
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
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
