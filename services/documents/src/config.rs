//! The documents service's configuration, as read from the `[documents]`
//! section of the platform file and `CLOUDSEC__DOCUMENTS__...` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cloudsec_bus::Provisioning;
use cloudsec_runtime::Secret;
use cloudsec_runtime::config::{default_shutdown_grace, loopback};
use cloudsec_runtime::tls::TlsFiles;
use cloudsec_secrets::{DataKeyCacheConfig, KmsConfig, SecretsConfig};
use serde::Deserialize;

use crate::domain::Classification;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsConfig {
    #[serde(default = "loopback::<7002>")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "loopback::<9102>")]
    pub admin_listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: cloudsec_runtime::db::DatabaseUrl,
    /// The HMAC key that makes page tokens unforgeable; at least
    /// [`MIN_KEY_BYTES`](cloudsec_runtime::page_token::MIN_KEY_BYTES) bytes.
    pub page_token_key: Secret,
    /// The workload certificate, used by the CLI in serve mode.
    pub tls: Option<TlsFiles>,
    /// How long calls in flight may finish after shutdown starts.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where document content goes and which keys seal it.
    #[serde(default)]
    pub content: ContentConfig,
    /// Members of this group (the access token's `cognito:groups`) and
    /// tenant admins see and handle `RESTRICTED` documents; to everyone
    /// else they do not exist.
    #[serde(default = "default_restricted_group")]
    pub restricted_group: String,
}

/// The group whose members see restricted documents, unless configured.
pub const DEFAULT_RESTRICTED_GROUP: &str = "restricted";

fn default_restricted_group() -> String {
    DEFAULT_RESTRICTED_GROUP.into()
}

/// The `[documents.content]` section. Everything is optional: with a
/// SQLite database, objects default to `<database dir>/objects` and keys to
/// the local keystore in `<database dir>/documents-keys`; with any other
/// database, `store` and `keys` must be given (there is no data directory
/// to default to, and a server should not guess where ciphertext lives).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContentConfig {
    pub store: Option<StoreConfig>,
    /// The key service: `backend = "local"` (the embedded keystore) or
    /// `backend = "vault"` (transit), as in a `[secrets]` section.
    pub keys: Option<SecretsConfig>,
    /// AWS KMS as the key service instead of `keys`: each key name of
    /// `key_policy` is the alias `<alias_prefix><name>`, and every data key
    /// is bound to its tenant, document and classification (see
    /// `cloudsec_secrets::kms`). Keys must exist unless `create_keys`.
    pub kms: Option<KmsConfig>,
    /// Where transit is mounted (Vault only).
    pub transit_mount: String,
    /// Create the policy's transit keys at start if missing (development;
    /// the production policy does not allow it). Otherwise every key must
    /// exist, which is checked at start.
    pub create_keys: bool,
    /// The key-encryption key of each classification.
    pub key_policy: KeyPolicy,
    /// Bounds on keeping plaintext data keys in memory; by default 16
    /// single-use data keys per key are made ahead, so a create does not
    /// wait for Vault.
    pub data_key_cache: DataKeyCacheConfig,
    /// How often the service re-wraps data keys under their key's latest
    /// version and deletes orphan generations; `"0s"` turns the job off
    /// (`cloudsec maintain documents` runs it by hand).
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: std::time::Duration,
    /// How old an unreferenced generation must be before it is deleted, so
    /// that a write still in flight keeps its objects.
    #[serde(with = "humantime_serde")]
    pub orphan_grace: std::time::Duration,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            store: None,
            keys: None,
            kms: None,
            transit_mount: "transit".into(),
            create_keys: false,
            key_policy: KeyPolicy::default(),
            data_key_cache: default_data_key_cache(),
            maintenance_interval: std::time::Duration::from_secs(6 * 3600),
            orphan_grace: std::time::Duration::from_secs(3600),
        }
    }
}

fn default_data_key_cache() -> DataKeyCacheConfig {
    DataKeyCacheConfig {
        prefetch: 16,
        ..DataKeyCacheConfig::default()
    }
}

/// The object store that holds document content.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// A directory on the local file system.
    Local { dir: PathBuf },
    /// An S3 bucket (or an S3-compatible server such as moto or MinIO).
    S3 {
        bucket: String,
        /// `region`, `endpoint_url` (moto, MinIO) and `dummy_credentials`,
        /// in this section itself.
        #[serde(flatten)]
        aws: cloudsec_bus::transport::aws::AwsSettings,
        /// `http://host/bucket/key` instead of `http://bucket.host/key`;
        /// emulators need it.
        #[serde(default)]
        force_path_style: bool,
        /// `create` makes the bucket at start; `existing` only checks it.
        #[serde(default)]
        provisioning: Provisioning,
    },
}

/// Which key-encryption key protects each classification. Separate keys
/// let policies grant a service the public key but not the restricted one,
/// and let a classification's key be rotated or retired on its own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyPolicy {
    pub public: String,
    pub internal: String,
    pub confidential: String,
    pub restricted: String,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            public: "docs-public".into(),
            internal: "docs-internal".into(),
            confidential: "docs-confidential".into(),
            restricted: "docs-restricted".into(),
        }
    }
}

impl KeyPolicy {
    pub fn key_for(&self, classification: Classification) -> &str {
        match classification {
            Classification::Public => &self.public,
            Classification::Internal => &self.internal,
            Classification::Confidential => &self.confidential,
            Classification::Restricted => &self.restricted,
        }
    }

