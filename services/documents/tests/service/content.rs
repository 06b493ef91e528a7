//! Content in object storage, sealed per document: round trips on the
//! local directory (local keys) and on S3 (moto) with Vault transit
//! (OpenBao), tampering, crypto-shredding, reclassification, legacy inline
//! rows and Vault down at start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloudsec_documents::Migrator;
use cloudsec_documents::config::{ContentConfig, StoreConfig};
use cloudsec_documents::content::{ContentStore, STORAGE_ENVELOPE};
use cloudsec_documents::entity::document;
use cloudsec_documents::{DocumentsError, domain::Caller};
use cloudsec_proto::documents::v1 as pb;
use cloudsec_proto::documents::v1::document_service_server::DocumentService;
use cloudsec_secrets::test_util::{TestVault, openbao};
use cloudsec_secrets::{DataKeyCacheConfig, Envelope, Sealed, SecretsConfig, TransitKeys};
use cloudsec_testkit::moto_url;
use pb::Classification as C;
use sea_orm::{ActiveValue::Set, EntityTrait};
use uuid::Uuid;

use crate::support::{Backend, Harness, alice, doc, harness, init_logs, local_content};

/// A SQLite harness over `content`, kept alive with its directory.
async fn sqlite(dir: &Path, content: ContentStore) -> Harness {
    init_logs();
    let url = format!("sqlite://{}", dir.join("documents.db").display());
    let db = cloudsec_runtime::db::connect::<Migrator>(&url)
        .await
        .expect("open and migrate sqlite");
    cloudsec_bus::migration::migrate(&db)
        .await
        .expect("bus migrations");
    harness(db, Backend::Sqlite, content)
}

async fn create(h: &Harness, document: pb::Document) -> pb::Document {
    h.api
        .create_document(alice(pb::CreateDocumentRequest {
            document: Some(document),
        }))
        .await
        .expect("create")
        .into_inner()
}

