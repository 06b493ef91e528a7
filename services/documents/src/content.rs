//! Document content in object storage, encrypted per document.
//!
//! Every content write makes a new *generation* of the document's content,
//! two objects under `<tenant>/<document id>/<generation>`:
//!
//! - the content object, `<generation>`: a format byte (1), the 96-bit
//!   nonce and the AES-256-GCM ciphertext with its tag, in binary (no
//!   base64, so a 64 KiB document stays 64 KiB);
//! - the key object, `<generation>.key`: JSON `{version, key_name,
//!   wrapped_key}`, the data key wrapped by the classification's
//!   key-encryption key; with KMS also `binding`, the encryption context
//!   (tenant, document, classification) KMS bound the data key to. On
//!   reading, tenant and document are taken from the request, not the
//!   record, so KMS itself refuses a key record moved to another document.
//!
//! The wrapped key sits beside the content, not in it and not in the
//! database, so that deleting it shreds the content for good: copies of the
//! content object (replicas, backups of the bucket, an orphan left by a
//! failed delete) hold no key, and database backups hold none either. The
//! key objects are small and can live under a stricter retention than the
//! content (no versioning, no backups) without the content losing any.
//!
//! A new generation per write, rather than overwriting one object, is what
//! lets the store write objects before the database commits: a write whose
//! transaction rolls back (an etag conflict, a crash) leaves an orphan
//! generation and never clobbers the content a committed row points to.
//!
//! [`Sealing::Plaintext`] stores the bare content and no key object; no
//! configuration selects it, it exists to measure what encryption costs.
//!
//! Tenants are names from tokens; one that is not plain `[A-Za-z0-9_-]`
//! is hex-encoded behind a `~`, so no tenant can reach another's prefix
//! (`../x`) or collide with one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use cloudsec_bus::Provisioning;
use cloudsec_secrets::{
    Envelope, KeyContext, KmsKeys, Sealed, Secrets, TransitKeys, document_context,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::{ContentConfig, KeyPolicy, StoreConfig};
use crate::domain::Classification;

/// How a row's content is stored (`content_storage` column).
pub const STORAGE_INLINE: &str = "inline";
/// Sealed objects (the format above).
pub const STORAGE_ENVELOPE: &str = "envelope-v1";
/// Bare objects ([`Sealing::Plaintext`]).
pub const STORAGE_PLAIN: &str = "plain";

const OBJECT_FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const KEY_SUFFIX: &str = ".key";

pub type Result<T, E = ContentError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The object store failed or could not be reached.
    #[error("object store: cannot {operation} `{key}`: {reason}")]
    Object {
        operation: &'static str,
        key: String,
        reason: String,
    },
    /// A row points to an object that does not exist.
    #[error("content object `{0}` is missing")]
    Missing(String),
    /// Sealing or opening failed; `Decrypt` and `Shredded` mean the stored
    /// content cannot be trusted or is gone.
    #[error("content keys: {0}")]
    Keys(#[from] cloudsec_secrets::Error),
    /// A stored object is not in a known format.
    #[error("malformed content object `{key}`: {reason}")]
    Malformed { key: String, reason: String },
    /// The row says the content is stored one way and this store another.
    #[error("content stored as `{stored}` cannot be read by a `{store}` store")]
    StorageMismatch { stored: String, store: &'static str },
    #[error("invalid content configuration: {0}")]
    Config(String),
}

impl ContentError {
    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Object { .. } => true,
            Self::Keys(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// The content was altered, moved or shredded: never a transient fault.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Self::Keys(cloudsec_secrets::Error::Decrypt | cloudsec_secrets::Error::Shredded)
                | Self::Malformed { .. }
        )
    }
}

/// Whether content is sealed, and with which keys.
#[derive(Debug, Clone)]
pub enum Sealing {
    Envelope {
        envelope: Arc<Envelope>,
        policy: Arc<KeyPolicy>,
    },
    /// Bare content; for benchmarks only (see the module doc).
    Plaintext,
}

/// Where objects live.
#[derive(Debug, Clone)]
pub enum ObjectStore {
    Dir(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
}

impl ObjectStore {
    /// A directory, created if missing.
    pub fn dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| ContentError::Object {
            operation: "create directory",
            key: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::Dir(dir.to_owned()))
    }

    /// An S3 bucket; created in [`Provisioning::Create`] mode, only
    /// checked in [`Provisioning::Existing`] mode.
    pub async fn s3(
        bucket: &str,
        settings: &cloudsec_bus::transport::aws::AwsSettings,
        force_path_style: bool,
        provisioning: Provisioning,
    ) -> Result<Self> {
        let sdk = cloudsec_bus::transport::aws::sdk_config(settings, None).await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(force_path_style)
            .build();
        let client = aws_sdk_s3::Client::from_conf(conf);
        let err = |operation, e: String| ContentError::Object {
            operation,
            key: bucket.to_owned(),
            reason: e,
        };
        match provisioning {
            Provisioning::Create => {
                let mut create = client.create_bucket().bucket(bucket);
                // us-east-1 is the one region that refuses a location constraint.
                if let Some(region) = sdk.region().map(|r| r.as_ref().to_owned())
                    && region != "us-east-1"
                {
                    create = create.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(region.as_str().into())
                            .build(),
                    );
                }
                if let Err(e) = create.send().await {
                    let owned = e.as_service_error().is_some_and(|s| {
                        s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                    });
                    if !owned {
                        return Err(err("create bucket", DisplayErrorContext(&e).to_string()));
                    }
                }
            }
            Provisioning::Existing => {
                client
                    .head_bucket()
                    .bucket(bucket)
                    .send()
                    .await
                    .map_err(|e| {
                        err(
                            "find bucket (provisioning = \"existing\")",
                            DisplayErrorContext(&e).to_string(),
                        )
                    })?;
            }
        }
        Ok(Self::S3 {
            client,
            bucket: bucket.to_owned(),
        })
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<()> {
        match self {
            Self::Dir(root) => {
                let path = root.join(key);
                blocking("write", key, move || write_durably(&path, &body)).await
            }
            Self::S3 { client, bucket } => client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| object_error("write", key, &e)),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Dir(root) => {
                let path = root.join(key);
                blocking("read", key, move || match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                })
                .await
            }
            Self::S3 { client, bucket } => {
                let resp = match client.get_object().bucket(bucket).key(key).send().await {
                    Ok(resp) => resp,
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(object_error("read", key, &e)),
                };
                let body = resp
                    .body
                    .collect()
                    .await
                    .map_err(|e| ContentError::Object {
                        operation: "read",
                        key: key.to_owned(),
                        reason: e.to_string(),
                    })?;
                Ok(Some(body.into_bytes().to_vec()))
            }
        }
    }

    /// Every object (key and last-modified time), for garbage collection.
    /// Temporary files of the directory store are listed too, so that
    /// those a crash left behind are collected.
    pub async fn list(&self) -> Result<Vec<(String, std::time::SystemTime)>> {
        match self {
            Self::Dir(root) => {
                let root = root.clone();
                blocking("list", &root.display().to_string(), move || {
                    let mut out = Vec::new();
                    let mut dirs = vec![root.clone()];
                    while let Some(dir) = dirs.pop() {
                        for entry in std::fs::read_dir(&dir)? {
                            let entry = entry?;
                            let meta = entry.metadata()?;
                            if meta.is_dir() {
                                dirs.push(entry.path());
                            } else if let Ok(rel) = entry.path().strip_prefix(&root) {
                                out.push((
                                    rel.to_string_lossy().replace('\\', "/"),
                                    meta.modified()?,
                                ));
                            }
                        }
                    }
                    Ok(out)
                })
                .await
            }
            Self::S3 { client, bucket } => {
                let mut out = Vec::new();
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| object_error("list", bucket, &e))?;
                    for object in page.contents() {
                        let (Some(key), Some(modified)) = (object.key(), object.last_modified())
                        else {
                            continue;
                        };
                        let modified = std::time::SystemTime::try_from(*modified)
                            .unwrap_or(std::time::UNIX_EPOCH);
                        out.push((key.to_owned(), modified));
                    }
                }
                Ok(out)
            }
        }
    }

    /// Deletes `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self {
            Self::Dir(root) => {
                let path = root.join(key);
                blocking("delete", key, move || remove_file(&path)).await
            }
            Self::S3 { client, bucket } => client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| object_error("delete", key, &e)),
        }
    }
}

