//! The cloudsec platform, wired: the configuration file's shape, and the
//! one-process platform that `cloudsec up` runs and the end-to-end tests
//! start.
//!
//! The command line (`src/main.rs`) only parses arguments and calls in
//! here; the components themselves live in their own crates.

pub mod call;
pub mod mailer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloudsec_audit::{Audit, AuditConfig};
use cloudsec_auth::{Auth, AuthConfig, TokenSettings};
use cloudsec_bus::{Bus, BusConfig};
use cloudsec_documents::{Documents, DocumentsConfig};
use cloudsec_gateway::{Gateway, GatewayConfig, Upstream};
use cloudsec_identity::{DEFAULT_LIFETIME, Issuer, LocalCa, SpiffeId, WorkloadIdentity};
use cloudsec_proxy::{Proxy, ProxyConfig, TlsState};
use cloudsec_runtime::tls::MeshTls;
use cloudsec_runtime::token::TokenVerifier;
use cloudsec_runtime::{Secret, Shutdown};
use cloudsec_secrets::{Secrets, SecretsConfig};
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
    /// The event bus every service publishes to and subscribers read.
    #[serde(default)]
    pub events: BusConfig,
    pub auth: Option<AuthConfig>,
    pub documents: Option<DocumentsConfig>,
    pub audit: Option<AuditConfig>,
    pub gateway: Option<GatewayConfig>,
    /// For `cloudsec proxy`, the sidecar.
    pub proxy: Option<ProxyConfig>,
    /// Where `vault:<mount>/<path>#<field>` references in this file are
    /// read from (Vault, or the local keystore). `cloudsec up` defaults to
    /// the keystore under its data directory.
    pub secrets: Option<SecretsConfig>,
    /// Short-lived PostgreSQL credentials from Vault's database engine, per
    /// component: they replace the user and password of that component's
    /// `database_url` and are swapped before they expire.
    #[serde(default)]
    pub database_credentials:
        std::collections::BTreeMap<CredentialsFor, cloudsec_secrets::database::DbCredentialsConfig>,
}

/// The components whose database login can come from Vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialsFor {
    Auth,
    Documents,
    Audit,
    /// The embedded bus's database (`events.database_url`).
    Events,
}

impl CredentialsFor {
    fn key(self) -> &'static str {
        match self {
            Self::Auth => "auth.database_url",
            Self::Documents => "documents.database_url",
            Self::Audit => "audit.database_url",
            Self::Events => "events.database_url",
        }
    }
}

/// Starts the `[database_credentials]` of `config` and points each
/// component's `database_url` at them. The returned handles keep the
/// leases renewed and replaced; dropping them stops that.
pub async fn start_database_credentials(
    config: &mut PlatformConfig,
    secrets: Option<&Secrets>,
) -> Result<Vec<cloudsec_secrets::database::DbCredentials>, PlatformError> {
    use cloudsec_runtime::db::DatabaseUrl;
    use cloudsec_secrets::database::DbCredentials;
    let mut handles = Vec::new();
    for (target, wanted) in config.database_credentials.clone() {
        let client = secrets
            .and_then(Secrets::vault)
            .cloned()
            .ok_or(PlatformError::Missing(
                "secrets (with backend = \"vault\", for database_credentials)",
            ))?;
        let base = match target {
            CredentialsFor::Auth => config.auth.as_ref().map(|c| c.database_url.expose()),
            CredentialsFor::Documents => config.documents.as_ref().map(|c| c.database_url.expose()),
            CredentialsFor::Audit => config.audit.as_ref().map(|c| c.database_url.expose()),
            CredentialsFor::Events => config.events.database_url.as_ref().map(DatabaseUrl::expose),
        }
        .ok_or_else(|| PlatformError::Credentials {
            key: target.key(),
            reason: "is not set; dynamic credentials need the database's postgres:// URL".into(),
        })?;
        let credentials = DbCredentials::start(client, wanted).await?;
        let first =
            credentials
                .current()
                .postgres_url(&base)
                .map_err(|e| PlatformError::Credentials {
                    key: target.key(),
                    reason: e.to_string(),
                })?;
        let (tx, rx) = tokio::sync::watch::channel(first);
        let mut changes = credentials.subscribe();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let next = changes.borrow_and_update().postgres_url(&base);
                match next {
                    Ok(url) => {
                        if tx.send(url).is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::error!(%error, "cannot use new database credentials"),
                }
            }
        });
        let url = DatabaseUrl::dynamic(rx);
        match target {
            CredentialsFor::Auth => {
                if let Some(c) = config.auth.as_mut() {
                    c.database_url = url;
                }
            }
            CredentialsFor::Documents => {
                if let Some(c) = config.documents.as_mut() {
                    c.database_url = url;
                }
            }
            CredentialsFor::Audit => {
                if let Some(c) = config.audit.as_mut() {
                    c.database_url = url;
                }
            }
            CredentialsFor::Events => config.events.database_url = Some(url),
        }
        tracing::info!(component = ?target, "database credentials from vault");
        handles.push(credentials);
    }
    Ok(handles)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Who signs the workload certificates of `cloudsec up`.
    #[serde(default)]
    pub issuer: IssuerConfig,
    /// How long a workload certificate lives; it is renewed at two thirds.
    #[serde(default = "default_certificate_lifetime", with = "humantime_serde")]
    pub certificate_lifetime: Duration,
    /// This workload's service account, for `cloudsec proxy` when its
    /// certificate comes from the issuer rather than from files.
    #[serde(default)]
    pub service_account: Option<String>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            trust_domain: default_trust_domain(),
            namespace: default_namespace(),
            issuer: IssuerConfig::default(),
            certificate_lifetime: default_certificate_lifetime(),
            service_account: None,
        }
    }
}

