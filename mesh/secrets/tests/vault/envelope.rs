//! Envelope encryption with data keys from OpenBao's transit engine.

use std::sync::Arc;
use std::time::Duration;

use cloudsec_secrets::{
    DataKeyCacheConfig, Envelope, Error, KeyService, TransitKeys, VaultClient, document_context,
};
use serde_json::json;

use crate::support::{CutProxy, host_port, openbao, policy, put};

/// The key names of documents' default key policy, one per classification.
const KEYS: [&str; 4] = [
    "docs-public",
    "docs-internal",
    "docs-confidential",
    "docs-restricted",
];
async fn transit(root: &VaultClient, mount: &str) -> TransitKeys {
    let keys = TransitKeys::new(root.clone(), mount);
    for name in KEYS {
        keys.ensure_key(name).await.unwrap();
    }
    keys
}

fn per_document() -> DataKeyCacheConfig {
    DataKeyCacheConfig {
        max_uses: 1,
        max_age: Duration::from_secs(60),
        max_entries: 0,
        prefetch: 0,
    }
}

#[tokio::test]
async fn transit_envelopes_open_only_untouched_and_in_place() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let mount = vault.mount("transit").await;
    let env = Envelope::new(Arc::new(transit(&root, &mount).await), per_document());
    let ctx = document_context("tenant-1", "doc-1");
    let key = "docs-confidential";
    let sealed = env.seal(key, b"merger terms", &ctx).await.unwrap();
    assert_eq!(sealed.key_name, "docs-confidential");
    assert!(
        sealed.wrapped_key.starts_with("vault:v1:"),
        "{}",
        sealed.wrapped_key
    );
    assert_eq!(&*env.open(&sealed, &ctx).await.unwrap(), b"merger terms");

    let mut ct = sealed.clone();
    ct.ciphertext[3] ^= 0x10;
    assert!(matches!(env.open(&ct, &ctx).await, Err(Error::Decrypt)));

    let mut wrapped = sealed.clone();
    let n = wrapped.wrapped_key.len();
    // The character itself decides the replacement: one that looked elsewhere
    // replaced an 'A' with an 'A' once in 64 runs and tampered with nothing.
    let flipped = if &wrapped.wrapped_key[n - 6..n - 5] == "A" {
        "B"
    } else {
        "A"
    };
    wrapped.wrapped_key.replace_range(n - 6..n - 5, flipped);
    assert_ne!(wrapped.wrapped_key, sealed.wrapped_key);
    let err = env.open(&wrapped, &ctx).await.unwrap_err();
    assert!(matches!(err, Error::Decrypt), "{err}");

    let moved = document_context("tenant-1", "doc-2");
    assert!(matches!(
        env.open(&sealed, &moved).await,
        Err(Error::Decrypt)
    ));
    let other_tenant = document_context("tenant-2", "doc-1");
    assert!(matches!(
        env.open(&sealed, &other_tenant).await,
        Err(Error::Decrypt)
    ));
}

#[tokio::test]
async fn rotation_and_the_rewrap_job_retire_old_key_versions() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let mount = vault.mount("transit").await;
    let keys = Arc::new(transit(&root, &mount).await);
    let env = Envelope::new(keys.clone(), per_document());
    let key = "docs-internal";
    let ctx = document_context("t", "d");
    let mut docs = Vec::new();
    for text in ["a", "b", "c"] {
        docs.push(env.seal(key, text.as_bytes(), &ctx).await.unwrap());
    }
    let old_copy = docs[0].clone();
    assert_eq!(env.rotate(key).await.unwrap(), 2);
    let report = env.rewrap_all(docs.iter_mut()).await;
    assert_eq!((report.rewrapped, report.unchanged), (3, 0), "{report:?}");
    assert!(docs.iter().all(|d| d.key_version() == Some(2)));

    // Old versions can now be retired in Vault: rewrapped documents still
    // open, an envelope that missed the job does not.
    put(
        &root,
        &format!("{mount}/keys/{key}/config"),
        json!({ "min_decryption_version": 2 }),
    )
    .await;
    for (doc, text) in docs.iter().zip(["a", "b", "c"]) {
        assert_eq!(&*env.open(doc, &ctx).await.unwrap(), text.as_bytes());
    }
    let err = env.open(&old_copy, &ctx).await.unwrap_err();
    assert!(
        matches!(err, Error::Vault { status: 400, .. }) && err.to_string().contains("too old"),
        "{err}"
    );
}

