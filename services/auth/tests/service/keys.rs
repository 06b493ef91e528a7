//! Signing-key rotation with overlap, on the database and on Vault KV:
//! two replicas (two key rings on one store) agree on which key signs and
//! which are published, old tokens verify until their key retires, and on
//! Vault simultaneous rotations add one key.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cloudsec_auth::clock::{Clock, ManualClock};
use cloudsec_auth::keys::{KeyRing, KeyStore, Policy, SigningConfig};
use cloudsec_runtime::token::{Claims, TokenVerifier};

use crate::support::{AUDIENCE, Harness, ISSUER};

const ACCESS_TTL: Duration = Duration::from_secs(900);

fn config() -> SigningConfig {
    SigningConfig {
        rotation_period: Duration::from_secs(30 * 24 * 3600),
        publish_ahead: Duration::from_secs(600),
        ..SigningConfig::default()
    }
}

async fn replica(store: KeyStore, clock: &ManualClock) -> (Arc<KeyRing>, Arc<TokenVerifier>) {
    let verifier = Arc::new(TokenVerifier::fixed(ISSUER, AUDIENCE));
    let ring = KeyRing::open_with_clock(
        store,
        Policy::new(&config(), ACCESS_TTL),
        Duration::from_secs(60),
        verifier.clone(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("key ring");
    (ring, verifier)
}

/// A token signed now by `ring`; `exp` is an hour of real time away, so
/// only the key decides whether it verifies.
fn token(ring: &KeyRing) -> String {
    let now = Utc::now().timestamp();
    ring.signer()
        .sign(&Claims {
            iss: ISSUER.into(),
            sub: "u".into(),
            aud: AUDIENCE.into(),
            exp: now + 3600,
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            tenant: "acme".into(),
            scope: String::new(),
        })
        .expect("sign")
}

fn kids(ring: &KeyRing) -> Vec<String> {
    ring.jwks().keys.into_iter().map(|k| k.kid).collect()
}

async fn rotation_overlaps(a_store: KeyStore, b_store: KeyStore, clock: ManualClock) {
    let (a, a_verify) = replica(a_store, &clock).await;
    let (b, b_verify) = replica(b_store, &clock).await;
    let first = a.plan().signing.expect("a key signs from the start");
    assert_eq!(b.plan().signing.as_deref(), Some(first.as_str()));
    let old = token(&a);
    b_verify
        .verify(&old)
        .await
        .expect("the other replica verifies");

    // Rotate: the new key is published at once but signs only after the
    // publication period.
    let second = a.rotate(false).await.unwrap();
    b.refresh().await.unwrap();
    for ring in [&a, &b] {
        assert_eq!(ring.plan().signing.as_deref(), Some(first.as_str()));
        assert_eq!(kids(ring), [second.clone(), first.clone()]);
    }
    clock.advance(Duration::from_secs(600));
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    for ring in [&a, &b] {
        assert_eq!(ring.plan().signing.as_deref(), Some(second.as_str()));
        assert_eq!(kids(ring), [second.clone(), first.clone()]);
    }
    let new = token(&b);
    a_verify.verify(&new).await.unwrap();
    // Tokens of the old key verify until it retires: the access-token
    // lifetime plus five minutes after it stopped signing.
    b_verify
        .verify(&old)
        .await
        .expect("old token during the overlap");
    clock.advance(ACCESS_TTL + Duration::from_secs(299));
    b.refresh().await.unwrap();
    b_verify.verify(&old).await.expect("old token, last second");
    clock.advance(Duration::from_secs(1));
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    for ring in [&a, &b] {
        assert_eq!(kids(ring), vec![second.clone()]);
        assert_eq!(ring.plan().expired, Vec::<String>::new(), "deleted");
    }
    assert!(b_verify.verify(&old).await.is_err(), "retired key");
    a_verify.verify(&new).await.unwrap();

    // Automatic rotation a period after the newest key was made.
    clock.advance(Duration::from_secs(30 * 24 * 3600));
    b.refresh().await.unwrap();
    a.refresh().await.unwrap();
    let plan = a.plan();
    assert_eq!(plan.signing.as_deref(), Some(second.as_str()));
    assert_eq!(plan.published.len(), 2, "{plan:?}");
    assert_eq!(b.plan().published, plan.published, "one new key, not two");
}

pub(crate) async fn signing_keys_rotate_with_overlap(h: Harness) {
    let clock = ManualClock::new(h.clock.now());
    rotation_overlaps(
        KeyStore::database(h.db.clone()),
        KeyStore::database(h.db.clone()),
        clock,
    )
    .await;
    // Only the live key remains in the table after the old one retired.
    use sea_orm::{EntityTrait, PaginatorTrait};
    let rows = cloudsec_auth::entity::signing_key::Entity::find()
        .count(&h.db)
        .await
        .unwrap();
    assert_eq!(rows, 2, "the live key and the pending one");
}

async fn vault_store(
    vault: &cloudsec_secrets::test_util::TestVault,
    mount: &str,
    path: &str,
) -> KeyStore {
    KeyStore::Vault {
        client: vault.root().await,
        mount: mount.to_owned(),
        path: path.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_in_vault_rotate_with_overlap() {
    let Some(vault) = cloudsec_secrets::test_util::openbao() else {
        return;
    };
    let mount = vault.mount("kv-v2").await;
    let clock =
        ManualClock::new(chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap());
    rotation_overlaps(
        vault_store(&vault, &mount, "auth/signing-keys").await,
        vault_store(&vault, &mount, "auth/signing-keys").await,
        clock,
    )
    .await;
    // The private keys are in Vault, not in any database.
    let body = vault
        .root()
        .await
        .request(
            reqwest::Method::GET,
            &format!("{mount}/data/auth/signing-keys"),
            None,
        )
        .await
        .unwrap();
    let keys = body["data"]["data"]["keys"].as_str().unwrap();
    assert!(keys.contains("BEGIN PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_rotating_at_once_in_vault_add_one_key() {
    let Some(vault) = cloudsec_secrets::test_util::openbao() else {
        return;
    };
    let mount = vault.mount("kv-v2").await;
    let clock =
        ManualClock::new(chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap());
    let (a, _) = replica(vault_store(&vault, &mount, "k").await, &clock).await;
    let (b, _) = replica(vault_store(&vault, &mount, "k").await, &clock).await;
    let (c, _) = replica(vault_store(&vault, &mount, "k").await, &clock).await;
    assert_eq!(a.plan().published.len(), 1);
    assert_eq!(b.plan(), a.plan());
    clock.advance(Duration::from_secs(30 * 24 * 3600));
    let (ra, rb, rc) = tokio::join!(a.refresh(), b.refresh(), c.refresh());
    ra.unwrap();
    rb.unwrap();
    rc.unwrap();
    for ring in [&a, &b, &c] {
        ring.refresh().await.unwrap();
        assert_eq!(ring.plan().published.len(), 2, "{:?}", ring.plan());
    }
    assert_eq!(a.plan(), c.plan());
}

/// In the database the private keys are sealed under a key-encryption key
/// (here the local keystore of `cloudsec up`), bound to their kid; rows
/// from before sealing are sealed on load.
pub(crate) async fn signing_keys_in_the_database_are_sealed(h: Harness) {
    use cloudsec_auth::entity::signing_key;
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let rows = || async { signing_key::Entity::find().all(&h.db).await.unwrap() };
    // The harness's core ran without a secrets back end: one key in the clear.
    let before = rows().await;
    assert_eq!(before.len(), 1);
    assert!(before[0].private_pem.contains("PRIVATE KEY"));

    let dir = tempfile::tempdir().unwrap();
    let secrets = cloudsec_secrets::Secrets::from_config(
        &cloudsec_secrets::SecretsConfig::Local {
            dir: Some(dir.path().join("keystore")),
        },
        dir.path(),
    )
    .await
    .unwrap();
    let sealed_store = || async {
        KeyStore::from_config(&SigningConfig::default(), &h.db, Some(&secrets))
            .await
            .unwrap()
    };
    let clock = ManualClock::new(h.clock.now());
    let (ring, verifier) = replica(sealed_store().await, &clock).await;
    ring.rotate(false).await.unwrap();
    let after = rows().await;
    assert_eq!(after.len(), 2);
    for row in &after {
        assert!(row.private_pem.starts_with("sealed:v1:"), "{}", row.kid);
        assert!(!row.private_pem.contains("PRIVATE KEY"));
    }
    // Tokens still sign and verify with the unsealed keys.
    verifier.verify(&token(&ring)).await.unwrap();
    let (again, _) = replica(sealed_store().await, &clock).await;
    assert_eq!(again.plan(), ring.plan());

    // Without the key service the keys cannot be used, and it says so.
    let err = KeyRing::open(
        KeyStore::database(h.db.clone()),
        Policy::new(&config(), ACCESS_TTL),
        Duration::from_secs(60),
        Arc::new(TokenVerifier::fixed(ISSUER, AUDIENCE)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no [secrets] back end"), "{err}");

    // A sealed key moved to another kid does not open.
    signing_key::ActiveModel {
        kid: sea_orm::Unchanged(after[0].kid.clone()),
        private_pem: Set(after[1].private_pem.clone()),
        ..Default::default()
    }
    .update(&h.db)
    .await
    .unwrap();
    let err = KeyRing::open(
        sealed_store().await,
        Policy::new(&config(), ACCESS_TTL),
        Duration::from_secs(60),
        Arc::new(TokenVerifier::fixed(ISSUER, AUDIENCE)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("decrypt"), "{err}");
}

/// The `sealed:v1:` envelope of a stored value, as JSON.
fn envelope_of(stored: &str) -> serde_json::Value {
    use base64::Engine;
    let b64 = stored.strip_prefix("sealed:v1:").expect("sealed");
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// With `[auth.signing.kms]` the private keys are sealed by KMS (moto):
/// each data key is bound to its kid as the encryption context, a sealed
/// key moved to another kid is refused, and KMS down is UNAVAILABLE with
/// nothing written.
pub(crate) async fn signing_keys_sealed_by_kms(h: Harness) {
    use cloudsec_auth::AuthError;
    use cloudsec_auth::entity::signing_key;
    use cloudsec_secrets::test_util::{CutProxy, closed_port_url, host_port, moto_kms, moto_url};
    use sea_orm::{ActiveModelTrait, EntityTrait, PaginatorTrait, Set};
    let Some(moto) = moto_url() else { return };
    // KMS through a proxy this test can cut.
    let proxy = CutProxy::start(&host_port(&moto)).await;
    let signing = SigningConfig {
        kms: Some(moto_kms(&proxy.url())),
        ..config()
    };
    let store = || async {
        KeyStore::from_config(&signing, &h.db, None)
            .await
            .expect("kms key store")
    };
    let rows = || async { signing_key::Entity::find().all(&h.db).await.unwrap() };
    let clock = ManualClock::new(h.clock.now());
    let (ring, verifier) = replica(store().await, &clock).await;
    ring.rotate(false).await.unwrap();
    let after = rows().await;
    // The harness's clear key, sealed on load, and the new one.
    assert_eq!(after.len(), 2);
    for row in &after {
        let sealed = envelope_of(&row.private_pem);
        assert!(
            sealed["wrapped_key"]
                .as_str()
                .unwrap()
                .starts_with("kms:v1:"),
            "{sealed}"
        );
        assert_eq!(sealed["binding"]["kid"], row.kid.as_str());
        assert_eq!(sealed["binding"]["purpose"], "auth-signing-key");
        assert!(!row.private_pem.contains("PRIVATE KEY"));
    }
    // Round trip: tokens sign and verify, and another replica opens the
    // keys from KMS.
    verifier.verify(&token(&ring)).await.unwrap();
    let (again, _) = replica(store().await, &clock).await;
    assert_eq!(again.plan(), ring.plan());

    // KMS down: a rotation is UNAVAILABLE and writes nothing; a start
    // fails the same way.
    proxy.cut();
    let err = ring.rotate(true).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Unavailable);
    assert_eq!(signing_key::Entity::find().count(&h.db).await.unwrap(), 2);
    let unreachable = SigningConfig {
        kms: Some(moto_kms(&closed_port_url())),
        ..config()
    };
    let err = KeyStore::from_config(&unreachable, &h.db, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuthError::Unavailable(m) if m.contains("auth.signing.kms")),
        "{err:?}"
    );
    proxy.restore();
    // A key that does not exist (and may not be made) stops the start.
    let mut absent = moto_kms(&moto);
    absent.create_keys = false;
    let err = KeyStore::from_config(
        &SigningConfig {
            kms: Some(absent),
            ..config()
        },
        &h.db,
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, AuthError::Internal(m) if m.contains("auth.signing.kms") && m.contains("unknown key")),
        "{err:?}"
    );

    // Wrong context: the sealed key of one kid in another kid's row. Its
    // data key is bound to the first kid, so KMS itself refuses it.
    signing_key::ActiveModel {
        kid: sea_orm::Unchanged(after[0].kid.clone()),
        private_pem: Set(after[1].private_pem.clone()),
        ..Default::default()
    }
    .update(&h.db)
    .await
    .unwrap();
    let err = KeyRing::open(
        store().await,
        Policy::new(&config(), ACCESS_TTL),
        Duration::from_secs(60),
        Arc::new(TokenVerifier::fixed(ISSUER, AUDIENCE)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("decrypt"), "{err}");
}
