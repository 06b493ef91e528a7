//! The `[auth]` section of the configuration.

use std::net::SocketAddr;
use std::time::Duration;

use cloudsec_runtime::Secret;
use cloudsec_runtime::tls::TlsFiles;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// `sqlite://path` or `postgres://user:pass@host/db`.
    pub database_url: Secret,
    /// Password hashes computed at once; defaults to the number of cores.
    #[serde(default)]
    pub hash_concurrency: Option<usize>,
    /// The workload certificate, in `serve` mode.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7001))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9101))
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

impl AuthConfig {
    /// Defaults with the given database.
    pub fn with_database(url: &str) -> Self {
        Self {
            grpc_listen: default_grpc_listen(),
            admin_listen: default_admin_listen(),
            database_url: Secret::new(url),
            hash_concurrency: None,
            tls: None,
            shutdown_grace: default_grace(),
        }
    }
}