#[tokio::test]
async fn shredded_content_is_unrecoverable_even_with_the_ciphertext_and_vault_root() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let mount = vault.mount("transit").await;
    let keys = Arc::new(transit(&root, &mount).await);
    let env = Envelope::new(keys.clone(), DataKeyCacheConfig::default());
    let key = "docs-restricted";
    let ctx = document_context("tenant", "doc");
    let secret = b"the launch code is 0000";
    let neighbour = env.seal(key, b"another document", &ctx).await.unwrap();
    let mut sealed = env.seal(key, secret, &ctx).await.unwrap();
    assert_eq!(&*env.open(&sealed, &ctx).await.unwrap(), secret);
    let kept_ciphertext = sealed.clone();

    env.shred(&mut sealed);
    assert!(matches!(
        env.open(&sealed, &ctx).await,
        Err(Error::Shredded)
    ));

    // With root on Vault: the key-encryption key cannot be exported...
    let export = root
        .request(
            reqwest::Method::GET,
            &format!("{mount}/export/encryption-key/{key}"),
            None,
        )
        .await;
    assert!(export.is_err(), "transit key exported: {export:?}");
    // ...and no data key Vault can produce or unwrap opens the content: not
    // a fresh one, not a neighbour's (each document has its own).
    let fresh_env = Envelope::new(keys.clone(), per_document());
    let mut guesses = vec![neighbour.wrapped_key.clone()];
    for _ in 0..3 {
        guesses.push(keys.generate_data_key(key).await.unwrap().1);
    }
    for wrapped in guesses {
        let mut attempt = kept_ciphertext.clone();
        attempt.wrapped_key = wrapped;
        assert!(matches!(
            fresh_env.open(&attempt, &ctx).await,
            Err(Error::Decrypt)
        ));
    }
    assert!(
        !kept_ciphertext
            .ciphertext
            .windows(6)
            .any(|w| w == b"launch")
    );
}

#[tokio::test]
async fn a_service_without_the_restricted_key_cannot_open_restricted_documents() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let mount = vault.mount("transit").await;
    let writer = Envelope::new(Arc::new(transit(&root, &mount).await), per_document());
    let ctx = document_context("t", "d");
    let public = writer
        .seal("docs-public", b"press release", &ctx)
        .await
        .unwrap();
    let restricted = writer
        .seal("docs-restricted", b"board minutes", &ctx)
        .await
        .unwrap();

    let only_public = policy_for(&root, &mount, "docs-public").await;
    let token = put(
        &root,
        "auth/token/create",
        json!({ "policies": [only_public], "ttl": "5m" }),
    )
    .await["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader_client = VaultClient::connect(vault.config_at(&vault.addr, &token))
        .await
        .unwrap();
    let reader = Envelope::new(
        Arc::new(TransitKeys::new(reader_client, &mount)),
        per_document(),
    );
    assert_eq!(
        &*reader.open(&public, &ctx).await.unwrap(),
        b"press release"
    );
    let err = reader.open(&restricted, &ctx).await.unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
}

async fn policy_for(root: &VaultClient, mount: &str, key: &str) -> String {
    policy(
        root,
        &format!(
            "path \"{mount}/datakey/plaintext/{key}\" {{ capabilities = [\"update\"] }}\n\
             path \"{mount}/decrypt/{key}\" {{ capabilities = [\"update\"] }}"
        ),
    )
    .await
}

#[tokio::test]
async fn vault_down_while_running_cached_data_keys_serve_until_they_expire() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let mount = vault.mount("transit").await;
    transit(&root, &mount).await;
    let proxy = CutProxy::start(&host_port(&vault.addr)).await;
    let client = vault.client_at(&proxy.url()).await;
    let env = Envelope::new(
        Arc::new(TransitKeys::new(client, &mount)),
        DataKeyCacheConfig {
            max_uses: 1,
            max_age: Duration::from_millis(1500),
            max_entries: 16,
            prefetch: 0,
        },
    );
    let ctx = document_context("t", "d");
    let sealed = env.seal("docs-internal", b"cached", &ctx).await.unwrap();
    assert_eq!(&*env.open(&sealed, &ctx).await.unwrap(), b"cached");

    proxy.cut();
    assert_eq!(
        &*env.open(&sealed, &ctx).await.unwrap(),
        b"cached",
        "served from the cache"
    );
    let err = env.seal("docs-internal", b"new", &ctx).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let err = env.open(&sealed, &ctx).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&proxy.url()), "{err}");

    proxy.restore();
    assert_eq!(&*env.open(&sealed, &ctx).await.unwrap(), b"cached");
}
