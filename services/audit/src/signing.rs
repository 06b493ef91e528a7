//! Signed chain heads (`[audit.signing]`).
//!
//! The hash chain shows a changed or deleted record, but whoever can write
//! the store can rewrite a whole tail consistently, head included. So each
//! record, as it becomes the head, is signed with a key the store's
//! writers do not hold: the signature covers
//!
//! ```text
//! "cloudsec.audit.v1.head\0" || for f in (tenant, seq, hash): u64_be(len(f)) || f
//! ```
//!
//! and `hash` covers every field and the link to the record before, so a
//! valid signature on record N vouches for the chain up to N. Verification
//! checks every record's signature and reports the first missing or bad
//! one. With signing configured, every record of the log must be signed:
//! turn it on for a new log (or accept that older records report unsigned).
//!
//! Keys: [`KmsSigner`] (an asymmetric ECC P-256 KMS key, `Sign` and
//! `Verify` with ECDSA SHA-256: the key never leaves KMS),
//! [`TransitSigner`] (an asymmetric Vault transit key, `sign` and
//! `verify`: the key never leaves Vault) or [`LocalSigner`] (an Ed25519
//! key in a file of its own, outside the audit database, for
//! `cloudsec up`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::chain::{AuditRecord, ChainCheck};
use crate::error::{AuditError, Result};

const DOMAIN: &[u8] = b"cloudsec.audit.v1.head\0";

/// What is signed for the head `(tenant, seq, hash)`.
pub fn head_message(tenant: &str, seq: i64, hash: &str) -> Vec<u8> {
    let seq = seq.to_string();
    let mut out = DOMAIN.to_vec();
    for field in [tenant, &seq, hash] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// Checks `record`'s head signature against `signer`, recording a fault
/// in `check` when it is missing or bad; `true` when it is fine (or
/// signing is off).
pub async fn check_signature(
    signer: Option<&dyn HeadSigner>,
    check: &mut ChainCheck,
    record: &AuditRecord,
    signature: Option<&str>,
) -> Result<bool> {
    let Some(signer) = signer else {
        return Ok(true);
    };
    let message = head_message(&record.tenant, record.seq, &record.hash);
    let reason = match signature {
        None => format!("record {} has no head signature", record.seq),
        Some(signature) if signer.verify(&message, signature).await? => return Ok(true),
        Some(_) => format!("the head signature of record {} is not valid", record.seq),
    };
    check.fail(record.seq, reason);
    Ok(false)
}

/// The `[audit.signing]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum SigningConfig {
    /// An Ed25519 key in `key_file` (PKCS#8), created if missing.
    Local { key_file: PathBuf },
    /// An asymmetric KMS key (`ECC_NIST_P256`, `SIGN_VERIFY`).
    Kms {
        /// Alias or ARN, e.g. `alias/cloudsec-prod-audit-signing`.
        key: String,
        /// `region`, `endpoint_url` and `dummy_credentials`, in this
        /// section itself.
        #[serde(flatten)]
        aws: cloudsec_runtime::aws::AwsSettings,
        /// Create the key and its alias when missing (development).
        #[serde(default)]
        create_key: bool,
    },
    /// An asymmetric Vault transit key, through the platform's
    /// `[secrets]` Vault connection.
    Transit {
        /// The transit key's name.
        #[serde(default = "default_transit_key")]
        key: String,
        #[serde(default = "default_transit_mount")]
        mount: String,
        /// Create an `ed25519` key when missing (development; the audit
        /// policy of deploy/vault grants only sign, verify and read).
        #[serde(default)]
        create_key: bool,
    },
}

fn default_transit_key() -> String {
    "cloudsec-audit-signing".into()
}

fn default_transit_mount() -> String {
    "transit".into()
}

impl SigningConfig {
    /// Whether this signer needs the platform's Vault connection.
    pub fn needs_vault(&self) -> bool {
        matches!(self, Self::Transit { .. })
    }
}

/// Signs heads and checks signatures.
#[async_trait::async_trait]
pub trait HeadSigner: Send + Sync + std::fmt::Debug {
    /// `<scheme>:<base64 signature>` of `message`.
    async fn sign(&self, message: &[u8]) -> Result<String>;
    /// Whether `signature` (as [`sign`](Self::sign) made it) is valid.
    async fn verify(&self, message: &[u8], signature: &str) -> Result<bool>;
}

