//! The configuration file's shape and its loading: layers (the laptop
//! defaults of `cloudsec up`, the user's file, `CLOUDSEC__...` variables)
//! merged, `vault:` references resolved from the `[secrets]` back end, then
//! deserialized into [`PlatformConfig`].
//!
//! Loading is checked before anything is written: a bad key leaves no data
//! directory, keystore or CA behind, and [`check`] validates a file exactly
//! as `serve` would without reading a single secret.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cloudsec_audit::AuditConfig;
use cloudsec_auth::{AuthConfig, TokenSettings};
use cloudsec_bus::BusConfig;
use cloudsec_documents::DocumentsConfig;
use cloudsec_gateway::GatewayConfig;
use cloudsec_identity::DEFAULT_LIFETIME;
use cloudsec_proxy::ProxyConfig;
use cloudsec_runtime::config::{ConfigError, from_table, merge_tables};
use cloudsec_runtime::token::TokenVerifier;
use cloudsec_runtime::{Secret, token};
use cloudsec_secrets::{Secrets, SecretsConfig};
use serde::Deserialize;

use crate::error::PlatformError;

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
        BTreeMap<CredentialsFor, cloudsec_secrets::database::DbCredentialsConfig>,
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
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Auth => "auth.database_url",
            Self::Documents => "documents.database_url",
            Self::Audit => "audit.database_url",
            Self::Events => "events.database_url",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshConfig {
    pub trust_domain: String,
    pub namespace: String,
    /// Who signs the workload certificates of `cloudsec up`.
    #[serde(default)]
    pub issuer: IssuerConfig,
    /// How long a workload certificate lives; it is renewed at 70%.
    #[serde(with = "humantime_serde")]
    pub certificate_lifetime: Duration,
    /// This workload's service account, for `cloudsec proxy` when its
    /// certificate comes from the issuer rather than from files.
    pub service_account: Option<String>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            trust_domain: cloudsec_identity::DEFAULT_TRUST_DOMAIN.into(),
            namespace: "default".into(),
            issuer: IssuerConfig::default(),
            certificate_lifetime: DEFAULT_LIFETIME,
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

/// Who issues access tokens and for whom: the one section the auth
/// service (which signs), every service verifier and the gateway's edge
/// authorizer read, so they cannot disagree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default = "default_access_ttl", with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Where verifiers reach the auth service (JWKS, revocations) in
    /// `serve` mode: the local sidecar's outbound listener
    /// (`http://127.0.0.1:4140`) or the auth service itself over mTLS
    /// (`https://auth.default.svc:7001`).
    pub auth_uri: Option<String>,
    /// The name the auth service's certificate must carry.
    pub auth_server_name: Option<String>,
    /// Cognito mode: the services (and the edge) also accept access tokens
    /// of this user pool.
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
                .map_err(|e| PlatformError::config("tokens.cognito", e)),
        }
    }

    /// What the auth service signs with.
    pub fn settings(&self) -> TokenSettings {
        TokenSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_ttl: self.access_ttl,
        }
    }

    /// The gateway's edge authorizer trusts exactly what the services do.
    pub fn apply_to(&self, jwt: &mut cloudsec_gateway::config::JwtConfig) {
        jwt.issuer = self.issuer.clone();
        jwt.audience = self.audience.clone();
        jwt.revocation_interval = self.revocation_interval;
        jwt.cognito = self.cognito.clone();
    }
}

fn default_issuer() -> String {
    token::DEFAULT_ISSUER.into()
}

fn default_audience() -> String {
    token::DEFAULT_AUDIENCE.into()
}

fn default_access_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `json` (default for `serve`) or `pretty` (default for `up`).
    pub log_format: Option<LogFormatName>,
    /// OTLP/gRPC collector; `OTEL_EXPORTER_OTLP_ENDPOINT` also works.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatName {
    Json,
    Pretty,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
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

/// A loaded configuration and the secrets back end its references were
/// read from (kept open for the services that need it: PKI, database
/// credentials, signing keys).
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: PlatformConfig,
    pub secrets: Option<Secrets>,
}

/// Parses `layers` (TOML text), for [`load_tables`].
fn parse_layers(layers: &[&str]) -> Result<Vec<toml::Table>, ConfigError> {
    layers
        .iter()
        .map(|text| {
            text.parse::<toml::Table>().map_err(|e| ConfigError {
                key: ".".into(),
                message: format!("not valid TOML: {}", e.message()),
            })
        })
        .collect()
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
    env: &BTreeMap<String, String>,
    data_dir: Option<&Path>,
) -> Result<LoadedConfig, LocalConfigError> {
    load_tables(parse_layers(layers)?, env, data_dir).await
}

