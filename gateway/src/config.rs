//! The gateway's typed configuration.
//!
//! Every edge control (API keys, throttles, the JWT authorizer, CORS,
//! trusted proxies) is off by default, so a config that predates them keeps
//! its behaviour: the services stay the ones that verify tokens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cloudsec_runtime::Secret;
use cloudsec_runtime::config::{default_shutdown_grace, loopback};
use ipnet::IpNet;
use serde::Deserialize;

/// Where the gateway listens and which mesh peer serves each gRPC service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The public REST listener.
    #[serde(default = "loopback::<8080>")]
    pub listen: SocketAddr,
    /// `/live`, `/ready` and `/metrics`; keep it off the public network.
    #[serde(default = "loopback::<9090>")]
    pub admin_listen: SocketAddr,
    /// Keyed by full gRPC service name, e.g.
    /// `cloudsec.documents.v1.DocumentService`. An annotated service with
    /// no entry here gets no routes.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// The gateway's own workload certificate; read by the CLI, not by
    /// [`crate::Gateway::build`], which takes the loaded material.
    pub tls: Option<cloudsec_runtime::tls::TlsFiles>,
    /// The largest request body accepted. Documents allow 1 MiB of content,
    /// and JSON (base64 for bytes) needs room on top of that.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Sent upstream as `grpc-timeout` and enforced here too.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Whether unknown JSON fields and query parameters are a 400 (true) or
    /// ignored (false).
    #[serde(default = "default_true")]
    pub reject_unknown_fields: bool,
    /// How long requests in flight may finish after shutdown begins.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where rate-limit and quota state lives, e.g. `redis://127.0.0.1:6379`,
    /// so that every replica enforces one limit. Unset: in process.
    pub redis_url: Option<Secret>,
    /// Prepended to every limiter key in Redis, so that several gateway
    /// deployments (staging, production) can share one Redis.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// The longest a limiter round trip to Redis may take before the
    /// request is decided locally instead.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// After Redis failed, how long limits stay local before Redis is
    /// tried again.
    #[serde(default = "default_redis_retry", with = "humantime_serde")]
    pub redis_retry: Duration,
    /// Usage plans by name: what an API key on the plan may do.
    #[serde(default)]
    pub usage_plans: BTreeMap<String, UsagePlan>,
    /// API keys by id. Only the SHA-256 of each key is configured.
    #[serde(default)]
    pub api_keys: BTreeMap<String, ApiKey>,
    /// Per-route settings keyed by method selector:
    /// `pkg.Service/Method`, `pkg.Service/*` or `*`. For each setting the
    /// most specific selector that sets it wins.
    #[serde(default)]
    pub routes: BTreeMap<String, RoutePolicy>,
    /// A token bucket per client IP address, shared by all routes.
    pub client_ip_throttle: Option<Throttle>,
    /// Verify bearer tokens here before any call reaches a service.
    pub jwt: Option<JwtConfig>,
    /// Cross-origin requests from browsers; unset: no CORS headers and
    /// preflights get 405.
    pub cors: Option<CorsConfig>,
    /// Peers (CIDR ranges) whose `X-Forwarded-For`, `X-Forwarded-Proto`
    /// and API Gateway request id headers are believed, e.g. the VPC link's
    /// subnets. Empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Check `google.api.field_behavior = REQUIRED` fields before calling
    /// the service.
    #[serde(default = "default_true")]
    pub validate_requests: bool,
    /// Serve the OpenAPI 3.1 document at `/openapi.json`.
    #[serde(default = "default_true")]
    pub serve_openapi: bool,
    /// Terminate TLS on the REST listener with this certificate. Unset:
    /// plain HTTP (a load balancer or API Gateway terminates TLS).
    pub listen_tls: Option<ListenTls>,
    /// The web console's built files (`web/dist`), served at `/` with the
    /// console's security headers; unset: no console.
    pub console_dir: Option<PathBuf>,
}

/// The REST listener's own certificate, read once at start.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// What an API key on this plan may do. Quotas count allowed requests per
/// UTC calendar day and month.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsagePlan {
    /// Steady requests per second (the bucket's refill rate).
    pub rate: f64,
    /// Requests that may come at once (the bucket's size).
    pub burst: u32,
    pub quota_per_day: Option<u64>,
    pub quota_per_month: Option<u64>,
}