/// The signer a configuration names; `vault` is the platform's Vault
/// connection, which the transit signer needs.
pub async fn from_config(
    config: &SigningConfig,
    vault: Option<&cloudsec_secrets::VaultClient>,
) -> Result<std::sync::Arc<dyn HeadSigner>> {
    Ok(match config {
        SigningConfig::Local { key_file } => std::sync::Arc::new(LocalSigner::open(key_file)?),
        SigningConfig::Transit {
            key,
            mount,
            create_key,
        } => {
            let client = vault.ok_or_else(|| {
                AuditError::Signing(
                    "audit.signing backend = \"transit\" needs a [secrets] section with \
                     backend = \"vault\""
                        .into(),
                )
            })?;
            let signer = TransitSigner::new(
                cloudsec_secrets::TransitKeys::new(client.clone(), mount.as_str()),
                key,
            );
            if *create_key {
                signer.ensure_key().await?;
            }
            signer.check().await?;
            std::sync::Arc::new(signer)
        }
        SigningConfig::Kms {
            key,
            aws,
            create_key,
        } => {
            let sdk = cloudsec_runtime::aws::sdk_config(aws, Some(Duration::from_secs(5))).await;
            let signer = KmsSigner::new(aws_sdk_kms::Client::new(&sdk), key);
            if *create_key {
                signer.ensure_key().await?;
            }
            signer.check().await?;
            std::sync::Arc::new(signer)
        }
    })
}

fn split<'a>(signature: &'a str, scheme: &str) -> Option<Vec<u8>> {
    let body: &'a str = signature.strip_prefix(scheme)?.strip_prefix(':')?;
    B64.decode(body).ok()
}

/// An Ed25519 key kept in a file (see the module doc).
pub struct LocalSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalSigner(***)")
    }
}

impl LocalSigner {
    /// Reads the key in `path`, or makes one there (mode 0600).
    pub fn open(path: &Path) -> Result<Self> {
        let fail = |reason: String| AuditError::Signing(format!("{}: {reason}", path.display()));
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                    .map_err(|_| fail("cannot generate a key".into()))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
                }
                write_private(path, doc.as_ref()).map_err(|e| fail(e.to_string()))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| fail("not an Ed25519 PKCS#8 key".into()))?;
        Ok(Self { key })
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[async_trait::async_trait]
impl HeadSigner for LocalSigner {
    async fn sign(&self, message: &[u8]) -> Result<String> {
        Ok(format!(
            "ed25519:{}",
            B64.encode(self.key.sign(message).as_ref())
        ))
    }

    async fn verify(&self, message: &[u8], signature: &str) -> Result<bool> {
        let Some(bytes) = split(signature, "ed25519") else {
            return Ok(false);
        };
        let public = UnparsedPublicKey::new(&ED25519, self.key.public_key().as_ref());
        Ok(public.verify(message, &bytes).is_ok())
    }
}

/// An asymmetric KMS key (see the module doc).
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key: String,
}

impl KmsSigner {
    pub fn new(client: aws_sdk_kms::Client, key: &str) -> Self {
        Self {
            client,
            key: key.to_owned(),
        }
    }

    /// Fails unless the key exists and is reachable. `GetPublicKey`, not
    /// `DescribeKey`: the audit policy grants the former (to check
    /// signatures) and nothing more than it needs.
    pub async fn check(&self) -> Result<()> {
        self.client
            .get_public_key()
            .key_id(&self.key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| kms_error("GetPublicKey", &self.key, e))
    }

    /// Creates the key and, for an `alias/...` name, its alias, unless the
    /// key exists.
    pub async fn ensure_key(&self) -> Result<()> {
        if self.check().await.is_ok() {
            return Ok(());
        }
        let created = self
            .client
            .create_key()
            .key_spec(KeySpec::EccNistP256)
            .key_usage(KeyUsageType::SignVerify)
            .description("cloudsec audit chain heads")
            .send()
            .await
            .map_err(|e| kms_error("CreateKey", &self.key, e))?;
        let id = created
            .key_metadata()
            .map(|m| m.key_id().to_owned())
            .ok_or_else(|| AuditError::Signing("CreateKey returned no key id".into()))?;
        if self.key.starts_with("alias/") {
            self.client
                .create_alias()
                .alias_name(&self.key)
                .target_key_id(id)
                .send()
                .await
                .map_err(|e| kms_error("CreateAlias", &self.key, e))?;
        }
        Ok(())
    }
}

fn kms_error<E, R>(operation: &str, key: &str, err: SdkError<E, R>) -> AuditError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => AuditError::Signing(format!(
            "kms refused {operation} {key}: {}: {}",
            service.err().code().unwrap_or("Unknown"),
            service.err().message().unwrap_or_default()
        )),
        _ => AuditError::SigningUnavailable(format!("kms {operation} {key}")),
    }
}

