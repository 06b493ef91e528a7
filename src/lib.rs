//! The cloudsec platform, wired: the configuration file's shape, and the
//! one-process platform that `cloudsec up` runs and the end-to-end tests
//! start.
//!
//! The command line (`src/main.rs`) only parses arguments and calls in
//! here; the components themselves live in their own crates.

pub mod call;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloudsec_auth::{Auth, AuthConfig, TokenSettings};
use cloudsec_documents::{Documents, DocumentsConfig};
use cloudsec_gateway::{Gateway, GatewayConfig, Upstream};
use cloudsec_identity::{DEFAULT_LIFETIME, Issuer, LocalCa, SpiffeId};
use cloudsec_runtime::token::TokenVerifier;
use cloudsec_runtime::{Secret, Shutdown};
use serde::Deserialize;

/// The whole configuration file. Every section is optional; `cloudsec up`
/// fills in what is missing for a laptop, `cloudsec serve` requires what
/// its component needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    #[serde(default)]
    pub mesh: MeshConfig,
    #[serde(default)]
    pub tokens: TokensConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    pub auth: Option<AuthConfig>,
    pub documents: Option<DocumentsConfig>,
    pub gateway: Option<GatewayConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            trust_domain: default_trust_domain(),
            namespace: default_namespace(),
        }
    }
}

fn default_trust_domain() -> String {
    cloudsec_identity::DEFAULT_TRUST_DOMAIN.into()
}

fn default_namespace() -> String {
    "default".into()
}

/// Who issues access tokens and for whom; shared by the auth service (which
/// signs) and every verifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default = "default_access_ttl", with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Where verifiers fetch the JWKS in `serve` mode, e.g.
    /// `https://auth.default.svc:7001`.
    #[serde(default)]
    pub auth_uri: Option<String>,
    /// The name the auth service's certificate must carry.
    #[serde(default)]
    pub auth_server_name: Option<String>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            issuer: default_issuer(),
            audience: default_audience(),
            access_ttl: default_access_ttl(),
            auth_uri: None,
            auth_server_name: None,
        }
    }
}

fn default_issuer() -> String {
    "https://auth.cloudsec.local".into()
}

fn default_audience() -> String {
    "cloudsec".into()
}

fn default_access_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}

