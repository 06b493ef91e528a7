//! `Documents::build`: configuration checks, migrations and listeners.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cloudsec_bus::BusConfig;
use cloudsec_documents::{Documents, DocumentsConfig, DocumentsError};
use cloudsec_runtime::Secret;
use cloudsec_runtime::token::TokenVerifier;

fn config(database_url: &str, key: &str) -> DocumentsConfig {
    DocumentsConfig {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Secret::new(database_url).into(),
        page_token_key: Secret::new(key),
        tls: None,
        shutdown_grace: Duration::from_secs(1),
        content: Default::default(),
        restricted_group: "restricted".into(),
    }
}

fn verifier() -> Arc<TokenVerifier> {
    Arc::new(TokenVerifier::fixed("iss", "aud"))
}

#[tokio::test]
async fn short_page_token_keys_are_refused_before_connecting() {
    // The database URL is unusable too: the key is checked first.
    let error = Documents::build(
        &config("nope://", "too short"),
        verifier(),
        &BusConfig::default(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DocumentsError::PageTokenKey(_)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "invalid configuration: page_token_key must be at least 32 bytes, got 9"
    );
}

#[tokio::test]
async fn bad_database_urls_are_reported() {
    let error = Documents::build(
        &config("mysql://x", &"k".repeat(32)),
        verifier(),
        &BusConfig::default(),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DocumentsError::Connect(_)), "{error:?}");
}

#[tokio::test]
async fn builds_on_sqlite_and_binds_free_ports() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let documents = Documents::build(
        &config(&url, &"k".repeat(32)),
        verifier(),
        &BusConfig::default(),
        None,
    )
    .await
    .unwrap();
    assert_ne!(documents.grpc_addr().port(), 0);
    assert_ne!(documents.admin_addr().port(), 0);
    assert_ne!(documents.grpc_addr(), documents.admin_addr());
    assert!(format!("{documents:?}").contains("Documents"));
    // Content defaults to directories next to the SQLite file.
    assert!(dir.path().join("objects").is_dir());
    assert!(dir.path().join("documents-keys/keystore.key").is_file());
    drop(documents);

    // Migrations are idempotent: a second start on the same file works.
    Documents::build(
        &config(&url, &"k".repeat(32)),
        verifier(),
        &BusConfig::default(),
        None,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn without_sqlite_the_content_store_must_be_configured() {
    let error = cloudsec_documents::content::ContentStore::from_config(
        &Default::default(),
        "postgres://db.internal/documents",
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid content configuration: documents.content.store must be set when the \
         database is not a SQLite file (there is no data directory to default to)"
    );
}
