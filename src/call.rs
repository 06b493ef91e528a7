//! `cloudsec call`: a small gRPC client for operators, so that the mTLS
//! services can be tried without installing grpcurl. It reads the contracts
//! from the built-in descriptor set and speaks proto3 JSON.
//!
//! `call` and `cert` talk to a platform that already exists: they find its
//! data directory (`--data-dir`, or `.cloudsec` here or in a parent
//! directory), read the addresses a running `cloudsec up` publishes there
//! ([`RunningPlatform`]) and never create a CA, keys or databases.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cloudsec_gateway::DynamicCodec;
use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MethodDescriptor};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(
        "unknown method `{0}`; use package.Service/Method, e.g. cloudsec.documents.v1.DocumentService/ListDocuments"
    )]
    UnknownMethod(String),
    #[error("the request is not valid JSON for {message}: {reason}")]
    BadRequest { message: String, reason: String },
    #[error("the running platform serves no {0}")]
    NoAddress(String),
    #[error(
        "no cloudsec platform data found: looked for {looked}; start one with `cloudsec up` \
         (in that directory) or pass --data-dir"
    )]
    NoPlatform { looked: String },
    #[error(
        "the platform in {0} is not running (it publishes platform.json while `cloudsec up` runs); \
         start it with `cloudsec up --data-dir {0}`"
    )]
    NotRunning(String),
    #[error("cannot read {path}: {reason}")]
    State { path: String, reason: String },
    #[error("descriptor set: {0}")]
    Descriptors(String),
    #[error("identity: {0}")]
    Identity(#[from] cloudsec_identity::IdentityError),
    #[error("{0}")]
    Grpc(#[from] cloudsec_runtime::grpc::GrpcError),
    #[error("{code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("bad authorization token")]
    Token,
}

/// The file a running `cloudsec up` keeps in its data directory.
pub const RUNNING_FILE: &str = "platform.json";

/// Where a running `cloudsec up` listens, published in its data directory
/// for `call` and `cert`, and removed when it stops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunningPlatform {
    pub pid: u32,
    pub trust_domain: String,
    pub namespace: String,
    pub gateway: SocketAddr,
    /// Full gRPC service name to (service account, mTLS address).
    pub services: BTreeMap<String, (String, SocketAddr)>,
    /// Every admin listener (`/metrics`, `/live`, `/ready`) by workload:
    /// `gateway`, `auth`, ..., and `<name>-sidecar` for the sidecars; what
    /// `scripts/observability` scrapes.
    #[serde(default)]
    pub admin: BTreeMap<String, SocketAddr>,
}

