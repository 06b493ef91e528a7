//! From a `[secrets]` configuration section to working clients, so that
//! wiring a service is one call.

use std::path::Path;
use std::sync::Arc;

use crate::config::SecretsConfig;
use crate::envelope::KeyService;
use crate::error::Result;
use crate::keystore::LocalKeystore;
use crate::kv::VaultSecrets;
use crate::local_keys::LocalKeys;
use crate::provider::SecretsProvider;
use crate::transit::TransitKeys;
use crate::vault::VaultClient;

/// The secrets back end a service runs with.
#[derive(Debug, Clone)]
pub enum Secrets {
    Local(Arc<LocalKeystore>),
    Vault {
        client: VaultClient,
        provider: Arc<VaultSecrets>,
    },
}

impl Secrets {
    /// Opens the keystore (under `<data_dir>/keystore` unless configured)
    /// or logs in to Vault (with the start-up retries of its config).
    pub async fn from_config(config: &SecretsConfig, data_dir: &Path) -> Result<Self> {
        match config {
            SecretsConfig::Local { dir } => {
                let dir = dir.clone().unwrap_or_else(|| data_dir.join("keystore"));
                Ok(Self::Local(Arc::new(LocalKeystore::open(&dir)?)))
            }
            SecretsConfig::Vault { vault, cache } => {
                let client = VaultClient::connect((**vault).clone()).await?;
                let provider = Arc::new(VaultSecrets::new(client.clone(), *cache));
                Ok(Self::Vault { client, provider })
            }
        }
    }

    /// Where `vault:` references are read from.
    pub fn provider(&self) -> Arc<dyn SecretsProvider> {
        match self {
            Self::Local(store) => store.clone(),
            Self::Vault { provider, .. } => provider.clone(),
        }
    }

    /// The key service for envelope encryption: transit at `transit_mount`
    /// with Vault, the keystore's own keys otherwise.
    pub fn key_service(&self, transit_mount: &str) -> Arc<dyn KeyService> {
        match self {
            Self::Local(store) => Arc::new(LocalKeys::new(store.clone())),
            Self::Vault { client, .. } => Arc::new(TransitKeys::new(client.clone(), transit_mount)),
        }
    }

    /// Sets one field: in the keystore, or as a new KV v2 version that
    /// keeps the secret's other fields (`cloudsec secrets put`).
    pub async fn put(
        &self,
        reference: &crate::reference::SecretRef,
        value: &crate::Secret,
    ) -> Result<()> {
        match self {
            Self::Local(store) => store.put(reference, value),
            Self::Vault { provider, .. } => provider.put_field(reference, value).await.map(|_| ()),
        }
    }

    /// The Vault client, when running against Vault (PKI, database
    /// credentials, token renewal).
    pub fn vault(&self) -> Option<&VaultClient> {
        match self {
            Self::Local(_) => None,
            Self::Vault { client, .. } => Some(client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{DataKeyCacheConfig, Envelope};
    use crate::reference::{SecretRef, resolve_toml};

    #[tokio::test]
    async fn the_local_default_needs_no_server() {
        let data = tempfile::tempdir().unwrap();
        let config: SecretsConfig = toml::from_str("backend = \"local\"").unwrap();
        let secrets = Secrets::from_config(&config, data.path()).await.unwrap();
        assert!(secrets.vault().is_none());
        let Secrets::Local(store) = &secrets else {
            panic!("not local")
        };
        store
            .put(
                &SecretRef::parse("vault:secret/documents#page_token_key").unwrap(),
                &crate::Secret::new("from-the-keystore"),
            )
            .unwrap();
        assert!(data.path().join("keystore/keystore.key").exists());

        let mut cfg: toml::Value = toml::from_str(
            "[documents]\npage_token_key = \"vault:secret/documents#page_token_key\"",
        )
        .unwrap();
        resolve_toml(&mut cfg, secrets.provider().as_ref())
            .await
            .unwrap();
        assert_eq!(
            cfg["documents"]["page_token_key"].as_str(),
            Some("from-the-keystore")
        );

        let env = Envelope::new(
            secrets.key_service("transit"),
            DataKeyCacheConfig::default(),
        );
        let sealed = env.seal("docs-public", b"hello", b"ctx").await.unwrap();
        assert_eq!(&*env.open(&sealed, b"ctx").await.unwrap(), b"hello");
    }
}
