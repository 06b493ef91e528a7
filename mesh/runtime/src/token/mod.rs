//! Access-token verification. Every service checks tokens itself (it does
//! not trust the gateway blindly), against the auth service's JWKS.
//!
//! Only RS256 is accepted, so an `alg: none` or HS256-with-the-public-key
//! token is refused before any key is used. An unknown `kid` triggers one
//! JWKS refresh, at most every [`REFRESH_INTERVAL`], so key rotation works
//! without letting bad tokens hammer the auth service.
//!
//! Keys are parsed once, when the key set arrives, not at every token: the
//! RSA check itself is then all that is left of the cost (see
//! docs/benchmarks.md#auth). Verifiers fed by the auth service also refuse
//! tokens it has revoked (see [`revocation`]).

mod cognito;
pub mod jwks;
mod revocation;
mod signer;

pub use cognito::CognitoConfig;
pub use revocation::REVOCATION_INTERVAL;
pub use signer::{Signer, SignerError};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloudsec_proto::auth::v1::auth_service_client::AuthServiceClient;
use cloudsec_proto::auth::v1::{GetJwksRequest, Jwks};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use revocation::Revocations;

/// The least time between two JWKS fetches caused by unknown key ids.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// [`REVOCATION_INTERVAL`], for `serde(default = ...)`.
pub fn default_revocation_interval() -> Duration {
    REVOCATION_INTERVAL
}

/// The scope that makes a user their tenant's admin.
pub const ADMIN_SCOPE: &str = "tenant:admin";

/// The `iss` of the platform's own tokens unless `tokens.issuer` says
/// otherwise; the signer and every verifier read the same setting.
pub const DEFAULT_ISSUER: &str = "https://auth.cloudsec.local";

/// The `aud` of the platform's own tokens unless `tokens.audience` says
/// otherwise.
pub const DEFAULT_AUDIENCE: &str = "cloudsec";

/// The claims of a cloudsec access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// The tenant the user belongs to; every query is scoped to it.
    pub tenant: String,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
}

impl Claims {
    /// Whether the token grants `scope` (one of the space-separated
    /// `scope` claim's entries; a prefix or substring is no grant).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split_ascii_whitespace().any(|s| s == scope)
    }

    /// Whether the token makes its user their tenant's admin
    /// ([`ADMIN_SCOPE`]).
    pub fn is_tenant_admin(&self) -> bool {
        self.has_scope(ADMIN_SCOPE)
    }
}

/// [`Claims`] plus the claims Amazon Cognito puts in its access tokens, so
/// that Cognito-aware clients and libraries read cloudsec tokens too. Every
/// added claim has a default: tokens issued before they existed still
/// verify, and [`TokenVerifier::verify`] simply ignores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    #[serde(flatten)]
    pub base: Claims,
    /// `"access"` for access tokens; empty in tokens older than the claim.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_use: String,
    /// The app client the token was issued to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// When the user last presented a password (seconds since the epoch);
    /// refreshed tokens keep the original time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Cognito's name for the user's groups; `groups` is read too.
    #[serde(default, rename = "cognito:groups", alias = "groups")]
    pub groups: Vec<String>,
    /// The user's token generation at issue; a revocation raises it, and
    /// verifiers refuse tokens below the revoked user's new value. 0 in
    /// tokens older than the claim.
    #[serde(default, rename = "cloudsec:generation")]
    pub generation: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not accepted")]
    Algorithm,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token signature invalid")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issuer not accepted")]
    Issuer,
    #[error("token audience not accepted")]
    Audience,
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// An ID (or other) token presented where an access token is needed.
    #[error("not an access token")]
    NotAccess,
    /// A trusted external token (Cognito) from which no tenant follows.
    #[error("token names no tenant")]
    NoTenant,
    /// Issued before its user was disabled, deleted, signed out everywhere
    /// or given a new password.
    #[error("token revoked")]
    Revoked,
}

impl From<TokenError> for tonic::Status {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::KeysUnavailable => tonic::Status::unavailable(error.to_string()),
            _ => tonic::Status::unauthenticated(error.to_string()),
        }
    }
}

#[derive(Debug)]
enum KeySource {
    /// Keys are set by the owner (the auth service verifying its own).
    Fixed,
    /// Keys come from the auth service's `GetJwks`.
    Auth(AuthServiceClient<Channel>),
}

/// A verification key, parsed once.
type Key = Arc<ParsedPublicKey>;