/// One API key; the key itself never appears in configuration or logs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Lowercase or uppercase hex SHA-256 of the key the client sends in
    /// `X-API-Key`.
    pub sha256: String,
    /// A name in `usage_plans`.
    pub plan: String,
    /// A disabled key is refused like an unknown one.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// A token bucket: `rate` per second, `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub rate: f64,
    pub burst: u32,
}

/// Settings for the routes of the methods a selector names; unset fields
/// fall back to a less specific selector, then to the defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutePolicy {
    /// Whether an `X-API-Key` is required (default false).
    pub api_key: Option<bool>,
    /// Scopes the token must all carry (with `[gateway.jwt]`).
    pub scopes: Option<Vec<String>>,
    /// One bucket for the route, shared by every client.
    pub throttle: Option<Throttle>,
    /// At most this many of the method's calls upstream at once, the rest
    /// queued (`admission.rs`): for expensive calls such as a login.
    pub concurrency: Option<Concurrency>,
    /// HTTP statuses for what the service answered, by gRPC code name,
    /// replacing the status table for these methods: e.g.
    /// `{ NOT_FOUND = 200 }` makes deleting a missing resource succeed
    /// with `{}`. A 2xx for an error code answers `{}` (nothing for 204);
    /// `OK` may only map to another 2xx.
    pub status_overrides: Option<BTreeMap<String, u16>>,
}

/// A method's admission: `limit` calls upstream at once, `queue` more
/// waiting up to `queue_timeout` each, the rest refused with 429.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    pub limit: u32,
    #[serde(default = "default_concurrency_queue")]
    pub queue: u32,
    #[serde(
        default = "default_concurrency_queue_timeout",
        with = "humantime_serde"
    )]
    pub queue_timeout: Duration,
}

fn default_concurrency_queue() -> u32 {
    64
}

fn default_concurrency_queue_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Concurrency {
    fn check(&self, key: &str, request_timeout: Duration) -> Result<(), ConfigError> {
        if self.limit == 0 {
            return Err(invalid(format!("{key}.limit"), "must be at least 1"));
        }
        if self.queue > 100_000 {
            return Err(invalid(format!("{key}.queue"), "must be at most 100000"));
        }
        if self.queue_timeout.is_zero() || self.queue_timeout >= request_timeout {
            return Err(invalid(
                format!("{key}.queue_timeout"),
                format!(
                    "must be more than 0s and less than gateway.request_timeout ({request_timeout:?})"
                ),
            ));
        }
        Ok(())
    }
}

/// The gRPC code named as in `google.rpc.Code` (`NOT_FOUND`), for
/// `status_overrides`.
pub(crate) fn grpc_code(name: &str) -> Option<tonic::Code> {
    use tonic::Code;
    Some(match name {
        "OK" => Code::Ok,
        "CANCELLED" => Code::Cancelled,
        "UNKNOWN" => Code::Unknown,
        "INVALID_ARGUMENT" => Code::InvalidArgument,
        "DEADLINE_EXCEEDED" => Code::DeadlineExceeded,
        "NOT_FOUND" => Code::NotFound,
        "ALREADY_EXISTS" => Code::AlreadyExists,
        "PERMISSION_DENIED" => Code::PermissionDenied,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        "FAILED_PRECONDITION" => Code::FailedPrecondition,
        "ABORTED" => Code::Aborted,
        "OUT_OF_RANGE" => Code::OutOfRange,
        "UNIMPLEMENTED" => Code::Unimplemented,
        "INTERNAL" => Code::Internal,
        "UNAVAILABLE" => Code::Unavailable,
        "DATA_LOSS" => Code::DataLoss,
        "UNAUTHENTICATED" => Code::Unauthenticated,
        _ => return None,
    })
}