    /// Every key name, e.g. to create them at start.
    pub fn key_names(&self) -> [&str; 4] {
        Classification::ALL.map(|c| self.key_for(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn key_policy_maps_classifications() {
        let policy: KeyPolicy = cloudsec_runtime::config::load(
            Some("restricted = \"docs-restricted-v2\"\n"),
            &BTreeMap::new(),
        )
        .expect("policy");
        assert_eq!(
            policy.key_for(Classification::Restricted),
            "docs-restricted-v2"
        );
        assert_eq!(policy.key_for(Classification::Public), "docs-public");
        let err =
            cloudsec_runtime::config::load::<KeyPolicy>(Some("secret = \"x\"\n"), &BTreeMap::new())
                .expect_err("unknown key");
        assert_eq!(err.key, "secret");
        // The binding's names are stored with every KMS-wrapped key.
        assert_eq!(
            Classification::ALL.map(Classification::key_label),
            ["public", "internal", "confidential", "restricted"]
        );
    }

    #[test]
    fn defaults_apply_and_unknown_keys_are_refused() {
        let config: DocumentsConfig = cloudsec_runtime::config::load(
            Some("database_url = \"sqlite://x.db\"\npage_token_key = \"k\"\n"),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(config.grpc_listen, loopback::<7002>());
        assert_eq!(config.admin_listen.port(), 9102);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert!(config.tls.is_none());
        assert!(config.content.store.is_none() && config.content.keys.is_none());
        assert_eq!(config.content.transit_mount, "transit");
        assert!(!format!("{config:?}").contains("sqlite://x.db"));

        let err = cloudsec_runtime::config::load::<DocumentsConfig>(
            Some("database_url = \"x\"\npage_token_key = \"k\"\nport = 1\n"),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.key, "port");
    }

    #[test]
    fn grace_reads_humantime() {
        let config: DocumentsConfig = cloudsec_runtime::config::load(
            Some("database_url = \"x\"\npage_token_key = \"k\"\nshutdown_grace = \"3s\"\n"),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(config.shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn content_section_parses_and_refuses_unknown_keys() {
        let config: DocumentsConfig = cloudsec_runtime::config::load(
            Some(
                "database_url = \"x\"\npage_token_key = \"k\"\n\
                 [content]\nkey_policy = { restricted = \"docs-top\" }\n\
                 data_key_cache = { max_entries = 0 }\n\
                 [content.store]\nbackend = \"s3\"\nbucket = \"docs\"\nregion = \"us-east-1\"\n\
                 endpoint_url = \"http://127.0.0.1:5000\"\nforce_path_style = true\nprovisioning = \"existing\"\n\
                 [content.keys]\nbackend = \"local\"\ndir = \"/tmp/keys\"\n",
            ),
            &BTreeMap::new(),
        )
        .unwrap();
        match &config.content.store {
            Some(StoreConfig::S3 {
                bucket,
                aws,
                force_path_style,
                provisioning,
            }) => {
                assert_eq!(bucket, "docs");
                assert_eq!(aws.region.as_deref(), Some("us-east-1"));
                assert_eq!(aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
                assert!(!aws.dummy_credentials);
                assert!(*force_path_style);
                assert_eq!(*provisioning, Provisioning::Existing);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(config.content.key_policy.restricted, "docs-top");
        assert_eq!(config.content.key_policy.public, "docs-public");
        assert_eq!(config.content.data_key_cache.max_entries, 0);
        assert_eq!(config.content.data_key_cache.max_uses, 1);

        for bad in [
            "[content]\nencrypt = false\n",
            "[content.store]\nbackend = \"local\"\ndir = \"/x\"\nbucket = \"b\"\n",
            "[content.store]\nbackend = \"ftp\"\n",
        ] {
            let file = format!("database_url = \"x\"\npage_token_key = \"k\"\n{bad}");
            assert!(
                cloudsec_runtime::config::load::<DocumentsConfig>(Some(&file), &BTreeMap::new())
                    .is_err(),
                "{bad}"
            );
        }

        // The AWS settings are flattened into their sections; a key
        // neither they nor the section know is still refused, by name.
        for (bad, key) in [
            (
                "[content.store]\nbackend = \"s3\"\nbucket = \"b\"\nregoin = \"eu-west-1\"\n",
                "content.store.regoin",
            ),
            (
                "[content.kms]\nregion = \"eu-west-1\"\nendpoint = \"http://x\"\n",
                "content.kms.endpoint",
            ),
        ] {
            let file = format!("database_url = \"x\"\npage_token_key = \"k\"\n{bad}");
            let err =
                cloudsec_runtime::config::load::<DocumentsConfig>(Some(&file), &BTreeMap::new())
                    .unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
        let file = "database_url = \"x\"\npage_token_key = \"k\"\n\
                    [content.kms]\nregion = \"eu-west-1\"\ndummy_credentials = true\nalias_prefix = \"alias/t-\"\n";
        let config: DocumentsConfig =
            cloudsec_runtime::config::load(Some(file), &BTreeMap::new()).unwrap();
        let kms = config.content.kms.unwrap();
        assert_eq!(kms.aws.region.as_deref(), Some("eu-west-1"));
        assert!(kms.aws.dummy_credentials);
        assert_eq!(kms.alias_prefix, "alias/t-");
    }
}
