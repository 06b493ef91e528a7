//! The gateway's typed configuration.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// Where the gateway listens and which mesh peer serves each gRPC service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The public REST listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `/live`, `/ready` and `/metrics`; keep it off the public network.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Keyed by full gRPC service name, e.g.
    /// `cloudsec.documents.v1.DocumentService`. An annotated service with
    /// no entry here gets no routes.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// The gateway's own workload certificate; read by the CLI, not by
    /// [`crate::Gateway::build`], which takes the loaded material.
    #[serde(default)]
    pub tls: Option<cloudsec_runtime::tls::TlsFiles>,
    /// The largest request body accepted. Documents allow 1 MiB of content,
    /// and JSON (base64 for bytes) needs room on top of that.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Sent upstream as `grpc-timeout` and enforced here too.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Whether unknown JSON fields and query parameters are a 400 (true) or
    /// ignored (false).
    #[serde(default = "default_true")]
    pub reject_unknown_fields: bool,
    /// How long requests in flight may finish after shutdown begins.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

/// A mesh peer that serves one gRPC service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `https://host:port`.
    pub uri: String,
    /// The name the peer's certificate must carry, e.g.
    /// `documents.default.svc`.
    pub server_name: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9090))
}

fn default_max_body_bytes() -> usize {
    2 * 1024 * 1024
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_true() -> bool {
    true
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            upstreams: BTreeMap::new(),
            tls: None,
            max_body_bytes: default_max_body_bytes(),
            request_timeout: default_request_timeout(),
            reject_unknown_fields: true,
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_every_default() {
        let config: GatewayConfig = serde_json::from_str("{}").unwrap();
        let default = GatewayConfig::default();
        assert_eq!(config.listen, default.listen);
        assert_eq!(config.admin_listen, default.admin_listen);
        assert_eq!(config.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert!(config.reject_unknown_fields);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn reads_durations_and_upstreams_and_rejects_unknown_keys() {
        let config: GatewayConfig = serde_json::from_str(
            r#"{"request_timeout": "5s", "upstreams": {"a.v1.S": {"uri": "https://h:1", "server_name": "s.default.svc"}}}"#,
        )
        .unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.upstreams["a.v1.S"].server_name, "s.default.svc");

        let error = serde_json::from_str::<GatewayConfig>(r#"{"listn": "127.0.0.1:1"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("listn"), "{error}");
    }
}