/// The mesh's certificate authority.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum IssuerConfig {
    /// The development CA under `<data dir>/pki`.
    #[default]
    Local,
    /// Vault's PKI engine: `<mount>/issue/<role>`, through the `[secrets]`
    /// Vault connection (`docs/security.md` has the role's settings).
    Vault {
        #[serde(default = "default_pki_mount")]
        mount: String,
        role: String,
    },
}

fn default_pki_mount() -> String {
    "pki".into()
}

fn default_certificate_lifetime() -> Duration {
    DEFAULT_LIFETIME
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
    /// Cognito mode: the services also accept access tokens of this user
    /// pool.
    #[serde(
        default,
        deserialize_with = "cloudsec_runtime::token::CognitoConfig::deserialize_checked"
    )]
    pub cognito: Option<cloudsec_runtime::token::CognitoConfig>,
    /// How often verifiers pull the auth service's token revocations
    /// (disabled, deleted and signed-out users); a revoked access token
    /// stops working everywhere within this.
    #[serde(
        default = "cloudsec_runtime::token::default_revocation_interval",
        with = "humantime_serde"
    )]
    pub revocation_interval: Duration,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            issuer: default_issuer(),
            audience: default_audience(),
            access_ttl: default_access_ttl(),
            auth_uri: None,
            auth_server_name: None,
            cognito: None,
            revocation_interval: cloudsec_runtime::token::default_revocation_interval(),
        }
    }
}

impl TokensConfig {
    /// `verifier` as these settings say: pulling revocations every
    /// `revocation_interval`, and also trusting the Cognito user pool when
    /// one is set.
    pub fn trusting(&self, verifier: TokenVerifier) -> Result<TokenVerifier, PlatformError> {
        let verifier = verifier.revocation_interval(self.revocation_interval);
        match &self.cognito {
            None => Ok(verifier),
            Some(pool) => verifier
                .trust_cognito(pool.clone())
                .map_err(PlatformError::Cognito),
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
    #[error("events: {0}")]
    Events(#[from] cloudsec_bus::BusError),
    #[error("tokens.{0}")]
    Cognito(String),
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
    #[error("configuration section `{0}` is missing")]
    Missing(&'static str),
    #[error("{component} stopped: {message}")]
    Stopped {
        component: &'static str,
        message: String,
    },
}

/// TLS state that follows `identity`: each rotated certificate replaces
/// the served one without a restart.
fn follow_identity(identity: &WorkloadIdentity) -> Result<Arc<TlsState>, PlatformError> {
    let tls = TlsState::new(&identity.current().mesh_tls())
        .map_err(|e| PlatformError::Tls(e.to_string()))?;
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(identity.current().mesh_tls()));
    let mut changes = identity.subscribe();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let next = changes.borrow_and_update().mesh_tls();
            if tx.send(Arc::new(next)).is_err() {
                return;
            }
        }
    });
    tls.follow(rx);
    Ok(tls)
}

