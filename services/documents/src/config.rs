//! The documents service's configuration, as read from the `[documents]`
//! section of the platform file and `CLOUDSEC__DOCUMENTS__...` variables.

use std::net::SocketAddr;
use std::time::Duration;

use cloudsec_runtime::Secret;
use cloudsec_runtime::tls::TlsFiles;
use serde::Deserialize;

/// The shortest accepted `page_token_key`, in bytes: HMAC-SHA256 gains
/// nothing from a longer key, and a shorter one weakens it.
pub const MIN_PAGE_TOKEN_KEY_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsConfig {
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: Secret,
    /// The HMAC key that makes page tokens unforgeable; at least
    /// [`MIN_PAGE_TOKEN_KEY_BYTES`] bytes.
    pub page_token_key: Secret,
    /// The workload certificate, used by the CLI in serve mode.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// How long calls in flight may finish after shutdown starts.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7002))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9102))
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_apply_and_unknown_keys_are_refused() {
        let config: DocumentsConfig = cloudsec_runtime::config::load(
            Some("database_url = \"sqlite://x.db\"\npage_token_key = \"k\"\n"),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(config.grpc_listen, default_grpc_listen());
        assert_eq!(config.admin_listen.port(), 9102);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert!(config.tls.is_none());
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
}
