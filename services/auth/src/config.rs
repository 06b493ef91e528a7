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
    pub database_url: cloudsec_runtime::db::DatabaseUrl,
    /// Password hashes computed at once; defaults to the number of cores.
    #[serde(default)]
    pub hash_concurrency: Option<usize>,
    /// The workload certificate, in `serve` mode.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    #[serde(default = "default_grace", with = "humantime_serde")]
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
    pub password_policy: crate::password::PasswordPolicy,
    /// How many earlier passwords a new one may not repeat.
    #[serde(default = "default_password_history")]
    pub password_history: usize,
    /// Token-signing keys: where they are kept and how they rotate.
    #[serde(default)]
    pub signing: crate::keys::SigningConfig,
    /// Email confirmation and password-reset codes.
    #[serde(default)]
    pub confirmation: crate::codes::ConfirmationConfig,
    /// The sweeper of expired and abandoned rows.
    #[serde(default)]
    pub cleanup: crate::cleanup::CleanupConfig,
    /// External OpenID Connect providers users may sign in with, by name.
    #[serde(default)]
    pub federation: std::collections::BTreeMap<String, crate::federation::ProviderConfig>,
    /// App clients by `client_id`, beside the default `client_id`.
    #[serde(default)]
    pub clients: std::collections::BTreeMap<String, AppClientConfig>,
    /// Roles: the scopes each group's members get in their access tokens.
    /// The default maps `auditors` to `audit:read`; a configured table
    /// replaces it.
    #[serde(default = "default_group_scopes", deserialize_with = "group_scopes")]
    pub group_scopes: std::collections::BTreeMap<String, Vec<String>>,
}

fn default_group_scopes() -> std::collections::BTreeMap<String, Vec<String>> {
    std::collections::BTreeMap::from([("auditors".to_owned(), vec!["audit:read".to_owned()])])
}

/// Scopes are single words; `tenant:admin` comes only from the user's
/// admin flag, never from a group.
fn group_scopes<'de, D>(
    deserializer: D,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, D::Error>
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
            if scope == crate::core::ADMIN_SCOPE {
                return Err(serde::de::Error::custom(format!(
                    "{group}: `{scope}` comes from the user's admin flag, not from a group"
                )));
            }
        }
    }
    Ok(map)
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
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// Progressive lockout: after `threshold` consecutive failed logins for an
/// email, it is locked for `base`, doubling with each further failure up to
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutConfig {
    #[serde(default = "default_lockout_threshold")]
    pub threshold: u32,
    #[serde(default = "default_lockout_base", with = "humantime_serde")]
    pub base: Duration,
    #[serde(default = "default_lockout_max", with = "humantime_serde")]
    pub max: Duration,
    /// Failed logins from one client address, each within `ip_window` of
    /// the one before, after which that address may not log in for
    /// `ip_window`, whatever the email; 0 turns the limit off. The address
    /// is the one the gateway believes (`x-cloudsec-client-ip`).
    #[serde(default = "default_ip_threshold")]
    pub ip_threshold: u32,
    #[serde(default = "default_ip_window", with = "humantime_serde")]
    pub ip_window: Duration,
}

fn default_ip_threshold() -> u32 {
    50
}

fn default_ip_window() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            threshold: default_lockout_threshold(),
            base: default_lockout_base(),
            max: default_lockout_max(),
            ip_threshold: default_ip_threshold(),
            ip_window: default_ip_window(),
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

fn default_lockout_threshold() -> u32 {
    5
}

fn default_lockout_base() -> Duration {
    Duration::from_secs(30)
}

fn default_lockout_max() -> Duration {
    Duration::from_secs(15 * 60)
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
            database_url: Secret::new(url).into(),
            hash_concurrency: None,
            tls: None,
            shutdown_grace: default_grace(),
            refresh_token_ttl: default_refresh_ttl(),
            client_id: default_client_id(),
            lockout: LockoutConfig::default(),
            signing: crate::keys::SigningConfig::default(),
            password_history: default_password_history(),
            password_policy: crate::password::PasswordPolicy::default(),
            confirmation: crate::codes::ConfirmationConfig::default(),
            cleanup: crate::cleanup::CleanupConfig::default(),
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