async fn load_tables(
    layers: Vec<toml::Table>,
    env: &BTreeMap<String, String>,
    data_dir: Option<&Path>,
) -> Result<LoadedConfig, LocalConfigError> {
    let mut root = merge_tables(layers, env)?;
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
    env: &BTreeMap<String, String>,
    data_dir: Option<&Path>,
) -> Result<Secrets, LocalConfigError> {
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
    env: &BTreeMap<String, String>,
) -> Result<LoadedConfig, LocalConfigError> {
    check_local(data_dir, file, env)?;
    crate::data::private_dir(data_dir)?;
    let key = crate::data::page_token_key(data_dir)?;
    load_tables(
        local_layers(data_dir, file, env, &key)?,
        env,
        Some(data_dir),
    )
    .await
}

/// Only the secrets back end of `cloudsec up`'s configuration, without
/// resolving any reference (so a secret can be written before the
/// configuration that reads it works).
pub async fn local_secrets(
    data_dir: &Path,
    file: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Result<Option<Secrets>, LocalConfigError> {
    check_local(data_dir, file, env)?;
    let placeholder = Secret::new(PLACEHOLDER_PAGE_KEY);
    let root = merge_tables(local_layers(data_dir, file, env, &placeholder)?, env)?;
    let Some(section) = root.get("secrets") else {
        return Ok(None);
    };
    // Only a keystore inside the data directory needs it; a file that
    // names Vault or a keystore elsewhere must not leave a stray
    // `.cloudsec` behind.
    let local = section.get("backend").and_then(toml::Value::as_str) == Some("local");
    let dir = section.get("dir").and_then(toml::Value::as_str);
    if local && dir.is_none_or(|dir| Path::new(dir).starts_with(data_dir)) {
        crate::data::private_dir(data_dir)?;
    }
    Ok(Some(open_secrets(section, env, Some(data_dir)).await?))
}

/// Stands in for the generated page-token key while a configuration is
/// only checked; never used to sign.
const PLACEHOLDER_PAGE_KEY: &str = "placeholder-page-token-key-only-for-checking";

/// Deserializes `cloudsec up`'s layers with `vault:` references left as
/// they are, touching neither the disk nor a secrets back end.
fn check_local(
    data_dir: &Path,
    file: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let placeholder = Secret::new(PLACEHOLDER_PAGE_KEY);
    let root = merge_tables(local_layers(data_dir, file, env, &placeholder)?, env)?;
    from_table::<PlatformConfig>(root, env)?;
    Ok(())
}

/// A TOML table of `entries`.
fn table<const N: usize>(entries: [(&str, toml::Value); N]) -> toml::Value {
    toml::Value::Table(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// The layers of `cloudsec up`: its laptop defaults as typed values, the
/// keystore unless the user chose a back end, then the user's file.
fn local_layers(
    data_dir: &Path,
    file: Option<&str>,
    env: &BTreeMap<String, String>,
    page_token_key: &Secret,
) -> Result<Vec<toml::Table>, ConfigError> {
    let sqlite =
        |name: &str| toml::Value::String(format!("sqlite://{}", data_dir.join(name).display()));
    let mut defaults = toml::Table::new();
    defaults.insert("events".into(), table([("database_url", sqlite("bus.db"))]));
    defaults.insert("auth".into(), table([("database_url", sqlite("auth.db"))]));
    defaults.insert(
        "documents".into(),
        table([
            ("database_url", sqlite("documents.db")),
            (
                "page_token_key",
                toml::Value::String(page_token_key.expose().to_owned()),
            ),
        ]),
    );
    defaults.insert(
        "audit".into(),
        table([("database_url", sqlite("audit.db"))]),
    );
    let mut gateway = toml::Table::new();
    // The web console, when it has been built (`npm --prefix web run build`)
    // in the directory `cloudsec up` runs from.
    let console = Path::new("web").join("dist");
    if console.join("index.html").is_file()
        && let Ok(console) = console.canonicalize()
    {
        gateway.insert(
            "console_dir".into(),
            toml::Value::String(console.display().to_string()),
        );
    }
    defaults.insert("gateway".into(), toml::Value::Table(gateway));
    let user = parse_layers(file.as_slice())?;
    // The keystore is the default only when nothing chose a back end: a
    // user's `[secrets] backend = "vault"` must not merge with `dir`.
    let chose = user.iter().any(|t| t.contains_key("secrets"))
        || env
            .keys()
            .any(|k| k.to_ascii_uppercase().starts_with("CLOUDSEC__SECRETS__"));
    let mut layers = vec![defaults];
    if !chose {
        let mut keystore = toml::Table::new();
        keystore.insert(
            "secrets".into(),
            table([("backend", toml::Value::String("local".into()))]),
        );
        layers.push(keystore);
    }
    layers.extend(user);
    Ok(layers)
}

/// The component `cloudsec config check --component` checks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Auth,
    Documents,
    Audit,
    Gateway,
    Proxy,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Documents => "documents",
            Self::Audit => "audit",
            Self::Gateway => "gateway",
            Self::Proxy => "proxy",
        }
    }
}

