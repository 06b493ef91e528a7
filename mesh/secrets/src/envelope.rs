//! Envelope encryption: each document is encrypted with its own data key,
//! and only the data key, wrapped by a key-encryption key that never leaves
//! the key service (Vault transit, or the local keystore), is stored beside
//! the ciphertext.
//!
//! # Format
//! [`Sealed`] holds `version` (of this format, 1), `key_name` (the
//! transit key), `wrapped_key` (e.g. `vault:v3:...`), a 96-bit random
//! `nonce` and the AES-256-GCM `ciphertext` (with its 128-bit tag). The
//! associated data authenticated with the content is
//! `"cloudsec-envelope" ‖ version ‖ len ‖ key_name ‖ context`, where the
//! caller's context binds the content to where it belongs (see
//! [`document_context`]): a ciphertext copied to another document, or
//! relabelled with another key, fails to open.
//!
//! # Shredding
//! The wrapped key is the only way back to the data key: the key service
//! keeps no copy of data keys. Deleting the wrapped key
//! ([`Envelope::shred`]) therefore makes the content unrecoverable even
//! with the ciphertext and full access to Vault, as long as no other
//! document shares the data key, which is why data keys are not reused by
//! default (see [`DataKeyCacheConfig`]).
//!
//! # Rotation
//! [`Envelope::rotate`] adds a version to the key-encryption key; new
//! documents use it at once. [`Envelope::rewrap`] re-wraps an old
//! document's data key under the latest version without touching (or
//! seeing) its content; [`Envelope::rewrap_all`] is the job over many.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::{Zeroize, Zeroizing};

use crate::aead::{self, KEY_LEN, KeyBytes};
use crate::error::{Error, Result};

/// The version of the [`Sealed`] format.
pub const FORMAT_VERSION: u8 = 1;

/// Data-key requests a prefetch keeps in flight at once.
const REFILL_CONCURRENCY: usize = 4;

/// Beyond this many encryptions one key with random 96-bit nonces loses
/// its collision margin (NIST SP 800-38D, 8.3); reuse is capped far below.
const MAX_USES_CAP: u64 = 1 << 32;

/// A plaintext data key: zeroed when dropped, never printed.
pub struct DataKey(KeyBytes);

impl DataKey {
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Malformed(format!("a data key must be {KEY_LEN} bytes")))?;
        Ok(Self(Zeroizing::new(arr)))
    }

    pub(crate) fn random() -> Result<Self> {
        aead::random_key().map(Self)
    }

    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(***)")
    }
}

/// What a data key is bound to at the key service: name/value pairs such
/// as tenant, document and classification. KMS takes them as the
/// encryption context of `GenerateDataKey` and refuses `Decrypt` under any
/// other; services without such a binding ignore them, because the
/// envelope's associated data binds the content to its document anyway.
/// A `BTreeMap`, so that the pairs have one order wherever they are compared
/// or printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyContext(std::collections::BTreeMap<String, String>);

