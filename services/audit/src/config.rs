//! The audit service's configuration, as read from the `[audit]` section
//! of the platform file and `CLOUDSEC__AUDIT__...` variables.

use std::net::SocketAddr;
use std::time::Duration;

use cloudsec_runtime::tls::TlsFiles;
use serde::Deserialize;

pub use crate::dynamo::{DynamoConfig, StoreConfig};
pub use crate::signing::SigningConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`: the audit log's own database,
    /// which also holds the subscriber's inbox.
    pub database_url: cloudsec_runtime::db::DatabaseUrl,
    /// The workload certificate, used by the CLI in serve mode.
    #[serde(default)]
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
    #[serde(default)]
    pub signing: Option<SigningConfig>,
    /// The queue the service drains (and its inbox's subscriber name).
    #[serde(default = "default_queue")]
    pub queue: String,
}

fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7003))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9103))
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
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
        assert_eq!(config.grpc_listen, default_grpc_listen());
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
    fn database_url_is_required() {
        let err =
            cloudsec_runtime::config::load::<AuditConfig>(Some(""), &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
    }
}