/// The edge JWT authorizer. Whose tokens it accepts (issuer, audience,
/// revocations, a Cognito pool) is the platform's `[tokens]` section,
/// copied in during wiring, so the edge and the services can never
/// disagree; only how the edge fetches keys is set here.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `tokens.issuer` (set during wiring, not read from this section).
    #[serde(skip, default = "default_issuer")]
    pub issuer: String,
    /// `tokens.audience` (set during wiring).
    #[serde(skip, default = "default_audience")]
    pub audience: String,
    /// A JWKS document over HTTP(S). Unset: `GetJwks` on the upstream of
    /// `cloudsec.auth.v1.AuthService`.
    pub jwks_url: Option<String>,
    /// How often the key set is fetched even when every `kid` is known.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// The least time between two fetches caused by unknown key ids, so
    /// that tokens with made-up `kid`s cannot hammer the key source.
    #[serde(default = "default_jwks_min_refresh", with = "humantime_serde")]
    pub min_refresh_interval: Duration,
    /// `tokens.revocation_interval` (set during wiring): how often the auth
    /// service's token revocations are pulled.
    #[serde(skip, default = "cloudsec_runtime::token::default_revocation_interval")]
    pub revocation_interval: Duration,
    /// Method selectors that need no token, besides the methods whose
    /// contract says so (`cloudsec.api.v1.authentication`: signing up and
    /// in, codes, refresh and logout, the keys).
    #[serde(default)]
    pub public: Vec<String>,
    /// `tokens.cognito` (set during wiring): also accept access tokens of
    /// this user pool.
    #[serde(skip)]
    pub cognito: Option<cloudsec_runtime::token::CognitoConfig>,
}

/// Cross-origin resource sharing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins such as `https://app.example.com`, or `*`.
    pub allowed_origins: Vec<String>,
    /// Request headers a preflight may ask for.
    #[serde(default = "default_cors_headers")]
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    #[serde(default = "default_cors_expose")]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    #[serde(default = "default_cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Send `Access-Control-Allow-Credentials: true` (not with `*`).
    #[serde(default)]
    pub allow_credentials: bool,
}

/// A mesh peer that serves one gRPC service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `https://host:port`.
    pub uri: String,
    /// The name the peer's certificate must carry, e.g.
    /// `documents.default.svc`.
    pub server_name: String,
}

fn default_max_body_bytes() -> usize {
    2 * 1024 * 1024
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_true() -> bool {
    true
}

fn default_redis_prefix() -> String {
    "cloudsec:gateway:".to_owned()
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_redis_retry() -> Duration {
    Duration::from_secs(1)
}

fn default_issuer() -> String {
    cloudsec_runtime::token::DEFAULT_ISSUER.to_owned()
}

fn default_audience() -> String {
    cloudsec_runtime::token::DEFAULT_AUDIENCE.to_owned()
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

fn default_jwks_min_refresh() -> Duration {
    cloudsec_runtime::token::REFRESH_INTERVAL
}

fn default_cors_headers() -> Vec<String> {
    ["authorization", "content-type", "x-api-key", "x-request-id"]
        .map(str::to_owned)
        .to_vec()
}

fn default_cors_expose() -> Vec<String> {
    ["x-request-id", "retry-after"].map(str::to_owned).to_vec()
}

fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: loopback::<8080>(),
            admin_listen: loopback::<9090>(),
            upstreams: BTreeMap::new(),
            tls: None,
            max_body_bytes: default_max_body_bytes(),
            request_timeout: default_request_timeout(),
            reject_unknown_fields: true,
            shutdown_grace: default_shutdown_grace(),
            redis_url: None,
            redis_prefix: default_redis_prefix(),
            redis_timeout: default_redis_timeout(),
            redis_retry: default_redis_retry(),
            usage_plans: BTreeMap::new(),
            api_keys: BTreeMap::new(),
            routes: BTreeMap::new(),
            client_ip_throttle: None,
            jwt: None,
            cors: None,
            trusted_proxies: Vec::new(),
            validate_requests: true,
            serve_openapi: true,
            listen_tls: None,
            console_dir: None,
        }
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: default_issuer(),
            audience: default_audience(),
            jwks_url: None,
            refresh_interval: default_jwks_refresh(),
            min_refresh_interval: default_jwks_min_refresh(),
            revocation_interval: cloudsec_runtime::token::default_revocation_interval(),
            public: Vec::new(),
            cognito: None,
        }
    }
}

impl CorsConfig {
    /// Allows `origins` with every other setting at its default.
    pub fn allowing(origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            allowed_origins: origins.into_iter().map(Into::into).collect(),
            allowed_headers: default_cors_headers(),
            expose_headers: default_cors_expose(),
            max_age: default_cors_max_age(),
            allow_credentials: false,
        }
    }
}