#[derive(Debug)]
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    keys: RwLock<HashMap<String, Key>>,
    source: KeySource,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// A Cognito user pool whose access tokens are accepted too.
    cognito: Option<cognito::CognitoPool>,
    /// The auth service's revocations, when it is the key source.
    revocations: Option<Arc<Revocations>>,
}

impl TokenVerifier {
    fn new(issuer: &str, audience: &str, source: KeySource) -> Self {
        let revocations = match &source {
            KeySource::Auth(client) => Some(Arc::new(Revocations::new(
                client.clone(),
                REVOCATION_INTERVAL,
            ))),
            KeySource::Fixed => None,
        };
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: RwLock::new(HashMap::new()),
            source,
            last_fetch: tokio::sync::Mutex::new(None),
            cognito: None,
            revocations,
        }
    }

    /// Also refuses the tokens the auth service behind `channel` revoked,
    /// pulling its list at most every `interval` (for verifiers whose keys
    /// come from elsewhere, such as the gateway's).
    pub fn with_revocations(mut self, channel: Channel, interval: Duration) -> Self {
        self.revocations = Some(Arc::new(Revocations::new(
            AuthServiceClient::new(channel),
            interval,
        )));
        self
    }

    /// Pulls revocations every `interval` instead of
    /// [`REVOCATION_INTERVAL`]; no effect on a verifier without them.
    pub fn revocation_interval(mut self, interval: Duration) -> Self {
        if let Some(r) = &self.revocations {
            self.revocations = Some(Arc::new(Revocations::new(r.client(), interval)));
        }
        self
    }

    /// Also accepts the access tokens of a Cognito user pool (Cognito
    /// mode); the error names the bad setting.
    pub fn trust_cognito(mut self, config: CognitoConfig) -> Result<Self, String> {
        self.cognito = Some(cognito::CognitoPool::new(config)?);
        Ok(self)
    }

    /// A verifier whose keys are given with [`TokenVerifier::set_keys`].
    pub fn fixed(issuer: &str, audience: &str) -> Self {
        Self::new(issuer, audience, KeySource::Fixed)
    }

    /// A verifier that fetches keys from the auth service on demand.
    pub fn from_auth(issuer: &str, audience: &str, channel: Channel) -> Self {
        Self::new(
            issuer,
            audience,
            KeySource::Auth(AuthServiceClient::new(channel)),
        )
    }

    /// Replaces the known keys; entries that are not usable RSA keys are
    /// skipped with a warning.
    pub fn set_keys(&self, jwks: &Jwks) {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            if !jwks::is_rs256(jwk) {
                continue;
            }
            match parse_rsa_jwk(&jwk.n, &jwk.e) {
                Ok(key) => {
                    keys.insert(jwk.kid.clone(), Arc::new(key));
                }
                Err(error) => tracing::warn!(kid = %jwk.kid, error, "skipping unusable jwk"),
            }
        }
        if let Ok(mut guard) = self.keys.write() {
            *guard = keys;
        }
    }

    fn key(&self, kid: &str) -> Option<Key> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    async fn refresh(&self) -> Result<(), TokenError> {
        let KeySource::Auth(client) = &self.source else {
            return Ok(());
        };
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let mut request = tonic::Request::new(GetJwksRequest {});
        crate::grpc::propagate(&mut request);
        let fetched = client.clone().get_jwks(request).await;
        crate::metrics::process::jwks_refresh("auth", fetched.is_ok());
        match fetched {
            Ok(response) => {
                self.set_keys(response.get_ref());
                Ok(())
            }
            Err(status) => {
                tracing::warn!(%status, "jwks fetch failed");
                // Let the next token try again soon rather than in 10 s.
                *last = None;
                Err(TokenError::KeysUnavailable)
            }
        }
    }

    /// Checks a compact JWS and returns its claims. Only access tokens
    /// pass: an ID token (`token_use` "id") signed by the same key, for the
    /// same audience, is refused.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_access(token).await.map(|c| c.base)
    }

    /// Like [`TokenVerifier::verify`], with the Cognito-style claims.
    pub async fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if let Some(pool) = &self.cognito
            && cognito::peek_issuer(token).as_deref() == Some(pool.issuer())
        {
            return pool.verify(token).await;
        }
        let claims: AccessClaims = self.decode(token).await?;
        // Tokens from before `token_use` existed have none.
        if !claims.token_use.is_empty() && claims.token_use != "access" {
            return Err(TokenError::NotAccess);
        }
        if let Some(revocations) = &self.revocations {
            revocations
                .check(&claims.base.sub, claims.generation)
                .await?;
        }
        Ok(claims)
    }

    async fn decode<T: serde::de::DeserializeOwned + HasSubject>(
        &self,
        token: &str,
    ) -> Result<T, TokenError> {
        let key =
            jwks::signing_key(token, |kid| self.key(kid), async || self.refresh().await).await?;
        let claims: T = verify_rs256(token, &key)?;
        self.check_claims(claims.base())?;
        Ok(claims)
    }

    /// What RFC 7519 asks of `exp`, `nbf`, `iss` and `aud` (checked in
    /// that order, as jsonwebtoken does), with [`LEEWAY_SECS`] of skew.
    fn check_claims(&self, claims: &Claims) -> Result<(), TokenError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let leeway = LEEWAY_SECS as i64;
        if claims.exp < now.saturating_sub(leeway) {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::Audience);
        }
        check_subject(claims)
    }

    /// Verifies the `authorization: Bearer ...` metadata of a call.
    pub async fn authenticate<T>(
        &self,
        request: &tonic::Request<T>,
    ) -> Result<Claims, tonic::Status> {
        let token = bearer(request.metadata()).ok_or(TokenError::Missing)?;
        let claims = self.verify(token).await?;
        tracing::Span::current().record("sub", claims.sub.as_str());
        Ok(claims)
    }
}