fn object_error<E>(operation: &'static str, key: &str, e: &E) -> ContentError
where
    E: std::error::Error,
{
    ContentError::Object {
        operation,
        key: key.to_owned(),
        reason: DisplayErrorContext(e).to_string(),
    }
}

async fn blocking<T: Send + 'static>(
    operation: &'static str,
    key: &str,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let err = |reason: String| ContentError::Object {
        operation,
        key: key.to_owned(),
        reason,
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))
}

/// Writes through a temporary file, syncs it and renames it over `path`,
/// then syncs the directory: the object must survive a crash once the row
/// that points to it has committed.
fn write_durably(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path
        .parent()
        .ok_or_else(|| std::io::Error::other("an object path has no directory"))?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}", Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(parent)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Removes a file; a key file is overwritten with zeros first, which on a
/// file system that writes in place keeps the wrapped key off free blocks
/// (best effort: copy-on-write file systems and SSDs may keep it anyway).
fn remove_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    if path.extension().is_some_and(|e| e == "key") {
        match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(mut file) => {
                let len = usize::try_from(file.metadata()?.len()).unwrap_or(0);
                file.write_all(&vec![0u8; len])?;
                file.sync_all()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    // The per-document directory goes with its last generation; a
    // directory that still holds one stays (the call fails harmlessly).
    if let Some(parent) = path.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// The key object's body.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    version: u8,
    key_name: String,
    wrapped_key: String,
    /// Only written by a key service that binds keys (KMS), so records of
    /// the others keep the format older readers know.
    #[serde(default, skip_serializing_if = "KeyContext::is_empty")]
    binding: KeyContext,
}

/// Document content in an [`ObjectStore`], sealed as [`Sealing`] says.
#[derive(Debug, Clone)]
pub struct ContentStore {
    objects: ObjectStore,
    sealing: Sealing,
}

impl ContentStore {
    pub fn new(objects: ObjectStore, sealing: Sealing) -> Self {
        Self { objects, sealing }
    }

    /// Opens the configured object store and key service. `database_url`
    /// supplies the defaults for SQLite (see [`ContentConfig`]). Vault is
    /// logged in to (with its start-up retries) and every key of the
    /// policy must exist (or is created with `create_keys`), so a service
    /// that cannot seal fails at start rather than at its first write.
    pub async fn from_config(config: &ContentConfig, database_url: &str) -> Result<Self> {
        let data_dir = sqlite_dir(database_url);
        let needs_dir = |what: &str| {
            ContentError::Config(format!(
                "documents.content.{what} must be set when the database is not a SQLite file \
                 (there is no data directory to default to)"
            ))
        };
        let objects = match &config.store {
            Some(StoreConfig::Local { dir }) => ObjectStore::dir(dir)?,
            Some(StoreConfig::S3 {
                bucket,
                aws,
                force_path_style,
                provisioning,
            }) => ObjectStore::s3(bucket, aws, *force_path_style, *provisioning).await?,
            None => {
                let dir = data_dir.as_ref().ok_or_else(|| needs_dir("store"))?;
                ObjectStore::dir(&dir.join("objects"))?
            }
        };
        if let Some(kms) = &config.kms {
            if config.keys.is_some() {
                return Err(ContentError::Config(
                    "documents.content.kms and documents.content.keys are exclusive: \
                     pick one key service"
                        .into(),
                ));
            }
            let keys = KmsKeys::connect(kms).await;
            for name in config.key_policy.key_names() {
                if kms.create_keys {
                    keys.ensure_key(name).await?;
                }
                keys.key_id(name).await?;
            }
            let envelope = Arc::new(Envelope::new(Arc::new(keys), config.data_key_cache));
            return Ok(Self::new(
                objects,
                Sealing::Envelope {
                    envelope,
                    policy: Arc::new(config.key_policy.clone()),
                },
            ));
        }
        let (secrets, keys_dir) = match &config.keys {
            Some(keys) => (keys.clone(), data_dir.clone().unwrap_or_default()),
            None => {
                let dir = data_dir.ok_or_else(|| needs_dir("keys"))?;
                // Its own keystore: a keystore has one owner per process,
                // and the platform may open `<data dir>/keystore` itself.
                let own = cloudsec_secrets::SecretsConfig::Local {
                    dir: Some(dir.join("documents-keys")),
                };
                (own, dir)
            }
        };
        let secrets = Secrets::from_config(&secrets, &keys_dir).await?;
        let service = secrets.key_service(&config.transit_mount);
        if let Some(client) = secrets.vault() {
            let transit = TransitKeys::new(client.clone(), &config.transit_mount);
            for name in config.key_policy.key_names() {
                if config.create_keys {
                    transit.ensure_key(name).await?;
                }
                service.latest_version(name).await?;
            }
        }
        let envelope = Arc::new(Envelope::new(service, config.data_key_cache));
        Ok(Self::new(
            objects,
            Sealing::Envelope {
                envelope,
                policy: Arc::new(config.key_policy.clone()),
            },
        ))
    }

    /// The same objects without encryption; for benchmarks only.
    pub fn unencrypted_for_benchmarks(&self) -> Self {
        Self::new(self.objects.clone(), Sealing::Plaintext)
    }

    pub fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    /// The envelope, e.g. to rotate a key-encryption key.
    pub fn envelope(&self) -> Option<&Arc<Envelope>> {
        match &self.sealing {
            Sealing::Envelope { envelope, .. } => Some(envelope),
            Sealing::Plaintext => None,
        }
    }

    /// What rows written by this store record in `content_storage`.
    pub fn storage(&self) -> &'static str {
        match self.sealing {
            Sealing::Envelope { .. } => STORAGE_ENVELOPE,
            Sealing::Plaintext => STORAGE_PLAIN,
        }
    }

    /// The content object of a generation.
    pub fn object_key(tenant: &str, id: Uuid, generation: &str) -> String {
        format!("{}/{id}/{generation}", tenant_segment(tenant))
    }

    /// The key object of a generation.
    pub fn key_object_key(tenant: &str, id: Uuid, generation: &str) -> String {
        format!("{}{KEY_SUFFIX}", Self::object_key(tenant, id, generation))
    }

    /// Stores `plaintext` as a new generation and returns its name.
    pub async fn put(
        &self,
        tenant: &str,
        id: Uuid,
        classification: Classification,
        plaintext: &[u8],
    ) -> Result<String> {
        let generation = Uuid::new_v4().simple().to_string();
        match &self.sealing {
            Sealing::Plaintext => {
                self.objects
                    .put(
                        &Self::object_key(tenant, id, &generation),
                        plaintext.to_vec(),
                    )
                    .await?;
            }
            Sealing::Envelope { envelope, policy } => {
                let key_name = policy.key_for(classification);
                let sealed = envelope
                    .seal_bound(
                        key_name,
                        plaintext,
                        &document_context(tenant, &id.to_string()),
                        &binding(envelope, tenant, id, classification),
                    )
                    .await?;
                self.write_sealed(tenant, id, &generation, &sealed).await?;
            }
        }
        Ok(generation)
    }

    async fn write_sealed(
        &self,
        tenant: &str,
        id: Uuid,
        generation: &str,
        sealed: &Sealed,
    ) -> Result<()> {
        let content_key = Self::object_key(tenant, id, generation);
        if sealed.nonce.len() != NONCE_LEN {
            return Err(ContentError::Malformed {
                key: content_key,
                reason: format!("a nonce of {} bytes", sealed.nonce.len()),
            });
        }
        let mut body = Vec::with_capacity(1 + NONCE_LEN + sealed.ciphertext.len());
        body.push(OBJECT_FORMAT);
        body.extend_from_slice(&sealed.nonce);
        body.extend_from_slice(&sealed.ciphertext);
        let key_key = Self::key_object_key(tenant, id, generation);
        let record = key_record(sealed, &key_key)?;
        tokio::try_join!(
            self.objects.put(&content_key, body),
            self.objects.put(&key_key, record),
        )?;
        Ok(())
    }

    async fn read_sealed(&self, tenant: &str, id: Uuid, generation: &str) -> Result<Sealed> {
        let content_key = Self::object_key(tenant, id, generation);
        let key_key = Self::key_object_key(tenant, id, generation);
        let (body, record) =
            tokio::try_join!(self.objects.get(&content_key), self.objects.get(&key_key),)?;
        let body = body.ok_or_else(|| ContentError::Missing(content_key.clone()))?;
        let malformed = |key: &str, reason: &str| ContentError::Malformed {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        if body.len() < 1 + NONCE_LEN || body[0] != OBJECT_FORMAT {
            return Err(malformed(&content_key, "unknown format or too short"));
        }
        // Without its key object a generation was shredded (or its key
        // lost): the content is gone either way.
        let Some(record) = record else {
            return Err(cloudsec_secrets::Error::Shredded.into());
        };
        let record: KeyRecord =
            serde_json::from_slice(&record).map_err(|e| malformed(&key_key, &e.to_string()))?;
        Ok(Sealed {
            version: record.version,
            key_name: record.key_name,
            wrapped_key: record.wrapped_key,
            // Tenant and document come from where the content is asked
            // for; only the classification is the record's (see the
            // module doc).
            binding: if record.binding.is_empty() {
                record.binding
            } else {
                record
                    .binding
                    .with("tenant", tenant)
                    .with("document", &id.to_string())
            },
            nonce: body[1..=NONCE_LEN].to_vec(),
            ciphertext: body[1 + NONCE_LEN..].to_vec(),
        })
    }

    /// The content of a generation written as `storage`. Anything altered
    /// fails to open and is never returned.
    pub async fn get(
        &self,
        tenant: &str,
        id: Uuid,
        generation: &str,
        storage: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        match (&self.sealing, storage) {
            (Sealing::Envelope { envelope, .. }, STORAGE_ENVELOPE) => {
                let sealed = self.read_sealed(tenant, id, generation).await?;
                let context = document_context(tenant, &id.to_string());
                match envelope.open(&sealed, &context).await {
                    Ok(plain) => Ok(plain),
                    Err(error) => {
                        if matches!(error, cloudsec_secrets::Error::Decrypt) {
                            tracing::error!(
                                document_id = %id,
                                tenant,
                                generation,
                                "document content failed authentication: altered, moved or \
                                 wrapped under another key"
                            );
                        }
                        Err(error.into())
                    }
                }
            }
            (Sealing::Plaintext, STORAGE_PLAIN) => {
                let key = Self::object_key(tenant, id, generation);
                let body = self
                    .objects
                    .get(&key)
                    .await?
                    .ok_or(ContentError::Missing(key))?;
                Ok(Zeroizing::new(body))
            }
            // A row flipped to `plain` must not make an encrypting store
            // hand out ciphertext (or anything else) as content.
            (_, stored) => Err(ContentError::StorageMismatch {
                stored: stored.to_owned(),
                store: self.storage(),
            }),
        }
    }

    /// Moves a generation to the key of `classification`: a new generation
    /// when the key changes (`Envelope::rekey`), `None` when it already is
    /// that key or the store does not seal.
    pub async fn rekey(
        &self,
        tenant: &str,
        id: Uuid,
        generation: &str,
        classification: Classification,
    ) -> Result<Option<String>> {
        let Sealing::Envelope { envelope, policy } = &self.sealing else {
            return Ok(None);
        };
        let new_key = policy.key_for(classification);
        let sealed = self.read_sealed(tenant, id, generation).await?;
        if sealed.key_name == new_key {
            return Ok(None);
        }
        let context = document_context(tenant, &id.to_string());
        let moved = envelope
            .rekey_bound(
                &sealed,
                new_key,
                &context,
                &binding(envelope, tenant, id, classification),
            )
            .await?;
        let next = Uuid::new_v4().simple().to_string();
        self.write_sealed(tenant, id, &next, &moved).await?;
        Ok(Some(next))
    }

    /// Crypto-shredding: destroys the generation's wrapped key (and any
    /// cached data key), then deletes its content object. Once the key
    /// object is gone the content is unrecoverable, so a failure to delete
    /// the content object afterwards is only logged.
    pub async fn shred(&self, tenant: &str, id: Uuid, generation: &str) -> Result<()> {
        let key_key = Self::key_object_key(tenant, id, generation);
        if let Sealing::Envelope { envelope, .. } = &self.sealing
            && let Some(bytes) = self.objects.get(&key_key).await?
            && let Ok(record) = serde_json::from_slice::<KeyRecord>(&bytes)
        {
            envelope.forget(&record.key_name, &record.wrapped_key);
        }
        self.objects.delete(&key_key).await?;
        let content_key = Self::object_key(tenant, id, generation);
        if let Err(error) = self.objects.delete(&content_key).await {
            tracing::warn!(%error, key = %content_key, "shredded content object left behind");
        }
        Ok(())
    }

    /// Every generation in the object store: `(document id, generation)`
    /// with its objects and the newest modification time among them.
    /// Objects whose names do not parse (temporary files) come back with
    /// `None` as their generation, to be collected by age alone.
    pub async fn generations(&self) -> Result<Vec<StoredGeneration>> {
        let mut by_generation: std::collections::BTreeMap<
            Option<(Uuid, String)>,
            StoredGeneration,
        > = std::collections::BTreeMap::new();
        for (key, modified) in self.objects.list().await? {
            let parsed = parse_object_key(&key);
            let entry = by_generation
                .entry(parsed.clone())
                .or_insert_with(|| StoredGeneration {
                    document: parsed,
                    objects: Vec::new(),
                    modified,
                });
            entry.modified = entry.modified.max(modified);
            entry.objects.push(key);
        }
        Ok(by_generation.into_values().collect())
    }

    /// Deletes the objects of a generation no row points to: the key
    /// object first (overwritten first on a directory), so that even if
    /// the content object survives a failure it can no longer be opened.
    pub async fn delete_objects(&self, objects: &[String]) -> Result<()> {
        let (keys, rest): (Vec<&String>, Vec<&String>) =
            objects.iter().partition(|k| k.ends_with(KEY_SUFFIX));
        for key in keys.into_iter().chain(rest) {
            self.objects.delete(key).await?;
        }
        Ok(())
    }

    /// Re-wraps a generation's data key under its key's latest version, in
    /// place (the data key is unchanged, so the old and the new key object
    /// both open the content and a torn write loses nothing).
    pub async fn rewrap(&self, tenant: &str, id: Uuid, generation: &str) -> Result<bool> {
        let Sealing::Envelope { envelope, .. } = &self.sealing else {
            return Ok(false);
        };
        let mut sealed = self.read_sealed(tenant, id, generation).await?;
        if !envelope.rewrap(&mut sealed).await? {
            return Ok(false);
        }
        let key_key = Self::key_object_key(tenant, id, generation);
        let record = key_record(&sealed, &key_key)?;
        self.objects.put(&key_key, record).await?;
        Ok(true)
    }
}

/// A generation found in the object store (see
/// [`ContentStore::generations`]).
#[derive(Debug, Clone)]
pub struct StoredGeneration {
    /// `None` for objects that are not part of a generation.
    pub document: Option<(Uuid, String)>,
    pub objects: Vec<String>,
    pub modified: std::time::SystemTime,
}

/// `<tenant>/<id>/<generation>[.key]` → `(id, generation)`.
fn parse_object_key(key: &str) -> Option<(Uuid, String)> {
    let mut parts = key.split('/');
    let (_tenant, id, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let generation = name.strip_suffix(KEY_SUFFIX).unwrap_or(name);
    if generation.len() != 32 || !generation.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((Uuid::parse_str(id).ok()?, generation.to_owned()))
}

fn key_record(sealed: &Sealed, key: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(&KeyRecord {
        version: sealed.version,
        key_name: sealed.key_name.clone(),
        wrapped_key: sealed.wrapped_key.clone(),
        binding: sealed.binding.clone(),
    })
    .map_err(|e| ContentError::Malformed {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// What a document's data key is bound to at the key service: nothing for
/// services that cannot bind (their records keep the old format).
fn binding(envelope: &Envelope, tenant: &str, id: Uuid, class: Classification) -> KeyContext {
    if envelope.keys().binds_context() {
        KeyContext::document(tenant, &id.to_string(), class.key_label())
    } else {
        KeyContext::default()
    }
}

/// A tenant as one safe path segment (see the module doc).
fn tenant_segment(tenant: &str) -> String {
    let plain = !tenant.is_empty()
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        return tenant.to_owned();
    }
    let mut out = String::with_capacity(1 + 2 * tenant.len());
    out.push('~');
    for b in tenant.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The directory of a `sqlite://` database file, if it is one.
fn sqlite_dir(database_url: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return None;
    }
    let parent = Path::new(path).parent()?;
    Some(if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_cannot_escape_or_collide() {
        assert_eq!(tenant_segment("acme"), "acme");
        assert_eq!(tenant_segment("../x"), "~2e2e2f78");
        assert_eq!(tenant_segment(""), "~");
        assert_ne!(tenant_segment("~61"), tenant_segment("a"));
        let id = Uuid::nil();
        assert_eq!(
            ContentStore::key_object_key("acme", id, "g1"),
            format!("acme/{id}/g1.key")
        );
    }

    #[test]
    fn sqlite_urls_give_their_directory() {
        assert_eq!(
            sqlite_dir("sqlite:///var/lib/cloudsec/documents.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/cloudsec"))
        );
        assert_eq!(
            sqlite_dir("sqlite://documents.db"),
            Some(PathBuf::from("."))
        );
        assert_eq!(sqlite_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_dir("postgres://db/documents"), None);
    }
}
