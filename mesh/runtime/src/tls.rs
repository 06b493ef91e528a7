//! The mesh's mutual TLS: every gRPC listener demands a client certificate
//! signed by the mesh CA, and every client presents its workload
//! certificate.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A workload's certificate chain, its key and the CA bundle it trusts, in
/// PEM.
#[derive(Clone)]
pub struct MeshTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTls").finish_non_exhaustive()
    }
}

/// Where a workload's PEM files are, in configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {what}")]
    NoPem { path: PathBuf, what: &'static str },
}

fn read(path: &Path, what: &'static str, marker: &str) -> Result<String, TlsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !text.contains(marker) {
        return Err(TlsError::NoPem {
            path: path.to_owned(),
            what,
        });
    }
    Ok(text)
}

impl TlsFiles {
    pub fn load(&self) -> Result<MeshTls, TlsError> {
        Ok(MeshTls {
            ca_pem: read(&self.ca_file, "certificate", "-----BEGIN CERTIFICATE-----")?,
            cert_pem: read(
                &self.cert_file,
                "certificate",
                "-----BEGIN CERTIFICATE-----",
            )?,
            key_pem: read(&self.key_file, "private key", "PRIVATE KEY-----")?,
        })
    }
}

impl MeshTls {
    /// Server side: present our certificate, require one from the mesh CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// Client side: trust only the mesh CA, check that the peer's
    /// certificate names `server_name`, and present our certificate.
    pub fn client_config(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(server_name)
    }
}