impl RunningPlatform {
    /// Writes the file (owner-only, replaced atomically).
    pub fn publish(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = data_dir.join(RUNNING_FILE);
        let tmp = data_dir.join(format!("{RUNNING_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&tmp)?, &json)?;
        std::fs::rename(tmp, path)
    }

    /// Removes the file, if it is still this process's.
    pub fn withdraw(data_dir: &Path) {
        let path = data_dir.join(RUNNING_FILE);
        let ours = Self::read(data_dir).is_ok_and(|p| p.pid == std::process::id());
        if ours && let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot remove the running-platform file");
        }
    }

    /// Reads the file of the platform running on `data_dir`.
    pub fn read(data_dir: &Path) -> Result<Self, CallError> {
        let path = data_dir.join(RUNNING_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CallError::NotRunning(data_dir.display().to_string()));
            }
            Err(e) => {
                return Err(CallError::State {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        serde_json::from_slice(&text).map_err(|e| CallError::State {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// The data directory of an existing platform: `given`, or `.cloudsec` in
/// the current directory or the nearest parent that has one. A directory
/// without the development CA is no platform's.
pub fn find_data_dir(given: Option<&Path>) -> Result<PathBuf, CallError> {
    let has_ca = |dir: &Path| dir.join("pki").join("ca.pem").is_file();
    if let Some(dir) = given {
        return if has_ca(dir) {
            Ok(dir.to_owned())
        } else {
            Err(CallError::NoPlatform {
                looked: format!("{}/pki/ca.pem", dir.display()),
            })
        };
    }
    let here = std::env::current_dir().map_err(|e| CallError::State {
        path: ".".into(),
        reason: e.to_string(),
    })?;
    here.ancestors()
        .map(|dir| dir.join(".cloudsec"))
        .find(|dir| has_ca(dir))
        .ok_or_else(|| CallError::NoPlatform {
            looked: format!(".cloudsec in {} and its parents", here.display()),
        })
}

fn find_method(pool: &DescriptorPool, name: &str) -> Option<MethodDescriptor> {
    let (service, method) = name.trim_start_matches('/').split_once('/')?;
    pool.get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
}

/// Calls `method` on the service that `cloudsec up` runs under `data_dir`,
/// presenting a fresh short-lived certificate from its development CA.
pub async fn call(
    data_dir: &Path,
    method: &str,
    json: &str,
    token: Option<&str>,
) -> Result<String, CallError> {
    let pool = DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| CallError::Descriptors(e.to_string()))?;
    let descriptor =
        find_method(&pool, method).ok_or_else(|| CallError::UnknownMethod(method.to_owned()))?;
    let service = descriptor.parent_service();

    let mut de = serde_json::Deserializer::from_str(json);
    let request = DynamicMessage::deserialize_with_options(
        descriptor.input(),
        &mut de,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .and_then(|m| de.end().map(|()| m))
    .map_err(|e| CallError::BadRequest {
        message: descriptor.input().full_name().to_owned(),
        reason: e.to_string(),
    })?;

    let running = RunningPlatform::read(data_dir)?;
    let (account, addr) = running
        .services
        .get(service.full_name())
        .cloned()
        .ok_or_else(|| CallError::NoAddress(service.full_name().to_owned()))?;
    let ca = LocalCa::load(&data_dir.join("pki"))?;
    let me = SpiffeId::new(&running.trust_domain, &running.namespace, "cli")?;
    let tls = ca
        .issue(&me, std::time::Duration::from_secs(300))
        .await?
        .mesh_tls();
    let peer = SpiffeId::new(&running.trust_domain, &running.namespace, &account)?;
    let channel =
        cloudsec_runtime::grpc::channel(&crate::platform::dial(addr), &peer.dns_name(), &tls)?;

    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| CallError::Status {
        code: tonic::Code::Unavailable,
        message: format!(
            "{e} (is `cloudsec up` on {} still running?)",
            data_dir.display()
        ),
    })?;
    let mut request = tonic::Request::new(request);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| CallError::Token)?;
        request.metadata_mut().insert("authorization", value);
    }
    let path = format!("/{}/{}", service.full_name(), descriptor.name())
        .parse()
        .map_err(|_| CallError::UnknownMethod(method.to_owned()))?;
    let response = grpc
        .unary(request, path, DynamicCodec::new(descriptor.output()))
        .await
        .map_err(|s| CallError::Status {
            code: s.code(),
            message: s.message().to_owned(),
        })?;
    serde_json::to_string_pretty(response.get_ref())
        .map_err(|e| CallError::Descriptors(e.to_string()))
}

/// Writes a workload certificate for `service_account` from the
/// development CA in `data_dir`, its key and the mesh CA into `out`, for
/// tools such as grpcurl. The trust domain and namespace are the running
/// platform's, else `mesh`'s.
pub async fn export_cert(
    data_dir: &Path,
    mesh: &crate::config::MeshConfig,
    service_account: &str,
    lifetime: std::time::Duration,
    out: &Path,
) -> Result<(), CallError> {
    let ca = LocalCa::load(&data_dir.join("pki"))?;
    let (trust_domain, namespace) = match RunningPlatform::read(data_dir) {
        Ok(running) => (running.trust_domain, running.namespace),
        Err(_) => (mesh.trust_domain.clone(), mesh.namespace.clone()),
    };
    let id = SpiffeId::new(&trust_domain, &namespace, service_account)?;
    let cert = ca.issue(&id, lifetime).await?;
    let io = |e: std::io::Error| CallError::State {
        path: out.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(io)?;
    std::fs::write(out.join("ca.pem"), &cert.ca_pem).map_err(io)?;
    std::fs::write(out.join("cert.pem"), &cert.cert_pem).map_err(io)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options.open(out.join("key.pem")).map_err(io)?,
        cert.key_pem.as_bytes(),
    )
    .map_err(io)?;
    Ok(())
}
