//! [`VaultSecrets`]: secrets from Vault's KV version 2 engine, cached.

use std::collections::HashMap;
use std::sync::Arc;

use cloudsec_runtime::Secret;

use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::provider::{Fields, SecretsProvider, TtlCache};
use crate::reference::SecretRef;
use crate::vault::VaultClient;

/// Reads `vault:<mount>/<path>#<field>` from a KV v2 mount. One read
/// fetches every field of a path; values are cached as [`CacheConfig`]
/// describes.
pub struct VaultSecrets {
    client: VaultClient,
    cache: TtlCache<Fields>,
}

impl std::fmt::Debug for VaultSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSecrets")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl VaultSecrets {
    pub fn new(client: VaultClient, cache: CacheConfig) -> Self {
        Self {
            client,
            cache: TtlCache::new(cache),
        }
    }

    pub fn client(&self) -> &VaultClient {
        &self.client
    }

    /// Writes a new version of `<mount>/<path>` with these fields (the
    /// previous version stays readable in KV v2's history).
    pub async fn put(
        &self,
        mount: &str,
        path: &str,
        fields: &HashMap<String, Secret>,
    ) -> Result<u64> {
        let body = exposed(fields);
        let op = format!("write {mount}/{path}");
        let meta = self
            .client
            .call(&op, |s| {
                let body = &body;
                async move { vaultrs::kv2::set(&s.api, mount, path, body).await }
            })
            .await?;
        self.cache.invalidate(&format!("{mount}/{path}"));
        Ok(meta.version)
    }

    /// Sets one field of `<mount>/<path>`, keeping its other fields (a
    /// read, then a check-and-set write of the next version, so a
    /// concurrent writer is refused instead of overwritten).
    pub async fn put_field(&self, reference: &SecretRef, value: &Secret) -> Result<u64> {
        let (mount, path) = (reference.mount.as_str(), reference.path.as_str());
        let op = format!("read {mount}/{path}");
        let current = self
            .client
            .call(&op, |s| async move {
                vaultrs::kv2::read_metadata(&s.api, mount, path).await
            })
            .await;
        let (mut fields, version) = match current {
            Ok(meta) => {
                let fields = match self.read(mount, path).await {
                    Ok(f) => (*f).clone(),
                    Err(Error::NotFound { .. }) => HashMap::new(),
                    Err(e) => return Err(e),
                };
                (
                    fields,
                    u32::try_from(meta.current_version).unwrap_or(u32::MAX),
                )
            }
            Err(Error::Vault { status: 404, .. }) => (HashMap::new(), 0),
            Err(e) => return Err(e),
        };
        fields.insert(reference.field.clone(), value.clone());
        let body = exposed(&fields);
        let op = format!("write {mount}/{path}");
        let meta = self
            .client
            .call(&op, |s| {
                let body = &body;
                async move {
                    let opts =
                        vaultrs::api::kv2::requests::SetSecretRequestOptions { cas: version };
                    vaultrs::kv2::set_with_options(&s.api, mount, path, body, opts).await
                }
            })
            .await?;
        self.cache.invalidate(&reference.location());
        Ok(meta.version)
    }

    async fn read(&self, mount: &str, path: &str) -> Result<Fields> {
        let op = format!("read {mount}/{path}");
        let data: HashMap<String, serde_json::Value> = self
            .client
            .call(&op, |s| async move {
                vaultrs::kv2::read(&s.api, mount, path).await
            })
            .await
            .map_err(|e| match e {
                // 204: the latest version was deleted.
                Error::Vault {
                    status: 404 | 204, ..
                } => Error::NotFound {
                    reference: format!("{mount}/{path}"),
                },
                other => other,
            })?;
        Ok(Arc::new(
            data.into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, Secret::new(text))
                })
                .collect(),
        ))
    }
}

#[async_trait::async_trait]
impl SecretsProvider for VaultSecrets {
    async fn get(&self, reference: &SecretRef) -> Result<Secret> {
        let location = reference.location();
        let fields = self
            .cache
            .get_or_fetch(&location, || self.read(&reference.mount, &reference.path))
            .await
            .map_err(|e| match e {
                Error::NotFound { .. } => Error::NotFound {
                    reference: reference.to_string(),
                },
                Error::Expired {
                    expired_ago,
                    reason,
                    ..
                } => Error::Expired {
                    reference: reference.to_string(),
                    expired_ago,
                    reason,
                },
                other => other,
            })?;
        fields
            .get(&reference.field)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                reference: reference.to_string(),
            })
    }
}

/// The fields as the KV API's JSON body wants them; the values leave their
/// `Secret` wrapper only here, on their way into the request.
fn exposed(fields: &HashMap<String, Secret>) -> HashMap<&str, &str> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect()
}
