//! Typed configuration of the Vault client and the secrets provider.
//!
//! These types deserialize from the service's TOML section (unknown keys
//! are rejected, durations are humantime strings such as `"5s"`), e.g.
//!
//! ```toml
//! [secrets]
//! backend = "vault"
//! [secrets.vault]
//! address = "https://vault.internal:8200"
//! auth = { method = "kubernetes", role = "documents" }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use cloudsec_runtime::Secret;
use serde::Deserialize;

/// Where secrets come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretsConfig {
    /// The embedded default: an encrypted file under the data directory.
    Local {
        /// Defaults to `<data dir>/keystore`.
        dir: Option<PathBuf>,
    },
    /// HashiCorp Vault or OpenBao.
    Vault {
        vault: Box<VaultConfig>,
        #[serde(default)]
        cache: CacheConfig,
    },
}

/// How to reach and log in to Vault.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `http(s)://host:port`, e.g. `https://vault.internal:8200`.
    pub address: String,
    pub auth: VaultAuth,
    /// Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// PEM file of the CA that signed Vault's certificate (else the
    /// platform's roots).
    pub ca_cert: Option<PathBuf>,
    /// The longest a single Vault request may take.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Start-up retries while Vault is unreachable.
    #[serde(default)]
    pub retry: RetryConfig,
}

impl VaultConfig {
    /// A configuration with the defaults for everything but the address
    /// and the auth method.
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> Self {
        Self {
            address: address.into(),
            auth,
            namespace: None,
            ca_cert: None,
            request_timeout: default_request_timeout(),
            retry: RetryConfig::default(),
        }
    }
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// How the service proves who it is to Vault.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "method", deny_unknown_fields)]
pub enum VaultAuth {
    /// A token handed to the service (development, CI). It cannot be
    /// replaced when it expires, only renewed while it lives.
    #[serde(rename = "token")]
    Token { token: Secret },
    /// AppRole: a role id and a secret id, e.g. for VMs and CI runners.
    #[serde(rename = "approle")]
    AppRole {
        #[serde(default = "default_approle_mount")]
        mount: String,
        role_id: String,
        secret_id: Secret,
    },
    /// Kubernetes: the pod's service-account token, read from `jwt_path`
    /// at every login because the kubelet rotates the projected file.
    #[serde(rename = "kubernetes")]
    Kubernetes {
        #[serde(default = "default_kubernetes_mount")]
        mount: String,
        role: String,
        #[serde(default = "default_jwt_path")]
        jwt_path: PathBuf,
    },
}

impl VaultAuth {
    pub fn method(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::AppRole { .. } => "approle",
            Self::Kubernetes { .. } => "kubernetes",
        }
    }

    /// Whether a new token can be obtained when the current one dies.
    pub fn can_login_again(&self) -> bool {
        !matches!(self, Self::Token { .. })
    }
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}

fn default_jwt_path() -> PathBuf {
    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
}

/// Bounded retry with exponential backoff, used while connecting.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total, the first included; at least 1.
    pub attempts: u32,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 6,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryConfig {
    /// The pause after failed attempt `n` (1-based), before jitter.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How long values read from Vault's KV engine are kept.
///
/// A value younger than `refresh` is served from memory. An older one is
/// read again; if Vault is unavailable, the cached copy keeps serving until
/// it is `ttl` old, and after that reads fail with a clear error. Permission
/// and not-found answers are never masked by the cache.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(60),
            ttl: Duration::from_secs(15 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_auth_method() {
        let cfg: VaultConfig = toml::from_str(
            r#"
            address = "https://vault:8200"
            request_timeout = "3s"
            auth = { method = "approle", role_id = "r", secret_id = "s3cr3t" }
            retry = { attempts = 3, initial_backoff = "100ms" }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.request_timeout, Duration::from_secs(3));
        assert_eq!(cfg.retry.attempts, 3);
        assert_eq!(cfg.retry.max_backoff, Duration::from_secs(5));
        match &cfg.auth {
            VaultAuth::AppRole {
                mount, secret_id, ..
            } => {
                assert_eq!(mount, "approle");
                assert_eq!(secret_id.expose(), "s3cr3t");
            }
            other => panic!("wrong method {other:?}"),
        }
        assert!(!format!("{cfg:?}").contains("s3cr3t"));

        let cfg: VaultConfig = toml::from_str(
            r#"
            address = "https://vault:8200"
            auth = { method = "kubernetes", role = "documents" }
            "#,
        )
        .unwrap();
        assert!(matches!(
            cfg.auth,
            VaultAuth::Kubernetes { ref jwt_path, .. }
                if jwt_path.ends_with("serviceaccount/token")
        ));

        let cfg: VaultConfig =
            toml::from_str("address = \"http://v\"\nauth = { method = \"token\", token = \"t\" }")
                .unwrap();
        assert!(!cfg.auth.can_login_again());
    }

    #[test]
    fn rejects_unknown_keys() {
        let err = toml::from_str::<VaultConfig>(
            "address = \"http://v\"\nauth = { method = \"token\", token = \"t\" }\ntimeout = \"1s\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
        let err = toml::from_str::<VaultConfig>(
            "address = \"http://v\"\nauth = { method = \"token\", token = \"t\", role = \"x\" }",
        )
        .unwrap_err();
        assert!(err.to_string().contains("role"), "{err}");
        let err =
            toml::from_str::<VaultConfig>("address = \"http://v\"\nauth = { method = \"ldap\" }")
                .unwrap_err();
        assert!(err.to_string().contains("ldap"), "{err}");
    }

    #[test]
    fn parses_the_backend_choice() {
        let cfg: SecretsConfig = toml::from_str("backend = \"local\"").unwrap();
        assert!(matches!(cfg, SecretsConfig::Local { dir: None }));
        let cfg: SecretsConfig = toml::from_str(
            "backend = \"vault\"\ncache = { refresh = \"10s\" }\n[vault]\naddress = \"http://v\"\nauth = { method = \"token\", token = \"t\" }",
        )
        .unwrap();
        match cfg {
            SecretsConfig::Vault { cache, .. } => {
                assert_eq!(cache.refresh, Duration::from_secs(10));
                assert_eq!(cache.ttl, Duration::from_secs(900));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = RetryConfig {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        assert_eq!(r.backoff(1), Duration::from_millis(100));
        assert_eq!(r.backoff(2), Duration::from_millis(200));
        assert_eq!(r.backoff(3), Duration::from_millis(400));
        assert_eq!(r.backoff(4), Duration::from_millis(500));
        assert_eq!(r.backoff(40), Duration::from_millis(500));
    }
}
