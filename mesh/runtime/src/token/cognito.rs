//! Cognito mode: access tokens of an Amazon Cognito user pool, verified
//! against the pool's JWKS and read as cloudsec claims.
//!
//! Cognito access tokens have no `aud` (they name the app client in
//! `client_id`) and no tenant. The tenant comes only from the pool's
//! groups, which only the pool's administrators can change, through
//! explicit configuration: `tenant_groups` maps a group to a tenant name,
//! and `tenant_group_prefix` makes group `<prefix><name>` tenant `<name>`.
//! No claim a user could write (a custom attribute) ever selects a tenant.
//!
//! A pool's tenants live in the pool's own namespace: tenant `acme` of pool
//! `eu-west-1_AbC` is `cognito:eu-west-1_AbC/acme`, which no native tenant
//! name can spell (those are lowercase letters, digits and dashes), so a
//! pool user never reaches the cloudsec tenant `acme`, nor another pool's.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::Instant;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AccessClaims, Claims, LEEWAY_SECS, REFRESH_INTERVAL, TokenError, token_error};

/// `[tokens.cognito]` (services) and `[gateway.jwt.cognito]` (the edge).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CognitoConfig {
    /// The user pool, e.g. `eu-west-1_AbCdEf123`; its region is the part
    /// before `_`.
    pub user_pool_id: String,
    /// App clients whose tokens are accepted (`client_id`); at least one.
    pub client_ids: Vec<String>,
    /// Default `https://cognito-idp.<region>.amazonaws.com/<pool>`.
    pub issuer: Option<String>,
    /// Default `<issuer>/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// Group name to tenant name, e.g. `{ "acme-staff" = "acme" }`.
    #[serde(default)]
    pub tenant_groups: BTreeMap<String, String>,
    /// Group `<prefix><name>` makes tenant `<name>`, e.g. `tenant-` makes
    /// group `tenant-acme` tenant `acme`.
    pub tenant_group_prefix: Option<String>,
    /// Members of this group get the `tenant:admin` scope (in their pool
    /// tenant only).
    pub admin_group: Option<String>,
    /// Refused with an explanation: a claim is no way to pick a tenant.
    tenant_claim: Option<serde_json::Value>,
}

/// The prefix of every tenant from a Cognito pool.
const COGNITO_TENANT_PREFIX: &str = "cognito:";

impl CognitoConfig {
    /// The `iss` of the pool's tokens.
    pub fn issuer(&self) -> String {
        self.issuer.clone().unwrap_or_else(|| {
            let region = self
                .user_pool_id
                .split_once('_')
                .map_or("", |(region, _)| region);
            format!(
                "https://cognito-idp.{region}.amazonaws.com/{}",
                self.user_pool_id
            )
        })
    }

    /// Where the pool's keys are.
    pub fn jwks_url(&self) -> String {
        self.jwks_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", self.issuer()))
    }

    /// For `#[serde(default, deserialize_with = ...)]` on an optional
    /// section: the settings are checked as they are read, so a bad one
    /// fails the configuration with its key.
    pub fn deserialize_checked<'de, D>(deserializer: D) -> Result<Option<Self>, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        let config = Option::<Self>::deserialize(deserializer)?;
        if let Some((key, problem)) = config.as_ref().and_then(Self::problem) {
            return Err(serde::de::Error::custom(format!("{key} {problem}")));
        }
        Ok(config)
    }

    /// What is wrong with the settings, as (key, problem).
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self
            .user_pool_id
            .split_once('_')
            .is_none_or(|(r, id)| r.is_empty() || id.is_empty())
        {
            return Some(("user_pool_id", "must look like <region>_<id>"));
        }
        if self.client_ids.is_empty() || self.client_ids.iter().any(String::is_empty) {
            return Some(("client_ids", "must list at least one app client id"));
        }
        let url = self.jwks_url();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Some(("jwks_url", "must be an http(s) URL"));
        }
        if self.tenant_claim.is_some() {
            return Some((
                "tenant_claim",
                "is no longer accepted: a claim (a custom attribute users may be able to write) \
                 must not choose a tenant; map groups with tenant_groups or tenant_group_prefix",
            ));
        }
        if self.tenant_groups.is_empty() && self.tenant_group_prefix.is_none() {
            return Some((
                "tenant_groups",
                "or tenant_group_prefix is required: which groups make which tenants",
            ));
        }
        if self.tenant_group_prefix.as_deref() == Some("") {
            return Some(("tenant_group_prefix", "must not be empty"));
        }
        if self.tenant_groups.values().any(|t| !valid_tenant(t)) {
            return Some((
                "tenant_groups",
                "names a tenant that is not 3 to 63 lowercase letters, digits and dashes",
            ));
        }
        None
    }

    /// The pool's namespaced name of its tenant `name`.
    pub fn tenant(&self, name: &str) -> String {
        format!("{COGNITO_TENANT_PREFIX}{}/{name}", self.user_pool_id)
    }
}

