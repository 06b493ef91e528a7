//! KV v2 secrets and `vault:` references in configuration.

use std::collections::HashMap;
use std::time::Duration;

use cloudsec_secrets::{
    CacheConfig, Error, Secret, SecretRef, SecretsProvider, VaultSecrets, resolve_toml,
};

use crate::support::{openbao, policy, put};

#[tokio::test]
async fn reads_fields_and_resolves_a_config() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let kv = vault.mount("kv-v2").await;
    let secrets = VaultSecrets::new(root, CacheConfig::default());
    secrets
        .put(
            &kv,
            "apps/documents",
            &HashMap::from([
                ("page_token_key".into(), Secret::new("k".repeat(40))),
                (
                    "database_url".into(),
                    Secret::new("postgres://u:p@db/documents"),
                ),
            ]),
        )
        .await
        .unwrap();

    let mut config: toml::Value = toml::from_str(&format!(
        r#"
        [documents]
        listen = "127.0.0.1:7002"
        page_token_key = "vault:{kv}/apps/documents#page_token_key"
        database_url = "vault:{kv}/apps/documents#database_url"
        "#
    ))
    .unwrap();
    assert_eq!(resolve_toml(&mut config, &secrets).await.unwrap(), 2);
    assert_eq!(
        config["documents"]["page_token_key"].as_str().unwrap(),
        "k".repeat(40)
    );
    assert_eq!(
        config["documents"]["database_url"].as_str().unwrap(),
        "postgres://u:p@db/documents"
    );

    let missing_field = SecretRef::parse(&format!("vault:{kv}/apps/documents#nope")).unwrap();
    let err = secrets.get(&missing_field).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&missing_field.to_string()));

    let missing_path = SecretRef::parse(&format!("vault:{kv}/apps/nothing#x")).unwrap();
    let err = secrets.get(&missing_path).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn a_new_version_is_seen_after_the_refresh_interval() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let kv = vault.mount("kv-v2").await;
    let writer = VaultSecrets::new(root.clone(), CacheConfig::default());
    writer
        .put(
            &kv,
            "signing",
            &HashMap::from([("key".into(), Secret::new("v1"))]),
        )
        .await
        .unwrap();
    let reader = VaultSecrets::new(
        root,
        CacheConfig {
            refresh: Duration::from_millis(300),
            ttl: Duration::from_secs(60),
        },
    );
    let reference = SecretRef::parse(&format!("vault:{kv}/signing#key")).unwrap();
    assert_eq!(reader.get(&reference).await.unwrap().expose(), "v1");
    let version = writer
        .put(
            &kv,
            "signing",
            &HashMap::from([("key".into(), Secret::new("v2"))]),
        )
        .await
        .unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        reader.get(&reference).await.unwrap().expose(),
        "v1",
        "cached"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(reader.get(&reference).await.unwrap().expose(), "v2");
}

#[tokio::test]
async fn a_token_without_permission_gets_a_clear_refusal() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let kv = vault.mount("kv-v2").await;
    VaultSecrets::new(root.clone(), CacheConfig::default())
        .put(
            &kv,
            "auth",
            &HashMap::from([("k".into(), Secret::new("v"))]),
        )
        .await
        .unwrap();
    let other = policy(
        &root,
        &format!("path \"{kv}/data/documents\" {{ capabilities = [\"read\"] }}"),
    )
    .await;
    let created = put(
        &root,
        "auth/token/create",
        serde_json::json!({ "policies": [other], "ttl": "1m" }),
    )
    .await;
    let token = created["auth"]["client_token"].as_str().unwrap();
    let client = cloudsec_secrets::VaultClient::connect(vault.config_at(&vault.addr, token))
        .await
        .unwrap();
    let secrets = VaultSecrets::new(client, CacheConfig::default());
    let err = secrets
        .get(&SecretRef::parse(&format!("vault:{kv}/auth#k")).unwrap())
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert!(err.to_string().contains("permission denied"), "{err}");
}
