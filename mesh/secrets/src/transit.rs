//! [`TransitKeys`]: data keys from Vault's transit engine. Transit holds
//! the key-encryption keys (never exported); it hands out a data key with
//! `datakey/plaintext`, unwraps with `decrypt`, re-wraps with `rewrap` and
//! rotates with `keys/<name>/rotate`. It keeps no copy of data keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use vaultrs::api::transit::requests::DataKeyType;
use zeroize::Zeroizing;

use crate::envelope::{DataKey, KeyService};
use crate::error::{Error, Result};
use crate::vault::VaultClient;

/// Vault transit as a [`KeyService`].
#[derive(Debug, Clone)]
pub struct TransitKeys {
    client: VaultClient,
    mount: String,
}

impl TransitKeys {
    /// Uses the transit engine mounted at `mount` (usually `transit`).
    pub fn new(client: VaultClient, mount: impl Into<String>) -> Self {
        Self {
            client,
            mount: mount.into(),
        }
    }

    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// Creates an AES-256-GCM key (not exportable, not deletable) unless it
    /// exists; for development set-up, where the service's policy allows it.
    pub async fn ensure_key(&self, name: &str) -> Result<()> {
        let op = format!("create key {}/{name}", self.mount);
        let mount = self.mount.as_str();
        self.client
            .call(&op, |s| async move {
                vaultrs::transit::key::create(&s.api, mount, name, None).await
            })
            .await
    }

    fn unwrap_error(key_name: &str, e: Error) -> Error {
        match e {
            // A version retired with `min_decryption_version`: not tampering,
            // and Vault's message says so.
            Error::Vault {
                status: 400,
                ref message,
                ..
            } if message.contains("disallowed by policy") => e,
            Error::Vault {
                status: 400,
                ref message,
                ..
            } if message.contains("key not found") => Error::UnknownKey(key_name.to_owned()),
            // Any other 400 is a wrapped key transit cannot decrypt:
            // tampered, truncated or wrapped under another key.
            Error::Vault { status: 400, .. } => Error::Decrypt,
            other => other,
        }
    }
}

fn decode_key(b64: &str) -> Result<DataKey> {
    let bytes = Zeroizing::new(
        B64.decode(b64)
            .map_err(|_| Error::Malformed("transit returned a key that is not base64".into()))?,
    );
    DataKey::from_slice(&bytes)
}

#[async_trait::async_trait]
impl KeyService for TransitKeys {
    async fn generate_data_key(&self, key_name: &str) -> Result<(DataKey, String)> {
        let op = format!("datakey {}/{key_name}", self.mount);
        let mount = self.mount.as_str();
        let resp = self
            .client
            .call(&op, |s| async move {
                vaultrs::transit::generate::data_key(
                    &s.api,
                    mount,
                    key_name,
                    DataKeyType::Plaintext,
                    None,
                )
                .await
            })
            .await?;
        let plaintext =
            Zeroizing::new(resp.plaintext.ok_or_else(|| {
                Error::Malformed("transit returned no plaintext data key".into())
            })?);
        Ok((decode_key(&plaintext)?, resp.ciphertext))
    }

    async fn wrap(&self, key_name: &str, key: &DataKey) -> Result<String> {
        let op = format!("encrypt {}/{key_name}", self.mount);
        let mount = self.mount.as_str();
        let plaintext = Zeroizing::new(B64.encode(key.expose()));
        let resp = self
            .client
            .call(&op, |s| {
                let plaintext = plaintext.as_str();
                async move {
                    vaultrs::transit::data::encrypt(&s.api, mount, key_name, plaintext, None).await
                }
            })
            .await?;
        Ok(resp.ciphertext)
    }

    async fn unwrap(&self, key_name: &str, wrapped: &str) -> Result<DataKey> {
        let op = format!("decrypt {}/{key_name}", self.mount);
        let mount = self.mount.as_str();
        let resp = self
            .client
            .call(&op, |s| async move {
                vaultrs::transit::data::decrypt(&s.api, mount, key_name, wrapped, None).await
            })
            .await
            .map_err(|e| Self::unwrap_error(key_name, e))?;
        let plaintext = Zeroizing::new(resp.plaintext);
        decode_key(&plaintext)
    }

    async fn rewrap(&self, key_name: &str, wrapped: &str) -> Result<String> {
        let op = format!("rewrap {}/{key_name}", self.mount);
        let mount = self.mount.as_str();
        let resp = self
            .client
            .call(&op, |s| async move {
                vaultrs::transit::data::rewrap(&s.api, mount, key_name, wrapped, None).await
            })
            .await
            .map_err(|e| Self::unwrap_error(key_name, e))?;
        Ok(resp.ciphertext)
    }

    async fn rotate(&self, key_name: &str) -> Result<u32> {
        let op = format!("rotate {}/{key_name}", self.mount);
        let mount = self.mount.as_str();
        self.client
            .call(&op, |s| async move {
                vaultrs::transit::key::rotate(&s.api, mount, key_name).await
            })
            .await?;
        self.latest_version(key_name).await
    }

    async fn latest_version(&self, key_name: &str) -> Result<u32> {
        // vaultrs's typed answer lacks `latest_version`.
        let body = self
            .client
            .request(
                reqwest::Method::GET,
                &format!("{}/keys/{key_name}", self.mount),
                None,
            )
            .await
            .map_err(|e| match e {
                Error::Vault { status: 404, .. } => Error::UnknownKey(key_name.to_owned()),
                other => other,
            })?;
        body["data"]["latest_version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                Error::Malformed(format!("transit key {key_name} has no latest_version"))
            })
    }
}
