//! Sign in with an external OpenID Connect provider: the authorization
//! code flow with PKCE (S256), as a relying party.
//!
//! 1. `StartFederatedLogin` makes a `state`, a `nonce` and a PKCE verifier,
//!    keeps them for ten minutes under the state's SHA-256, and returns the
//!    provider's authorization URL.
//! 2. The browser signs in at the provider and comes back to the app's
//!    `redirect_uri` with `code` and `state`.
//! 3. `CompleteFederatedLogin` spends the state (once), exchanges the code
//!    with the verifier at the token endpoint, and checks the ID token:
//!    RS256 with a key of the provider's JWKS, `iss`, `aud` (our client id),
//!    `exp`/`nbf`, and the `nonce` of step 1.
//! 4. The provider's user is the cloudsec user linked to `(provider, sub)`;
//!    failing that, the user with the same email, linked now, but only when
//!    the provider says the email is verified; failing that, a new user in
//!    the provider's tenant. MFA still applies; then the tokens.
//! 5. Attribute mapping: `attributes` names the claims that carry the email,
//!    its verification and the user's groups at the provider; `group_map`
//!    turns provider groups into cloudsec groups. The cloudsec groups named
//!    in `group_map` follow the provider at every sign-in (joined when the
//!    claim lists a group mapped to them, left when not); every other group
//!    stays with the tenant admins.
//!
//! Endpoints come from the issuer's `/.well-known/openid-configuration`,
//! fetched at first use and cached.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::token::jwks;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::TryRngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use crate::core::{AuthCore, LoginOutcome, required_fields};
use crate::entity::{federated_identity, federation_login, tenant, user, user_group};
use crate::error::{AuthError, Result};
use crate::session::sha256_hex;

pub use crate::config::{AttributeMapping, ProviderConfig};

/// How long a started login may take at the provider.
const STATE_TTL: Duration = Duration::from_secs(600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: String,
}

/// What a checked ID token says, read through the attribute mapping.
#[derive(Debug)]
struct IdClaims {
    sub: String,
    nonce: String,
    email: String,
    email_verified: bool,
    /// `None` when the provider maps no groups.
    groups: Option<Vec<String>>,
}

