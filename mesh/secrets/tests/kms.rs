//! Envelope encryption with data keys from KMS, on moto (see
//! `cloudsec_secrets::test_util::moto_url` for how it is found or started).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cloudsec_secrets::test_util::{closed_port_url, moto_kms, moto_url};
use cloudsec_secrets::{
    DataKeyCacheConfig, Envelope, Error, KeyContext, KeyService, KmsKeys, document_context,
};

/// The key names of documents' default key policy, one per classification.
const KEYS: [&str; 4] = [
    "docs-public",
    "docs-internal",
    "docs-confidential",
    "docs-restricted",
];
fn per_document() -> DataKeyCacheConfig {
    DataKeyCacheConfig {
        max_uses: 1,
        max_age: Duration::from_secs(60),
        max_entries: 0,
        // Asked for, and ignored: KMS keys are bound to their document.
        prefetch: 8,
    }
}

async fn kms(url: &str) -> Arc<KmsKeys> {
    let keys = KmsKeys::connect(&moto_kms(url)).await;
    for name in KEYS {
        keys.ensure_key(name).await.unwrap();
    }
    Arc::new(keys)
}

fn doc(tenant: &str, id: &str, class: &str) -> (Vec<u8>, KeyContext) {
    (
        document_context(tenant, id),
        KeyContext::document(tenant, id, class),
    )
}

#[tokio::test]
async fn kms_envelopes_round_trip_bound_to_their_context() {
    let Some(url) = moto_url() else { return };
    let keys = kms(&url).await;
    let env = Envelope::new(keys.clone(), per_document());
    let (aad, binding) = doc("tenant-1", "doc-1", "confidential");

    let sealed = env
        .seal_bound("docs-confidential", b"merger terms", &aad, &binding)
        .await
        .unwrap();
    assert!(sealed.wrapped_key.starts_with("kms:v1:"), "{sealed:?}");
    assert_eq!(sealed.binding, binding);
    assert_eq!(&*env.open(&sealed, &aad).await.unwrap(), b"merger terms");
    // The envelope survives its JSON form, binding included.
    let json = serde_json::to_string(&sealed).unwrap();
    let back: cloudsec_secrets::Sealed = serde_json::from_str(&json).unwrap();
    assert_eq!(&*env.open(&back, &aad).await.unwrap(), b"merger terms");

    // Each document gets its own data key, even with prefetch asked for.
    let other = env
        .seal_bound("docs-confidential", b"merger terms", &aad, &binding)
        .await
        .unwrap();
    assert_ne!(other.wrapped_key, sealed.wrapped_key);
}

#[tokio::test]
async fn kms_refuses_a_data_key_under_another_context() {
    let Some(url) = moto_url() else { return };
    let keys = kms(&url).await;
    let binding = KeyContext::document("tenant-1", "doc-1", "restricted");
    let (key, wrapped) = keys
        .generate_data_key_bound("docs-restricted", &binding)
        .await
        .unwrap();
    let back = keys
        .unwrap_bound("docs-restricted", &wrapped, &binding)
        .await
        .unwrap();
    assert_eq!(format!("{key:?}"), format!("{back:?}"));

    for wrong in [
        KeyContext::document("tenant-2", "doc-1", "restricted"),
        KeyContext::document("tenant-1", "doc-2", "restricted"),
        KeyContext::document("tenant-1", "doc-1", "public"),
        KeyContext::default(),
    ] {
        let refused = keys.unwrap_bound("docs-restricted", &wrapped, &wrong).await;
        assert!(
            matches!(refused, Err(Error::Decrypt)),
            "{wrong:?}: {refused:?}"
        );
    }

    // Through the envelope: a key record relabelled for another document
    // opens neither at KMS nor (with the right binding) under the AEAD.
    let env = Envelope::new(keys.clone(), per_document());
    let (aad, binding) = doc("tenant-1", "doc-1", "internal");
    let mut sealed = env
        .seal_bound("docs-internal", b"payroll", &aad, &binding)
        .await
        .unwrap();
    sealed.binding = KeyContext::document("tenant-1", "doc-9", "internal");
    assert!(matches!(env.open(&sealed, &aad).await, Err(Error::Decrypt)));
    // A malformed wrapped key is refused before KMS is asked.
    assert!(matches!(
        keys.unwrap_bound("docs-internal", "vault:v1:abc", &binding)
            .await,
        Err(Error::Malformed(_))
    ));
    // An unknown key name says so.
    assert!(matches!(
        keys.generate_data_key_bound("no-such-key", &binding).await,
        Err(Error::UnknownKey(name)) if name == "no-such-key"
    ));
}