/// The identity of one workload from the `[mesh]` issuer (Vault PKI), for
/// a sidecar run as `cloudsec proxy` without `[proxy.tls]` files: a
/// certificate for `spiffe://<trust domain>/ns/<namespace>/sa/<service
/// account>`, and TLS state that follows its rotation once
/// [`WorkloadIdentity::spawn_rotation`] runs.
pub async fn mesh_identity(
    mesh: &MeshConfig,
    secrets: Option<&Secrets>,
) -> Result<(Arc<WorkloadIdentity>, Arc<TlsState>), PlatformError> {
    let IssuerConfig::Vault { mount, role } = &mesh.issuer else {
        return Err(PlatformError::Missing(
            "proxy.tls (or mesh.issuer with backend = \"vault\")",
        ));
    };
    let client = secrets
        .and_then(Secrets::vault)
        .cloned()
        .ok_or(PlatformError::Missing(
            "secrets (with backend = \"vault\", for mesh.issuer)",
        ))?;
    let account = mesh
        .service_account
        .as_deref()
        .ok_or(PlatformError::Missing("mesh.service_account"))?;
    let pki = cloudsec_secrets::pki::VaultPki::new(
        client,
        &cloudsec_secrets::pki::VaultPkiConfig {
            mount: mount.clone(),
            role: role.clone(),
        },
    )
    .await?;
    let id = SpiffeId::new(&mesh.trust_domain, &mesh.namespace, account)?;
    let identity = WorkloadIdentity::new(Arc::new(pki), id, mesh.certificate_lifetime).await?;
    let tls = follow_identity(&identity)?;
    Ok((identity, tls))
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

/// Why a configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    #[error(transparent)]
    Config(#[from] cloudsec_runtime::ConfigError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The secrets back end could not be opened or a reference could not be
    /// read; [`LocalConfigError::is_unavailable`] tells an outage from a
    /// mistake.
    #[error("secrets: {0}")]
    Secrets(#[from] cloudsec_secrets::Error),
}

impl LocalConfigError {
    /// Whether the failure is a back end that is down (retrying later may
    /// work) rather than a configuration mistake.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Secrets(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

/// Quotes `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A loaded configuration and the secrets back end its references were
/// read from (kept open for the services that need it: PKI, database
/// credentials, signing keys).
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: PlatformConfig,
    pub secrets: Option<Secrets>,
}

/// Merges `layers` and the `CLOUDSEC__...` variables, opens the `[secrets]`
/// back end if there is one, replaces every `vault:` reference by its
/// secret, then deserializes.
///
/// A reference with no `[secrets]` section is an error that names its key,
/// never a literal `vault:...` string handed to a service. A local
/// keystore without `dir` lives under `data_dir` (required then).
pub async fn load_config(
    layers: &[&str],
    env: &std::collections::BTreeMap<String, String>,
    data_dir: Option<&Path>,
) -> Result<LoadedConfig, LocalConfigError> {
    use cloudsec_runtime::config::{ConfigError, from_table, merge_layers};
    let mut root = merge_layers(layers, env)?;
    let secrets = match root.remove("secrets") {
        Some(section) => {
            let opened = open_secrets(&section, env, data_dir).await?;
            let mut tree = toml::Value::Table(std::mem::take(&mut root));
            cloudsec_secrets::resolve_toml(&mut tree, opened.provider().as_ref()).await?;
            if let toml::Value::Table(t) = tree {
                root = t;
            }
            root.insert("secrets".into(), section);
            Some(opened)
        }
        None => {
            if let Some(key) = first_reference(&root, "") {
                return Err(ConfigError {
                    key,
                    message: "is a `vault:` secret reference, but there is no [secrets] \
                              section saying where to read it"
                        .into(),
                }
                .into());
            }
            None
        }
    };
    Ok(LoadedConfig {
        config: from_table(root, env)?,
        secrets,
    })
}

/// Opens the back end of a `[secrets]` section.
async fn open_secrets(
    section: &toml::Value,
    env: &std::collections::BTreeMap<String, String>,
    data_dir: Option<&Path>,
) -> Result<Secrets, LocalConfigError> {
    use cloudsec_runtime::config::{ConfigError, from_table};
    let mut wrapper = toml::Table::new();
    wrapper.insert("secrets".into(), section.clone());
    #[derive(Deserialize)]
    struct Only {
        secrets: SecretsConfig,
    }
    let only: Only = from_table(wrapper, env)?;
    if let (SecretsConfig::Local { dir: None }, None) = (&only.secrets, data_dir) {
        return Err(ConfigError {
            key: "secrets.dir".into(),
            message: "required with backend = \"local\" outside `cloudsec up` \
                      (where the keystore directory is)"
                .into(),
        }
        .into());
    }
    Ok(Secrets::from_config(&only.secrets, data_dir.unwrap_or(Path::new("."))).await?)
}

fn first_reference(table: &toml::Table, prefix: &str) -> Option<String> {
    fn walk(value: &toml::Value, key: String) -> Option<String> {
        match value {
            toml::Value::String(s) if s.starts_with(cloudsec_secrets::reference::PREFIX) => {
                Some(key)
            }
            toml::Value::Table(t) => first_reference(t, &key),
            toml::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, format!("{key}[{i}]"))),
            _ => None,
        }
    }
    table.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        walk(v, key)
    })
}