/// The claims of a Cognito access token that cloudsec reads.
#[derive(Debug, Deserialize)]
struct CognitoClaims {
    iss: String,
    sub: String,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    #[serde(default)]
    jti: String,
    #[serde(default)]
    token_use: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    scope: String,
    auth_time: Option<i64>,
    #[serde(default, rename = "cognito:groups")]
    groups: Vec<String>,
}

/// A trusted user pool and its keys.
#[derive(Debug)]
pub(super) struct CognitoPool {
    config: CognitoConfig,
    issuer: String,
    jwks_url: String,
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    http: reqwest::Client,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl CognitoPool {
    pub(super) fn new(config: CognitoConfig) -> Result<Self, String> {
        if let Some((key, problem)) = config.problem() {
            return Err(format!("cognito.{key}: {problem}"));
        }
        let issuer = config.issuer();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&issuer]);
        // Access tokens carry `client_id`, checked below, and no `aud`.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let http = super::jwks::client().map_err(|e| format!("cognito: HTTP client: {e}"))?;
        Ok(Self {
            jwks_url: config.jwks_url(),
            config,
            issuer,
            validation,
            keys: RwLock::new(HashMap::new()),
            http,
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    pub(super) fn issuer(&self) -> &str {
        &self.issuer
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Fetches the pool's keys, at most every [`REFRESH_INTERVAL`].
    async fn refresh(&self) -> Result<(), TokenError> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let fetched = super::jwks::fetch(&self.http, &self.jwks_url).await;
        crate::metrics::process::jwks_refresh("cognito", fetched.is_ok());
        let document = match fetched {
            Ok(document) => document,
            Err(error) => {
                tracing::warn!(url = %self.jwks_url, %error, "cognito jwks fetch failed");
                *last = None;
                return Err(TokenError::KeysUnavailable);
            }
        };
        let mut keys = HashMap::new();
        for jwk in document.keys {
            if !super::jwks::is_rs256(&jwk) {
                continue;
            }
            match DecodingKey::from_rsa_components(&jwk.n, &jwk.e) {
                Ok(key) => {
                    keys.insert(jwk.kid, key);
                }
                Err(error) => {
                    tracing::warn!(kid = %jwk.kid, %error, "skipping unusable cognito jwk")
                }
            }
        }
        if let Ok(mut guard) = self.keys.write() {
            *guard = keys;
        }
        Ok(())
    }

    /// Verifies a token this pool issued and reads it as cloudsec claims.
    pub(super) async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let key =
            super::jwks::signing_key(token, |kid| self.key(kid), async || self.refresh().await)
                .await?;
        let claims = jsonwebtoken::decode::<CognitoClaims>(token, &key, &self.validation)
            .map_err(token_error)?
            .claims;
        if claims.token_use != "access" {
            return Err(TokenError::NotAccess);
        }
        if !self.config.client_ids.contains(&claims.client_id) {
            return Err(TokenError::Audience);
        }
        let tenant = self.tenant_of(&claims).ok_or(TokenError::NoTenant)?;
        let mut scope = claims.scope.clone();
        if let Some(admin) = &self.config.admin_group
            && claims.groups.contains(admin)
        {
            scope.push_str(if scope.is_empty() { "" } else { " " });
            scope.push_str(crate::token::ADMIN_SCOPE);
        }
        Ok(AccessClaims {
            base: Claims {
                iss: claims.iss,
                sub: claims.sub,
                aud: claims.client_id.clone(),
                exp: claims.exp,
                iat: claims.iat,
                nbf: claims.nbf,
                jti: claims.jti,
                tenant,
                scope,
            },
            token_use: claims.token_use,
            client_id: claims.client_id,
            auth_time: claims.auth_time,
            groups: claims.groups,
            generation: 0,
        })
    }

    /// The one tenant the user's groups name, in the pool's namespace.
    /// Two tenants would make the tenant a guess, so they name none.
    fn tenant_of(&self, claims: &CognitoClaims) -> Option<String> {
        let prefix = self.config.tenant_group_prefix.as_deref();
        let mut tenants = claims
            .groups
            .iter()
            .filter_map(|group| {
                self.config
                    .tenant_groups
                    .get(group)
                    .map(String::as_str)
                    .or_else(|| group.strip_prefix(prefix?))
            })
            .filter(|name| valid_tenant(name));
        let first = tenants.next()?;
        tenants
            .all(|other| other == first)
            .then(|| self.config.tenant(first))
    }
}

/// The rule tenant names follow everywhere: 3 to 63 lowercase letters,
/// digits and dashes.
fn valid_tenant(tenant: &str) -> bool {
    (3..=63).contains(&tenant.len())
        && tenant.starts_with(|c: char| c.is_ascii_lowercase())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The `iss` of a compact JWS, unverified: only to pick the verifier.
pub(super) fn peek_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CognitoConfig {
        toml::from_str(
            "user_pool_id = \"eu-west-1_Abc\"\nclient_ids = [\"app\"]\ntenant_group_prefix = \"tenant-\"\n\
             tenant_groups = { \"globex-staff\" = \"globex\" }\n",
        )
        .unwrap()
    }

    #[test]
    fn issuer_and_keys_follow_the_pool() {
        let c = config();
        assert_eq!(
            c.issuer(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc"
        );
        assert_eq!(
            c.jwks_url(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc/.well-known/jwks.json"
        );
        assert!(c.problem().is_none());
        let mut bad = c.clone();
        bad.user_pool_id = "nounderscore".into();
        assert_eq!(bad.problem().unwrap().0, "user_pool_id");
        let mut bad = c.clone();
        bad.client_ids.clear();
        assert_eq!(bad.problem().unwrap().0, "client_ids");
        // No mapping at all is refused: tenancy must be configured.
        let mut bad = c.clone();
        bad.tenant_groups.clear();
        bad.tenant_group_prefix = None;
        assert_eq!(bad.problem().unwrap().0, "tenant_groups");
        let mut bad = c;
        bad.tenant_groups.insert("g".into(), "Not_A_Tenant".into());
        assert_eq!(bad.problem().unwrap().0, "tenant_groups");
        assert!(
            toml::from_str::<CognitoConfig>("user_pool_id = \"a_b\"\nclient_ids = []\nx = 1")
                .is_err()
        );
        // The old claim setting is refused with the reason.
        let old: CognitoConfig = toml::from_str(
            "user_pool_id = \"eu-west-1_Abc\"\nclient_ids = [\"app\"]\ntenant_claim = \"custom:tenant\"\ntenant_group_prefix = \"t-\"\n",
        )
        .unwrap();
        let (key, why) = old.problem().unwrap();
        assert_eq!(key, "tenant_claim");
        assert!(why.contains("must not choose a tenant"), "{why}");
    }

    /// The claims of a token payload with `groups` and the extra claims
    /// `rest`, read as the verifier reads them.
    fn claims(groups: &[&str], rest: &[(&str, &str)]) -> CognitoClaims {
        let mut payload = serde_json::json!({
            "iss": "i", "sub": "s", "exp": 0, "iat": 0,
            "token_use": "access", "client_id": "app",
            "cognito:groups": groups,
        });
        for (k, v) in rest {
            payload[*k] = serde_json::Value::String((*v).to_owned());
        }
        serde_json::from_value(payload).unwrap()
    }

    #[test]
    fn the_tenant_comes_from_configured_groups_in_the_pools_namespace() {
        let pool = CognitoPool::new(config()).unwrap();
        let tenant = |groups: &[&str], rest: &[(&str, &str)]| pool.tenant_of(&claims(groups, rest));
        assert_eq!(
            tenant(&["staff", "tenant-acme"], &[]),
            Some("cognito:eu-west-1_Abc/acme".into())
        );
        assert_eq!(
            tenant(&["globex-staff"], &[]),
            Some("cognito:eu-west-1_Abc/globex".into())
        );
        // A claim the user may write changes nothing, with or without a
        // tenant group.
        assert_eq!(
            tenant(
                &["tenant-acme"],
                &[("custom:tenant", "globex"), ("tenant", "globex")]
            ),
            Some("cognito:eu-west-1_Abc/acme".into())
        );
        assert_eq!(tenant(&[], &[("custom:tenant", "acme")]), None);
        // Two tenants name none; the same tenant twice is one.
        assert_eq!(tenant(&["tenant-acme", "tenant-globex"], &[]), None);
        assert_eq!(
            tenant(&["tenant-globex", "globex-staff"], &[]),
            Some("cognito:eu-west-1_Abc/globex".into())
        );
        assert_eq!(tenant(&["staff"], &[]), None);
        assert_eq!(tenant(&["tenant-Bad_Name"], &[]), None);
        // No pool tenant is ever a native tenant name.
        let native = tenant(&["tenant-acme"], &[]).unwrap();
        assert!(!valid_tenant(&native));
    }

    #[test]
    fn peeks_the_issuer() {
        // {"alg":"RS256"} . {"iss":"https://x"} . sig
        assert_eq!(
            peek_issuer("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL3gifQ.c2ln"),
            Some("https://x".into())
        );
        assert_eq!(peek_issuer("garbage"), None);
    }
}
