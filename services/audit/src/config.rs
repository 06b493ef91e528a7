//! The audit service's configuration, as read from the `[audit]` section
//! of the platform file and `CLOUDSEC__AUDIT__...` variables.

use std::net::SocketAddr;
use std::time::Duration;

use cloudsec_runtime::ConfigError;
use cloudsec_runtime::config::{default_shutdown_grace, loopback};
use cloudsec_runtime::tls::TlsFiles;
use serde::Deserialize;

pub use crate::dynamo::{DynamoConfig, StoreConfig};
pub use crate::signing::SigningConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default = "loopback::<7003>")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "loopback::<9103>")]
    pub admin_listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`: the audit log's own database,
    /// which also holds the subscriber's inbox. Required with the SQL
    /// store (the default); unused and not needed with
    /// `[audit.store] backend = "dynamodb"`, where the log, its inbox
    /// entries and the page token key all live in DynamoDB.
    pub database_url: Option<cloudsec_runtime::db::DatabaseUrl>,
    /// The workload certificate, used by the CLI in serve mode.
    pub tls: Option<TlsFiles>,
    /// How long calls and event handlers in flight may finish after
    /// shutdown starts.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where the log is kept: the SQL database above (the default) or a
    /// DynamoDB table (`backend = "dynamodb"`, see `dynamo`).
    #[serde(default)]
    pub store: StoreConfig,
    /// Sign each new chain head (see `signing`); off when absent.
    pub signing: Option<SigningConfig>,
    /// The queue the service drains (and its inbox's subscriber name).
    #[serde(default = "default_queue")]
    pub queue: String,
}

impl AuditConfig {
    /// The SQL database, which the SQL store needs (`audit.database_url`
    /// in errors).
    pub fn sql_database_url(&self) -> Result<&cloudsec_runtime::db::DatabaseUrl, ConfigError> {
        self.database_url.as_ref().ok_or_else(|| ConfigError {
            key: "audit.database_url".into(),
            message: "required with the SQL audit store (the default); with \
                      [audit.store] backend = \"dynamodb\" no SQL database is needed"
                .into(),
        })
    }

    /// What the configuration lacks to start, beyond its shape.
    pub fn requirements(&self) -> Vec<ConfigError> {
        match self.store {
            StoreConfig::Sql => self.sql_database_url().err().into_iter().collect(),
            StoreConfig::Dynamodb(_) => Vec::new(),
        }
    }
}

fn default_queue() -> String {
    "audit".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_apply_and_unknown_keys_are_refused() {
        let config: AuditConfig = cloudsec_runtime::config::load(
            Some("database_url = \"sqlite://audit.db\"\n"),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(config.grpc_listen, loopback::<7003>());
        assert_eq!(config.grpc_listen.port(), 7003);
        assert_eq!(config.admin_listen.port(), 9103);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.queue, "audit");
        assert!(config.tls.is_none());
        assert!(!format!("{config:?}").contains("sqlite://audit.db"));

        let err = cloudsec_runtime::config::load::<AuditConfig>(
            Some("database_url = \"x\"\nqueues = \"a\"\n"),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.key, "queues");
    }

    #[test]
    fn reads_grace_and_queue() {
        let config: AuditConfig = cloudsec_runtime::config::load(
            Some("database_url = \"x\"\nshutdown_grace = \"3s\"\nqueue = \"audit-eu\"\n"),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(config.shutdown_grace, Duration::from_secs(3));
        assert_eq!(config.queue, "audit-eu");
    }

    #[test]
    fn database_url_is_required_by_the_sql_store_only() {
        let sql: AuditConfig = cloudsec_runtime::config::load(Some(""), &BTreeMap::new()).unwrap();
        let problems = sql.requirements();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "audit.database_url");

        let dynamo: AuditConfig = cloudsec_runtime::config::load(
            Some(
                "[store]\nbackend = \"dynamodb\"\ntable = \"cloudsec-audit-log\"\n\
                 inbox_table = \"cloudsec-inbox\"\n",
            ),
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(dynamo.database_url.is_none());
        assert!(dynamo.requirements().is_empty());
        let StoreConfig::Dynamodb(store) = &dynamo.store else {
            panic!("not dynamodb: {:?}", dynamo.store)
        };
        assert_eq!(store.inbox_table.as_deref(), Some("cloudsec-inbox"));
    }

    #[test]
    fn transit_signing_has_defaults() {
        let config: AuditConfig = cloudsec_runtime::config::load(
            Some("database_url = \"x\"\n[signing]\nbackend = \"transit\"\n"),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(
            config.signing,
            Some(SigningConfig::Transit {
                key: "cloudsec-audit-signing".into(),
                mount: "transit".into(),
                create_key: false,
            })
        );
        assert!(
            config
                .signing
                .as_ref()
                .is_some_and(SigningConfig::needs_vault)
        );
        let err = cloudsec_runtime::config::load::<AuditConfig>(
            Some("[signing]\nbackend = \"transit\"\nkey_name = \"k\"\n"),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            format!("{} {}", err.key, err.message).contains("key_name"),
            "{err}"
        );
    }

    #[test]
    fn kms_signing_and_dynamodb_read_their_aws_settings_in_place() {
        let config: AuditConfig = cloudsec_runtime::config::load(
            Some(
                "[store]\nbackend = \"dynamodb\"\ntable = \"t\"\nregion = \"eu-west-1\"\n\
                 endpoint_url = \"http://127.0.0.1:5000\"\ndummy_credentials = true\n\
                 [signing]\nbackend = \"kms\"\nkey = \"alias/a\"\nregion = \"eu-west-2\"\n",
            ),
            &BTreeMap::new(),
        )
        .unwrap();
        let StoreConfig::Dynamodb(store) = &config.store else {
            panic!("not dynamodb: {:?}", config.store)
        };
        assert_eq!(store.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            store.aws.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert!(store.aws.dummy_credentials);
        let Some(SigningConfig::Kms { key, aws, .. }) = &config.signing else {
            panic!("not kms: {:?}", config.signing)
        };
        assert_eq!(key, "alias/a");
        assert_eq!(aws.region.as_deref(), Some("eu-west-2"));
        assert!(!aws.dummy_credentials);

        for (bad, key) in [
            (
                "[store]\nbackend = \"dynamodb\"\nregoin = \"eu-west-1\"\n",
                "store.regoin",
            ),
            (
                "[signing]\nbackend = \"kms\"\nkey = \"alias/a\"\nendpoint = \"http://x\"\n",
                "signing.endpoint",
            ),
        ] {
            let err = cloudsec_runtime::config::load::<AuditConfig>(Some(bad), &BTreeMap::new())
                .unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
    }
}
