//! [`LocalKeys`]: key-encryption keys kept in the local keystore, for
//! `cloudsec up`. They behave like Vault transit keys: versioned, rotated by
//! adding a version, with wrapped keys written `local:v<N>:<base64>`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::Secret;
use aws_lc_rs::aead::NONCE_LEN;

use crate::aead;
use crate::envelope::{DataKey, KeyService, key_version};
use crate::error::{Error, Result};
use crate::keystore::LocalKeystore;

/// The keystore's top level under which key-encryption keys live.
const MOUNT: &str = "_kek";

/// Local key-encryption keys (see the module doc).
#[derive(Debug, Clone)]
pub struct LocalKeys {
    store: Arc<LocalKeystore>,
}

impl LocalKeys {
    pub fn new(store: Arc<LocalKeystore>) -> Self {
        Self { store }
    }

    fn location(name: &str) -> Result<String> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(Error::UnknownKey(name.to_owned()));
        }
        Ok(format!("{MOUNT}/{name}"))
    }

    /// The key's versions, creating version 1 on first use.
    fn latest(&self, name: &str) -> Result<(u32, DataKey)> {
        let location = Self::location(name)?;
        if let Some(v) = self.latest_version_of(&location)? {
            return Ok((v, self.version(name, v)?));
        }
        self.add_version(name, 1)
    }

    fn latest_version_of(&self, location: &str) -> Result<Option<u32>> {
        let Some(fields) = self.store.fields(location) else {
            return Ok(None);
        };
        let latest = fields
            .get("latest")
            .and_then(|v| v.expose().parse().ok())
            .ok_or_else(|| Error::Malformed(format!("{location} has no valid `latest` field")))?;
        Ok(Some(latest))
    }

    fn version(&self, name: &str, version: u32) -> Result<DataKey> {
        let location = Self::location(name)?;
        let fields = self
            .store
            .fields(&location)
            .ok_or_else(|| Error::UnknownKey(name.to_owned()))?;
        let encoded = fields
            .get(&format!("v{version}"))
            .ok_or_else(|| Error::UnknownKey(format!("{name} v{version}")))?;
        let bytes = zeroize::Zeroizing::new(
            B64.decode(encoded.expose())
                .map_err(|_| Error::Malformed(format!("{location} v{version} is not base64")))?,
        );
        DataKey::from_slice(&bytes)
    }

    fn add_version(&self, name: &str, version: u32) -> Result<(u32, DataKey)> {
        let location = Self::location(name)?;
        let key = DataKey::random()?;
        let encoded = Secret::new(B64.encode(key.expose()));
        self.store.update(|store| {
            let fields = store.entry(location).or_default();
            fields.insert(format!("v{version}"), encoded.expose().to_owned());
            fields.insert("latest".into(), version.to_string());
        })?;
        Ok((version, key))
    }

    fn aad(name: &str, version: u32) -> Vec<u8> {
        format!("cloudsec-local-kek:{name}:v{version}").into_bytes()
    }

    fn wrap_with(name: &str, version: u32, kek: &DataKey, key: &DataKey) -> Result<String> {
        let (nonce, ct) = aead::seal(kek.expose(), &Self::aad(name, version), key.expose())?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("local:v{version}:{}", B64.encode(blob)))
    }
}

#[async_trait::async_trait]
impl KeyService for LocalKeys {
    async fn generate_data_key(&self, key_name: &str) -> Result<(DataKey, String)> {
        let key = DataKey::random()?;
        let wrapped = self.wrap(key_name, &key).await?;
        Ok((key, wrapped))
    }

    async fn wrap(&self, key_name: &str, key: &DataKey) -> Result<String> {
        let (version, kek) = self.latest(key_name)?;
        Self::wrap_with(key_name, version, &kek, key)
    }

    async fn unwrap(&self, key_name: &str, wrapped: &str) -> Result<DataKey> {
        let version = key_version(wrapped)
            .filter(|_| wrapped.starts_with("local:"))
            .ok_or_else(|| Error::Malformed("not a local wrapped key".into()))?;
        let blob = wrapped
            .splitn(3, ':')
            .nth(2)
            .and_then(|b| B64.decode(b).ok())
            .ok_or_else(|| Error::Malformed("the wrapped key is not base64".into()))?;
        if blob.len() < NONCE_LEN {
            return Err(Error::Decrypt);
        }
        let kek = self.version(key_name, version)?;
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let plain = aead::open(kek.expose(), nonce, &Self::aad(key_name, version), ct)?;
        DataKey::from_slice(&plain)
    }

    async fn rewrap(&self, key_name: &str, wrapped: &str) -> Result<String> {
        let key = self.unwrap(key_name, wrapped).await?;
        self.wrap(key_name, &key).await
    }

    async fn rotate(&self, key_name: &str) -> Result<u32> {
        let location = Self::location(key_name)?;
        let next = self.latest_version_of(&location)?.unwrap_or(0) + 1;
        self.add_version(key_name, next).map(|(v, _)| v)
    }

    async fn latest_version(&self, key_name: &str) -> Result<u32> {
        self.latest(key_name).map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_survive_a_restart_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let wrapped = {
            let keys = LocalKeys::new(Arc::new(LocalKeystore::open(dir.path()).unwrap()));
            let (_, wrapped) = keys.generate_data_key("docs-public").await.unwrap();
            assert!(wrapped.starts_with("local:v1:"), "{wrapped}");
            assert_eq!(keys.rotate("docs-public").await.unwrap(), 2);
            wrapped
        };
        let keys = LocalKeys::new(Arc::new(LocalKeystore::open(dir.path()).unwrap()));
        let before = keys.unwrap("docs-public", &wrapped).await.unwrap();
        let rewrapped = keys.rewrap("docs-public", &wrapped).await.unwrap();
        assert!(rewrapped.starts_with("local:v2:"), "{rewrapped}");
        let after = keys.unwrap("docs-public", &rewrapped).await.unwrap();
        assert_eq!(before.expose(), after.expose());
        // Bound to its key name.
        assert!(keys.unwrap("docs-internal", &wrapped).await.is_err());
        assert!(matches!(
            keys.unwrap("docs-public", "local:v1:AAAA").await,
            Err(Error::Decrypt)
        ));
        assert!(keys.unwrap("bad name!", &wrapped).await.is_err());
    }
}
