//! [`TransitKeys`]: data keys from Vault's transit engine. Transit holds
//! the key-encryption keys (never exported); it hands out a data key with
//! `datakey/plaintext`, unwraps with `decrypt`, re-wraps with `rewrap` and
//! rotates with `keys/<name>/rotate`. It keeps no copy of data keys.
//!
//! The same engine also signs: [`TransitKeys::sign`] and
//! [`TransitKeys::verify`] use an asymmetric transit key (`ed25519` by
//! default) whose private half never leaves Vault; the audit service signs
//! its chain heads with it (`[audit.signing] backend = "transit"`).

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

    /// Creates an asymmetric signing key of `key_type` (e.g. `ed25519`,
    /// `ecdsa-p256`) unless it exists; for development set-up.
    pub async fn ensure_signing_key(&self, name: &str, key_type: &str) -> Result<()> {
        self.client
            .request(
                reqwest::Method::POST,
                &format!("{}/keys/{name}", self.mount),
                Some(&serde_json::json!({ "type": key_type })),
            )
            .await
            .map(|_| ())
    }

    /// Fails unless `name` exists and can sign: the start-up check of a
    /// signer, so a wrong name or a symmetric key stops the start rather
    /// than the first append.
    pub async fn check_signing_key(&self, name: &str) -> Result<()> {
        let body = self.read_key(name).await?;
        if body["data"]["supports_signing"].as_bool() == Some(true) {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "transit key {}/{name} cannot sign (it is not an asymmetric key)",
                self.mount
            )))
        }
    }

    /// Vault's signature of `message` under `name`'s latest version, as
    /// Vault writes it (`vault:v<N>:<base64>`).
    pub async fn sign(&self, name: &str, message: &[u8]) -> Result<String> {
        let body = self
            .client
            .request(
                reqwest::Method::POST,
                &format!("{}/sign/{name}", self.mount),
                Some(&serde_json::json!({ "input": B64.encode(message) })),
            )
            .await
            .map_err(|e| Self::signing_error(name, e))?;
        body["data"]["signature"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Malformed(format!("transit sign {name} returned no signature")))
    }

    /// Whether `signature` (as [`sign`](Self::sign) made it, under any
    /// version still allowed to verify) is `name`'s signature of
    /// `message`. A signature Vault cannot parse is not valid; an
    /// unreachable Vault or a missing key is an error, not a verdict.
    pub async fn verify(&self, name: &str, message: &[u8], signature: &str) -> Result<bool> {
        let answer = self
            .client
            .request(
                reqwest::Method::POST,
                &format!("{}/verify/{name}", self.mount),
                Some(&serde_json::json!({
                    "input": B64.encode(message),
                    "signature": signature,
                })),
            )
            .await
            .map_err(|e| Self::signing_error(name, e));
        match answer {
            Ok(body) => body["data"]["valid"].as_bool().ok_or_else(|| {
                Error::Malformed(format!("transit verify {name} returned no verdict"))
            }),
            // Vault answers a mangled signature (bad prefix, version,
            // base64 or length) with 400: that is a forgery, not a fault.
            Err(Error::Vault { status: 400, .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Vault's description of the key `name` (`keys/<name>`) as JSON:
    /// vaultrs's typed answer lacks `latest_version`.
    async fn read_key(&self, name: &str) -> Result<serde_json::Value> {
        self.client
            .request(
                reqwest::Method::GET,
                &format!("{}/keys/{name}", self.mount),
                None,
            )
            .await
            .map_err(|e| match e {
                Error::Vault { status: 404, .. } => Error::UnknownKey(name.to_owned()),
                other => other,
            })
    }

    fn signing_error(name: &str, e: Error) -> Error {
        match e {
            Error::Vault {
                status: 400 | 404,
                ref message,
                ..
            } if message.contains("not found") => Error::UnknownKey(name.to_owned()),
            other => other,
        }
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
        let body = self.read_key(key_name).await?;
        body["data"]["latest_version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                Error::Malformed(format!("transit key {key_name} has no latest_version"))
            })
    }
}