/// Checks a configuration file (and `CLOUDSEC__...` variables) exactly as
/// `serve` (or `proxy`) loads it, without opening the secrets back end or
/// reading a reference: every problem found, one per key, empty when the
/// file is good. Each top-level section is checked on its own, so a
/// mistake in one does not hide those in another, and within a section
/// each wrong key is taken out and the rest checked again, so one wrong key
/// does not hide the next; with `component`, what that component needs to
/// start is checked too.
pub fn check(
    text: &str,
    env: &BTreeMap<String, String>,
    component: Option<Component>,
) -> Vec<ConfigError> {
    let root = match parse_layers(&[text]).and_then(|layers| merge_tables(layers, env)) {
        Ok(root) => root,
        Err(e) => return vec![e],
    };
    let mut problems = section_problems(&root, env);
    if !problems.is_empty() {
        return problems;
    }
    // References need a back end to be read from.
    if !root.contains_key("secrets")
        && let Some(key) = first_reference(&root, "")
    {
        problems.push(ConfigError {
            key,
            message: "is a `vault:` secret reference, but there is no [secrets] section \
                      saying where to read it"
                .into(),
        });
    }
    let config = match from_table::<PlatformConfig>(root, env) {
        Ok(config) => config,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    if let Some(component) = component {
        problems.extend(crate::wiring::requirements(&config, component));
    }
    problems
}

/// Each top-level section of `root` deserialized on its own, and within a
/// section the key serde stopped at taken out before trying again (serde
/// stops at a value's first error): every wrong key, not only the first.
fn section_problems(root: &toml::Table, env: &BTreeMap<String, String>) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    for (name, value) in root {
        let mut only = toml::Table::new();
        only.insert(name.clone(), value.clone());
        let section_env = section_env(env, name);
        for attempt in 0..MAX_PROBLEMS_PER_SECTION {
            let Err(e) = from_table::<PlatformConfig>(only.clone(), &section_env) else {
                break;
            };
            // Once a key is taken out, a "missing field" may be that key,
            // already named as wrong.
            if attempt > 0 && e.message.starts_with("missing field") {
                break;
            }
            let removed = remove_key(&mut only, &e.key);
            problems.push(e);
            if !removed {
                break;
            }
        }
    }
    problems
}

/// Every wrong key of `cloudsec up`'s layers (its laptop defaults, the
/// file, the variables), named as [`check`] names them, touching neither
/// the disk nor a secrets back end: what `up` reports when its
/// configuration does not load.
pub fn check_local_layers(
    data_dir: &Path,
    file: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Vec<ConfigError> {
    let placeholder = Secret::new(PLACEHOLDER_PAGE_KEY);
    match local_layers(data_dir, file, env, &placeholder).and_then(|l| merge_tables(l, env)) {
        Ok(root) => section_problems(&root, env),
        Err(e) => vec![e],
    }
}

/// How many wrong keys [`check`] names in one section at most.
const MAX_PROBLEMS_PER_SECTION: usize = 32;

/// Takes the value at the dotted `path` (as [`ConfigError::key`] names it)
/// out of `table`; false when there is none. A map key may hold dots itself
/// (`gateway.routes."a.v1.S/M".limit`, quoted or not), so the longest key
/// that fits is tried first.
fn remove_key(table: &mut toml::Table, path: &str) -> bool {
    let mut fits: Vec<(String, usize)> = Vec::new();
    for key in table.keys() {
        for written in [key.clone(), format!("\"{key}\"")] {
            if path == written
                || path
                    .strip_prefix(written.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
            {
                fits.push((key.clone(), written.len()));
            }
        }
    }
    fits.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    for (key, len) in fits {
        if path.len() == len {
            return table.remove(&key).is_some();
        }
        if let Some(toml::Value::Table(inner)) = table.get_mut(&key)
            && remove_key(inner, &path[len + 1..])
        {
            return true;
        }
    }
    false
}

/// The variables of `env` that set keys of section `name`.
fn section_env(env: &BTreeMap<String, String>, name: &str) -> BTreeMap<String, String> {
    let prefix = format!(
        "{}{}__",
        cloudsec_runtime::config::ENV_PREFIX,
        name.to_ascii_uppercase()
    );
    env.iter()
        .filter(|(k, _)| k.to_ascii_uppercase().starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_key_finds_dotted_and_quoted_map_keys() {
        let mut table: toml::Table = toml::from_str(
            "[gateway]\nlisten = 1\n[gateway.routes.\"a.v1.S/M\"]\nlimit = 0\nqueue = 1\n\
             [gateway.routes.a]\nlimit = 2\n",
        )
        .unwrap();
        assert!(remove_key(&mut table, "gateway.routes.a.v1.S/M.limit"));
        assert!(remove_key(&mut table, "gateway.routes.\"a.v1.S/M\".queue"));
        assert!(!remove_key(&mut table, "gateway.routes.a.v1.S/M.limit"));
        assert!(remove_key(&mut table, "gateway.listen"));
        assert!(!remove_key(&mut table, "gateway.nothing"));
        assert!(!remove_key(&mut table, "gateway.routes[0]"));
        let want: toml::Table =
            toml::from_str("[gateway.routes.\"a.v1.S/M\"]\n[gateway.routes.a]\nlimit = 2\n")
                .unwrap();
        assert_eq!(table, want);
    }
}
