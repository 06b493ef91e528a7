//! [`KmsKeys`]: data keys from AWS KMS. Each key name (documents'
//! key policy names one per classification) is a KMS alias (`<alias_prefix><name>`, by default
//! `alias/cloudsec-docs-public`) on a symmetric key that never leaves KMS.
//!
//! - `GenerateDataKey` makes a data key bound to its [`KeyContext`] (the
//!   encryption context: tenant, document, classification), `Decrypt`
//!   unwraps it only under the same context and the same key, so a key
//!   record copied to another document is refused by KMS itself, and
//!   every use is logged by CloudTrail with the document it was for.
//! - Rotation is `RotateKeyOnDemand`: the key id and alias stay, KMS keeps
//!   every backing version and picks the right one to decrypt. A wrapped
//!   key is `kms:v<N>:<base64 ciphertext blob>`, where N is the key's
//!   version when it was wrapped (1 + its rotations, as `ListKeyRotations`
//!   counts them), so the envelope's rewrap job can tell old from new;
//!   rewrap is `ReEncrypt` to the same alias under the same context, which
//!   never shows the data key to the service.
//! - Like transit, KMS keeps no copy of data keys: deleting a wrapped key
//!   shreds the content.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeySpec, KeyUsageType};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use tokio::time::Instant;

use crate::envelope::{DataKey, KeyContext, KeyService, key_version};
use crate::error::{Error, Result};

const PREFIX: &str = "kms";

/// How long a key's latest version is trusted before it is asked again:
/// a rotation made elsewhere (or KMS's yearly automatic one) is noticed
/// within this time, and is harmless meanwhile (the label is only used to
/// decide what the rewrap job re-wraps).
const VERSION_TTL: Duration = Duration::from_secs(60);

/// The `kms` key-service section, e.g. `[documents.content.kms]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// `region`, `endpoint_url` (moto, LocalStack) and
    /// `dummy_credentials`, in this section itself.
    #[serde(flatten)]
    pub aws: cloudsec_runtime::aws::AwsSettings,
    /// Key names become aliases `<alias_prefix><name>`.
    #[serde(default = "default_alias_prefix")]
    pub alias_prefix: String,
    /// Create a missing key and its alias at start (development; the
    /// production policy does not allow `kms:CreateKey`). Otherwise every
    /// key must exist, which is checked at start.
    #[serde(default)]
    pub create_keys: bool,
    /// The longest one KMS call may take, retries included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            aws: cloudsec_runtime::aws::AwsSettings::default(),
            alias_prefix: default_alias_prefix(),
            create_keys: false,
            request_timeout: default_timeout(),
        }
    }
}