impl KeyContext {
    /// The binding of a document's data key; `classification` is the
    /// owning service's name for it (documents uses `public` ...
    /// `restricted`), opaque here.
    pub fn document(tenant: &str, document_id: &str, classification: &str) -> Self {
        Self::default()
            .with("tenant", tenant)
            .with("document", document_id)
            .with("classification", classification)
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Makes and unwraps data keys under named key-encryption keys.
///
/// The `*_bound` methods carry a [`KeyContext`]. Their default bodies drop
/// it and call the unbound ones: Vault transit (without derived keys) and
/// the local keystore have nowhere to put it, and the envelope's
/// associated data already binds content to its document. A service that
/// binds keys at the service itself (KMS) overrides them and says so with
/// [`binds_context`](Self::binds_context).
#[async_trait::async_trait]
pub trait KeyService: Send + Sync + std::fmt::Debug {
    /// A fresh data key and the same key wrapped under `key_name`'s latest
    /// version.
    async fn generate_data_key(&self, key_name: &str) -> Result<(DataKey, String)>;
    /// Wraps an existing data key under `key_name` (used to move a
    /// document to another key when its classification changes).
    async fn wrap(&self, key_name: &str, key: &DataKey) -> Result<String>;
    async fn unwrap(&self, key_name: &str, wrapped: &str) -> Result<DataKey>;
    /// Re-wraps under the latest version, without revealing the data key.
    async fn rewrap(&self, key_name: &str, wrapped: &str) -> Result<String>;
    /// Adds a version to `key_name`; returns the new latest version.
    async fn rotate(&self, key_name: &str) -> Result<u32>;
    async fn latest_version(&self, key_name: &str) -> Result<u32>;

    /// Whether data keys are bound to their [`KeyContext`] by the service,
    /// so that one made for a document cannot be made ahead or reused for
    /// another.
    fn binds_context(&self) -> bool {
        false
    }

    async fn generate_data_key_bound(
        &self,
        key_name: &str,
        _context: &KeyContext,
    ) -> Result<(DataKey, String)> {
        self.generate_data_key(key_name).await
    }

    async fn wrap_bound(
        &self,
        key_name: &str,
        key: &DataKey,
        _context: &KeyContext,
    ) -> Result<String> {
        self.wrap(key_name, key).await
    }

    async fn unwrap_bound(
        &self,
        key_name: &str,
        wrapped: &str,
        _context: &KeyContext,
    ) -> Result<DataKey> {
        self.unwrap(key_name, wrapped).await
    }

    async fn rewrap_bound(
        &self,
        key_name: &str,
        wrapped: &str,
        _context: &KeyContext,
    ) -> Result<String> {
        self.rewrap(key_name, wrapped).await
    }
}

/// The key version in a wrapped key such as `vault:v3:...`.
pub fn key_version(wrapped: &str) -> Option<u32> {
    let mut parts = wrapped.splitn(3, ':');
    let _prefix = parts.next()?;
    parts.next()?.strip_prefix('v')?.parse().ok()
}

/// Encrypted content and what is needed to decrypt it (see the module doc).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub version: u8,
    pub key_name: String,
    /// Empty once shredded.
    pub wrapped_key: String,
    /// What the key service bound the data key to (empty when unbound);
    /// the same context must be presented to unwrap it.
    #[serde(default, skip_serializing_if = "KeyContext::is_empty")]
    pub binding: KeyContext,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// The key-encryption key version that wraps the data key.
    pub fn key_version(&self) -> Option<u32> {
        key_version(&self.wrapped_key)
    }

    pub fn is_shredded(&self) -> bool {
        self.wrapped_key.is_empty()
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("version", &self.version)
            .field("key_name", &self.key_name)
            .field("key_version", &self.key_version())
            .field("shredded", &self.is_shredded())
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// The context that binds a document's content to its tenant and id.
/// Length prefixes keep `("ab", "c")` and `("a", "bc")` apart.
pub fn document_context(tenant: &str, document_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + tenant.len() + document_id.len());
    for part in [tenant, document_id] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn full_aad(version: u8, key_name: &str, context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + key_name.len() + context.len());
    aad.extend_from_slice(b"cloudsec-envelope");
    aad.push(version);
    aad.extend_from_slice(&(key_name.len() as u64).to_be_bytes());
    aad.extend_from_slice(key_name.as_bytes());
    aad.extend_from_slice(context);
    aad
}

/// Bounds on keeping plaintext data keys in memory.
///
/// - **Sealing** (`max_uses`, `max_age`): a data key may encrypt up to
///   `max_uses` documents within `max_age` before a new one is generated,
///   which saves a Vault round trip per write. The default, 1, gives every
///   document its own key, which is what makes shredding one document
///   effective: documents that share a data key share a fate, because the
///   wrapped key kept beside any of them unwraps the same data key. Raise
///   it only for data that is never shredded alone. The count also keeps
///   one key far from the AES-GCM random-nonce limit, and the age bounds
///   how long a rotation or a disabled key goes unnoticed.
/// - **Opening** (`max_entries`, `max_age`): unwrapped keys of recently read
///   documents are kept for `max_age`, so repeated reads skip Vault. The age
///   bounds how long a plaintext key stays in memory and how long a key
///   version retired in Vault still opens cached documents; shredding
///   evicts the entry at once.
/// - **Prefetching** (`prefetch`, `max_age`): up to `prefetch` fresh data
///   keys per key name are generated ahead, in the background, so that a
///   write does not wait for the key service. Each is still used for one
///   document only (so shredding stays per document); unused ones are
///   dropped after `max_age` and when the key is rotated. They are
///   plaintext keys in memory that encrypt nothing yet: the bound is the
///   count and the age.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataKeyCacheConfig {
    pub max_uses: u64,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// 0 turns the read cache off.
    pub max_entries: usize,
    /// Fresh single-use data keys kept ready per key name; 0 turns
    /// prefetching off.
    #[serde(default)]
    pub prefetch: usize,
}

impl Default for DataKeyCacheConfig {
    fn default() -> Self {
        Self {
            max_uses: 1,
            max_age: Duration::from_secs(5 * 60),
            max_entries: 1024,
            prefetch: 0,
        }
    }
}

struct SealKey {
    key: Arc<DataKey>,
    wrapped: String,
    created: Instant,
    uses: u64,
}

/// A cached unwrapped key is found by key name, wrapped key and binding,
/// so that a cache hit never skips the key service's context check.
type OpenId = (String, String, KeyContext);

struct OpenKey {
    key: Arc<DataKey>,
    created: Instant,
}

/// Fresh data keys made ahead, per key name (see [`DataKeyCacheConfig`]).
#[derive(Default)]
struct Pool {
    ready: HashMap<String, std::collections::VecDeque<SealKey>>,
    /// Key names with a refill running.
    filling: std::collections::HashSet<String>,
    /// Bumped by a rotation so that a refill started before it does not
    /// add keys of the old version.
    epoch: u64,
}

/// Seals and opens content with data keys from a [`KeyService`].
pub struct Envelope {
    keys: Arc<dyn KeyService>,
    cache: DataKeyCacheConfig,
    sealing: Mutex<HashMap<String, SealKey>>,
    opening: Mutex<HashMap<OpenId, OpenKey>>,
    pool: Arc<Mutex<Pool>>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("keys", &self.keys)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// What a rewrap job did.
#[derive(Debug, Default)]
pub struct RewrapReport {
    pub rewrapped: usize,
    pub unchanged: usize,
    pub shredded: usize,
    /// Index into the input and the reason.
    pub failed: Vec<(usize, Error)>,
}

impl Envelope {
    pub fn new(keys: Arc<dyn KeyService>, cache: DataKeyCacheConfig) -> Self {
        let cache = DataKeyCacheConfig {
            max_uses: cache.max_uses.clamp(1, MAX_USES_CAP),
            ..cache
        };
        Self {
            keys,
            cache,
            sealing: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            pool: Arc::new(Mutex::new(Pool::default())),
        }
    }

