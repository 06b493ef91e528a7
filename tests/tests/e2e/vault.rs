//! The platform on Vault (OpenBao): `vault:` references in the
//! configuration, the mesh's certificates from Vault's PKI engine, and the
//! failures an operator meets (no `[secrets]`, a missing secret, Vault
//! down at start).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cloudsec::{LoadedConfig, LocalConfigError};
use cloudsec_secrets::test_util::{TestVault, openbao};
use cloudsec_secrets::{CacheConfig, Secret, SecretRef, VaultSecrets};
use cloudsec_tests::{Extra, Sandbox};
use serde_json::json;

async fn post(vault: &TestVault, path: &str, body: serde_json::Value) -> serde_json::Value {
    vault
        .root()
        .await
        .request(reqwest::Method::POST, path, Some(&body))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// A PKI mount with a root CA and one role, `mesh`, that may issue every
/// workload of the `default` namespace (the single-process platform runs
/// them all; in a cluster each service gets a role of its own).
async fn mesh_pki(vault: &TestVault) -> (String, String) {
    let mount = vault.mount("pki").await;
    post(
        vault,
        &format!("sys/mounts/{mount}/tune"),
        json!({ "max_lease_ttl": "87600h" }),
    )
    .await;
    let root = post(
        vault,
        &format!("{mount}/root/generate/internal"),
        json!({ "common_name": "cloudsec e2e mesh root", "key_type": "ec", "key_bits": 256, "ttl": "8760h" }),
    )
    .await;
    post(
        vault,
        &format!("{mount}/roles/mesh"),
        json!({
            "allowed_domains": ["default.svc"],
            "allow_subdomains": true,
            "allowed_uri_sans": ["spiffe://cloudsec.local/ns/default/sa/*"],
            "key_type": "ec",
            "key_bits": 256,
            "max_ttl": "2h",
            "server_flag": true,
            "client_flag": true,
        }),
    )
    .await;
    let ca = root["data"]["certificate"]
        .as_str()
        .expect("root certificate")
        .trim()
        .to_owned();
    (mount, ca)
}

fn vault_section(vault: &TestVault) -> String {
    format!(
        "[secrets]\nbackend = \"vault\"\n[secrets.vault]\naddress = \"{}\"\nauth = {{ method = \"token\", token = \"{}\" }}\n",
        vault.addr, vault.token
    )
}

async fn put(vault: &TestVault, reference: &str, value: &str) {
    VaultSecrets::new(vault.root().await, CacheConfig::default())
        .put_field(&SecretRef::parse(reference).unwrap(), &Secret::new(value))
        .await
        .unwrap();
}

/// The whole platform with its mesh certificates from Vault PKI and its
/// page-token key from Vault KV: REST and mTLS gRPC work, the local CA is
/// never created, and every certificate chains to Vault's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_runs_on_vault_pki_and_kv() {
    let Some(vault) = openbao() else { return };
    let kv = vault.mount("kv-v2").await;
    let key = "p".repeat(48);
    put(
        &vault,
        &format!("vault:{kv}/documents#page_token_key"),
        &key,
    )
    .await;
    // A second field at the same path survives the first (read, then a
    // check-and-set write).
    put(&vault, &format!("vault:{kv}/documents#other"), "x").await;
    let (pki, vault_ca) = mesh_pki(&vault).await;

    let extra = Extra {
        toml: format!(
            "{}[mesh]\ncertificate_lifetime = \"1h\"\n[mesh.issuer]\nbackend = \"vault\"\nmount = \"{pki}\"\nrole = \"mesh\"\n",
            vault_section(&vault)
        ),
        env: BTreeMap::from([(
            "CLOUDSEC__DOCUMENTS__PAGE_TOKEN_KEY".to_owned(),
            format!("vault:{kv}/documents#page_token_key"),
        )]),
    };
    let sb = Sandbox::start_with(extra).await;
    assert!(
        !sb.data_dir().join("pki").exists(),
        "the development CA is not created when Vault issues"
    );
    assert!(
        sb.client_tls().ca_pem.contains(&vault_ca),
        "the mesh trusts Vault's root"
    );
    assert_eq!(
        sb.client_tls().ca_pem.matches("BEGIN CERTIFICATE").count(),
        1,
        "and nothing else"
    );
    // Over mTLS gRPC with a Vault-issued client certificate, and over REST
    // through gateway → sidecar → sidecar → documents, all Vault-issued;
    // paging signs its tokens with the key read from KV.
    crate::grpc::document_lifecycle(&sb).await;
    crate::rest::list_pages_and_filters(&sb).await;
    sb.stop().await;
}

