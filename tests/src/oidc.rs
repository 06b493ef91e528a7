//! A small OpenID Connect provider for federation tests: discovery, an
//! authorization endpoint that signs in a chosen user at once, a token
//! endpoint that checks the code, the redirect URI, the client and the
//! PKCE verifier, and its JWKS. ID tokens are RS256 with a fresh key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloudsec_runtime::Shutdown;
use cloudsec_runtime::token::Signer;
use serde_json::json;
use sha2::Digest;

/// Who the provider signs in next.
#[derive(Debug, Clone, Default)]
pub struct ProviderUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    /// More claims for the ID token (attribute mapping).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug)]
struct Pending {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    user: ProviderUser,
}

#[derive(Debug)]
struct Inner {
    issuer: String,
    client_id: String,
    signer: Signer,
    user: Option<ProviderUser>,
    codes: HashMap<String, Pending>,
    wrong_nonce: bool,
}

type Shared = Arc<Mutex<Inner>>;

/// A running provider; stops when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    pub issuer: String,
    inner: Shared,
    shutdown: Shutdown,
}

impl OidcProvider {
    /// Starts on a port-0 listener, for the client `client_id`.
    pub async fn start(client_id: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let inner = Arc::new(Mutex::new(Inner {
            issuer: issuer.clone(),
            client_id: client_id.to_owned(),
            signer: Signer::generate().expect("provider key"),
            user: None,
            codes: HashMap::new(),
            wrong_nonce: false,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/jwks", get(jwks))
            .with_state(inner.clone());
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Self {
            issuer,
            inner,
            shutdown,
        }
    }

    /// The user the next authorization signs in.
    pub fn sign_in_as(&self, user: ProviderUser) {
        self.inner.lock().expect("provider lock").user = Some(user);
    }

    /// Makes ID tokens carry a nonce other than the one asked for.
    pub fn send_wrong_nonce(&self, on: bool) {
        self.inner.lock().expect("provider lock").wrong_nonce = on;
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn discovery(State(inner): State<Shared>) -> Json<serde_json::Value> {
    let issuer = inner.lock().expect("provider lock").issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
}

async fn authorize(
    State(inner): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().expect("provider lock");
    let param = |k: &str| q.get(k).cloned().unwrap_or_default();
    if param("response_type") != "code"
        || param("client_id") != inner.client_id
        || param("code_challenge_method") != "S256"
        || param("code_challenge").is_empty()
        || !param("scope").split(' ').any(|s| s == "openid")
    {
        return oauth_error("invalid_request");
    }
    let Some(user) = inner.user.clone() else {
        return oauth_error("access_denied");
    };
    let code = uuid::Uuid::new_v4().simple().to_string();
    inner.codes.insert(
        code.clone(),
        Pending {
            client_id: param("client_id"),
            redirect_uri: param("redirect_uri"),
            challenge: param("code_challenge"),
            nonce: param("nonce"),
            user,
        },
    );
    let location = format!(
        "{}?code={code}&state={}",
        param("redirect_uri"),
        param("state")
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn token(State(inner): State<Shared>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| form.get(k).cloned().unwrap_or_default();
    let mut inner = inner.lock().expect("provider lock");
    // A code is spent by its first exchange, right or wrong.
    let Some(pending) = inner.codes.remove(&param("code")) else {
        return oauth_error("invalid_grant");
    };
    let verified = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(param("code_verifier").as_bytes()));
    if param("grant_type") != "authorization_code"
        || param("client_id") != pending.client_id
        || param("redirect_uri") != pending.redirect_uri
        || verified != pending.challenge
    {
        return oauth_error("invalid_grant");
    }
    let now = chrono::Utc::now().timestamp();
    let nonce = if inner.wrong_nonce {
        "not-the-nonce".to_owned()
    } else {
        pending.nonce
    };
    let mut claims = json!({
        "iss": inner.issuer,
        "sub": pending.user.sub,
        "aud": pending.client_id,
        "iat": now,
        "exp": now + 300,
        "nonce": nonce,
        "email": pending.user.email,
        "email_verified": pending.user.email_verified,
    });
    if let Some(map) = claims.as_object_mut() {
        map.extend(pending.user.extra.clone());
    }
    let id_token = inner.signer.sign_claims(&claims).expect("sign");
    Json(json!({"access_token": "opaque", "token_type": "Bearer", "id_token": id_token}))
        .into_response()
}

async fn jwks(State(inner): State<Shared>) -> Json<serde_json::Value> {
    let inner = inner.lock().expect("provider lock");
    let jwk = inner.signer.jwk();
    Json(json!({"keys": [{
        "kty": jwk.kty, "kid": jwk.kid, "use": "sig", "alg": "RS256", "n": jwk.n, "e": jwk.e,
    }]}))
}