    /// A prefetched key for `key_name`, if a fresh one is ready; starts a
    /// refill either way.
    fn take_prefetched(&self, key_name: &str) -> Option<(Arc<DataKey>, String)> {
        if self.cache.prefetch == 0 {
            return None;
        }
        let taken = {
            let mut pool = lock(&self.pool);
            let max_age = self.cache.max_age;
            let queue = pool.ready.entry(key_name.to_owned()).or_default();
            queue.retain(|k| k.created.elapsed() < max_age);
            queue.pop_front().map(|k| (k.key, k.wrapped))
        };
        self.refill(key_name);
        taken
    }

    /// Tops the pool of `key_name` up to `prefetch` in the background, one
    /// refill per key name at a time. Failures are logged; writes then
    /// generate their key inline, and report the error themselves.
    fn refill(&self, key_name: &str) {
        let epoch = {
            let mut pool = lock(&self.pool);
            if !pool.filling.insert(key_name.to_owned()) {
                return;
            }
            pool.epoch
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            lock(&self.pool).filling.remove(key_name);
            return;
        };
        let keys = Arc::clone(&self.keys);
        let pool = Arc::clone(&self.pool);
        let (name, target) = (key_name.to_owned(), self.cache.prefetch);
        runtime.spawn(async move {
            loop {
                let missing = {
                    let p = lock(&pool);
                    target.saturating_sub(p.ready.get(&name).map_or(0, |q| q.len()))
                };
                if missing == 0 {
                    break;
                }
                // A few requests in flight: one at a time cannot keep up
                // with writes that each take about one round trip.
                let batch = futures::future::join_all(
                    (0..missing.min(REFILL_CONCURRENCY)).map(|_| keys.generate_data_key(&name)),
                )
                .await;
                let mut p = lock(&pool);
                if p.epoch != epoch {
                    break;
                }
                let mut failed = None;
                for made in batch {
                    match made {
                        Ok((key, wrapped)) => {
                            p.ready.entry(name.clone()).or_default().push_back(SealKey {
                                key: Arc::new(key),
                                wrapped,
                                created: Instant::now(),
                                uses: 0,
                            });
                        }
                        Err(error) => failed = Some(error),
                    }
                }
                if let Some(error) = failed {
                    tracing::warn!(key = %name, %error, "cannot prefetch data keys");
                    break;
                }
            }
            lock(&pool).filling.remove(&name);
        });
    }

