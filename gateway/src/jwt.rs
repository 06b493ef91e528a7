//! The edge JWT authorizer: bearer tokens checked before a call leaves the
//! gateway, with the runtime's [`TokenVerifier`] (RS256 only; `iss`, `aud`,
//! `exp`, `nbf` checked) and scopes per route.
//!
//! Keys come from the auth service's `GetJwks` over the mesh or from a
//! JWKS URL. They are fetched at start, again every `refresh_interval`
//! (so a key dropped from the set stops working), and on demand when a
//! token names an unknown `kid` (so a rotation works at once), at most
//! once per `min_refresh_interval` (the runtime's `REFRESH_INTERVAL` by
//! default) so bad tokens cannot hammer the source.
//! The services still verify tokens themselves; this keeps bad ones off
//! the mesh.

use std::sync::Arc;
use std::time::Duration;

use cloudsec_proto::auth::v1::auth_service_client::AuthServiceClient;
use cloudsec_proto::auth::v1::{GetJwksRequest, Jwks};
use cloudsec_runtime::shutdown::Shutdown;
use cloudsec_runtime::token::{Claims, TokenError, TokenVerifier, jwks};
use http::{HeaderMap, header};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::error::ApiError;

/// Where the key set comes from.
#[derive(Debug)]
pub(crate) enum JwksSource {
    Auth(AuthServiceClient<Channel>),
    Url {
        client: reqwest::Client,
        url: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    #[error("GetJwks failed: {0}")]
    Grpc(#[from] tonic::Status),
    #[error("fetching the JWKS failed: {0}")]
    Http(#[from] reqwest::Error),
}

impl JwksSource {
    pub(crate) fn url(url: &str) -> Result<Self, reqwest::Error> {
        let client = jwks::client()?;
        Ok(Self::Url {
            client,
            url: url.to_owned(),
        })
    }

    async fn fetch(&self) -> Result<Jwks, JwksError> {
        match self {
            JwksSource::Auth(client) => {
                let mut request = tonic::Request::new(GetJwksRequest {});
                request.set_timeout(jwks::FETCH_TIMEOUT);
                cloudsec_runtime::grpc::propagate(&mut request);
                Ok(client.clone().get_jwks(request).await?.into_inner())
            }
            JwksSource::Url { client, url } => Ok(jwks::fetch(client, url).await?),
        }
    }
}

/// Verifies bearer tokens at the edge.
#[derive(Debug)]
pub(crate) struct JwtAuthorizer {
    verifier: TokenVerifier,
    source: JwksSource,
    refresh_interval: Duration,
    min_refresh_interval: Duration,
    /// When an unknown `kid` last caused a fetch.
    last_on_demand: tokio::sync::Mutex<Option<Instant>>,
}

fn unauthenticated(error: &TokenError) -> ApiError {
    ApiError::unauthenticated(error.to_string())
}

/// The token of an `authorization: Bearer ...` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl JwtAuthorizer {
    pub(crate) fn new(
        issuer: &str,
        audience: &str,
        source: JwksSource,
        refresh_interval: Duration,
        min_refresh_interval: Duration,
    ) -> Self {
        Self {
            // A fixed verifier: fetching is done here, so that both sources
            // and the schedule work the same way.
            verifier: TokenVerifier::fixed(issuer, audience),
            source,
            refresh_interval,
            min_refresh_interval,
            last_on_demand: tokio::sync::Mutex::new(None),
        }
    }

    /// Also refuses the tokens the auth service behind `channel` revoked,
    /// pulled at most every `interval`.
    pub(crate) fn with_revocations(mut self, channel: Channel, interval: Duration) -> Self {
        self.verifier = self.verifier.with_revocations(channel, interval);
        self
    }

    /// Also accepts the access tokens of a Cognito user pool, whose keys
    /// the verifier fetches from the pool itself.
    pub(crate) fn trust_cognito(
        mut self,
        pool: cloudsec_runtime::token::CognitoConfig,
    ) -> Result<Self, String> {
        self.verifier = self.verifier.trust_cognito(pool)?;
        Ok(self)
    }

    /// Fetches the key set and replaces the known keys.
    pub(crate) async fn refresh(&self) -> Result<(), JwksError> {
        let fetched = self.source.fetch().await;
        let source = match &self.source {
            JwksSource::Auth(_) => "auth",
            JwksSource::Url { .. } => "url",
        };
        cloudsec_runtime::metrics::process::jwks_refresh(source, fetched.is_ok());
        let jwks = fetched?;
        tracing::debug!(keys = jwks.keys.len(), "jwks refreshed");
        self.verifier.set_keys(&jwks);
        Ok(())
    }

    /// A fetch for an unknown `kid`, unless one happened recently.
    async fn refresh_on_demand(&self) -> Result<(), TokenError> {
        let mut last = self.last_on_demand.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh_interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, "jwks fetch failed");
            // Let the next token try again rather than wait.
            *last = None;
            return Err(TokenError::KeysUnavailable);
        }
        Ok(())
    }

    /// Checks the bearer token and that it carries every scope in
    /// `scopes`: 401 for a missing or bad token, 403 for a missing scope,
    /// 503 when no keys can be had.
    pub(crate) async fn authorize(
        &self,
        headers: &HeaderMap,
        scopes: &[String],
    ) -> Result<Claims, ApiError> {
        let token = bearer(headers).ok_or_else(|| unauthenticated(&TokenError::Missing))?;
        let claims = match self.verifier.verify(token).await {
            Err(TokenError::UnknownKey) => {
                self.refresh_on_demand()
                    .await
                    .map_err(|error| match error {
                        TokenError::KeysUnavailable => ApiError::unavailable(),
                        other => unauthenticated(&other),
                    })?;
                self.verifier.verify(token).await
            }
            other => other,
        }
        .map_err(|error| match error {
            TokenError::KeysUnavailable => ApiError::unavailable(),
            other => unauthenticated(&other),
        })?;
        if let Some(missing) = scopes.iter().find(|s| !claims.has_scope(s)) {
            return Err(ApiError::permission_denied(format!(
                "the token lacks the scope `{missing}`"
            )));
        }
        Ok(claims)
    }

    /// Fetches now and then every `refresh_interval` until `shutdown`.
    pub(crate) async fn refresh_periodically(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "scheduled jwks refresh failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.refresh_interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn reads_bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc "),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }

    #[tokio::test]
    async fn a_missing_token_is_401_and_an_unreachable_source_is_503() {
        let source = JwksSource::url("http://127.0.0.1:9/jwks.json").unwrap();
        let authorizer = JwtAuthorizer::new(
            "iss",
            "aud",
            source,
            Duration::from_secs(60),
            Duration::from_secs(10),
        );
        let error = authorizer
            .authorize(&HeaderMap::new(), &[])
            .await
            .unwrap_err();
        assert_eq!(error.status, 401);
        assert!(error.message.contains("missing bearer token"));

        // A well-formed RS256 header naming an unknown kid: the keys are
        // fetched, and the fetch fails.
        // {"alg":"RS256","kid":"k1","typ":"JWT"} . {} . sig
        let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.e30.c2ln";
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let error = authorizer.authorize(&headers, &[]).await.unwrap_err();
        assert_eq!(error.status, 503);
    }
}
