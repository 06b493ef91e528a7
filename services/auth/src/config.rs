//! The `[auth]` section of the configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use cloudsec_runtime::Secret;
use cloudsec_runtime::config::{default_shutdown_grace, loopback};
use cloudsec_runtime::tls::TlsFiles;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "loopback::<7001>")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "loopback::<9101>")]
    pub admin_listen: SocketAddr,
    /// `sqlite://path` or `postgres://user:pass@host/db`.
    pub database_url: cloudsec_runtime::db::DatabaseUrl,
    /// Password hashes computed at once; defaults to the number of cores.
    pub hash_concurrency: Option<usize>,
    /// The CPUs the hashing threads may run on (Linux; `"1"`, `"2-3"`), so
    /// that where auth shares a machine with the request path a login storm
    /// keeps to cores of its own. Unset: any CPU the process may use.
    pub hash_cpus: Option<CpuList>,
    /// The workload certificate, in `serve` mode.
    pub tls: Option<TlsFiles>,
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a login's refresh tokens live, counted from the login:
    /// rotation does not extend it.
    #[serde(default = "default_refresh_ttl", with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// The app client tokens are issued to (`client_id`), until app clients
    /// can be registered.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub lockout: LockoutConfig,
    /// Length and character classes of new passwords.
    #[serde(default)]
    pub password_policy: PasswordPolicy,
    /// How many earlier passwords a new one may not repeat.
    #[serde(default = "default_password_history")]
    pub password_history: usize,
    /// Token-signing keys: where they are kept and how they rotate.
    #[serde(default)]
    pub signing: SigningConfig,
    /// Email confirmation and password-reset codes.
    #[serde(default)]
    pub confirmation: ConfirmationConfig,
    /// The sweeper of expired and abandoned rows.
    #[serde(default)]
    pub cleanup: CleanupConfig,
    /// External OpenID Connect providers users may sign in with, by name.
    #[serde(default)]
    pub federation: BTreeMap<String, ProviderConfig>,
    /// App clients by `client_id`, beside the default `client_id`.
    #[serde(default)]
    pub clients: BTreeMap<String, AppClientConfig>,
    /// Roles: the scopes each group's members get in their access tokens.
    /// The default maps `auditors` to `audit:read`; a configured table
    /// replaces it.
    #[serde(default = "default_group_scopes", deserialize_with = "group_scopes")]
    pub group_scopes: BTreeMap<String, Vec<String>>,
}

fn default_group_scopes() -> BTreeMap<String, Vec<String>> {
    std::collections::BTreeMap::from([("auditors".to_owned(), vec!["audit:read".to_owned()])])
}

/// Scopes are single words; `tenant:admin` comes only from the user's
/// admin flag, never from a group.
fn group_scopes<'de, D>(deserializer: D) -> Result<BTreeMap<String, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let map = std::collections::BTreeMap::<String, Vec<String>>::deserialize(deserializer)?;
    for (group, scopes) in &map {
        for scope in scopes {
            if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(serde::de::Error::custom(format!(
                    "{group}: `{scope}` is not a scope (one word, no spaces)"
                )));
            }
            if scope == cloudsec_runtime::token::ADMIN_SCOPE {
                return Err(serde::de::Error::custom(format!(
                    "{group}: `{scope}` comes from the user's admin flag, not from a group"
                )));
            }
        }
    }
    Ok(map)
}

/// A set of CPUs in the kernel's list format (`"1"`, `"2-3"`, `"0,4-7"`),
/// as `taskset -c` and `cpuset.cpus` write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

/// The highest CPU number a list may name (the kernel's `CPU_SETSIZE`).
pub const MAX_CPU: usize = 1023;

