//! Content in S3 sealed by KMS (both on moto): each data key is bound to
//! its tenant, document and classification, a key record moved to another
//! document is refused by KMS, rotation and the rewrap job, shredding, and
//! KMS down gives UNAVAILABLE with nothing written.

use std::sync::Arc;
use std::time::Duration;

use cloudsec_documents::Migrator;
use cloudsec_documents::config::KeyPolicy;
use cloudsec_documents::config::{ContentConfig, StoreConfig};
use cloudsec_documents::content::{ContentStore, ObjectStore, Sealing};
use cloudsec_proto::documents::v1 as pb;
use cloudsec_proto::documents::v1::document_service_server::DocumentService;
use cloudsec_secrets::test_util::{closed_port_url, moto_kms, moto_url, unique};
use cloudsec_secrets::{DataKeyCacheConfig, Envelope, KeyService, KmsKeys};
use pb::Classification as C;

use crate::support::{Backend, Harness, alice, doc, harness, init_logs};

async fn sqlite(dir: &std::path::Path, content: ContentStore) -> Harness {
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

fn s3_kms_config(moto: &str) -> ContentConfig {
    ContentConfig {
        store: Some(StoreConfig::S3 {
            bucket: unique("docs"),
            aws: cloudsec_bus::transport::aws::AwsSettings {
                region: Some("us-east-1".into()),
                endpoint_url: Some(moto.into()),
                dummy_credentials: true,
            },
            force_path_style: true,
            provisioning: cloudsec_bus::Provisioning::Create,
        }),
        kms: Some(moto_kms(moto)),
        ..Default::default()
    }
}

async fn create(h: &Harness, document: pb::Document) -> Result<pb::Document, tonic::Status> {
    h.api
        .create_document(alice(pb::CreateDocumentRequest {
            document: Some(document),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn get(h: &Harness, id: &str) -> Result<pb::Document, tonic::Status> {
    h.api
        .get_document(alice(pb::GetDocumentRequest { id: id.into() }))
        .await
        .map(tonic::Response::into_inner)
}

fn with_content(mut d: pb::Document, content: &str) -> pb::Document {
    d.content = content.into();
    d
}

/// The key object of a document's only generation.
async fn key_object(h: &Harness, id: &str) -> (String, serde_json::Value) {
    let prefix = format!("acme/{id}/");
    let objects = h.store.content().objects().list().await.unwrap();
    let key = objects
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| k.starts_with(&prefix) && k.ends_with(".key"))
        .expect("a key object");
    let bytes = h
        .store
        .content()
        .objects()
        .get(&key)
        .await
        .unwrap()
        .unwrap();
    (key, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_and_kms_bind_each_document_key() {
    let Some(moto) = moto_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = s3_kms_config(&moto);
    let url = format!("sqlite://{}", dir.path().join("documents.db").display());
    let content = ContentStore::from_config(&config, &url).await.unwrap();
    let h = sqlite(dir.path(), content).await;

    let secret = create(
        &h,
        with_content(doc("deal", C::Confidential, &[]), "merger terms"),
    )
    .await
    .unwrap();
    let other = create(&h, with_content(doc("menu", C::Confidential, &[]), "lunch"))
        .await
        .unwrap();
    assert_eq!(get(&h, &secret.id).await.unwrap().content, "merger terms");

    let (secret_key, record) = key_object(&h, &secret.id).await;
    assert!(
        record["wrapped_key"]
            .as_str()
            .unwrap()
            .starts_with("kms:v1:"),
        "{record}"
    );
    assert_eq!(
        record["binding"],
        serde_json::json!({
            "tenant": "acme",
            "document": secret.id,
            "classification": "confidential",
        })
    );

    // The other document's key record copied over this one's: KMS refuses
    // it (the request's document is in the context), so it never opens.
    let (other_key, _) = key_object(&h, &other.id).await;
    let original = h
        .store
        .content()
        .objects()
        .get(&secret_key)
        .await
        .unwrap()
        .unwrap();
    let copied = h
        .store
        .content()
        .objects()
        .get(&other_key)
        .await
        .unwrap()
        .unwrap();
    h.store
        .content()
        .objects()
        .put(&secret_key, copied)
        .await
        .unwrap();
    let status = get(&h, &secret.id).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert!(!status.message().contains("lunch"));
    // A classification relabelled in the record is refused too.
    let mut relabelled: serde_json::Value = serde_json::from_slice(&original).unwrap();
    relabelled["binding"]["classification"] = "public".into();
    h.store
        .content()
        .objects()
        .put(&secret_key, serde_json::to_vec(&relabelled).unwrap())
        .await
        .unwrap();
    assert_eq!(
        get(&h, &secret.id).await.unwrap_err().code(),
        tonic::Code::Internal
    );
    h.store
        .content()
        .objects()
        .put(&secret_key, original)
        .await
        .unwrap();
    assert_eq!(get(&h, &secret.id).await.unwrap().content, "merger terms");

    // Rotation, then the rewrap job: both documents move to v2.
    let envelope = h.store.content().envelope().unwrap().clone();
    assert_eq!(envelope.rotate("docs-confidential").await.unwrap(), 2);
    let summary = h.store.rewrap_all().await.unwrap();
    assert_eq!(
        (summary.rewrapped, summary.unchanged),
        (2, 0),
        "{summary:?}"
    );
    let (_, record) = key_object(&h, &secret.id).await;
    assert!(
        record["wrapped_key"]
            .as_str()
            .unwrap()
            .starts_with("kms:v2:")
    );
    assert_eq!(get(&h, &secret.id).await.unwrap().content, "merger terms");

    // Shredding: the key object is gone and so is the content.
    h.api
        .delete_document(alice(pb::DeleteDocumentRequest {
            id: secret.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(
        h.store
            .content()
            .objects()
            .get(&secret_key)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(get(&h, &other.id).await.unwrap().content, "lunch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_down_is_unavailable_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = moto_kms(&closed_port_url());
    config.request_timeout = Duration::from_secs(2);
    let envelope = Envelope::new(
        Arc::new(KmsKeys::connect(&config).await),
        DataKeyCacheConfig::default(),
    );
    let objects = dir.path().join("objects");
    let content = ContentStore::new(
        ObjectStore::dir(&objects).unwrap(),
        Sealing::Envelope {
            envelope: Arc::new(envelope),
            policy: Arc::new(KeyPolicy::default()),
        },
    );
    let h = sqlite(dir.path(), content).await;
    let status = create(&h, with_content(doc("deal", C::Internal, &[]), "secret"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(!status.message().contains("secret"));
    // Nothing reached the object store or the database.
    assert_eq!(std::fs::read_dir(&objects).unwrap().count(), 0);
    let listed = h
        .api
        .list_documents(alice(pb::ListDocumentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.documents.is_empty());
}

#[tokio::test]
async fn kms_keys_missing_at_start_are_a_clear_error() {
    let Some(moto) = moto_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = s3_kms_config(&moto);
    if let Some(kms) = config.kms.as_mut() {
        kms.create_keys = false;
    }
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let error = ContentStore::from_config(&config, &url)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown key `docs-public`"), "{error}");
    // Both key services at once is refused.
    let mut both = s3_kms_config(&moto);
    both.keys = Some(cloudsec_secrets::SecretsConfig::Local { dir: None });
    let error = ContentStore::from_config(&both, &url)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("exclusive"), "{error}");
    // The key service stays usable on its own for other callers.
    let keys = KmsKeys::connect(&moto_kms(&moto)).await;
    keys.ensure_key("docs-public").await.unwrap();
    assert_eq!(keys.latest_version("docs-public").await.unwrap(), 1);
}
