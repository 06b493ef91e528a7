//! `cloudsec call`: a small gRPC client for operators, so that the mTLS
//! services can be tried without installing grpcurl. It reads the contracts
//! from the built-in descriptor set and speaks proto3 JSON.

use std::path::Path;

use cloudsec_gateway::DynamicCodec;
use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MethodDescriptor};

use crate::PlatformConfig;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(
        "unknown method `{0}`; use package.Service/Method, e.g. cloudsec.documents.v1.DocumentService/ListDocuments"
    )]
    UnknownMethod(String),
    #[error("the request is not valid JSON for {message}: {reason}")]
    BadRequest { message: String, reason: String },
    #[error("no gRPC address is configured for {0}")]
    NoAddress(String),
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
    config: &PlatformConfig,
    method: &str,
    json: &str,
    token: Option<&str>,
) -> Result<String, CallError> {
    let pool = DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| CallError::Descriptors(e.to_string()))?;
    let descriptor =
        find_method(&pool, method).ok_or_else(|| CallError::UnknownMethod(method.to_owned()))?;
    let service = descriptor.parent_service();
    let (account, addr) = match service.full_name() {
        "cloudsec.auth.v1.AuthService" => ("auth", config.auth.as_ref().map(|c| c.grpc_listen)),
        "cloudsec.documents.v1.DocumentService" => (
            "documents",
            config.documents.as_ref().map(|c| c.grpc_listen),
        ),
        other => return Err(CallError::NoAddress(other.to_owned())),
    };
    let addr = addr.ok_or_else(|| CallError::NoAddress(account.to_owned()))?;

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

    let ca = LocalCa::load_or_create(&data_dir.join("pki"))?;
    let mesh = &config.mesh;
    let me = SpiffeId::new(&mesh.trust_domain, &mesh.namespace, "cli")?;
    let tls = ca
        .issue(&me, std::time::Duration::from_secs(300))
        .await?
        .mesh_tls();
    let peer = SpiffeId::new(&mesh.trust_domain, &mesh.namespace, account)?;
    let channel = cloudsec_runtime::grpc::channel(&crate::dial(addr), &peer.dns_name(), &tls)?;

    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| CallError::Status {
        code: tonic::Code::Unavailable,
        message: e.to_string(),
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

/// Writes a workload certificate for `service_account`, its key and the
/// mesh CA into `out`, for tools such as grpcurl.
pub async fn export_cert(
    data_dir: &Path,
    config: &PlatformConfig,
    service_account: &str,
    lifetime: std::time::Duration,
    out: &Path,
) -> Result<(), std::io::Error> {
    let other = |e: cloudsec_identity::IdentityError| std::io::Error::other(e.to_string());
    let ca = LocalCa::load_or_create(&data_dir.join("pki")).map_err(other)?;
    let id = SpiffeId::new(
        &config.mesh.trust_domain,
        &config.mesh.namespace,
        service_account,
    )
    .map_err(other)?;
    let cert = ca.issue(&id, lifetime).await.map_err(other)?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("ca.pem"), &cert.ca_pem)?;
    std::fs::write(out.join("cert.pem"), &cert.cert_pem)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options.open(out.join("key.pem"))?,
        cert.key_pem.as_bytes(),
    )?;
    Ok(())
}
