//! Why the platform, or one of its components, could not start or stopped.

use std::path::PathBuf;

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A configuration mistake found while wiring (a missing section, an
    /// unusable file); the command exits 64 naming the key.
    #[error(transparent)]
    Config(#[from] cloudsec_runtime::ConfigError),
    #[error("identity: {0}")]
    Identity(#[from] cloudsec_identity::IdentityError),
    #[error("auth: {0}")]
    Auth(#[from] cloudsec_auth::BuildError),
    #[error("documents: {0}")]
    Documents(#[from] cloudsec_documents::DocumentsError),
    #[error("gateway: {0}")]
    Gateway(#[from] cloudsec_gateway::GatewayError),
    #[error("events: {0}")]
    Events(#[from] cloudsec_bus::BusError),
    #[error("audit: {0}")]
    Audit(#[from] cloudsec_audit::AuditError),
    #[error("{0}")]
    Grpc(#[from] cloudsec_runtime::grpc::GrpcError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sidecar: {0}")]
    Proxy(#[from] cloudsec_proxy::ProxyError),
    #[error("sidecar TLS: {0}")]
    Tls(String),
    #[error("secrets: {0}")]
    Secrets(#[from] cloudsec_secrets::Error),
    #[error("database credentials for `{key}`: {reason}")]
    Credentials { key: &'static str, reason: String },
    #[error("{component} stopped: {message}")]
    Stopped {
        component: &'static str,
        message: String,
    },
}

impl PlatformError {
    /// A configuration mistake at `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config(cloudsec_runtime::ConfigError {
            key: key.into(),
            message: message.into(),
        })
    }

    /// The configuration mistake behind this failure, if it is one (the
    /// gateway's own checks included), with its key in the whole file.
    pub fn as_config(&self) -> Option<cloudsec_runtime::ConfigError> {
        match self {
            Self::Config(e) => Some(e.clone()),
            Self::Gateway(cloudsec_gateway::GatewayError::Config(c)) => {
                Some(cloudsec_runtime::ConfigError {
                    key: format!("gateway.{}", c.key.trim_start_matches("gateway.")),
                    message: c.reason.clone(),
                })
            }
            Self::Proxy(cloudsec_proxy::ProxyError::Config(c)) => Some(c.clone()),
            _ => None,
        }
    }
}