impl TokensConfig {
    pub fn settings(&self) -> TokenSettings {
        TokenSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_ttl: self.access_ttl,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `json` (default for `serve`) or `pretty` (default for `up`).
    #[serde(default)]
    pub log_format: Option<LogFormatName>,
    /// OTLP/gRPC collector; `OTEL_EXPORTER_OTLP_ENDPOINT` also works.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatName {
    Json,
    Pretty,
}

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("identity: {0}")]
    Identity(#[from] cloudsec_identity::IdentityError),
    #[error("auth: {0}")]
    Auth(#[from] cloudsec_auth::BuildError),
    #[error("documents: {0}")]
    Documents(#[from] cloudsec_documents::DocumentsError),
    #[error("gateway: {0}")]
    Gateway(#[from] cloudsec_gateway::GatewayError),
    #[error("{0}")]
    Grpc(#[from] cloudsec_runtime::grpc::GrpcError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration section `{0}` is missing")]
    Missing(&'static str),
    #[error("{component} stopped: {message}")]
    Stopped {
        component: &'static str,
        message: String,
    },
}

/// The address to dial for a listener bound to `addr` on this host.
fn dial(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

/// Reads the page-token key kept in `dir`, creating a random one first.
fn page_token_key(dir: &Path) -> Result<Secret, PlatformError> {
    use std::io::Write;
    let path = dir.join("page-token.key");
    let err = |source| PlatformError::DataDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(key) if key.trim().len() >= 32 => return Ok(Secret::new(key.trim())),
        Ok(_) => {
            return Err(err(std::io::Error::other(
                "page token key is shorter than 32 characters",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(err)?;
    file.write_all(key.as_bytes()).map_err(err)?;
    Ok(Secret::new(key))
}

/// Why `cloudsec up`'s configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    #[error(transparent)]
    Config(#[from] cloudsec_runtime::ConfigError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

/// Quotes `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The configuration of `cloudsec up`: laptop defaults under `data_dir`
/// (SQLite files, a generated page-token key), then the user's file, then
/// `CLOUDSEC__...` variables.
pub fn local_config(
    data_dir: &Path,
    file: Option<&str>,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<PlatformConfig, LocalConfigError> {
    std::fs::create_dir_all(data_dir).map_err(|source| PlatformError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let sqlite = |name: &str| toml_str(&format!("sqlite://{}", data_dir.join(name).display()));
    let defaults = format!(
        "[auth]\ndatabase_url = {auth}\n\n[documents]\ndatabase_url = {docs}\npage_token_key = {key}\n\n[gateway]\n",
        auth = sqlite("auth.db"),
        docs = sqlite("documents.db"),
        key = toml_str(page_token_key(data_dir)?.expose()),
    );
    let mut layers = vec![defaults.as_str()];
    layers.extend(file);
    Ok(cloudsec_runtime::config::load_layers(&layers, env)?)
}

/// Auth, documents and the gateway in one process, each with its own
/// listeners and workload certificate, talking mTLS gRPC to each other.
#[derive(Debug)]
pub struct LocalPlatform {
    auth: Auth,
    documents: Documents,
    gateway: Gateway,
    certs: Certs,
}

#[derive(Debug)]
struct Certs {
    auth: cloudsec_runtime::tls::MeshTls,
    documents: cloudsec_runtime::tls::MeshTls,
    ca: Arc<LocalCa>,
    mesh: MeshConfig,
}

/// Where a started platform listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub gateway: SocketAddr,
    pub gateway_admin: SocketAddr,
    pub auth: SocketAddr,
    pub auth_admin: SocketAddr,
    pub documents: SocketAddr,
    pub documents_admin: SocketAddr,
}

impl LocalPlatform {
    /// Creates what is missing under the data directory (CA, databases,
    /// keys), applies migrations and binds every listener.
    pub async fn build(dir: &Path, config: &PlatformConfig) -> Result<Self, PlatformError> {
        std::fs::create_dir_all(dir).map_err(|source| PlatformError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let mesh = config.mesh.clone();
        let ca = Arc::new(LocalCa::load_or_create(&dir.join("pki"))?);
        let id = |sa: &str| SpiffeId::new(&mesh.trust_domain, &mesh.namespace, sa);
        let auth_id = id("auth")?;
        let documents_id = id("documents")?;
        let gateway_id = id("gateway")?;
        let auth_tls = ca.issue(&auth_id, DEFAULT_LIFETIME).await?.mesh_tls();
        let documents_tls = ca.issue(&documents_id, DEFAULT_LIFETIME).await?.mesh_tls();
        let gateway_tls = ca.issue(&gateway_id, DEFAULT_LIFETIME).await?.mesh_tls();

        let auth_config = config.auth.as_ref().ok_or(PlatformError::Missing("auth"))?;
        let auth = Auth::build(auth_config, config.tokens.settings()).await?;

        let documents_config = config
            .documents
            .as_ref()
            .ok_or(PlatformError::Missing("documents"))?;
        let auth_channel = cloudsec_runtime::grpc::channel(
            &dial(auth.grpc_addr()),
            &auth_id.dns_name(),
            &documents_tls,
        )?;
        let verifier = Arc::new(TokenVerifier::from_auth(
            &config.tokens.issuer,
            &config.tokens.audience,
            auth_channel,
        ));
        let documents = Documents::build(documents_config, verifier).await?;

        let mut gateway_config = config.gateway.clone().unwrap_or_default();
        gateway_config.upstreams.insert(
            "cloudsec.auth.v1.AuthService".into(),
            Upstream {
                uri: dial(auth.grpc_addr()),
                server_name: auth_id.dns_name(),
            },
        );
        gateway_config.upstreams.insert(
            "cloudsec.documents.v1.DocumentService".into(),
            Upstream {
                uri: dial(documents.grpc_addr()),
                server_name: documents_id.dns_name(),
            },
        );
        let gateway = Gateway::build(
            &gateway_config,
            &[cloudsec_proto::FILE_DESCRIPTOR_SET],
            gateway_tls,
        )
        .await?;
        Ok(Self {
            auth,
            documents,
            gateway,
            certs: Certs {
                auth: auth_tls,
                documents: documents_tls,
                ca,
                mesh,
            },
        })
    }

    pub fn addresses(&self) -> Addresses {
        Addresses {
            gateway: self.gateway.local_addr(),
            gateway_admin: self.gateway.admin_addr(),
            auth: self.auth.grpc_addr(),
            auth_admin: self.auth.admin_addr(),
            documents: self.documents.grpc_addr(),
            documents_admin: self.documents.admin_addr(),
        }
    }

    /// The REST routes the gateway serves.
    pub fn routes(&self) -> Vec<String> {
        self.gateway.routes()
    }

    /// A certificate for another workload of this mesh (tests, tools).
    pub async fn issue(
        &self,
        service_account: &str,
    ) -> Result<cloudsec_runtime::tls::MeshTls, PlatformError> {
        let id = SpiffeId::new(
            &self.certs.mesh.trust_domain,
            &self.certs.mesh.namespace,
            service_account,
        )?;
        Ok(self.certs.ca.issue(&id, DEFAULT_LIFETIME).await?.mesh_tls())
    }

    /// The DNS name in a workload's certificate.
    pub fn server_name(&self, service_account: &str) -> String {
        format!("{service_account}.{}.svc", self.certs.mesh.namespace)
    }

    /// Serves until `shutdown` is cancelled; if one component fails, the
    /// others are stopped too and the failure is returned.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), PlatformError> {
        let Self {
            auth,
            documents,
            gateway,
            certs,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        {
            let s = shutdown.clone();
            let tls = certs.auth.clone();
            tasks.spawn(async move {
                (
                    "auth",
                    auth.run_until_stopped(&tls, s)
                        .await
                        .map_err(|e| e.to_string()),
                )
            });
        }
        {
            let s = shutdown.clone();
            let tls = certs.documents.clone();
            tasks.spawn(async move {
                (
                    "documents",
                    documents
                        .run_until_stopped(&tls, s)
                        .await
                        .map_err(|e| e.to_string()),
                )
            });
        }
        {
            let s = shutdown.clone();
            tasks.spawn(async move {
                (
                    "gateway",
                    gateway
                        .run_until_stopped(s)
                        .await
                        .map_err(|e| e.to_string()),
                )
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let (component, outcome) = match joined {
                Ok(done) => done,
                Err(join) => ("platform", Err(join.to_string())),
            };
            let message = match outcome {
                Err(message) => message,
                Ok(()) if shutdown.is_cancelled() => continue,
                Ok(()) => "stopped unexpectedly".to_owned(),
            };
            // One component down takes the platform down, loudly.
            tracing::error!(component, %message, "component failed");
            shutdown.cancel();
            first_error.get_or_insert(PlatformError::Stopped { component, message });
        }
        first_error.map_or(Ok(()), Err)
    }
}