impl CpuList {
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    /// Keeps the calling thread to these CPUs; the message names a CPU of
    /// the list it may not run on (the kernel takes a list if any one CPU
    /// of it is usable, so the result is read back). Auth's hashing threads
    /// call it, and the login-storm benchmark for its load generator.
    pub fn pin_current_thread(&self) -> Result<(), String> {
        #[cfg(target_os = "linux")]
        {
            use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
            let mut set = CpuSet::new();
            for &cpu in &self.0 {
                if cpu >= CpuSet::MAX_CPU {
                    return Err(format!("CPU {cpu} is beyond the kernel's CPU set"));
                }
                set.set(cpu);
            }
            let listed = || {
                let cpus: Vec<String> = self.0.iter().map(ToString::to_string).collect();
                cpus.join(",")
            };
            sched_setaffinity(None, &set).map_err(|e| {
                format!(
                    "none of CPUs {} is one this machine lets auth use (the kernel said: {e})",
                    listed()
                )
            })?;
            let got =
                sched_getaffinity(None).map_err(|e| format!("cannot read the CPUs back: {e}"))?;
            match self.0.iter().find(|&&cpu| !got.is_set(cpu)) {
                Some(cpu) => Err(format!("CPU {cpu} is not one this machine lets auth use")),
                None => Ok(()),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err("CPU sets are kept on Linux only".into())
        }
    }
}

impl std::str::FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut cpus = std::collections::BTreeSet::new();
        for part in text.split(',').map(str::trim) {
            let cpu = |s: &str| -> Result<usize, String> {
                let n: usize = s.trim().parse().map_err(|_| {
                    format!(
                        "{s:?} is not a CPU number (a list looks like \"1\", \"2-3\" or \"0,4-7\")"
                    )
                })?;
                if n > MAX_CPU {
                    return Err(format!("CPU {n} is above {MAX_CPU}"));
                }
                Ok(n)
            };
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (cpu(a)?, cpu(b)?),
                None => (cpu(part)?, cpu(part)?),
            };
            if first > last {
                return Err(format!("the range {part:?} runs backwards"));
            }
            cpus.extend(first..=last);
        }
        Ok(Self(cpus.into_iter().collect()))
    }
}

impl<'de> Deserialize<'de> for CpuList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An app client: what its logins' tokens may be. Unset values are the
/// platform's (`tokens.access_ttl`, `auth.refresh_token_ttl`, every scope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppClientConfig {
    /// At most `tokens.access_ttl`, which the signing keys' overlap is
    /// sized for.
    #[serde(default, with = "humantime_serde")]
    pub access_token_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub refresh_token_ttl: Option<Duration>,
    /// The scopes its tokens may carry; a user's other scopes are left
    /// out.
    pub scopes: Option<Vec<String>>,
}

/// Progressive lockout: after `threshold` consecutive failed logins for an
/// email, it is locked for `base`, doubling with each further failure up to
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutConfig {
    pub threshold: u32,
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Failed logins from one client address, each within `ip_window` of
    /// the one before, after which that address may not log in for
    /// `ip_window`, whatever the email; 0 turns the limit off. The address
    /// is the one the gateway believes (`x-cloudsec-client-ip`).
    pub ip_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub ip_window: Duration,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            base: Duration::from_secs(30),
            max: Duration::from_secs(15 * 60),
            ip_threshold: 50,
            ip_window: Duration::from_secs(15 * 60),
        }
    }
}

fn default_password_history() -> usize {
    5
}

fn default_refresh_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_client_id() -> String {
    "cloudsec".to_owned()
}

