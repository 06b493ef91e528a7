//! The [`SecretsProvider`] interface and the cache that lets Vault-backed
//! values outlive a Vault outage for a bounded time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use cloudsec_runtime::Secret;
use tokio::time::Instant;

use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::reference::SecretRef;

/// Reads secrets named by [`SecretRef`]s.
#[async_trait::async_trait]
pub trait SecretsProvider: Send + Sync + std::fmt::Debug {
    async fn get(&self, reference: &SecretRef) -> Result<Secret>;
}

/// The fields of one secret (one KV path).
pub(crate) type Fields = std::sync::Arc<HashMap<String, Secret>>;

/// Values by key, refreshed after `refresh` and served across outages
/// until `ttl` (see [`CacheConfig`]).
pub(crate) struct TtlCache<V> {
    config: CacheConfig,
    entries: Mutex<HashMap<String, Entry<V>>>,
}

struct Entry<V> {
    value: V,
    fetched_at: Instant,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(config: CacheConfig) -> Self {
        Self {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &str) -> Option<(V, Instant)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(key).map(|e| (e.value.clone(), e.fetched_at))
    }

    pub(crate) fn invalidate(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(key);
    }

    pub(crate) async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        let cached = self.cached(key);
        let now = Instant::now();
        if let Some((value, at)) = &cached
            && now.duration_since(*at) < self.config.refresh
        {
            return Ok(value.clone());
        }
        match fetch().await {
            Ok(value) => {
                let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                entries.insert(
                    key.to_owned(),
                    Entry {
                        value: value.clone(),
                        fetched_at: Instant::now(),
                    },
                );
                Ok(value)
            }
            Err(error) if error.is_unavailable() => match cached {
                Some((value, at)) => {
                    let age = Instant::now().duration_since(at);
                    if age < self.config.ttl {
                        tracing::warn!(
                            secret = key,
                            age = ?age,
                            expires_in = ?(self.config.ttl - age),
                            %error,
                            "serving a cached secret while its source is unavailable"
                        );
                        Ok(value)
                    } else {
                        Err(Error::Expired {
                            reference: key.to_owned(),
                            expired_ago: age - self.config.ttl,
                            reason: error.to_string(),
                        })
                    }
                }
                None => Err(error),
            },
            Err(error) => {
                // Deleted or no longer permitted: stop serving the old copy.
                if error.is_not_found() || error.is_permission_denied() {
                    self.invalidate(key);
                }
                Err(error)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A provider backed by a fixed map (reference text → value).
    #[derive(Debug)]
    pub(crate) struct MapProvider(HashMap<String, String>);

    impl MapProvider {
        pub(crate) fn with(pairs: &[(&str, &str)]) -> Self {
            Self(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        }
    }

    #[async_trait::async_trait]
    impl SecretsProvider for MapProvider {
        async fn get(&self, reference: &SecretRef) -> Result<Secret> {
            self.0
                .get(&reference.to_string())
                .map(|v| Secret::new(v.clone()))
                .ok_or_else(|| Error::NotFound {
                    reference: reference.to_string(),
                })
        }
    }

    fn down() -> Error {
        Error::Unavailable {
            address: "http://v".into(),
            operation: "read".into(),
            reason: "connection refused".into(),
        }
    }

    fn cache() -> TtlCache<u32> {
        TtlCache::new(CacheConfig {
            refresh: Duration::from_secs(60),
            ttl: Duration::from_secs(600),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn serves_from_memory_until_refresh() {
        let cache = cache();
        let reads = AtomicUsize::new(0);
        let fetch = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(7)
        };
        assert_eq!(cache.get_or_fetch("k", fetch).await.unwrap(), 7);
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(cache.get_or_fetch("k", fetch).await.unwrap(), 7);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(cache.get_or_fetch("k", fetch).await.unwrap(), 7);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn outage_serves_cached_values_until_ttl_then_fails_clearly() {
        let cache = cache();
        cache
            .get_or_fetch("secret/app", || async { Ok(1) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(
            cache
                .get_or_fetch("secret/app", || async { Err(down()) })
                .await
                .unwrap(),
            1
        );
        tokio::time::sleep(Duration::from_secs(301)).await;
        let err = cache
            .get_or_fetch("secret/app", || async { Err(down()) })
            .await
            .unwrap_err();
        match &err {
            Error::Expired { reference, .. } => assert_eq!(reference, "secret/app"),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("connection refused"), "{err}");
        // Back up: served fresh again.
        assert_eq!(
            cache
                .get_or_fetch("secret/app", || async { Ok(2) })
                .await
                .unwrap(),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn outage_without_a_cached_value_is_an_error() {
        let err = cache()
            .get_or_fetch("k", || async { Err(down()) })
            .await
            .unwrap_err();
        assert!(err.is_unavailable());
    }

    #[tokio::test(start_paused = true)]
    async fn denial_is_not_masked_by_the_cache() {
        let cache = cache();
        cache.get_or_fetch("k", || async { Ok(1) }).await.unwrap();
        tokio::time::sleep(Duration::from_secs(61)).await;
        let denied = || async {
            Err(Error::Vault {
                address: "http://v".into(),
                operation: "read".into(),
                status: 403,
                message: "permission denied".into(),
            })
        };
        assert!(cache.get_or_fetch("k", denied).await.is_err());
        // Nor served afterwards during an outage.
        assert!(
            cache
                .get_or_fetch("k", || async { Err(down()) })
                .await
                .is_err()
        );
    }
}