impl IdClaims {
    fn read(raw: &serde_json::Map<String, serde_json::Value>, mapping: &AttributeMapping) -> Self {
        let text = |name: &str| {
            raw.get(name)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        // Some providers send `"true"` as a string.
        let email_verified = match raw.get(&mapping.email_verified) {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        let groups = mapping.groups.as_ref().map(|claim| match raw.get(claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        });
        Self {
            sub: text("sub"),
            nonce: text("nonce"),
            email: text(&mapping.email),
            email_verified,
            groups,
        }
    }
}

/// The providers and what was discovered of them.
#[derive(Debug)]
pub struct Federation {
    providers: BTreeMap<String, ProviderConfig>,
    discovered: RwLock<HashMap<String, Discovery>>,
    http: reqwest::Client,
}

impl Federation {
    pub fn new(providers: BTreeMap<String, ProviderConfig>) -> Result<Self> {
        for (name, provider) in &providers {
            if !provider.group_map.is_empty() && provider.attributes.groups.is_none() {
                return Err(AuthError::Internal(format!(
                    "auth.federation.{name}: group_map needs attributes.groups, the claim that lists the user's groups"
                )));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| AuthError::Internal(format!("federation http client: {e}")))?;
        Ok(Self {
            providers,
            discovered: RwLock::new(HashMap::new()),
            http,
        })
    }

    fn provider(&self, name: &str) -> Result<&ProviderConfig> {
        self.providers.get(name).ok_or_else(|| {
            let mut v = FieldViolations::new();
            v.add("provider", "is not a configured identity provider");
            v.into()
        })
    }

    async fn discovery(&self, name: &str, provider: &ProviderConfig) -> Result<Discovery> {
        if let Some(found) = self.discovered.read().await.get(name) {
            return Ok(found.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            provider.issuer.trim_end_matches('/')
        );
        let document: Discovery = self.get_json(&url).await?;
        if document.issuer != provider.issuer {
            return Err(AuthError::Unavailable(format!(
                "identity provider {name}: its discovery document names issuer {}, not {}",
                document.issuer, provider.issuer
            )));
        }
        self.discovered
            .write()
            .await
            .insert(name.to_owned(), document.clone());
        Ok(document)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T> {
        let unavailable =
            |e: reqwest::Error| AuthError::Unavailable(format!("identity provider: {url}: {e}"));
        self.http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)
    }
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| AuthError::Internal(format!("os random: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn bad_state() -> AuthError {
    AuthError::Federation("the sign-in expired or was already used: start again".into())
}

impl AuthCore {
    fn federation(&self) -> Result<&Federation> {
        self.federation.as_deref().ok_or_else(|| {
            let mut v = FieldViolations::new();
            v.add("provider", "is not a configured identity provider");
            v.into()
        })
    }

    /// Step 1: the URL to send the browser to, and the state it carries.
    pub async fn start_federated_login(
        &self,
        provider_name: &str,
        client_id: &str,
    ) -> Result<(String, String)> {
        let federation = self.federation()?;
        let provider = federation.provider(provider_name)?;
        let app = self.app_client(client_id)?;
        let discovery = federation.discovery(provider_name, provider).await?;
        let state = random_token()?;
        let nonce = random_token()?;
        let verifier = random_token()?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let now = self.clock.now();
        federation_login::ActiveModel {
            state_hash: Set(sha256_hex(state.as_bytes())),
            provider: Set(provider_name.to_owned()),
            nonce: Set(nonce.clone()),
            code_verifier: Set(verifier),
            client_id: Set(app.id),
            expires_at: Set(now + chrono::Duration::from_std(STATE_TTL).unwrap_or_default()),
        }
        .insert(&self.db)
        .await?;
        let scope = provider.scopes.join(" ");
        let url = url::Url::parse_with_params(
            &discovery.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", provider.client_id.as_str()),
                ("redirect_uri", provider.redirect_uri.as_str()),
                ("scope", scope.as_str()),
                ("state", state.as_str()),
                ("nonce", nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| {
            AuthError::Unavailable(format!(
                "identity provider {provider_name}: bad authorization endpoint: {e}"
            ))
        })?;
        Ok((url.to_string(), state))
    }

    /// Steps 3 and 4: the provider's code for a cloudsec login.
    pub async fn complete_federated_login(&self, state: &str, code: &str) -> Result<LoginOutcome> {
        required_fields(&[("state", state), ("code", code)])?;
        let federation = self.federation()?;
        let now = self.clock.now();
        let hash = sha256_hex(state.trim().as_bytes());
        let Some(started) = federation_login::Entity::find_by_id(hash.clone())
            .one(&self.db)
            .await?
        else {
            return Err(bad_state());
        };
        // Spent whatever happens next: a state opens one exchange.
        let spent = federation_login::Entity::delete_by_id(hash)
            .exec(&self.db)
            .await?;
        if spent.rows_affected == 0 || started.expires_at <= now {
            return Err(bad_state());
        }
        let provider = federation.provider(&started.provider)?;
        let discovery = federation.discovery(&started.provider, provider).await?;

        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code.trim())
                .append_pair("redirect_uri", &provider.redirect_uri)
                .append_pair("client_id", &provider.client_id)
                .append_pair("code_verifier", &started.code_verifier);
            if let Some(secret) = &provider.client_secret {
                form.append_pair("client_secret", secret.expose());
            }
            form.finish()
        };
        let response = federation
            .http
            .post(&discovery.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                AuthError::Unavailable(format!("identity provider {}: {e}", started.provider))
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            tracing::info!(provider = %started.provider, %status, body = %body.chars().take(300).collect::<String>(), "code exchange refused");
            return Err(AuthError::Federation(format!(
                "the identity provider refused the code ({status})"
            )));
        }
        let tokens: TokenResponse = response
            .json()
            .await
            .map_err(|e| AuthError::Federation(format!("the provider's token response: {e}")))?;
        let claims = self
            .check_id_token(
                federation,
                &discovery,
                provider,
                &tokens.id_token,
                &started.nonce,
            )
            .await?;
        let user = self
            .federated_user(&started.provider, provider, &claims, now)
            .await?;
        let app = self.app_client(&started.client_id)?;
        tracing::info!(user_id = %user.id, provider = %started.provider, "federated login");
        if let Some(challenge) = self.mfa_challenge(&user, &app, now).await? {
            return Ok(challenge);
        }
        Ok(LoginOutcome::Tokens(
            self.issue_tokens(&user, &app, now).await?,
        ))
    }

    async fn check_id_token(
        &self,
        federation: &Federation,
        discovery: &Discovery,
        provider: &ProviderConfig,
        id_token: &str,
        nonce: &str,
    ) -> Result<IdClaims> {
        let invalid = |why: String| {
            AuthError::Federation(format!("the provider's ID token is invalid: {why}"))
        };
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let published = jwks::fetch(&federation.http, &discovery.jwks_uri)
            .await
            .map_err(|e| {
                AuthError::Unavailable(format!("identity provider: {}: {e}", discovery.jwks_uri))
            })?;
        let jwk = published
            .keys
            .iter()
            .find(|k| jwks::is_rs256(k) && Some(&k.kid) == header.kid.as_ref())
            .ok_or_else(|| invalid("signed by a key the provider does not publish".into()))?;
        let key =
            DecodingKey::from_rsa_components(&jwk.n, &jwk.e).map_err(|e| invalid(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&provider.issuer]);
        validation.set_audience(&[&provider.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let raw = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            id_token,
            &key,
            &validation,
        )
        .map_err(|e| invalid(e.to_string()))?
        .claims;
        let claims = IdClaims::read(&raw, &provider.attributes);
        // Constant-time is moot: the nonce is ours and single-use.
        if claims.nonce != nonce {
            return Err(invalid("the nonce is not the one this sign-in sent".into()));
        }
        if claims.sub.is_empty() {
            return Err(invalid("no subject".into()));
        }
        Ok(claims)
    }

    /// The cloudsec user of the provider's user (see the module docs).
    async fn federated_user(
        &self,
        provider_name: &str,
        provider: &ProviderConfig,
        claims: &IdClaims,
        now: DateTime<Utc>,
    ) -> Result<user::Model> {
        let linked =
            federated_identity::Entity::find_by_id((provider_name.to_owned(), claims.sub.clone()))
                .one(&self.db)
                .await?;
        let user = if let Some(link) = linked {
            user::Entity::find_by_id(link.user_id).one(&self.db).await?
        } else {
            if !claims.email_verified || claims.email.is_empty() {
                return Err(AuthError::Federation(
                    "the identity provider has not verified this user's email, so it cannot be linked to an account".into(),
                ));
            }
            let email = claims.email.trim().to_lowercase();
            let user = match user::Entity::find()
                .filter(user::Column::Email.eq(&email))
                .one(&self.db)
                .await?
            {
                Some(existing) => existing,
                None => self.create_federated_user(provider, &email, now).await?,
            };
            federated_identity::ActiveModel {
                provider: Set(provider_name.to_owned()),
                subject: Set(claims.sub.clone()),
                user_id: Set(user.id),
                created_at: Set(now),
            }
            .insert(&self.db)
            .await?;
            tracing::info!(user_id = %user.id, provider = provider_name, "federated identity linked");
            Some(user)
        };
        let user = user
            .filter(|u| u.disabled_at.is_none())
            .ok_or(AuthError::BadCredentials)?;
        if let Some(groups) = &claims.groups {
            self.sync_mapped_groups(provider_name, provider, &user, groups, now)
                .await?;
        }
        Ok(user)
    }

    /// Makes the user's membership of every group `group_map` targets
    /// match what the provider says now.
    async fn sync_mapped_groups(
        &self,
        provider_name: &str,
        provider: &ProviderConfig,
        user: &user::Model,
        at_provider: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let wanted: std::collections::BTreeSet<&str> = at_provider
            .iter()
            .filter_map(|g| provider.group_map.get(g).map(String::as_str))
            .collect();
        let targets: std::collections::BTreeSet<&str> =
            provider.group_map.values().map(String::as_str).collect();
        let current: std::collections::BTreeSet<String> = user_group::Entity::find()
            .filter(user_group::Column::UserId.eq(user.id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| m.group_name)
            .collect();
        for group in &targets {
            let member = current.contains(*group);
            if wanted.contains(group) && !member {
                user_group::ActiveModel {
                    user_id: Set(user.id),
                    group_name: Set((*group).to_owned()),
                    created_at: Set(now),
                }
                .insert(&self.db)
                .await?;
                tracing::info!(user_id = %user.id, group, provider = provider_name, "group joined from the identity provider");
            } else if !wanted.contains(group) && member {
                user_group::Entity::delete_many()
                    .filter(user_group::Column::UserId.eq(user.id))
                    .filter(user_group::Column::GroupName.eq(*group))
                    .exec(&self.db)
                    .await?;
                tracing::info!(user_id = %user.id, group, provider = provider_name, "group left as the identity provider says");
            }
        }
        Ok(())
    }

    async fn create_federated_user(
        &self,
        provider: &ProviderConfig,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<user::Model> {
        if tenant::Entity::find_by_id(provider.tenant.clone())
            .one(&self.db)
            .await?
            .is_none()
        {
            return Err(AuthError::Internal(format!(
                "auth.federation: tenant {} does not exist",
                provider.tenant
            )));
        }
        // A password nobody knows: the account signs in through the
        // provider until a reset sets one.
        let hash = self.hasher.hash(random_token()?).await?;
        let model = user::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            email: Set(email.to_owned()),
            tenant: Set(provider.tenant.clone()),
            password_hash: Set(hash),
            is_tenant_admin: Set(false),
            created_at: Set(now),
            disabled_at: Set(None),
            // The provider verified the email.
            confirmed_at: Set(Some(now)),
            token_generation: Set(0),
        }
        .insert(&self.db)
        .await?;
        tracing::info!(user_id = %model.id, tenant = %provider.tenant, "federated user created");
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "issuer = \"https://idp.example\"\nclient_id = \"app\"\n\
        redirect_uri = \"https://app.example/cb\"\ntenant = \"corp\"\n";

    #[test]
    fn attributes_are_read_through_the_mapping() {
        let mapping = AttributeMapping {
            email: "mail".into(),
            email_verified: "verified".into(),
            groups: Some("roles".into()),
        };
        let raw = serde_json::json!({
            "sub": "s1", "nonce": "n", "mail": "A@x.example", "email": "ignored@x.example",
            "verified": "true", "roles": "finance  audit"
        });
        let claims = IdClaims::read(raw.as_object().unwrap(), &mapping);
        assert_eq!(claims.email, "A@x.example");
        assert!(claims.email_verified);
        assert_eq!(claims.groups, Some(vec!["finance".into(), "audit".into()]));
        // Defaults: `email`/`email_verified`, and no groups unless asked.
        let raw = serde_json::json!({"sub": "s1", "email": "b@x.example", "email_verified": 1});
        let claims = IdClaims::read(raw.as_object().unwrap(), &AttributeMapping::default());
        assert_eq!(claims.email, "b@x.example");
        assert!(!claims.email_verified, "only true or \"true\" count");
        assert_eq!(claims.groups, None);
    }

    #[test]
    fn group_maps_are_checked_when_loaded() {
        let bad: std::result::Result<ProviderConfig, _> = toml::from_str(&format!(
            "{BASE}group_map = {{ finance = \"not a group\" }}\n"
        ));
        let error = bad.unwrap_err().to_string();
        assert!(error.contains("`finance` maps to `not a group`"), "{error}");

        let without_claim: ProviderConfig = toml::from_str(&format!(
            "{BASE}group_map = {{ finance = \"restricted\" }}\n"
        ))
        .unwrap();
        let error = Federation::new(BTreeMap::from([("corp".to_owned(), without_claim)]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("group_map needs attributes.groups"),
            "{error}"
        );

        let good: ProviderConfig = toml::from_str(&format!(
            "{BASE}attributes = {{ groups = \"roles\" }}\ngroup_map = {{ finance = \"restricted\" }}\n"
        ))
        .unwrap();
        assert_eq!(good.attributes.email, "email");
        assert!(Federation::new(BTreeMap::from([("corp".to_owned(), good)])).is_ok());
    }
}