/// `cloudsec secrets put` into `cloudsec up`'s keystore, then a reference
/// to it in the configuration.
#[tokio::test]
async fn up_reads_references_from_its_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let env = BTreeMap::new();
    let secrets = cloudsec::local_secrets(dir.path(), None, &env)
        .await
        .unwrap()
        .expect("up has a keystore by default");
    let reference = SecretRef::parse("vault:secret/documents#page_token_key").unwrap();
    secrets
        .put(&reference, &Secret::new("k".repeat(40)))
        .await
        .unwrap();
    drop(secrets);

    let file = "[documents]\npage_token_key = \"vault:secret/documents#page_token_key\"\n";
    let loaded: LoadedConfig = cloudsec::local_config(dir.path(), Some(file), &env)
        .await
        .unwrap();
    let documents = loaded.config.documents.expect("documents");
    assert_eq!(documents.page_token_key.expose(), "k".repeat(40));
    assert!(dir.path().join("keystore/keystore.enc").exists());
    let on_disk = std::fs::read(dir.path().join("keystore/keystore.enc")).unwrap();
    assert!(
        !String::from_utf8_lossy(&on_disk).contains(&"k".repeat(40)),
        "the keystore file is encrypted"
    );
}

fn config_key(err: LocalConfigError) -> (String, String) {
    match err {
        LocalConfigError::Config(e) => (e.key, e.message),
        other => panic!("expected a configuration error, got {other}"),
    }
}

#[tokio::test]
async fn references_without_a_secrets_section_are_refused() {
    let file = "[documents]\ndatabase_url = \"sqlite::memory:\"\npage_token_key = \"vault:secret/documents#page_token_key\"\n";
    let err = cloudsec::load_config(&[file], &BTreeMap::new(), None)
        .await
        .unwrap_err();
    let (key, message) = config_key(err);
    assert_eq!(key, "documents.page_token_key");
    assert!(message.contains("no [secrets] section"), "{message}");

    // A local keystore outside `cloudsec up` must say where it is.
    let file = "[secrets]\nbackend = \"local\"\n";
    let (key, _) = config_key(
        cloudsec::load_config(&[file], &BTreeMap::new(), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(key, "secrets.dir");

    // A typo in the section is named too.
    let file = "[secrets]\nbackend = \"vault\"\n[secrets.vault]\naddres = \"http://v\"\n";
    let (key, message) = config_key(
        cloudsec::load_config(&[file], &BTreeMap::new(), None)
            .await
            .unwrap_err(),
    );
    assert!(key.starts_with("secrets"), "{key}");
    assert!(message.contains("addres"), "{message}");
}

#[tokio::test]
async fn a_missing_secret_names_its_key_and_reference() {
    let Some(vault) = openbao() else { return };
    let kv = vault.mount("kv-v2").await;
    let file = format!(
        "{}[auth]\ndatabase_url = \"vault:{kv}/auth#database_url\"\n",
        vault_section(&vault)
    );
    let err = cloudsec::load_config(&[&file], &BTreeMap::new(), None)
        .await
        .unwrap_err();
    assert!(!err.is_unavailable(), "a missing secret is not an outage");
    let message = err.to_string();
    assert!(message.contains("`auth.database_url`"), "{message}");
    assert!(
        message.contains(&format!("vault:{kv}/auth#database_url")),
        "{message}"
    );
}

#[tokio::test]
async fn vault_down_at_start_fails_after_bounded_retries() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let file = format!(
        "[secrets]\nbackend = \"vault\"\n[secrets.vault]\naddress = \"http://{addr}\"\n\
         auth = {{ method = \"token\", token = \"t\" }}\n\
         retry = {{ attempts = 3, initial_backoff = \"20ms\", max_backoff = \"50ms\" }}\n"
    );
    let started = Instant::now();
    let err = cloudsec::load_config(&[&file], &BTreeMap::new(), None)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    // Bounded: three attempts and two short waits, not a hang.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_vault_issuer_needs_a_vault_connection() {
    let dir = tempfile::tempdir().unwrap();
    let file = "[mesh.issuer]\nbackend = \"vault\"\nrole = \"mesh\"\n";
    let loaded = cloudsec::local_config(dir.path(), Some(file), &BTreeMap::new())
        .await
        .unwrap();
    let err = cloudsec::LocalPlatform::build(dir.path(), &loaded)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mesh.issuer"), "{err}");
}