#[tokio::test]
async fn kms_rotation_and_rewrap_keep_every_document_readable() {
    let Some(url) = moto_url() else { return };
    let keys = kms(&url).await;
    let env = Envelope::new(keys.clone(), per_document());
    let key = "docs-internal";
    let mut docs = Vec::new();
    for i in 0..3 {
        let (aad, binding) = doc("t", &format!("d{i}"), "internal");
        let text = format!("document {i}");
        let sealed = env
            .seal_bound(key, text.as_bytes(), &aad, &binding)
            .await
            .unwrap();
        docs.push((sealed, aad, text));
    }
    assert_eq!(keys.latest_version(key).await.unwrap(), 1);
    assert_eq!(env.rotate(key).await.unwrap(), 2);
    assert_eq!(keys.latest_version(key).await.unwrap(), 2);

    // New documents use the new version at once.
    let (aad, binding) = doc("t", "new", "internal");
    let fresh = env.seal_bound(key, b"new", &aad, &binding).await.unwrap();
    assert_eq!(fresh.key_version(), Some(2));

    let before: Vec<String> = docs.iter().map(|(s, _, _)| s.wrapped_key.clone()).collect();
    let report = env.rewrap_all(docs.iter_mut().map(|(s, _, _)| s)).await;
    assert_eq!(report.rewrapped, 3, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    for ((sealed, aad, text), old) in docs.iter().zip(&before) {
        assert_eq!(sealed.key_version(), Some(2));
        assert_ne!(&sealed.wrapped_key, old);
        assert_eq!(&*env.open(sealed, aad).await.unwrap(), text.as_bytes());
    }
    // A second run has nothing to do.
    let again = env.rewrap_all(docs.iter_mut().map(|(s, _, _)| s)).await;
    assert_eq!((again.rewrapped, again.unchanged), (0, 3));

    // A classification change moves the document to another key and binding.
    let (sealed, aad, text) = &docs[0];
    let restricted = KeyContext::document("t", "d0", "restricted");
    let moved = env
        .rekey_bound(sealed, "docs-restricted", aad, &restricted)
        .await
        .unwrap();
    assert_eq!(moved.binding, restricted);
    assert_eq!(&*env.open(&moved, aad).await.unwrap(), text.as_bytes());
}

#[tokio::test]
async fn kms_shredding_destroys_one_document_only() {
    let Some(url) = moto_url() else { return };
    let keys = kms(&url).await;
    let env = Envelope::new(keys.clone(), per_document());
    let (aad, binding) = doc("tenant", "doc", "confidential");
    let neighbour = env
        .seal_bound("docs-confidential", b"another document", &aad, &binding)
        .await
        .unwrap();
    let mut sealed = env
        .seal_bound("docs-confidential", b"shred me", &aad, &binding)
        .await
        .unwrap();
    let copy = sealed.clone();
    env.shred(&mut sealed);
    assert!(sealed.is_shredded());
    assert!(matches!(
        env.open(&sealed, &aad).await,
        Err(Error::Shredded)
    ));
    // The neighbour's wrapped key (same key, same binding) does not open
    // the shredded content: KMS kept no copy of its data key.
    let mut attempt = copy.clone();
    attempt.wrapped_key = neighbour.wrapped_key.clone();
    assert!(matches!(
        env.open(&attempt, &aad).await,
        Err(Error::Decrypt)
    ));
    assert_eq!(
        &*env.open(&neighbour, &aad).await.unwrap(),
        b"another document"
    );
}

#[tokio::test]
async fn kms_down_is_unavailable_and_seals_nothing() {
    let Some(url) = moto_url() else { return };
    let up = kms(&url).await;
    let env_up = Envelope::new(up.clone(), per_document());
    let (aad, binding) = doc("t", "d", "public");
    let sealed = env_up
        .seal_bound("docs-public", b"hello", &aad, &binding)
        .await
        .unwrap();

    let mut config = moto_kms(&closed_port_url());
    config.request_timeout = Duration::from_secs(2);
    let down = Envelope::new(Arc::new(KmsKeys::connect(&config).await), per_document());
    let error = down
        .seal_bound("docs-public", b"hello", &aad, &binding)
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    let message = error.to_string();
    assert!(
        // The first call that fails may be the version look-up; a loaded
        // machine may hit the 2 s timeout before the refused connection
        // is reported.
        message.starts_with("kms is unavailable for ")
            && (message.contains("docs-public: cannot connect")
                || message.contains("docs-public: timed out")),
        "{error}"
    );
    let error = down.open(&sealed, &aad).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
}