    pub fn keys(&self) -> &Arc<dyn KeyService> {
        &self.keys
    }

    /// Encrypts `plaintext` under a data key wrapped by `key_name`, bound
    /// to `context`.
    pub async fn seal(&self, key_name: &str, plaintext: &[u8], context: &[u8]) -> Result<Sealed> {
        self.seal_bound(key_name, plaintext, context, &KeyContext::default())
            .await
    }

    /// As [`seal`](Self::seal), with the data key bound to `binding` at
    /// the key service (see [`KeyContext`]).
    pub async fn seal_bound(
        &self,
        key_name: &str,
        plaintext: &[u8],
        context: &[u8],
        binding: &KeyContext,
    ) -> Result<Sealed> {
        let (key, wrapped) = self.sealing_key(key_name, binding).await?;
        let aad = full_aad(FORMAT_VERSION, key_name, context);
        let (nonce, ciphertext) = aead::seal(key.expose(), &aad, plaintext)?;
        Ok(Sealed {
            version: FORMAT_VERSION,
            key_name: key_name.to_owned(),
            wrapped_key: wrapped,
            binding: binding.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts, or fails with [`Error::Decrypt`] if anything was altered
    /// or the context differs, and [`Error::Shredded`] after shredding.
    pub async fn open(&self, sealed: &Sealed, context: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.open_with_key(sealed, context)
            .await
            .map(|(_, plain)| plain)
    }

    async fn open_with_key(
        &self,
        sealed: &Sealed,
        context: &[u8],
    ) -> Result<(Arc<DataKey>, Zeroizing<Vec<u8>>)> {
        if sealed.version != FORMAT_VERSION {
            return Err(Error::Malformed(format!(
                "unknown envelope version {}",
                sealed.version
            )));
        }
        if sealed.is_shredded() {
            return Err(Error::Shredded);
        }
        let key = self
            .opening_key(&sealed.key_name, &sealed.wrapped_key, &sealed.binding)
            .await?;
        let aad = full_aad(sealed.version, &sealed.key_name, context);
        let plain = aead::open(key.expose(), &sealed.nonce, &aad, &sealed.ciphertext)?;
        Ok((key, plain))
    }

    /// Crypto-shredding: forgets the wrapped key (and any cached copy of
    /// the data key). The caller must persist the shredded envelope, or
    /// delete its stored wrapped key, for the content to be gone.
    pub fn shred(&self, sealed: &mut Sealed) {
        self.forget(&sealed.key_name, &sealed.wrapped_key);
        sealed.wrapped_key.zeroize();
        sealed.wrapped_key.clear();
    }

    /// Drops a cached unwrapped key, e.g. when a shredded wrapped key was
    /// deleted elsewhere.
    pub fn forget(&self, key_name: &str, wrapped: &str) {
        lock(&self.opening).retain(|(name, w, _), _| !(name == key_name && w == wrapped));
        let mut sealing = lock(&self.sealing);
        if sealing.get(key_name).is_some_and(|k| k.wrapped == wrapped) {
            sealing.remove(key_name);
        }
    }

    /// Rotates `key_name`; documents sealed from now on use the new version.
    pub async fn rotate(&self, key_name: &str) -> Result<u32> {
        let version = self.keys.rotate(key_name).await?;
        lock(&self.sealing).remove(key_name);
        {
            let mut pool = lock(&self.pool);
            pool.epoch += 1;
            pool.ready.remove(key_name);
            pool.filling.remove(key_name);
        }
        tracing::info!(key = key_name, version, "key-encryption key rotated");
        Ok(version)
    }

    /// Re-wraps the data key under the latest key version; `false` when it
    /// already was. The content is not touched.
    pub async fn rewrap(&self, sealed: &mut Sealed) -> Result<bool> {
        let latest = self.keys.latest_version(&sealed.key_name).await?;
        self.rewrap_to(sealed, latest).await
    }

    async fn rewrap_to(&self, sealed: &mut Sealed, latest: u32) -> Result<bool> {
        if sealed.is_shredded() {
            return Err(Error::Shredded);
        }
        if sealed.key_version().is_some_and(|v| v >= latest) {
            return Ok(false);
        }
        let rewrapped = self
            .keys
            .rewrap_bound(&sealed.key_name, &sealed.wrapped_key, &sealed.binding)
            .await?;
        self.forget(&sealed.key_name, &sealed.wrapped_key);
        sealed.wrapped_key = rewrapped;
        Ok(true)
    }

    /// The rewrap job: brings every envelope to its key's latest version.
    /// Failures are collected rather than stopping the job, so one bad
    /// record does not block the rest; the caller persists the changed ones.
    pub async fn rewrap_all<'a>(
        &self,
        items: impl IntoIterator<Item = &'a mut Sealed>,
    ) -> RewrapReport {
        let mut report = RewrapReport::default();
        let mut latest: HashMap<String, u32> = HashMap::new();
        for (i, sealed) in items.into_iter().enumerate() {
            if sealed.is_shredded() {
                report.shredded += 1;
                continue;
            }
            let version = match latest.get(&sealed.key_name) {
                Some(v) => *v,
                None => match self.keys.latest_version(&sealed.key_name).await {
                    Ok(v) => {
                        latest.insert(sealed.key_name.clone(), v);
                        v
                    }
                    Err(e) => {
                        report.failed.push((i, e));
                        continue;
                    }
                },
            };
            match self.rewrap_to(sealed, version).await {
                Ok(true) => report.rewrapped += 1,
                Ok(false) => report.unchanged += 1,
                Err(e) => report.failed.push((i, e)),
            }
        }
        report
    }

    /// Moves a document to another key-encryption key (its classification
    /// changed): the data key is unwrapped and wrapped under `new_key`, and
    /// the content is re-encrypted because the key name is part of its
    /// associated data.
    pub async fn rekey(&self, sealed: &Sealed, new_key: &str, context: &[u8]) -> Result<Sealed> {
        self.rekey_bound(sealed, new_key, context, &sealed.binding)
            .await
    }

    /// As [`rekey`](Self::rekey), binding the data key to `binding` from
    /// now on (a classification change changes the binding too).
    pub async fn rekey_bound(
        &self,
        sealed: &Sealed,
        new_key: &str,
        context: &[u8],
        binding: &KeyContext,
    ) -> Result<Sealed> {
        let (key, plaintext) = self.open_with_key(sealed, context).await?;
        let wrapped = self.keys.wrap_bound(new_key, &key, binding).await?;
        let aad = full_aad(FORMAT_VERSION, new_key, context);
        let (nonce, ciphertext) = aead::seal(key.expose(), &aad, &plaintext)?;
        Ok(Sealed {
            version: FORMAT_VERSION,
            key_name: new_key.to_owned(),
            wrapped_key: wrapped,
            binding: binding.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    async fn sealing_key(
        &self,
        key_name: &str,
        binding: &KeyContext,
    ) -> Result<(Arc<DataKey>, String)> {
        // A key bound to one document at the service cannot be made ahead
        // (its document is not known yet) nor shared with another.
        if self.keys.binds_context() {
            let (key, wrapped) = self.keys.generate_data_key_bound(key_name, binding).await?;
            return Ok((Arc::new(key), wrapped));
        }
        if self.cache.max_uses == 1
            && let Some(ready) = self.take_prefetched(key_name)
        {
            return Ok(ready);
        }
        if self.cache.max_uses > 1 {
            let mut sealing = lock(&self.sealing);
            if let Some(entry) = sealing.get_mut(key_name) {
                if entry.uses < self.cache.max_uses && entry.created.elapsed() < self.cache.max_age
                {
                    entry.uses += 1;
                    return Ok((Arc::clone(&entry.key), entry.wrapped.clone()));
                }
                sealing.remove(key_name);
            }
        }
        let (key, wrapped) = self.keys.generate_data_key(key_name).await?;
        let key = Arc::new(key);
        if self.cache.max_uses > 1 {
            lock(&self.sealing).insert(
                key_name.to_owned(),
                SealKey {
                    key: Arc::clone(&key),
                    wrapped: wrapped.clone(),
                    created: Instant::now(),
                    uses: 1,
                },
            );
        }
        Ok((key, wrapped))
    }

    async fn opening_key(
        &self,
        key_name: &str,
        wrapped: &str,
        binding: &KeyContext,
    ) -> Result<Arc<DataKey>> {
        let id = (key_name.to_owned(), wrapped.to_owned(), binding.clone());
        if self.cache.max_entries > 0 {
            let mut opening = lock(&self.opening);
            match opening.get(&id) {
                Some(e) if e.created.elapsed() < self.cache.max_age => {
                    return Ok(Arc::clone(&e.key));
                }
                Some(_) => {
                    opening.remove(&id);
                }
                None => {}
            }
        }
        // A data key found in the sealing cache needs no round trip either.
        if let Some(entry) = lock(&self.sealing).get(key_name)
            && entry.wrapped == wrapped
            && entry.created.elapsed() < self.cache.max_age
        {
            return Ok(Arc::clone(&entry.key));
        }
        let key = Arc::new(self.keys.unwrap_bound(key_name, wrapped, binding).await?);
        if self.cache.max_entries > 0 {
            let mut opening = lock(&self.opening);
            if opening.len() >= self.cache.max_entries {
                let max_age = self.cache.max_age;
                opening.retain(|_, e| e.created.elapsed() < max_age);
            }
            if opening.len() >= self.cache.max_entries
                && let Some(oldest) = opening
                    .iter()
                    .min_by_key(|(_, e)| e.created)
                    .map(|(k, _)| k.clone())
            {
                opening.remove(&oldest);
            }
            opening.insert(
                id,
                OpenKey {
                    key: Arc::clone(&key),
                    created: Instant::now(),
                },
            );
        }
        Ok(key)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::LocalKeystore;
    use crate::local_keys::LocalKeys;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the calls that would be Vault round trips.
    #[derive(Debug)]
    struct Counting {
        inner: LocalKeys,
        generated: AtomicUsize,
        unwrapped: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl KeyService for Counting {
        async fn generate_data_key(&self, key_name: &str) -> Result<(DataKey, String)> {
            self.generated.fetch_add(1, Ordering::SeqCst);
            self.inner.generate_data_key(key_name).await
        }
        async fn wrap(&self, key_name: &str, key: &DataKey) -> Result<String> {
            self.inner.wrap(key_name, key).await
        }
        async fn unwrap(&self, key_name: &str, wrapped: &str) -> Result<DataKey> {
            self.unwrapped.fetch_add(1, Ordering::SeqCst);
            self.inner.unwrap(key_name, wrapped).await
        }
        async fn rewrap(&self, key_name: &str, wrapped: &str) -> Result<String> {
            self.inner.rewrap(key_name, wrapped).await
        }
        async fn rotate(&self, key_name: &str) -> Result<u32> {
            self.inner.rotate(key_name).await
        }
        async fn latest_version(&self, key_name: &str) -> Result<u32> {
            self.inner.latest_version(key_name).await
        }
    }

    fn counting(dir: &tempfile::TempDir) -> Arc<Counting> {
        let store = Arc::new(LocalKeystore::open(dir.path()).unwrap());
        Arc::new(Counting {
            inner: LocalKeys::new(store),
            generated: AtomicUsize::new(0),
            unwrapped: AtomicUsize::new(0),
        })
    }

    fn no_cache() -> DataKeyCacheConfig {
        DataKeyCacheConfig {
            max_uses: 1,
            max_age: Duration::from_secs(60),
            max_entries: 0,
            prefetch: 0,
        }
    }

    #[tokio::test]
    async fn seals_and_opens_bound_to_the_document() {
        let dir = tempfile::tempdir().unwrap();
        let env = Envelope::new(counting(&dir), no_cache());
        let ctx = document_context("tenant-a", "doc-1");
        let sealed = env
            .seal("docs-internal", b"quarterly numbers", &ctx)
            .await
            .unwrap();
        assert_eq!(sealed.key_version(), Some(1));
        assert!(!sealed.ciphertext.windows(9).any(|w| w == b"quarterly"));
        assert_eq!(
            &*env.open(&sealed, &ctx).await.unwrap(),
            b"quarterly numbers"
        );

        // Moved to another document or tenant: rejected.
        for other in [
            document_context("tenant-a", "doc-2"),
            document_context("tenant-b", "doc-1"),
            document_context("tenant-ad", "oc-1"),
        ] {
            assert!(matches!(
                env.open(&sealed, &other).await,
                Err(Error::Decrypt)
            ));
        }
        // Survives a JSON round trip (how it is stored).
        let json = serde_json::to_string(&sealed).unwrap();
        let back: Sealed = serde_json::from_str(&json).unwrap();
        assert_eq!(&*env.open(&back, &ctx).await.unwrap(), b"quarterly numbers");
        assert!(!format!("{sealed:?}").contains(&sealed.wrapped_key));
    }

    #[tokio::test]
    async fn any_tampering_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let env = Envelope::new(counting(&dir), no_cache());
        let ctx = document_context("t", "d");
        let sealed = env.seal("docs-internal", b"content", &ctx).await.unwrap();

        let mut ct = sealed.clone();
        ct.ciphertext[0] ^= 1;
        assert!(matches!(env.open(&ct, &ctx).await, Err(Error::Decrypt)));
        let mut tag = sealed.clone();
        let last = tag.ciphertext.len() - 1;
        tag.ciphertext[last] ^= 1;
        assert!(matches!(env.open(&tag, &ctx).await, Err(Error::Decrypt)));
        let mut nonce = sealed.clone();
        nonce.nonce[0] ^= 1;
        assert!(matches!(env.open(&nonce, &ctx).await, Err(Error::Decrypt)));
        let mut truncated = sealed.clone();
        truncated.ciphertext.truncate(4);
        assert!(matches!(
            env.open(&truncated, &ctx).await,
            Err(Error::Decrypt)
        ));
        // The wrapped key of another document: a valid key, the wrong one.
        let other = env.seal("docs-internal", b"other", &ctx).await.unwrap();
        let mut swapped = sealed.clone();
        swapped.wrapped_key = other.wrapped_key.clone();
        assert!(matches!(
            env.open(&swapped, &ctx).await,
            Err(Error::Decrypt)
        ));
        // Relabelled with another key name.
        let mut relabelled = sealed.clone();
        relabelled.key_name = "docs-public".into();
        assert!(env.open(&relabelled, &ctx).await.is_err());
    }

    #[tokio::test]
    async fn shredded_content_cannot_be_opened() {
        let dir = tempfile::tempdir().unwrap();
        let keys = counting(&dir);
        let env = Envelope::new(keys.clone(), DataKeyCacheConfig::default());
        let ctx = document_context("t", "d");
        let mut sealed = env
            .seal("docs-restricted", b"secret plan", &ctx)
            .await
            .unwrap();
        assert_eq!(&*env.open(&sealed, &ctx).await.unwrap(), b"secret plan");
        env.shred(&mut sealed);
        assert!(matches!(
            env.open(&sealed, &ctx).await,
            Err(Error::Shredded)
        ));
        // Every other data key the service can produce is a different key.
        for _ in 0..3 {
            let (_, wrapped) = keys.generate_data_key("docs-restricted").await.unwrap();
            let mut guess = sealed.clone();
            guess.wrapped_key = wrapped;
            assert!(matches!(env.open(&guess, &ctx).await, Err(Error::Decrypt)));
        }
    }

    #[tokio::test]
    async fn rotation_and_rewrap_move_documents_to_the_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let env = Envelope::new(counting(&dir), no_cache());
        let ctx = document_context("t", "d");
        let mut docs = vec![
            env.seal("docs-confidential", b"one", &ctx).await.unwrap(),
            env.seal("docs-confidential", b"two", &ctx).await.unwrap(),
        ];
        assert_eq!(env.rotate("docs-confidential").await.unwrap(), 2);
        docs.push(env.seal("docs-confidential", b"three", &ctx).await.unwrap());
        assert_eq!(docs[2].key_version(), Some(2));
        let mut shredded = env.seal("docs-confidential", b"gone", &ctx).await.unwrap();
        env.shred(&mut shredded);
        docs.push(shredded);

        let before: Vec<Vec<u8>> = docs.iter().map(|d| d.ciphertext.clone()).collect();
        let report = env.rewrap_all(docs.iter_mut()).await;
        assert_eq!(
            (report.rewrapped, report.unchanged, report.shredded),
            (2, 1, 1)
        );
        assert!(report.failed.is_empty());
        for (i, d) in docs.iter().take(3).enumerate() {
            assert_eq!(d.key_version(), Some(2));
            assert_eq!(d.ciphertext, before[i], "content untouched");
        }
        assert_eq!(&*env.open(&docs[0], &ctx).await.unwrap(), b"one");
        assert_eq!(&*env.open(&docs[2], &ctx).await.unwrap(), b"three");
        assert!(!env.rewrap(&mut docs[1]).await.unwrap(), "already latest");
    }

    #[tokio::test]
    async fn reclassification_moves_a_document_to_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let env = Envelope::new(counting(&dir), no_cache());
        let ctx = document_context("t", "d");
        let internal = env.seal("docs-internal", b"memo", &ctx).await.unwrap();
        let restricted = env.rekey(&internal, "docs-restricted", &ctx).await.unwrap();
        assert_eq!(restricted.key_name, "docs-restricted");
        assert_eq!(&*env.open(&restricted, &ctx).await.unwrap(), b"memo");
    }

    #[tokio::test(start_paused = true)]
    async fn the_data_key_cache_is_bounded_by_uses_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let keys = counting(&dir);
        let env = Envelope::new(
            keys.clone(),
            DataKeyCacheConfig {
                max_uses: 3,
                max_age: Duration::from_secs(60),
                max_entries: 2,
                prefetch: 0,
            },
        );
        let ctx = b"ctx";
        let mut sealed = Vec::new();
        for i in 0..7u8 {
            sealed.push(env.seal("k", &[i], ctx).await.unwrap());
        }
        // 3 + 3 + 1 documents per data key.
        assert_eq!(keys.generated.load(Ordering::SeqCst), 3);
        assert_eq!(sealed[0].wrapped_key, sealed[2].wrapped_key);
        assert_ne!(sealed[2].wrapped_key, sealed[3].wrapped_key);

        tokio::time::sleep(Duration::from_secs(61)).await;
        env.seal("k", b"late", ctx).await.unwrap();
        assert_eq!(keys.generated.load(Ordering::SeqCst), 4, "aged out");

        // Reads: one unwrap per data key while cached, again after max_age.
        let before = keys.unwrapped.load(Ordering::SeqCst);
        for s in &sealed[..3] {
            env.open(s, ctx).await.unwrap();
        }
        assert_eq!(keys.unwrapped.load(Ordering::SeqCst), before + 1);
        tokio::time::sleep(Duration::from_secs(61)).await;
        env.open(&sealed[0], ctx).await.unwrap();
        assert_eq!(keys.unwrapped.load(Ordering::SeqCst), before + 2);
        // Bounded entries: a third data key evicts the oldest.
        env.open(&sealed[3], ctx).await.unwrap();
        env.open(&sealed[6], ctx).await.unwrap();
        assert!(lock(&env.opening).len() <= 2);
    }

    #[tokio::test]
    async fn by_default_every_document_has_its_own_data_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = counting(&dir);
        let env = Envelope::new(keys.clone(), DataKeyCacheConfig::default());
        let a = env.seal("k", b"a", b"1").await.unwrap();
        let b = env.seal("k", b"b", b"2").await.unwrap();
        assert_ne!(a.wrapped_key, b.wrapped_key);
        assert_eq!(keys.generated.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn prefetched_keys_are_single_use_and_dropped_on_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let keys = counting(&dir);
        let env = Envelope::new(
            keys.clone(),
            DataKeyCacheConfig {
                prefetch: 4,
                ..DataKeyCacheConfig::default()
            },
        );
        let first = env.seal("k", b"a", b"1").await.unwrap();
        // The refill runs beside the writes; wait for the pool to fill.
        for _ in 0..200 {
            if lock(&env.pool).ready.get("k").is_some_and(|q| q.len() == 4) {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(lock(&env.pool).ready.get("k").map(|q| q.len()), Some(4));
        let generated = keys.generated.load(Ordering::SeqCst);
        let second = env.seal("k", b"b", b"2").await.unwrap();
        assert!(
            keys.generated.load(Ordering::SeqCst) <= generated + 1,
            "served from the pool"
        );
        assert_ne!(
            first.wrapped_key, second.wrapped_key,
            "one key per document"
        );
        assert_eq!(&*env.open(&second, b"2").await.unwrap(), b"b");
        // Shredding one document leaves the other readable.
        let mut shredded = first.clone();
        env.shred(&mut shredded);
        assert!(matches!(
            env.open(&shredded, b"1").await,
            Err(Error::Shredded)
        ));
        assert_eq!(&*env.open(&second, b"2").await.unwrap(), b"b");
        // After a rotation no pooled key of the old version is used.
        let v = env.rotate("k").await.unwrap();
        let third = env.seal("k", b"c", b"3").await.unwrap();
        assert_eq!(third.key_version(), Some(v));
    }

    #[test]
    fn key_versions_parse() {
        assert_eq!(key_version("vault:v12:abc"), Some(12));
        assert_eq!(key_version("local:v1:abc"), Some(1));
        assert_eq!(key_version("nonsense"), None);
    }
}