/// A setting that parses but cannot work; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid gateway setting `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Throttle {
    fn check(&self, key: &str) -> Result<(), ConfigError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(invalid(format!("{key}.rate"), "must be a positive number"));
        }
        if self.burst == 0 {
            return Err(invalid(format!("{key}.burst"), "must be at least 1"));
        }
        Ok(())
    }
}

/// Whether `selector` is `*`, `pkg.Service/*` or `pkg.Service/Method`.
pub(crate) fn valid_selector(selector: &str) -> bool {
    if selector == "*" {
        return true;
    }
    let Some((service, method)) = selector.split_once('/') else {
        return false;
    };
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    service.split('.').all(ident) && (method == "*" || ident(method))
}

impl GatewayConfig {
    /// Checks what serde cannot: numbers in range, names that refer to
    /// each other, selectors, hashes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, plan) in &self.usage_plans {
            let key = format!("gateway.usage_plans.{name}");
            Throttle {
                rate: plan.rate,
                burst: plan.burst,
            }
            .check(&key)?;
            for (field, quota) in [
                ("quota_per_day", plan.quota_per_day),
                ("quota_per_month", plan.quota_per_month),
            ] {
                if quota == Some(0) {
                    return Err(invalid(format!("{key}.{field}"), "must be at least 1"));
                }
            }
        }
        let mut hashes = std::collections::BTreeSet::new();
        for (id, api_key) in &self.api_keys {
            let key = format!("gateway.api_keys.{id}");
            if api_key.sha256.len() != 64 || !api_key.sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(invalid(
                    format!("{key}.sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)",
                ));
            }
            if !hashes.insert(api_key.sha256.to_ascii_lowercase()) {
                return Err(invalid(
                    format!("{key}.sha256"),
                    "another key has the same hash",
                ));
            }
            if !self.usage_plans.contains_key(&api_key.plan) {
                return Err(invalid(
                    format!("{key}.plan"),
                    format!("no usage plan `{}`", api_key.plan),
                ));
            }
        }
        for (selector, policy) in &self.routes {
            let key = format!("gateway.routes.\"{selector}\"");
            if !valid_selector(selector) {
                return Err(invalid(
                    key,
                    "a selector is `*`, `pkg.Service/*` or `pkg.Service/Method`",
                ));
            }
            if let Some(throttle) = &policy.throttle {
                throttle.check(&format!("{key}.throttle"))?;
            }
            if let Some(concurrency) = &policy.concurrency {
                concurrency.check(&format!("{key}.concurrency"), self.request_timeout)?;
            }
            for (name, status) in policy.status_overrides.iter().flatten() {
                let at = format!("{key}.status_overrides.{name}");
                let Some(code) = grpc_code(name) else {
                    return Err(invalid(
                        at,
                        "not a gRPC code name such as NOT_FOUND or FAILED_PRECONDITION",
                    ));
                };
                let Ok(status) = http::StatusCode::from_u16(*status) else {
                    return Err(invalid(at, "not an HTTP status"));
                };
                if !(200..=599).contains(&status.as_u16()) {
                    return Err(invalid(at, "must be from 200 to 599"));
                }
                if code == tonic::Code::Ok && !status.is_success() {
                    return Err(invalid(at, "OK may only become another 2xx status"));
                }
            }
            if policy.api_key == Some(true) && self.api_keys.is_empty() {
                tracing::warn!(%selector, "routes require an API key but none is configured");
            }
        }
        if let Some(throttle) = &self.client_ip_throttle {
            throttle.check("gateway.client_ip_throttle")?;
        }
        if let Some(jwt) = &self.jwt {
            for selector in &jwt.public {
                if !valid_selector(selector) {
                    return Err(invalid(
                        "gateway.jwt.public",
                        format!("`{selector}` is not `*`, `pkg.Service/*` or `pkg.Service/Method`"),
                    ));
                }
            }
            if jwt.refresh_interval.is_zero() {
                return Err(invalid(
                    "gateway.jwt.refresh_interval",
                    "must be more than 0s",
                ));
            }
            if jwt.revocation_interval.is_zero() {
                return Err(invalid(
                    "gateway.jwt.revocation_interval",
                    "must be more than 0s",
                ));
            }
        }
        if let Some(cors) = &self.cors {
            for origin in &cors.allowed_origins {
                if origin == "*" {
                    if cors.allow_credentials {
                        return Err(invalid(
                            "gateway.cors.allowed_origins",
                            "`*` cannot be combined with allow_credentials",
                        ));
                    }
                } else if !(origin.starts_with("http://") || origin.starts_with("https://"))
                    || origin.ends_with('/')
                {
                    return Err(invalid(
                        "gateway.cors.allowed_origins",
                        format!("`{origin}` is not an origin like https://app.example.com"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_every_default() {
        let config: GatewayConfig = serde_json::from_str("{}").unwrap();
        let default = GatewayConfig::default();
        assert_eq!(config.listen, default.listen);
        assert_eq!(config.admin_listen, default.admin_listen);
        assert_eq!(config.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert!(config.reject_unknown_fields);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn edge_settings_are_off_by_default() {
        let config = GatewayConfig::default();
        assert!(config.redis_url.is_none());
        assert!(config.api_keys.is_empty() && config.routes.is_empty());
        assert!(config.jwt.is_none() && config.cors.is_none());
        assert!(config.trusted_proxies.is_empty());
        assert!(config.validate_requests && config.serve_openapi);
        assert_eq!(config.redis_timeout, Duration::from_millis(100));
        config.validate().unwrap();
    }

    #[test]
    fn reads_every_edge_setting() {
        let hash = "a".repeat(64);
        let config: GatewayConfig = serde_json::from_value(serde_json::json!({
            "redis_url": "redis://:pw@127.0.0.1:6379",
            "redis_retry": "250ms",
            "usage_plans": {"basic": {"rate": 5.0, "burst": 10, "quota_per_day": 1000}},
            "api_keys": {"partner": {"sha256": hash, "plan": "basic"}},
            "routes": {
                "*": {"api_key": true},
                "cloudsec.documents.v1.DocumentService/DeleteDocument": {
                    "scopes": ["tenant:admin"], "throttle": {"rate": 1.0, "burst": 2},
                    "status_overrides": {"NOT_FOUND": 204},
                },
                "cloudsec.auth.v1.AuthService/Login": {"concurrency": {"limit": 4}},
            },
            "client_ip_throttle": {"rate": 50.0, "burst": 100},
            "jwt": {"refresh_interval": "1m"},
            "cors": {"allowed_origins": ["https://app.example.com"], "max_age": "1h"},
            "trusted_proxies": ["10.0.0.0/8", "2001:db8::/32"],
            "listen_tls": {"cert_file": "/etc/gw/cert.pem", "key_file": "/etc/gw/key.pem"},
        }))
        .unwrap();
        assert_eq!(
            config.listen_tls.as_ref().unwrap().cert_file,
            PathBuf::from("/etc/gw/cert.pem")
        );
        config.validate().unwrap();
        assert!(
            !format!("{config:?}").contains("pw@"),
            "the Redis URL leaked"
        );
        assert_eq!(config.usage_plans["basic"].quota_per_day, Some(1000));
        assert_eq!(
            config.routes["cloudsec.auth.v1.AuthService/Login"].concurrency,
            Some(Concurrency {
                limit: 4,
                queue: 64,
                queue_timeout: Duration::from_secs(5)
            })
        );
        assert!(config.api_keys["partner"].enabled);
        let jwt = config.jwt.unwrap();
        assert_eq!(jwt.refresh_interval, Duration::from_secs(60));
        assert!(
            jwt.public.is_empty(),
            "the contracts say which methods are public"
        );
        assert_eq!(config.cors.unwrap().max_age, Duration::from_secs(3600));
        assert_eq!(config.trusted_proxies.len(), 2);
    }

    #[test]
    fn settings_that_cannot_work_name_their_key() {
        let cases = [
            (
                serde_json::json!({"usage_plans": {"p": {"rate": 0.0, "burst": 1}}}),
                "gateway.usage_plans.p.rate",
            ),
            (
                serde_json::json!({"usage_plans": {"p": {"rate": 1.0, "burst": 0}}}),
                "gateway.usage_plans.p.burst",
            ),
            (
                serde_json::json!({"routes": {"a.v1.S/M": {"concurrency": {"limit": 0}}}}),
                "gateway.routes.\"a.v1.S/M\".concurrency.limit",
            ),
            (
                serde_json::json!({"routes": {"a.v1.S/M": {"concurrency": {"limit": 2, "queue_timeout": "30s"}}}}),
                "gateway.routes.\"a.v1.S/M\".concurrency.queue_timeout",
            ),
            (
                serde_json::json!({"routes": {"a.v1.S/M": {"concurrency": {"limit": 2, "queue": 1000000}}}}),
                "gateway.routes.\"a.v1.S/M\".concurrency.queue",
            ),
            (
                serde_json::json!({"api_keys": {"k": {"sha256": "abc", "plan": "p"}}}),
                "gateway.api_keys.k.sha256",
            ),
            (
                serde_json::json!({"api_keys": {"k": {"sha256": "b".repeat(64), "plan": "nope"}}}),
                "gateway.api_keys.k.plan",
            ),
            (
                serde_json::json!({"routes": {"GET /v1/x": {"api_key": true}}}),
                "gateway.routes",
            ),
            (
                serde_json::json!({"client_ip_throttle": {"rate": -1.0, "burst": 1}}),
                "gateway.client_ip_throttle.rate",
            ),
            (
                serde_json::json!({"jwt": {"public": ["nope"]}}),
                "gateway.jwt.public",
            ),
            (
                serde_json::json!({"cors": {"allowed_origins": ["*"], "allow_credentials": true}}),
                "gateway.cors.allowed_origins",
            ),
            (
                serde_json::json!({"cors": {"allowed_origins": ["app.example.com"]}}),
                "gateway.cors.allowed_origins",
            ),
            (
                serde_json::json!({"routes": {"a.v1.S/M": {"status_overrides": {"NOPE": 200}}}}),
                "gateway.routes.\"a.v1.S/M\".status_overrides.NOPE",
            ),
            (
                serde_json::json!({"routes": {"a.v1.S/M": {"status_overrides": {"OK": 404}}}}),
                "gateway.routes.\"a.v1.S/M\".status_overrides.OK",
            ),
            (
                serde_json::json!({"routes": {"a.v1.S/M": {"status_overrides": {"NOT_FOUND": 99}}}}),
                "gateway.routes.\"a.v1.S/M\".status_overrides.NOT_FOUND",
            ),
            (
                serde_json::json!({"routes": {"a.v1.S/M": {"status_overrides": {"NOT_FOUND": 600}}}}),
                "gateway.routes.\"a.v1.S/M\".status_overrides.NOT_FOUND",
            ),
        ];
        for (json, key) in cases {
            let config: GatewayConfig = serde_json::from_value(json.clone()).unwrap();
            let error = config.validate().unwrap_err();
            assert!(error.key.starts_with(key), "{json}: {error}");
        }
        // Typos inside the new tables are refused too.
        let error = serde_json::from_value::<GatewayConfig>(
            serde_json::json!({"usage_plans": {"p": {"rate": 1.0, "burst": 1, "quota": 5}}}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("quota"), "{error}");
        assert!(
            serde_json::from_value::<GatewayConfig>(
                serde_json::json!({"trusted_proxies": ["not-a-cidr"]})
            )
            .is_err()
        );
    }

    #[test]
    fn selectors() {
        for ok in ["*", "a.v1.S/*", "a.v1.S/Method", "S/M"] {
            assert!(valid_selector(ok), "{ok}");
        }
        for bad in [
            "",
            "a.v1.S",
            "a.v1.S/",
            "/M",
            "a..b/M",
            "a.v1.S/M/x",
            "GET /v1",
        ] {
            assert!(!valid_selector(bad), "{bad}");
        }
    }

    #[test]
    fn reads_durations_and_upstreams_and_rejects_unknown_keys() {
        let config: GatewayConfig = serde_json::from_str(
            r#"{"request_timeout": "5s", "upstreams": {"a.v1.S": {"uri": "https://h:1", "server_name": "s.default.svc"}}}"#,
        )
        .unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.upstreams["a.v1.S"].server_name, "s.default.svc");

        let error = serde_json::from_str::<GatewayConfig>(r#"{"listn": "127.0.0.1:1"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("listn"), "{error}");
    }
}