impl AuthConfig {
    /// Defaults with the given database.
    pub fn with_database(url: &str) -> Self {
        Self {
            grpc_listen: loopback::<7001>(),
            admin_listen: loopback::<9101>(),
            database_url: Secret::new(url).into(),
            hash_concurrency: None,
            hash_cpus: None,
            tls: None,
            shutdown_grace: default_shutdown_grace(),
            refresh_token_ttl: default_refresh_ttl(),
            client_id: default_client_id(),
            lockout: LockoutConfig::default(),
            signing: SigningConfig::default(),
            password_history: default_password_history(),
            password_policy: PasswordPolicy::default(),
            confirmation: ConfirmationConfig::default(),
            cleanup: CleanupConfig::default(),
            group_scopes: default_group_scopes(),
            clients: std::collections::BTreeMap::new(),
            federation: std::collections::BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        auth: AuthConfig,
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        let parse = |t: &str| t.parse::<CpuList>().map(|l| l.cpus().to_vec());
        assert_eq!(parse("1").unwrap(), [1]);
        assert_eq!(parse("2-3").unwrap(), [2, 3]);
        assert_eq!(parse("0, 4-6,5").unwrap(), [0, 4, 5, 6]);
        for bad in ["", "a", "3-1", "1-", "-1", "1,,2", "99999"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let w: Wrapper =
            toml::from_str("[auth]\ndatabase_url = \"sqlite://x\"\nhash_cpus = \"1-2\"\n").unwrap();
        assert_eq!(w.auth.hash_cpus.unwrap().cpus(), [1, 2]);
        let bad =
            toml::from_str::<Wrapper>("[auth]\ndatabase_url = \"sqlite://x\"\nhash_cpus = \"x\"\n");
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("not a CPU number"), "{message}");
    }

    #[test]
    fn session_settings_default_and_parse() {
        let w: Wrapper = toml::from_str("[auth]\ndatabase_url = \"sqlite://x\"\n").unwrap();
        assert_eq!(
            w.auth.refresh_token_ttl,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(w.auth.client_id, "cloudsec");
        assert_eq!(w.auth.lockout, LockoutConfig::default());
        assert_eq!(w.auth.group_scopes["auditors"], ["audit:read"]);

        let w: Wrapper = toml::from_str(
            "[auth]\ndatabase_url = \"sqlite://x\"\nrefresh_token_ttl = \"7d\"\n\
             [auth.lockout]\nthreshold = 3\nmax = \"1h\"\n",
        )
        .unwrap();
        assert_eq!(w.auth.refresh_token_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(w.auth.lockout.threshold, 3);
        assert_eq!(w.auth.lockout.base, Duration::from_secs(30));
        assert_eq!(w.auth.lockout.max, Duration::from_secs(3600));

        let bad = toml::from_str::<Wrapper>(
            "[auth]\ndatabase_url = \"sqlite://x\"\n[auth.lockout]\nthreshhold = 3\n",
        );
        assert!(bad.is_err(), "unknown keys are refused");

        let w: Wrapper = toml::from_str(
            "[auth]\ndatabase_url = \"sqlite://x\"\n[auth.group_scopes]\nreaders = [\"audit:read\", \"reports\"]\n",
        )
        .unwrap();
        assert_eq!(w.auth.group_scopes["readers"], ["audit:read", "reports"]);
        assert!(!w.auth.group_scopes.contains_key("auditors"), "replaced");
        for bad in ["[\"tenant:admin\"]", "[\"two words\"]", "[\"\"]"] {
            let text =
                format!("[auth]\ndatabase_url = \"sqlite://x\"\n[auth.group_scopes]\ng = {bad}\n");
            assert!(toml::from_str::<Wrapper>(&text).is_err(), "{bad}");
        }
    }
}

pub const MIN_LENGTH: usize = 12;

/// `[auth.password_policy]`: what a new password must have beyond what
/// is always checked (at most 128 characters, not only digits, not the
/// email's name, not common or breached, zxcvbn score 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    /// At least this many characters (12 by default; not below 8).
    pub min_length: usize,
    /// At least this many of the four classes: lowercase, uppercase,
    /// digits, others (symbols, spaces, non-ASCII letters). 0 by default:
    /// NIST SP 800-63B advises length and breach checks over composition
    /// rules, but some compliance regimes demand them.
    pub min_classes: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: MIN_LENGTH,
            min_classes: 0,
        }
    }
}

/// The `[auth.signing]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// How old the newest key may get before a new one is made.
    #[serde(with = "humantime_serde")]
    pub rotation_period: Duration,
    /// How long a new key is published before it signs.
    #[serde(with = "humantime_serde")]
    pub publish_ahead: Duration,
    /// The longest time between two reloads of the key set.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    pub store: KeyStoreConfig,
    /// The key-encryption key that seals private keys kept in the
    /// database; empty keeps them in the clear.
    pub encryption_key: String,
    /// Vault's transit mount, when `[secrets]` is Vault.
    pub transit_mount: String,
    /// AWS KMS as the key service that seals private keys and MFA secrets,
    /// instead of the platform's `[secrets]` (transit or the keystore):
    /// `encryption_key` is the alias `<alias_prefix><encryption_key>`, and
    /// every data key is bound to the key id (or the user id) it seals, as
    /// its encryption context (see `cloudsec_secrets::kms`). The key must
    /// exist unless `create_keys`.
    pub kms: Option<cloudsec_secrets::KmsConfig>,
}

fn default_transit_mount() -> String {
    "transit".into()
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            rotation_period: Duration::from_secs(30 * 24 * 3600),
            // Verifiers refresh their JWKS on an unknown kid anyway; this
            // covers those that only refresh on a schedule.
            publish_ahead: Duration::from_secs(15 * 60),
            check_interval: Duration::from_secs(60),
            store: KeyStoreConfig::default(),
            encryption_key: "auth-signing-keys".into(),
            transit_mount: default_transit_mount(),
            kms: None,
        }
    }
}

/// Where the private keys are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyStoreConfig {
    /// The `signing_keys` table of the auth database.
    #[default]
    Database,
    /// One KV v2 secret, through the platform's `[secrets]` Vault.
    Vault {
        #[serde(default = "default_kv_mount")]
        mount: String,
        #[serde(default = "default_kv_path")]
        path: String,
    },
}

fn default_kv_mount() -> String {
    "secret".into()
}

fn default_kv_path() -> String {
    "cloudsec/auth/signing-keys".into()
}

