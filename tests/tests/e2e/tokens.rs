//! Bad tokens: each is refused with 401 by the service itself, and nothing
//! changes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloudsec_runtime::token::{Claims, Signer};
use sea_orm::Database;
use serde_json::json;

use crate::{create, document_ids, expect_error};
use cloudsec_tests::{Sandbox, User};

/// The auth service's current signing key, as someone holding both its
/// database and `cloudsec up`'s keystore (which seals the keys) could
/// unseal it.
async fn auth_signer(sb: &Sandbox) -> std::sync::Arc<Signer> {
    use cloudsec_auth::keys::{KeyRing, KeyStore, Policy, SigningConfig};
    let secrets = cloudsec_secrets::Secrets::from_config(
        &cloudsec_secrets::SecretsConfig::Local {
            dir: Some(sb.data_dir().join("keystore")),
        },
        &sb.data_dir(),
    )
    .await
    .expect("the platform's keystore");
    let db = Database::connect(sb.auth_database_url())
        .await
        .expect("auth db");
    let signing = SigningConfig::default();
    let store = KeyStore::from_config(&signing, &db, Some(&secrets))
        .await
        .expect("key store");
    let ring = KeyRing::open(
        store,
        Policy::new(&signing, std::time::Duration::from_secs(900)),
        signing.check_interval,
        std::sync::Arc::new(cloudsec_runtime::token::TokenVerifier::fixed("i", "a")),
    )
    .await
    .expect("signing keys");
    ring.signer()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(user: &User) -> Claims {
    let now = now();
    Claims {
        iss: "https://auth.cloudsec.local".into(),
        sub: user.user_id.clone(),
        aud: "cloudsec".into(),
        exp: now + 300,
        iat: now,
        nbf: Some(now),
        jti: uuid::Uuid::new_v4().to_string(),
        tenant: user.tenant.clone(),
        scope: "documents".into(),
    }
}

/// Tries `token` on a read and on a write; both must be refused.
async fn refused(sb: &Sandbox, owner: &User, token: &str, why: &str) {
    let r = sb.get("/v1/documents", token).await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"cloudsec\", error=\"invalid_token\"",
        "RFC 6750: a bad token is invalid_token"
    );
    expect_error(r, 401, 16, why).await;
    let r = sb
        .post(
            "/v1/documents",
            token,
            &json!({"title": "should not exist", "classification": "PUBLIC"}),
        )
        .await;
    expect_error(r, 401, 16, why).await;
    assert_eq!(
        document_ids(sb, &owner.token).await.len(),
        1,
        "nothing may change"
    );
}

async fn user_with_doc(sb: &Sandbox) -> User {
    let user = sb.user().await;
    create(
        sb,
        &user.token,
        json!({"title": "one", "classification": "PUBLIC"}),
    )
    .await;
    user
}

pub(crate) async fn missing_token(sb: &Sandbox) {
    let user = user_with_doc(sb).await;
    let r = sb.http.get(sb.url("/v1/documents")).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"cloudsec\"");
    expect_error(r, 401, 16, "missing bearer token").await;
    let r = sb
        .http
        .get(sb.url("/v1/documents"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    expect_error(r, 401, 16, "missing bearer token").await;
    refused(sb, &user, "not-a-jwt", "malformed").await;
    // A huge header is refused at the edge, not passed on to fail obscurely.
    let huge = "a".repeat(20_000);
    let r = sb.get("/v1/documents", &huge).await;
    expect_error(r, 431, 3, "authorization").await;
}

pub(crate) async fn expired_and_not_yet_valid(sb: &Sandbox) {
    let user = user_with_doc(sb).await;
    let signer = auth_signer(sb).await;
    // The real key signs a correct token: the baseline works.
    let ok = signer.sign(&claims(&user)).unwrap();
    assert_eq!(document_ids(sb, &ok).await.len(), 1);

    let mut expired = claims(&user);
    expired.iat -= 3600;
    expired.exp = now() - 600;
    refused(sb, &user, &signer.sign(&expired).unwrap(), "expired").await;

    let mut early = claims(&user);
    early.nbf = Some(now() + 600);
    early.exp = now() + 1200;
    refused(sb, &user, &signer.sign(&early).unwrap(), "not yet valid").await;
}

pub(crate) async fn alg_none_and_hs256(sb: &Sandbox) {
    let user = user_with_doc(sb).await;
    let signer = auth_signer(sb).await;
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&user)).unwrap());

    let header = URL_SAFE_NO_PAD
        .encode(json!({"alg": "none", "typ": "JWT", "kid": signer.kid()}).to_string());
    refused(sb, &user, &format!("{header}.{payload}."), "").await;

    // HS256 keyed with the public key: the classic algorithm confusion.
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(signer.kid().to_owned());
    let jwk = signer.jwk();
    let public = json!({"kty": jwk.kty, "n": jwk.n, "e": jwk.e}).to_string();
    let key = jsonwebtoken::EncodingKey::from_secret(public.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&hs, &claims(&user), &key).unwrap();
    refused(sb, &user, &token, "algorithm").await;
}

pub(crate) async fn other_key(sb: &Sandbox) {
    let user = user_with_doc(sb).await;
    let real = auth_signer(sb).await;
    let stranger = Signer::generate().unwrap();
    // An unknown key id, and a known key id with another key's signature.
    refused(
        sb,
        &user,
        &stranger.sign(&claims(&user)).unwrap(),
        "unknown key",
    )
    .await;
    let impostor = Signer::from_pem(real.kid(), stranger.pem()).unwrap();
    refused(
        sb,
        &user,
        &impostor.sign(&claims(&user)).unwrap(),
        "signature",
    )
    .await;
}

pub(crate) async fn wrong_audience_and_issuer(sb: &Sandbox) {
    let user = user_with_doc(sb).await;
    let signer = auth_signer(sb).await;
    let mut aud = claims(&user);
    aud.aud = "someone-else".into();
    refused(sb, &user, &signer.sign(&aud).unwrap(), "audience").await;
    let mut iss = claims(&user);
    iss.iss = "https://evil.example".into();
    refused(sb, &user, &signer.sign(&iss).unwrap(), "issuer").await;
}