async fn get(h: &Harness, id: &str) -> Result<pb::Document, tonic::Status> {
    h.api
        .get_document(alice(pb::GetDocumentRequest { id: id.into() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn delete(h: &Harness, id: &str) {
    h.api
        .delete_document(alice(pb::DeleteDocumentRequest {
            id: id.into(),
            etag: String::new(),
        }))
        .await
        .expect("delete");
}

async fn row(h: &Harness, id: &str) -> Option<document::Model> {
    document::Entity::find_by_id(Uuid::parse_str(id).unwrap())
        .one(&h.db)
        .await
        .unwrap()
}

/// The content and key object names of a document's current generation.
async fn objects_of(h: &Harness, id: &str) -> (String, String) {
    let row = row(h, id).await.expect("row");
    let generation = row.content_generation.expect("a generation");
    (
        ContentStore::object_key("acme", row.id, &generation),
        ContentStore::key_object_key("acme", row.id, &generation),
    )
}

async fn read_object(h: &Harness, key: &str) -> Option<Vec<u8>> {
    h.store.content().objects().get(key).await.unwrap()
}

fn key_record(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// A `Sealed` rebuilt from a copied content object and some wrapped key,
/// as an attacker holding the bucket would.
fn sealed_from(content: &[u8], key_name: &str, wrapped_key: &str) -> Sealed {
    Sealed {
        version: 1,
        key_name: key_name.into(),
        wrapped_key: wrapped_key.into(),
        binding: Default::default(),
        nonce: content[1..13].to_vec(),
        ciphertext: content[13..].to_vec(),
    }
}

fn with_content(mut d: pb::Document, content: &str) -> pb::Document {
    d.content = content.into();
    d
}

#[tokio::test]
async fn local_round_trip_is_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let h = sqlite(dir.path(), local_content(dir.path())).await;
    let secret = "the quarterly numbers are down 12%";
    let created = create(&h, with_content(doc("Q3", C::Internal, &[]), secret)).await;
    assert_eq!(get(&h, &created.id).await.unwrap().content, secret);

    let stored = row(&h, &created.id).await.unwrap();
    assert_eq!(stored.content, "", "no plaintext in the database");
    assert_eq!(stored.content_storage, STORAGE_ENVELOPE);
    assert_eq!(stored.size_bytes, secret.len() as i64);
    let (content_key, key_key) = objects_of(&h, &created.id).await;
    let on_disk = std::fs::read(dir.path().join("objects").join(&content_key)).unwrap();
    assert!(!on_disk.windows(9).any(|w| w == b"quarterly"));
    let record = key_record(&std::fs::read(dir.path().join("objects").join(&key_key)).unwrap());
    assert_eq!(record["key_name"], "docs-internal");
    assert!(
        record["wrapped_key"]
            .as_str()
            .unwrap()
            .starts_with("local:v1:")
    );
}

#[tokio::test]
async fn tampered_content_is_an_error_never_content() {
    let dir = tempfile::tempdir().unwrap();
    let h = sqlite(dir.path(), local_content(dir.path())).await;
    let victim = create(&h, with_content(doc("A", C::Confidential, &[]), "original")).await;
    let other = create(
        &h,
        with_content(doc("B", C::Confidential, &[]), "other text"),
    )
    .await;
    let (content_key, key_key) = objects_of(&h, &victim.id).await;
    let path = dir.path().join("objects").join(&content_key);
    let original = std::fs::read(&path).unwrap();

    let rejected = |status: tonic::Status| {
        assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
        assert!(!status.message().contains("original"));
        assert!(!status.message().contains("other text"));
    };
    // A flipped bit in the ciphertext, and in the tag.
    for at in [20, original.len() - 1] {
        let mut bytes = original.clone();
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        rejected(get(&h, &victim.id).await.unwrap_err());
    }
    // Another document's (valid) content and key moved into its place.
    let (other_content, other_key) = objects_of(&h, &other.id).await;
    let objects = dir.path().join("objects");
    std::fs::copy(objects.join(&other_content), &path).unwrap();
    std::fs::copy(objects.join(&other_key), objects.join(&key_key)).unwrap();
    rejected(get(&h, &victim.id).await.unwrap_err());
    // The store's own error says what happened.
    let caller = Caller::trusted("acme", "alice");
    match h
        .store
        .get(&caller, Uuid::parse_str(&victim.id).unwrap())
        .await
    {
        Err(DocumentsError::Content(e)) => assert!(e.is_integrity(), "{e}"),
        other => panic!("expected an integrity error, got {other:?}"),
    }
    // Untouched documents still read.
    assert_eq!(get(&h, &other.id).await.unwrap().content, "other text");
}

#[tokio::test]
async fn delete_shreds_the_content_on_the_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let h = sqlite(dir.path(), local_content(dir.path())).await;
    let doomed = create(
        &h,
        with_content(doc("Plan", C::Restricted, &[]), "secret plan"),
    )
    .await;
    let kept = create(&h, with_content(doc("Kept", C::Restricted, &[]), "kept")).await;
    let (content_key, key_key) = objects_of(&h, &doomed.id).await;
    let (_, kept_key) = objects_of(&h, &kept.id).await;
    let copied = read_object(&h, &content_key).await.unwrap();

    delete(&h, &doomed.id).await;
    assert!(row(&h, &doomed.id).await.is_none());
    assert!(
        read_object(&h, &key_key).await.is_none(),
        "wrapped key destroyed"
    );
    assert!(read_object(&h, &content_key).await.is_none());

    // With the copied ciphertext, every wrapped key left in the store and
    // the keystore itself, nothing opens it.
    let envelope = h.store.content().envelope().unwrap().clone();
    let ctx = cloudsec_secrets::document_context("acme", &doomed.id);
    let kept_record = key_record(&read_object(&h, &kept_key).await.unwrap());
    let guess = sealed_from(
        &copied,
        "docs-restricted",
        kept_record["wrapped_key"].as_str().unwrap(),
    );
    assert!(matches!(
        envelope.open(&guess, &ctx).await,
        Err(cloudsec_secrets::Error::Decrypt)
    ));
    assert!(matches!(
        envelope
            .open(&sealed_from(&copied, "docs-restricted", ""), &ctx)
            .await,
        Err(cloudsec_secrets::Error::Shredded)
    ));
    assert_eq!(get(&h, &kept.id).await.unwrap().content, "kept");
}

#[tokio::test]
async fn reclassification_rekeys_and_shreds_the_old_generation() {
    let dir = tempfile::tempdir().unwrap();
    let h = sqlite(dir.path(), local_content(dir.path())).await;
    let created = create(&h, with_content(doc("Memo", C::Internal, &[]), "memo text")).await;
    let (old_content, old_key) = objects_of(&h, &created.id).await;

    let mut change = created.clone();
    change.classification = C::Restricted as i32;
    let updated = h
        .api
        .update_document(alice(pb::UpdateDocumentRequest {
            document: Some(change),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["classification".into()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.content, "memo text");

    let (new_content, new_key) = objects_of(&h, &created.id).await;
    assert_ne!(new_key, old_key, "a new generation");
    let record = key_record(&read_object(&h, &new_key).await.unwrap());
    assert_eq!(record["key_name"], "docs-restricted");
    assert!(read_object(&h, &old_key).await.is_none());
    assert!(read_object(&h, &old_content).await.is_none());
    assert!(read_object(&h, &new_content).await.is_some());
    assert_eq!(get(&h, &created.id).await.unwrap().content, "memo text");

    // A title change alone writes no new generation.
    let mut retitle = updated.clone();
    retitle.title = "Memo v2".into();
    h.api
        .update_document(alice(pb::UpdateDocumentRequest {
            document: Some(retitle),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        }))
        .await
        .unwrap();
    assert_eq!(objects_of(&h, &created.id).await.1, new_key);
}

#[tokio::test]
async fn legacy_inline_rows_are_read_and_moved_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let h = sqlite(dir.path(), local_content(dir.path())).await;
    let id = Uuid::now_v7();
    let now = chrono::Utc::now();
    document::Entity::insert(document::ActiveModel {
        id: Set(id),
        tenant: Set("acme".into()),
        owner: Set("alice".into()),
        title: Set("Old".into()),
        classification: Set("INTERNAL".into()),
        content: Set("written before objects".into()),
        content_type: Set("text/plain".into()),
        size_bytes: Set(22),
        etag: Set("e1".into()),
        create_time: Set(now),
        update_time: Set(now),
        // The migration's defaults: inline, no generation.
        ..Default::default()
    })
    .exec_without_returning(&h.db)
    .await
    .unwrap();
    let id = id.to_string();
    assert_eq!(
        get(&h, &id).await.unwrap().content,
        "written before objects"
    );

    let mut change = get(&h, &id).await.unwrap();
    change.content = "rewritten".into();
    h.api
        .update_document(alice(pb::UpdateDocumentRequest {
            document: Some(change),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["content".into()],
            }),
        }))
        .await
        .unwrap();
    let moved = row(&h, &id).await.unwrap();
    assert_eq!(moved.content_storage, STORAGE_ENVELOPE);
    assert_eq!(moved.content, "");
    assert_eq!(get(&h, &id).await.unwrap().content, "rewritten");
    delete(&h, &id).await;
}

#[tokio::test]
async fn vault_down_at_start_is_a_clear_error() {
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut vault = cloudsec_secrets::VaultConfig::new(
        format!("http://127.0.0.1:{port}"),
        cloudsec_secrets::VaultAuth::Token {
            token: cloudsec_secrets::Secret::new("t"),
        },
    );
    vault.retry.attempts = 2;
    vault.retry.initial_backoff = Duration::from_millis(10);
    let config = ContentConfig {
        keys: Some(SecretsConfig::Vault {
            vault: Box::new(vault),
            cache: Default::default(),
        }),
        ..Default::default()
    };
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let error = ContentStore::from_config(&config, &url)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("127.0.0.1:{port} is unreachable after 2 attempts")),
        "{error}"
    );
}

// --- S3 (moto) with Vault transit (OpenBao) ---

fn s3_vault_config(moto: &str, vault: &TestVault, mount: &str) -> ContentConfig {
    ContentConfig {
        store: Some(StoreConfig::S3 {
            bucket: cloudsec_secrets::test_util::unique("docs"),
            aws: cloudsec_bus::transport::aws::AwsSettings {
                region: Some("us-east-1".into()),
                endpoint_url: Some(moto.into()),
                dummy_credentials: true,
            },
            force_path_style: true,
            provisioning: cloudsec_bus::Provisioning::Create,
        }),
        keys: Some(SecretsConfig::Vault {
            vault: Box::new(vault.config_at(&vault.addr, &vault.token)),
            cache: Default::default(),
        }),
        transit_mount: mount.into(),
        create_keys: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_and_vault_transit_round_trip_and_shredding() {
    let (Some(moto), Some(vault)) = (moto_url(), openbao()) else {
        return;
    };
    let mount = vault.mount("transit").await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("documents.db").display());
    let content = ContentStore::from_config(&s3_vault_config(&moto, &vault, &mount), &url)
        .await
        .expect("S3 bucket and transit keys");
    let h = sqlite(dir.path(), content).await;

    let public = create(&h, with_content(doc("Menu", C::Public, &[]), "lunch menu")).await;
    let restricted = create(
        &h,
        with_content(doc("Merger", C::Restricted, &[]), "merger terms"),
    )
    .await;
    assert_eq!(get(&h, &public.id).await.unwrap().content, "lunch menu");
    assert_eq!(
        get(&h, &restricted.id).await.unwrap().content,
        "merger terms"
    );

    // The classification picked the transit key.
    let (_, public_key) = objects_of(&h, &public.id).await;
    let (secret_content, secret_key) = objects_of(&h, &restricted.id).await;
    let public_record = key_record(&read_object(&h, &public_key).await.unwrap());
    let secret_record = key_record(&read_object(&h, &secret_key).await.unwrap());
    assert_eq!(public_record["key_name"], "docs-public");
    assert_eq!(secret_record["key_name"], "docs-restricted");
    assert!(
        secret_record["wrapped_key"]
            .as_str()
            .unwrap()
            .starts_with("vault:v1:")
    );
    let copied = read_object(&h, &secret_content).await.unwrap();
    assert!(!copied.windows(6).any(|w| w == b"merger"));

    // Tampering in the bucket is rejected.
    let mut tampered = copied.clone();
    tampered[15] ^= 1;
    h.store
        .content()
        .objects()
        .put(&secret_content, tampered)
        .await
        .unwrap();
    let status = get(&h, &restricted.id).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert!(!status.message().contains("merger"));
    h.store
        .content()
        .objects()
        .put(&secret_content, copied.clone())
        .await
        .unwrap();
    assert_eq!(
        get(&h, &restricted.id).await.unwrap().content,
        "merger terms"
    );

    // Shredding: the copied ciphertext stays unreadable even with Vault's
    // root token and every wrapped key that still exists.
    delete(&h, &restricted.id).await;
    assert!(read_object(&h, &secret_key).await.is_none());
    assert!(read_object(&h, &secret_content).await.is_none());
    let root_transit = TransitKeys::new(vault.root().await, &mount);
    let root = Envelope::new(
        Arc::new(root_transit.clone()),
        DataKeyCacheConfig::default(),
    );
    let ctx = cloudsec_secrets::document_context("acme", &restricted.id);
    let fresh = {
        use cloudsec_secrets::KeyService;
        root_transit
            .generate_data_key("docs-restricted")
            .await
            .unwrap()
            .1
    };
    for (key_name, wrapped) in [
        ("docs-restricted", fresh.as_str()),
        (
            "docs-public",
            public_record["wrapped_key"].as_str().unwrap(),
        ),
    ] {
        let result = root
            .open(&sealed_from(&copied, key_name, wrapped), &ctx)
            .await;
        assert!(
            matches!(result, Err(cloudsec_secrets::Error::Decrypt)),
            "{key_name}: {result:?}"
        );
    }
    assert!(matches!(
        root.open(&sealed_from(&copied, "docs-restricted", ""), &ctx)
            .await,
        Err(cloudsec_secrets::Error::Shredded)
    ));

    // Rotation, then the rewrap job moves the remaining document to v2
    // without touching its content.
    {
        use cloudsec_secrets::KeyService;
        assert_eq!(root_transit.rotate("docs-public").await.unwrap(), 2);
    }
    let summary = h.store.rewrap_all().await.unwrap();
    assert_eq!((summary.rewrapped, summary.unchanged), (1, 0));
    assert!(summary.failed.is_empty());
    let rewrapped = key_record(&read_object(&h, &public_key).await.unwrap());
    assert!(
        rewrapped["wrapped_key"]
            .as_str()
            .unwrap()
            .starts_with("vault:v2:")
    );
    assert_eq!(get(&h, &public.id).await.unwrap().content, "lunch menu");

    // Garbage collection lists the bucket: an uncommitted generation goes,
    // the live one stays.
    let public_id = Uuid::parse_str(&public.id).unwrap();
    let orphan = h
        .store
        .content()
        .put(
            "acme",
            public_id,
            cloudsec_documents::domain::Classification::Public,
            b"orphan",
        )
        .await
        .unwrap();
    let report = h.store.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.deleted, 1, "{report:?}");
    assert!(
        read_object(
            &h,
            &ContentStore::key_object_key("acme", public_id, &orphan)
        )
        .await
        .is_none()
    );
    assert_eq!(get(&h, &public.id).await.unwrap().content, "lunch menu");
}

/// Garbage collection deletes the generations no row points to (a write
/// that never committed, a document whose row is gone, a stray temporary
/// file) once they are older than the grace period, and nothing else.
#[tokio::test]
async fn garbage_collection_deletes_only_old_orphans() {
    use cloudsec_documents::domain::Classification as K;
    let dir = tempfile::tempdir().unwrap();
    let h = sqlite(dir.path(), local_content(dir.path())).await;
    let kept = create(&h, with_content(doc("kept", C::Internal, &[]), "keep me")).await;
    let kept_id = Uuid::parse_str(&kept.id).unwrap();
    let content = h.store.content();
    // A generation written for a live document but never committed, and
    // one for a document that does not exist.
    let uncommitted = content
        .put("acme", kept_id, K::Internal, b"never committed")
        .await
        .unwrap();
    let ghost_id = Uuid::new_v4();
    let ghost = content
        .put("acme", ghost_id, K::Public, b"no row")
        .await
        .unwrap();
    std::fs::write(dir.path().join("objects").join(".tmp-crashed"), b"x").unwrap();
    let objects = dir.path().join("objects");
    let exists = |key: String| objects.join(key).exists();
    assert!(exists(ContentStore::key_object_key(
        "acme", ghost_id, &ghost
    )));

    // Within the grace period everything stays (a write may be in flight).
    let report = h
        .store
        .collect_garbage(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((report.deleted, report.recent), (0, 3), "{report:?}");
    assert!(exists(ContentStore::object_key(
        "acme",
        kept_id,
        &uncommitted
    )));

    // Past it, the orphans go and the live document stays readable.
    let report = h.store.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.deleted, 3, "{report:?}");
    assert!(report.failed.is_empty());
    for (id, generation) in [(kept_id, &uncommitted), (ghost_id, &ghost)] {
        assert!(!exists(ContentStore::object_key("acme", id, generation)));
        assert!(!exists(ContentStore::key_object_key(
            "acme", id, generation
        )));
    }
    assert!(!objects.join(".tmp-crashed").exists());
    assert_eq!(get(&h, &kept.id).await.unwrap().content, "keep me");
    let report = h.store.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(
        (report.examined, report.deleted),
        (1, 0),
        "only the live one"
    );

    // The maintenance run does both jobs.
    let report = cloudsec_documents::maintain(&h.store, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.rewrap.unchanged, 1);
    assert_eq!(report.garbage.deleted, 0);
}