#[async_trait::async_trait]
impl HeadSigner for KmsSigner {
    async fn sign(&self, message: &[u8]) -> Result<String> {
        let signed = self
            .client
            .sign()
            .key_id(&self.key)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| kms_error("Sign", &self.key, e))?;
        let signature = signed
            .signature()
            .ok_or_else(|| AuditError::Signing("Sign returned no signature".into()))?;
        Ok(format!("kms:{}", B64.encode(signature.as_ref())))
    }

    async fn verify(&self, message: &[u8], signature: &str) -> Result<bool> {
        let Some(bytes) = split(signature, "kms") else {
            return Ok(false);
        };
        let checked = self
            .client
            .verify()
            .key_id(&self.key)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .signature(Blob::new(bytes))
            .send()
            .await;
        match checked {
            Ok(answer) => Ok(answer.signature_valid()),
            // KMS answers a bad signature with an error, not `false`.
            Err(e) if e.code() == Some("KMSInvalidSignatureException") => Ok(false),
            Err(e) => Err(kms_error("Verify", &self.key, e)),
        }
    }
}

/// An asymmetric Vault transit key (see the module doc).
#[derive(Debug, Clone)]
pub struct TransitSigner {
    transit: cloudsec_secrets::TransitKeys,
    key: String,
}

impl TransitSigner {
    pub fn new(transit: cloudsec_secrets::TransitKeys, key: &str) -> Self {
        Self {
            transit,
            key: key.to_owned(),
        }
    }

    /// Fails unless the key exists, can sign and Vault is reachable.
    pub async fn check(&self) -> Result<()> {
        self.transit
            .check_signing_key(&self.key)
            .await
            .map_err(|e| self.error("read", e))
    }

    /// Creates an `ed25519` key unless one of that name exists.
    pub async fn ensure_key(&self) -> Result<()> {
        self.transit
            .ensure_signing_key(&self.key, "ed25519")
            .await
            .map_err(|e| self.error("create", e))
    }

    fn error(&self, operation: &str, e: cloudsec_secrets::Error) -> AuditError {
        let what = format!(
            "vault transit {operation} {}/{}: {e}",
            self.transit.mount(),
            self.key
        );
        if e.is_unavailable() {
            AuditError::SigningUnavailable(what)
        } else {
            AuditError::Signing(what)
        }
    }
}

#[async_trait::async_trait]
impl HeadSigner for TransitSigner {
    async fn sign(&self, message: &[u8]) -> Result<String> {
        let signature = self
            .transit
            .sign(&self.key, message)
            .await
            .map_err(|e| self.error("sign", e))?;
        // Vault's own `vault:v<N>:...` follows the scheme, so the key
        // version that signed stays visible and verifiable after rotation.
        Ok(format!("transit:{signature}"))
    }

    async fn verify(&self, message: &[u8], signature: &str) -> Result<bool> {
        let Some(vault_signature) = signature.strip_prefix("transit:") else {
            return Ok(false);
        };
        self.transit
            .verify(&self.key, message, vault_signature)
            .await
            .map_err(|e| self.error("verify", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_signatures_verify_and_forgeries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit-signing.pk8");
        let signer = LocalSigner::open(&path).unwrap();
        let message = head_message("acme", 3, "abc");
        let signature = signer.sign(&message).await.unwrap();
        assert!(signer.verify(&message, &signature).await.unwrap());
        // The same key after a restart.
        let again = LocalSigner::open(&path).unwrap();
        assert!(again.verify(&message, &signature).await.unwrap());
        // Another head, another key, a mangled or foreign signature: no.
        let other = head_message("acme", 4, "abc");
        assert!(!signer.verify(&other, &signature).await.unwrap());
        let stranger = LocalSigner::open(&dir.path().join("other.pk8")).unwrap();
        let forged = stranger.sign(&message).await.unwrap();
        assert!(!signer.verify(&message, &forged).await.unwrap());
        assert!(!signer.verify(&message, "ed25519:AAAA").await.unwrap());
        assert!(!signer.verify(&message, "kms:AAAA").await.unwrap());
        assert!(!signer.verify(&message, "").await.unwrap());
        // Length prefixes keep fields apart.
        assert_ne!(head_message("ab", 1, "c"), head_message("a", 1, "bc"));
        // A file that is not a key is a clear error.
        std::fs::write(dir.path().join("junk"), b"junk").unwrap();
        assert!(LocalSigner::open(&dir.path().join("junk")).is_err());
    }
}