fn default_alias_prefix() -> String {
    "alias/cloudsec-".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// AWS KMS as a [`KeyService`] (see the module doc).
#[derive(Debug)]
pub struct KmsKeys {
    client: aws_sdk_kms::Client,
    alias_prefix: String,
    /// Latest version per key name, with when it was read.
    versions: Mutex<HashMap<String, (u32, Instant)>>,
}

impl KmsKeys {
    /// A client for `config`; reaches nothing yet.
    pub async fn connect(config: &KmsConfig) -> Self {
        let sdk =
            cloudsec_runtime::aws::sdk_config(&config.aws, Some(config.request_timeout)).await;
        Self::new(aws_sdk_kms::Client::new(&sdk), &config.alias_prefix)
    }

    pub fn new(client: aws_sdk_kms::Client, alias_prefix: &str) -> Self {
        Self {
            client,
            alias_prefix: alias_prefix.to_owned(),
            versions: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &aws_sdk_kms::Client {
        &self.client
    }

    /// The alias of a key name.
    pub fn alias(&self, key_name: &str) -> String {
        format!("{}{key_name}", self.alias_prefix)
    }

    /// Creates a symmetric key and its alias unless the alias exists; for
    /// development set-up.
    pub async fn ensure_key(&self, key_name: &str) -> Result<()> {
        self.ensure(
            key_name,
            KeySpec::SymmetricDefault,
            KeyUsageType::EncryptDecrypt,
        )
        .await
    }

    /// Creates a key of `spec` and `usage` under `key_name`'s alias unless
    /// the alias exists.
    pub async fn ensure(&self, key_name: &str, spec: KeySpec, usage: KeyUsageType) -> Result<()> {
        match self.key_id(key_name).await {
            Ok(_) => return Ok(()),
            Err(Error::UnknownKey(_)) => {}
            Err(other) => return Err(other),
        }
        let alias = self.alias(key_name);
        let created = self
            .client
            .create_key()
            .key_spec(spec)
            .key_usage(usage)
            .description(format!("cloudsec {key_name}"))
            .send()
            .await
            .map_err(|e| kms_error("CreateKey", key_name, e))?;
        let key_id = created
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .ok_or_else(|| Error::Malformed("CreateKey returned no key id".into()))?;
        match self
            .client
            .create_alias()
            .alias_name(&alias)
            .target_key_id(&key_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another replica created it first: its key is the one in use;
            // ours is scheduled for deletion so it does not linger.
            Err(e) if e.code() == Some("AlreadyExistsException") => {
                let _ = self
                    .client
                    .schedule_key_deletion()
                    .key_id(&key_id)
                    .pending_window_in_days(7)
                    .send()
                    .await;
                Ok(())
            }
            Err(e) => Err(kms_error("CreateAlias", key_name, e)),
        }
    }

    /// The key id behind `key_name`'s alias.
    pub async fn key_id(&self, key_name: &str) -> Result<String> {
        let described = self
            .client
            .describe_key()
            .key_id(self.alias(key_name))
            .send()
            .await
            .map_err(|e| kms_error("DescribeKey", key_name, e))?;
        described
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .ok_or_else(|| Error::Malformed("DescribeKey returned no key metadata".into()))
    }

    async fn version_now(&self, key_name: &str) -> Result<u32> {
        if let Some((version, read)) = lock(&self.versions).get(key_name)
            && read.elapsed() < VERSION_TTL
        {
            return Ok(*version);
        }
        self.latest_version(key_name).await
    }

    fn label(version: u32, blob: &[u8]) -> String {
        format!("{PREFIX}:v{version}:{}", B64.encode(blob))
    }

    fn blob(wrapped: &str) -> Result<Vec<u8>> {
        key_version(wrapped)
            .filter(|_| wrapped.starts_with("kms:"))
            .ok_or_else(|| Error::Malformed("not a kms wrapped key".into()))?;
        wrapped
            .splitn(3, ':')
            .nth(2)
            .and_then(|b| B64.decode(b).ok())
            .ok_or_else(|| Error::Malformed("the wrapped key is not base64".into()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn context_map(context: &KeyContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

/// The `what` blob of `operation`'s answer, which KMS always sends: without
/// it the answer is malformed.
fn returned<'a>(blob: Option<&'a Blob>, operation: &str, what: &str) -> Result<&'a [u8]> {
    blob.map(Blob::as_ref)
        .ok_or_else(|| Error::Malformed(format!("{operation} returned no {what}")))
}

/// One translation of SDK errors: a refusal keeps KMS's code and message
/// (never a payload), anything that did not get an answer is unavailable.
pub(crate) fn kms_error<E, R>(operation: &str, key_name: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    use cloudsec_runtime::aws::{Failure, classify};
    if let SdkError::ServiceError(service) = &err {
        match service.err().code() {
            // The blob was altered, belongs to another key, or the
            // encryption context differs: KMS does not say which.
            Some("InvalidCiphertextException" | "IncorrectKeyException") => return Error::Decrypt,
            Some("NotFoundException") => return Error::UnknownKey(key_name.to_owned()),
            _ => {}
        }
    }
    let operation = format!("{operation} {key_name}");
    // A disabled key (KMSInvalidStateException) is a refusal, not a fault
    // that retrying fixes.
    const TRANSIENT: &[&str] = &[
        "KMSInternalException",
        "DependencyTimeoutException",
        "ThrottlingException",
    ];
    match classify(&err, TRANSIENT) {
        Failure::Unavailable { reason } => Error::KmsUnavailable { operation, reason },
        Failure::Refused { code, message } => Error::Kms {
            operation,
            code,
            message,
        },
    }
}

#[async_trait::async_trait]
impl KeyService for KmsKeys {
    fn binds_context(&self) -> bool {
        true
    }

    async fn generate_data_key(&self, key_name: &str) -> Result<(DataKey, String)> {
        self.generate_data_key_bound(key_name, &KeyContext::default())
            .await
    }

    async fn wrap(&self, key_name: &str, key: &DataKey) -> Result<String> {
        self.wrap_bound(key_name, key, &KeyContext::default()).await
    }

    async fn unwrap(&self, key_name: &str, wrapped: &str) -> Result<DataKey> {
        self.unwrap_bound(key_name, wrapped, &KeyContext::default())
            .await
    }

    async fn rewrap(&self, key_name: &str, wrapped: &str) -> Result<String> {
        self.rewrap_bound(key_name, wrapped, &KeyContext::default())
            .await
    }

    async fn generate_data_key_bound(
        &self,
        key_name: &str,
        context: &KeyContext,
    ) -> Result<(DataKey, String)> {
        let version = self.version_now(key_name).await?;
        let made = self
            .client
            .generate_data_key()
            .key_id(self.alias(key_name))
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", key_name, e))?;
        let plaintext = returned(made.plaintext(), "GenerateDataKey", "plaintext")?;
        let blob = returned(made.ciphertext_blob(), "GenerateDataKey", "ciphertext")?;
        Ok((DataKey::from_slice(plaintext)?, Self::label(version, blob)))
    }

    async fn wrap_bound(
        &self,
        key_name: &str,
        key: &DataKey,
        context: &KeyContext,
    ) -> Result<String> {
        let version = self.version_now(key_name).await?;
        let made = self
            .client
            .encrypt()
            .key_id(self.alias(key_name))
            .plaintext(Blob::new(key.expose()))
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| kms_error("Encrypt", key_name, e))?;
        let blob = returned(made.ciphertext_blob(), "Encrypt", "ciphertext")?;
        Ok(Self::label(version, blob))
    }

    async fn unwrap_bound(
        &self,
        key_name: &str,
        wrapped: &str,
        context: &KeyContext,
    ) -> Result<DataKey> {
        let blob = Self::blob(wrapped)?;
        let opened = self
            .client
            .decrypt()
            // Naming the key makes KMS refuse a blob of another key, as
            // transit does for a wrapped key of another name.
            .key_id(self.alias(key_name))
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", key_name, e))?;
        DataKey::from_slice(returned(opened.plaintext(), "Decrypt", "plaintext")?)
    }

    async fn rewrap_bound(
        &self,
        key_name: &str,
        wrapped: &str,
        context: &KeyContext,
    ) -> Result<String> {
        let blob = Self::blob(wrapped)?;
        let version = self.latest_version(key_name).await?;
        let alias = self.alias(key_name);
        let made = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(blob))
            .source_key_id(&alias)
            .set_source_encryption_context(context_map(context))
            .destination_key_id(&alias)
            .set_destination_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| kms_error("ReEncrypt", key_name, e))?;
        let blob = returned(made.ciphertext_blob(), "ReEncrypt", "ciphertext")?;
        Ok(Self::label(version, blob))
    }

    async fn rotate(&self, key_name: &str) -> Result<u32> {
        let key_id = self.key_id(key_name).await?;
        self.client
            .rotate_key_on_demand()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|e| kms_error("RotateKeyOnDemand", key_name, e))?;
        self.latest_version(key_name).await
    }

    async fn latest_version(&self, key_name: &str) -> Result<u32> {
        let key_id = self.key_id(key_name).await?;
        let mut rotations: u32 = 0;
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_key_rotations()
                .key_id(&key_id)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| kms_error("ListKeyRotations", key_name, e))?;
            let count = u32::try_from(page.rotations().len()).unwrap_or(u32::MAX);
            rotations = rotations.saturating_add(count);
            match page.next_marker() {
                Some(next) if page.truncated() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        let version = rotations.saturating_add(1);
        lock(&self.versions).insert(key_name.to_owned(), (version, Instant::now()));
        Ok(version)
    }
}