/// The error of a jsonwebtoken check (the Cognito pool's).
fn token_error(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
        _ => TokenError::Malformed,
    }
}

/// An RSA public key from a JWK's base64url `n` and `e`.
fn parse_rsa_jwk(n: &str, e: &str) -> Result<ParsedPublicKey, &'static str> {
    let n = URL_SAFE_NO_PAD
        .decode(n)
        .map_err(|_| "n is not base64url")?;
    let e = URL_SAFE_NO_PAD
        .decode(e)
        .map_err(|_| "e is not base64url")?;
    RsaPublicKeyComponents { n: &n, e: &e }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .map_err(|_| "not a usable RSA public key")
}

/// Checks the RS256 signature of a compact JWS (whose header the caller
/// has read) and returns its claims; nothing of the payload is read before
/// the signature holds.
fn verify_rs256<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &ParsedPublicKey,
) -> Result<T, TokenError> {
    let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (_, payload) = message.split_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    key.verify_sig(message.as_bytes(), &signature)
        .map_err(|_| TokenError::Signature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)
}

/// What every accepted token must name: whom it is for and their tenant.
trait HasSubject {
    fn base(&self) -> &Claims;
}

impl HasSubject for Claims {
    fn base(&self) -> &Claims {
        self
    }
}

impl HasSubject for AccessClaims {
    fn base(&self) -> &Claims {
        &self.base
    }
}

fn check_subject(claims: &Claims) -> Result<(), TokenError> {
    if claims.tenant.is_empty() || claims.sub.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(())
}

/// The token of an `authorization: Bearer ...` header, if any.
pub fn bearer(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(bearer(&md), None);
        md.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&md), Some("abc"));
        md.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&md), None);
    }

    #[test]
    fn scopes_match_whole_entries_only() {
        let claims = |scope: &str| Claims {
            iss: String::new(),
            sub: String::new(),
            aud: String::new(),
            exp: 0,
            iat: 0,
            nbf: None,
            jti: String::new(),
            tenant: String::new(),
            scope: scope.to_owned(),
        };
        assert!(claims("documents tenant:admin").is_tenant_admin());
        assert!(claims("  tenant:admin\tdocuments").has_scope("documents"));
        // A look-alike, a prefix or an empty claim grants nothing.
        assert!(!claims("tenant:administrator").is_tenant_admin());
        assert!(!claims("tenant:admin:x documents").is_tenant_admin());
        assert!(!claims("").has_scope(""));
        assert!(!claims("documents").has_scope("doc"));
    }

    #[tokio::test]
    async fn refuses_alg_none_and_garbage() {
        let v = TokenVerifier::fixed("iss", "aud");
        assert_eq!(v.verify("garbage").await, Err(TokenError::Malformed));
        // {"alg":"none","typ":"JWT"} . {"sub":"x"} .
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        assert!(v.verify(none).await.is_err());
        // {"alg":"HS256","kid":"k"} . {} . sig
        let hs = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.e30.c2ln";
        assert_eq!(v.verify(hs).await, Err(TokenError::Algorithm));
    }
}