/// The configuration of `cloudsec up`: laptop defaults under `data_dir`
/// (SQLite files, a generated page-token key, the local keystore), then
/// the user's file, then `CLOUDSEC__...` variables.
///
/// The whole configuration is checked before anything is written, so a
/// bad key or value leaves no data directory behind.
pub async fn local_config(
    data_dir: &Path,
    file: Option<&str>,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<LoadedConfig, LocalConfigError> {
    check_local(data_dir, file, env)?;
    private_dir(data_dir)?;
    let key = page_token_key(data_dir)?;
    let layers = local_layers(data_dir, file, env, &key);
    let layers: Vec<&str> = layers.iter().map(String::as_str).collect();
    load_config(&layers, env, Some(data_dir)).await
}

/// Only the secrets back end of `cloudsec up`'s configuration, without
/// resolving any reference (so a secret can be written before the
/// configuration that reads it works).
pub async fn local_secrets(
    data_dir: &Path,
    file: Option<&str>,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<Option<Secrets>, LocalConfigError> {
    check_local(data_dir, file, env)?;
    private_dir(data_dir)?;
    let layers = local_layers(data_dir, file, env, &Secret::new(PLACEHOLDER_PAGE_KEY));
    let layers: Vec<&str> = layers.iter().map(String::as_str).collect();
    let root = cloudsec_runtime::config::merge_layers(&layers, env)?;
    match root.get("secrets") {
        Some(section) => Ok(Some(open_secrets(section, env, Some(data_dir)).await?)),
        None => Ok(None),
    }
}

/// Stands in for the generated page-token key while a configuration is
/// only checked; never used to sign.
const PLACEHOLDER_PAGE_KEY: &str = "placeholder-page-token-key-only-for-checking";

/// Deserializes `cloudsec up`'s layers with `vault:` references left as
/// they are, touching neither the disk nor a secrets back end.
fn check_local(
    data_dir: &Path,
    file: Option<&str>,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<(), LocalConfigError> {
    let layers = local_layers(data_dir, file, env, &Secret::new(PLACEHOLDER_PAGE_KEY));
    let layers: Vec<&str> = layers.iter().map(String::as_str).collect();
    let root = cloudsec_runtime::config::merge_layers(&layers, env)?;
    cloudsec_runtime::config::from_table::<PlatformConfig>(root, env)?;
    Ok(())
}

/// Creates `dir` readable by its owner only, and makes an existing one
/// so: it holds databases, keys and the development CA.
pub fn private_dir(dir: &Path) -> Result<(), PlatformError> {
    let err = |source| PlatformError::DataDir {
        path: dir.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(err)?;
            tracing::info!(path = %dir.display(), "data directory made private (mode 700)");
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(err)?;
    Ok(())
}

fn local_layers(
    data_dir: &Path,
    file: Option<&str>,
    env: &std::collections::BTreeMap<String, String>,
    page_token_key: &Secret,
) -> Vec<String> {
    let sqlite = |name: &str| toml_str(&format!("sqlite://{}", data_dir.join(name).display()));
    let defaults = format!(
        "[events]\ndatabase_url = {bus}\n\n[auth]\ndatabase_url = {auth}\n\n[documents]\ndatabase_url = {docs}\npage_token_key = {key}\n\n[audit]\ndatabase_url = {audit}\n\n[gateway]\n",
        bus = sqlite("bus.db"),
        auth = sqlite("auth.db"),
        docs = sqlite("documents.db"),
        audit = sqlite("audit.db"),
        key = toml_str(page_token_key.expose()),
    );
    let mut layers = vec![defaults];
    layers.extend(file.map(str::to_owned));
    // The keystore is the default only when nothing chose a back end: a
    // user's `[secrets] backend = "vault"` must not merge with `dir`.
    let chose = file.is_some_and(|f| {
        f.parse::<toml::Table>()
            .is_ok_and(|t| t.contains_key("secrets"))
    }) || env
        .keys()
        .any(|k| k.to_ascii_uppercase().starts_with("CLOUDSEC__SECRETS__"));
    if !chose {
        layers.insert(1, "[secrets]\nbackend = \"local\"\n".to_owned());
    }
    layers
}

/// Auth, documents, audit and the gateway in one process, each with its own
/// workload identity and its own sidecar: applications listen in plaintext
/// on loopback, and every call between them goes app → outbound sidecar →
/// mTLS → inbound sidecar → app, exactly as on Kubernetes.
#[derive(Debug)]
pub struct LocalPlatform {
    auth: Auth,
    documents: Documents,
    audit: Audit,
    gateway: Gateway,
    sidecars: Vec<(&'static str, Proxy)>,
    identities: Vec<Arc<WorkloadIdentity>>,
    /// The one bus connection of the process, so that in-process
    /// subscribers wake at commit.
    bus: Bus,
    issuer: Arc<dyn Issuer>,
    mesh: MeshConfig,
    /// Kept logged in (token renewal) while the platform runs.
    vault: Option<cloudsec_secrets::VaultClient>,
    /// Renew and replace the database logins while the platform runs.
    db_credentials: Vec<cloudsec_secrets::database::DbCredentials>,
    /// Logs confirmation codes: `up` has no mail server.
    mailer: cloudsec_bus::Subscriber,
}

/// Where a started platform listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub gateway: SocketAddr,
    pub gateway_admin: SocketAddr,
    /// The auth service's mTLS address (its inbound sidecar).
    pub auth: SocketAddr,
    pub auth_admin: SocketAddr,
    /// The documents service's mTLS address (its inbound sidecar).
    pub documents: SocketAddr,
    pub documents_admin: SocketAddr,
    /// The audit service's mTLS address (its inbound sidecar).
    pub audit: SocketAddr,
    pub audit_admin: SocketAddr,
    pub auth_sidecar_admin: SocketAddr,
    pub documents_sidecar_admin: SocketAddr,
    pub audit_sidecar_admin: SocketAddr,
    pub gateway_sidecar_admin: SocketAddr,
}

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn sidecar_config(
    inbound: Option<SocketAddr>,
    destinations: &[(&SpiffeId, SocketAddr)],
    grace: Duration,
) -> ProxyConfig {
    use cloudsec_proxy::config::{DestinationConfig, InboundConfig, OutboundConfig};
    ProxyConfig {
        admin_listen: loopback_any(),
        tls: None,
        inbound: inbound.map(|listen| InboundConfig {
            listen,
            // Set once the application is bound.
            app: loopback_any(),
            authorization: Default::default(),
        }),
        outbound: (!destinations.is_empty()).then(|| OutboundConfig {
            listen: loopback_any(),
            destinations: destinations
                .iter()
                .map(|(id, addr)| {
                    (
                        id.dns_name(),
                        DestinationConfig {
                            endpoints: vec![*addr],
                            dns: None,
                            dns_refresh: Duration::from_secs(10),
                            identity: id.to_string(),
                        },
                    )
                })
                .collect(),
            routes: Default::default(),
            queue_capacity: 10_000,
            failfast_timeout: Duration::from_secs(1),
            balancer: Default::default(),
        }),
        shutdown_grace: grace,
    }
}

impl LocalPlatform {
    /// Creates what is missing under the data directory (CA, databases,
    /// keys), applies migrations and binds every listener.
    pub async fn build(dir: &Path, loaded: &LoadedConfig) -> Result<Self, PlatformError> {
        let mut config = loaded.config.clone();
        let db_credentials =
            start_database_credentials(&mut config, loaded.secrets.as_ref()).await?;
        let config = &config;
        private_dir(dir)?;
        let mesh = config.mesh.clone();
        let vault = loaded.secrets.as_ref().and_then(Secrets::vault).cloned();
        let issuer: Arc<dyn Issuer> = match &mesh.issuer {
            IssuerConfig::Local => Arc::new(LocalCa::load_or_create(&dir.join("pki"))?),
            IssuerConfig::Vault { mount, role } => {
                let client = vault.clone().ok_or(PlatformError::Missing(
                    "secrets (with backend = \"vault\", for mesh.issuer)",
                ))?;
                let pki = cloudsec_secrets::pki::VaultPkiConfig {
                    mount: mount.clone(),
                    role: role.clone(),
                };
                Arc::new(cloudsec_secrets::pki::VaultPki::new(client, &pki).await?)
            }
        };
        let id = |sa: &str| SpiffeId::new(&mesh.trust_domain, &mesh.namespace, sa);
        let (auth_id, documents_id, audit_id, gateway_id) =
            (id("auth")?, id("documents")?, id("audit")?, id("gateway")?);
        let lifetime = mesh.certificate_lifetime;
        let mut identities = Vec::new();
        let mut tls_of = async |sid: &SpiffeId| -> Result<(Arc<TlsState>, MeshTls), PlatformError> {
            let identity = WorkloadIdentity::new(issuer.clone(), sid.clone(), lifetime).await?;
            // Rotated certificates flow from the identity into the sidecar.
            let tls = follow_identity(&identity)?;
            let pem = identity.current().mesh_tls();
            identities.push(identity);
            Ok((tls, pem))
        };
        let (auth_tls, _) = tls_of(&auth_id).await?;
        let (documents_tls, documents_pem) = tls_of(&documents_id).await?;
        let (audit_tls, audit_pem) = tls_of(&audit_id).await?;
        let (gateway_tls, gateway_pem) = tls_of(&gateway_id).await?;

        let auth_config = config.auth.as_ref().ok_or(PlatformError::Missing("auth"))?;
        let documents_config = config
            .documents
            .as_ref()
            .ok_or(PlatformError::Missing("documents"))?;
        let audit_config = config
            .audit
            .as_ref()
            .ok_or(PlatformError::Missing("audit"))?;
        let gateway_config = config
            .gateway
            .as_ref()
            .ok_or(PlatformError::Missing("gateway"))?;

        // Inbound sidecars take the services' published addresses; the
        // applications move to ephemeral loopback ports behind them.
        let mut auth_sidecar = Proxy::build(
            &sidecar_config(
                Some(auth_config.grpc_listen),
                &[],
                auth_config.shutdown_grace,
            ),
            auth_tls,
        )
        .await?;
        let auth_inbound = auth_sidecar
            .inbound_addr()
            .ok_or(PlatformError::Missing("auth sidecar"))?;
        let mut documents_sidecar = Proxy::build(
            &sidecar_config(
                Some(documents_config.grpc_listen),
                &[(&auth_id, auth_inbound)],
                documents_config.shutdown_grace,
            ),
            documents_tls,
        )
        .await?;
        let documents_inbound = documents_sidecar
            .inbound_addr()
            .ok_or(PlatformError::Missing("documents sidecar"))?;
        let mut audit_sidecar = Proxy::build(
            &sidecar_config(
                Some(audit_config.grpc_listen),
                &[(&auth_id, auth_inbound)],
                audit_config.shutdown_grace,
            ),
            audit_tls,
        )
        .await?;
        let audit_inbound = audit_sidecar
            .inbound_addr()
            .ok_or(PlatformError::Missing("audit sidecar"))?;
        let gateway_sidecar = Proxy::build(
            &sidecar_config(
                None,
                &[
                    (&auth_id, auth_inbound),
                    (&documents_id, documents_inbound),
                    (&audit_id, audit_inbound),
                ],
                gateway_config.shutdown_grace,
            ),
            gateway_tls,
        )
        .await?;

        let bus = match (&config.events.transport, &config.events.database_url) {
            (cloudsec_bus::TransportKind::Embedded, None) => {
                let mut events = config.events.clone();
                events.database_url =
                    Some(Secret::new(format!("sqlite://{}", dir.join("bus.db").display())).into());
                Bus::connect(&events, None).await?
            }
            _ => Bus::connect(&config.events, None).await?,
        };

        let mut app_auth = auth_config.clone();
        app_auth.grpc_listen = loopback_any();
        let auth = Auth::build(
            &app_auth,
            config.tokens.settings(),
            &config.events,
            Some(&bus),
            loaded.secrets.as_ref(),
        )
        .await?;
        auth_sidecar.set_inbound_app(auth.grpc_addr())?;

        let documents_outbound = documents_sidecar
            .outbound_addr()
            .ok_or(PlatformError::Missing("documents sidecar outbound"))?;
        let auth_channel = cloudsec_runtime::grpc::channel(
            &format!("http://{documents_outbound}"),
            &auth_id.dns_name(),
            &documents_pem,
        )?;
        let verifier = Arc::new(config.tokens.trusting(TokenVerifier::from_auth(
            &config.tokens.issuer,
            &config.tokens.audience,
            auth_channel,
        ))?);
        let mut app_documents = documents_config.clone();
        app_documents.grpc_listen = loopback_any();
        let documents =
            Documents::build(&app_documents, verifier, &config.events, Some(&bus)).await?;
        documents_sidecar.set_inbound_app(documents.grpc_addr())?;

        let audit_outbound = audit_sidecar
            .outbound_addr()
            .ok_or(PlatformError::Missing("audit sidecar outbound"))?;
        let audit_verifier = Arc::new(config.tokens.trusting(TokenVerifier::from_auth(
            &config.tokens.issuer,
            &config.tokens.audience,
            cloudsec_runtime::grpc::channel(
                &format!("http://{audit_outbound}"),
                &auth_id.dns_name(),
                &audit_pem,
            )?,
        ))?);
        let audit_queue = bus
            .queue(
                &cloudsec_audit::queue_spec(audit_config),
                config.events.provisioning,
            )
            .await?;
        let seal = cloudsec_auth::codes::CodeSeal::from_config(
            &auth_config.confirmation,
            loaded.secrets.as_ref(),
        )
        .await
        .map_err(|e| PlatformError::Auth(cloudsec_auth::BuildError::from(e)))?;
        let mailer = mailer::log_codes(
            &bus,
            config.events.provisioning,
            audit_config.shutdown_grace,
            seal,
        )
        .await?;
        let mut app_audit = audit_config.clone();
        app_audit.grpc_listen = loopback_any();
        let audit = Audit::build(&app_audit, audit_verifier, audit_queue).await?;
        audit_sidecar.set_inbound_app(audit.grpc_addr())?;

        let gateway_outbound = gateway_sidecar
            .outbound_addr()
            .ok_or(PlatformError::Missing("gateway sidecar outbound"))?;
        let mut gateway_config = gateway_config.clone();
        for (service, sid) in [
            ("cloudsec.auth.v1.AuthService", &auth_id),
            ("cloudsec.documents.v1.DocumentService", &documents_id),
            ("cloudsec.audit.v1.AuditService", &audit_id),
        ] {
            gateway_config.upstreams.insert(
                service.into(),
                Upstream {
                    uri: format!("http://{gateway_outbound}"),
                    server_name: sid.dns_name(),
                },
            );
        }
        let gateway = Gateway::build(
            &gateway_config,
            &[cloudsec_proto::FILE_DESCRIPTOR_SET],
            gateway_pem,
        )
        .await?;
        Ok(Self {
            auth,
            documents,
            audit,
            gateway,
            sidecars: vec![
                ("auth-sidecar", auth_sidecar),
                ("documents-sidecar", documents_sidecar),
                ("audit-sidecar", audit_sidecar),
                ("gateway-sidecar", gateway_sidecar),
            ],
            identities,
            bus,
            issuer,
            mesh,
            vault,
            db_credentials,
            mailer,
        })
    }

    pub fn addresses(&self) -> Addresses {
        Addresses {
            gateway: self.gateway.local_addr(),
            gateway_admin: self.gateway.admin_addr(),
            auth: self
                .sidecar("auth-sidecar")
                .and_then(Proxy::inbound_addr)
                .unwrap_or(self.auth.grpc_addr()),
            auth_admin: self.auth.admin_addr(),
            documents: self
                .sidecar("documents-sidecar")
                .and_then(Proxy::inbound_addr)
                .unwrap_or(self.documents.grpc_addr()),
            documents_admin: self.documents.admin_addr(),
            audit: self
                .sidecar("audit-sidecar")
                .and_then(Proxy::inbound_addr)
                .unwrap_or(self.audit.grpc_addr()),
            audit_admin: self.audit.admin_addr(),
            auth_sidecar_admin: self.sidecar_admin("auth-sidecar"),
            documents_sidecar_admin: self.sidecar_admin("documents-sidecar"),
            audit_sidecar_admin: self.sidecar_admin("audit-sidecar"),
            gateway_sidecar_admin: self.sidecar_admin("gateway-sidecar"),
        }
    }

    /// The event bus the services publish to.
    pub fn bus(&self) -> &Bus {
        &self.bus
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
            &self.mesh.trust_domain,
            &self.mesh.namespace,
            service_account,
        )?;
        Ok(self
            .issuer
            .issue(&id, self.mesh.certificate_lifetime)
            .await?
            .mesh_tls())
    }

    /// The DNS name in a workload's certificate.
    pub fn server_name(&self, service_account: &str) -> String {
        format!("{service_account}.{}.svc", self.mesh.namespace)
    }

    fn sidecar(&self, name: &str) -> Option<&Proxy> {
        self.sidecars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p)
    }

    fn sidecar_admin(&self, name: &str) -> SocketAddr {
        self.sidecar(name)
            .map_or_else(loopback_any, Proxy::admin_addr)
    }

    /// Serves until `shutdown` is cancelled, then drains in order; if one
    /// component fails, the others are stopped (in the same order) and the
    /// failure is returned.
    ///
    /// The order is what finishes every accepted request: first the
    /// gateway stops accepting and waits for its calls in flight (which
    /// still need the sidecars and services behind it), then the services
    /// and the mailer drain, and the sidecars go last, as Kubernetes stops
    /// native sidecars after the app containers.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), PlatformError> {
        let Self {
            auth,
            documents,
            audit,
            gateway,
            sidecars,
            identities,
            vault,
            db_credentials,
            mailer,
            ..
        } = self;
        // Held to the end: dropping a handle stops its lease renewal.
        let _db_credentials = db_credentials;
        let mut background = Vec::new();
        if let Some(vault) = &vault {
            background.push(vault.spawn_token_renewal(shutdown.clone()));
        }
        for identity in &identities {
            background.push(identity.spawn_rotation(shutdown.clone()));
        }

        // One token per phase, in drain order.
        let phases: [Shutdown; 3] = [Shutdown::new(), Shutdown::new(), Shutdown::new()];
        const EDGE: usize = 0;
        const APPS: usize = 1;
        const SIDECARS: usize = 2;
        type Outcome = (&'static str, usize, Result<(), String>);
        let mut tasks: tokio::task::JoinSet<Outcome> = tokio::task::JoinSet::new();
        let mut left = [0usize; 3];
        {
            let s = phases[EDGE].clone();
            left[EDGE] += 1;
            tasks.spawn(async move {
                let r = gateway.run_until_stopped(s).await;
                ("gateway", EDGE, r.map_err(|e| e.to_string()))
            });
        }
        {
            let s = phases[APPS].clone();
            left[APPS] += 1;
            tasks.spawn(async move {
                let r = auth.run_until_stopped(None, s).await;
                ("auth", APPS, r.map_err(|e| e.to_string()))
            });
        }
        {
            let s = phases[APPS].clone();
            left[APPS] += 1;
            tasks.spawn(async move {
                let r = documents.run_until_stopped(None, s).await;
                ("documents", APPS, r.map_err(|e| e.to_string()))
            });
        }
        {
            let s = phases[APPS].clone();
            left[APPS] += 1;
            tasks.spawn(async move {
                let r = audit.run_until_stopped(None, s).await;
                ("audit", APPS, r.map_err(|e| e.to_string()))
            });
        }
        {
            let s = phases[APPS].clone();
            left[APPS] += 1;
            tasks.spawn(async move {
                let r = mailer.run(s).await;
                ("mailer", APPS, r.map_err(|e| e.to_string()))
            });
        }
        for (name, sidecar) in sidecars {
            let s = phases[SIDECARS].clone();
            left[SIDECARS] += 1;
            tasks.spawn(async move {
                let r = sidecar.run_until_stopped(s).await;
                (name, SIDECARS, r.map_err(|e| e.to_string()))
            });
        }

        // Cancels the first phase that still runs once the ones before it
        // are done; empty phases pass at once.
        let advance = |left: &[usize; 3]| {
            for (phase, token) in phases.iter().enumerate() {
                token.cancel();
                if left[phase] > 0 {
                    return;
                }
            }
        };
        let mut draining = false;
        let mut first_error = None;
        loop {
            let joined = tokio::select! {
                () = shutdown.cancelled(), if !draining => {
                    draining = true;
                    tracing::info!("draining: gateway, then services, then sidecars");
                    advance(&left);
                    continue;
                }
                joined = tasks.join_next() => joined,
            };
            let Some(joined) = joined else { break };
            let (component, phase, outcome) = match joined {
                Ok(done) => done,
                Err(join) => ("platform", SIDECARS, Err(join.to_string())),
            };
            left[phase] = left[phase].saturating_sub(1);
            let failure = match outcome {
                Err(message) => Some(message),
                Ok(()) if draining => None,
                Ok(()) => Some("stopped unexpectedly".to_owned()),
            };
            if let Some(message) = failure {
                // One component down takes the platform down, loudly.
                tracing::error!(component, %message, "component failed");
                first_error.get_or_insert(PlatformError::Stopped { component, message });
                shutdown.cancel();
            }
            if draining {
                advance(&left);
            }
        }
        shutdown.cancel();
        for task in background {
            let _ = task.await;
        }
        first_error.map_or(Ok(()), Err)
    }
}