/// `[auth.confirmation]`: whether sign-ups must confirm their email, and
/// how codes behave.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfirmationConfig {
    /// When false, sign-ups can log in at once (no code is sent); password
    /// reset still uses codes.
    pub required: bool,
    /// How long a sign-up code is valid.
    #[serde(with = "humantime_serde")]
    pub code_ttl: Duration,
    /// How long a password-reset code is valid.
    #[serde(with = "humantime_serde")]
    pub reset_code_ttl: Duration,
    /// Wrong tries a code survives.
    pub max_attempts: u32,
    /// The least time between two codes sent to one user for one purpose.
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// The key-encryption key that seals codes for the mailer (a Vault
    /// transit key, a KMS key, or one of the local keystore). The auth
    /// service needs only to make data keys under it; the mailer alone
    /// needs to decrypt (`deploy/vault/policies/`).
    pub mailer_key: String,
    /// The transit mount of `mailer_key` (with Vault).
    pub transit_mount: String,
    /// AWS KMS as the key service of `mailer_key` (the alias
    /// `<alias_prefix><mailer_key>`), instead of the platform's
    /// `[secrets]`; each code's data key is bound to its user, tenant and
    /// purpose as the encryption context.
    pub kms: Option<cloudsec_secrets::KmsConfig>,
}

impl Default for ConfirmationConfig {
    fn default() -> Self {
        Self {
            required: true,
            code_ttl: Duration::from_secs(24 * 3600),
            reset_code_ttl: Duration::from_secs(3600),
            max_attempts: 5,
            resend_interval: Duration::from_secs(60),
            mailer_key: "cloudsec-mailer".to_owned(),
            transit_mount: default_transit_mount(),
            kms: None,
        }
    }
}

/// `[auth.cleanup]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanupConfig {
    /// Time between sweeps; more than zero.
    #[serde(deserialize_with = "nonzero")]
    pub interval: Duration,
    /// A sign-up not confirmed this long after it was made is deleted,
    /// which frees its email and tenant name.
    #[serde(with = "humantime_serde")]
    pub unconfirmed_ttl: Duration,
    /// Failed-login counters untouched this long (and not locking) are
    /// deleted: failures that far apart no longer add up.
    #[serde(with = "humantime_serde")]
    pub failures_ttl: Duration,
}

/// A humantime duration other than zero: a zero interval would sweep
/// without pause.
fn nonzero<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Duration, D::Error> {
    let value: Duration = humantime_serde::deserialize(deserializer)?;
    if value.is_zero() {
        return Err(serde::de::Error::custom("must be more than 0s"));
    }
    Ok(value)
}

impl Default for CleanupConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10 * 60),
            unconfirmed_ttl: Duration::from_secs(7 * 24 * 3600),
            failures_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[auth.federation.<name>]`: one external provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider's issuer; its discovery document is under it.
    pub issuer: String,
    /// Our client id at the provider: the ID token's audience.
    pub client_id: String,
    /// Sent with `client_secret_post` when set (confidential clients).
    pub client_secret: Option<Secret>,
    /// Where the provider sends the browser back: the app's page that
    /// calls `CompleteFederatedLogin`.
    pub redirect_uri: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The existing tenant that users new to cloudsec join (as members).
    pub tenant: String,
    /// Which ID-token claims carry the user's attributes.
    #[serde(default)]
    pub attributes: AttributeMapping,
    /// Provider group → cloudsec group; see the module docs.
    #[serde(default, deserialize_with = "group_map")]
    pub group_map: BTreeMap<String, String>,
}

/// `[auth.federation.<name>.attributes]`: claim names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributeMapping {
    /// The claim with the email (`email`).
    pub email: String,
    /// The claim saying the provider verified it (`email_verified`).
    pub email_verified: String,
    /// The claim listing the user's groups at the provider (an array, or
    /// one space-separated string); unset, groups are not mapped.
    pub groups: Option<String>,
}

impl Default for AttributeMapping {
    fn default() -> Self {
        Self {
            email: "email".into(),
            email_verified: "email_verified".into(),
            groups: None,
        }
    }
}

/// A `group_map` whose targets are group names.
fn group_map<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, String>::deserialize(deserializer)?;
    for (from, to) in &map {
        if !is_group_name(to) {
            return Err(serde::de::Error::custom(format!(
                "`{from}` maps to `{to}`, which is not a group name (1 to 64 letters, digits, `-`, `_` and `.`)"
            )));
        }
    }
    Ok(map)
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into()]
}

/// 1 to 64 letters, digits, `-`, `_` and `.`.
pub(crate) fn is_group_name(group: &str) -> bool {
    (1..=64).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
