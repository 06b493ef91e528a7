//! The `[proxy]` configuration section.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use cloudsec_identity::SpiffeId;
use cloudsec_runtime::ConfigError;
use cloudsec_runtime::config::{default_shutdown_grace, loopback};
use cloudsec_runtime::tls::TlsFiles;
use serde::Deserialize;

use crate::authz::{AuthorizationConfig, Authorizer};
use crate::policy::route::RoutePolicies;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `/live`, `/ready`, `/metrics`.
    #[serde(default = "loopback::<4191>")]
    pub admin_listen: SocketAddr,
    /// The sidecar's workload certificate, key and mesh CA (`serve` mode);
    /// re-read when the files change, so rotation needs no restart.
    pub tls: Option<TlsFiles>,
    pub inbound: Option<InboundConfig>,
    pub outbound: Option<OutboundConfig>,
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Threads that poll the proxy's tasks (see [`crate::runtime`]); read
    /// when the process starts its runtime, so it has no effect on a proxy
    /// built inside a runtime that already exists (`cloudsec up`, tests).
    /// `TOKIO_WORKER_THREADS` is ignored.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: NonZeroUsize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// Where peers' sidecars connect with mTLS.
    #[serde(default = "default_inbound_listen")]
    pub listen: SocketAddr,
    /// The application's plaintext gRPC listener; must be loopback.
    pub app: SocketAddr,
    #[serde(default)]
    pub authorization: AuthorizationConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Where the application sends plaintext HTTP/2; must be loopback.
    #[serde(default = "loopback::<4140>")]
    pub listen: SocketAddr,
    /// Keyed by the `:authority` the application uses, e.g.
    /// `documents.default.svc`.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    #[serde(default)]
    pub routes: RoutePolicies,
    /// Requests that may wait for an endpoint; more are shed at once.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// How long requests wait for a ready endpoint before the destination
    /// fails fast.
    #[serde(default = "default_failfast", with = "humantime_serde")]
    pub failfast_timeout: Duration,
    #[serde(default)]
    pub balancer: BalancerConfig,
}

/// Peak-EWMA settings of the P2C balancer (Linkerd's defaults).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BalancerConfig {
    /// The latency assumed for an endpoint before its first response.
    #[serde(with = "humantime_serde")]
    pub default_rtt: Duration,
    /// How fast the estimate forgets: shorter adapts faster to an endpoint
    /// that got quicker, longer rides out noise.
    #[serde(with = "humantime_serde")]
    pub decay: Duration,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Fixed endpoints (peer sidecars' inbound addresses).
    #[serde(default)]
    pub endpoints: Vec<SocketAddr>,
    /// `host:port` of a Kubernetes headless service, re-resolved
    /// every `dns_refresh`.
    pub dns: Option<String>,
    #[serde(default = "default_dns_refresh", with = "humantime_serde")]
    pub dns_refresh: Duration,
    /// The SPIFFE id every endpoint must prove.
    pub identity: String,
}

fn default_inbound_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4143))
}

fn default_worker_threads() -> NonZeroUsize {
    crate::runtime::DEFAULT_WORKER_THREADS
}

/// Linkerd's outbound queue capacity: deep enough that ordinary bursts
/// wait instead of being shed; fail-fast still bounds the wait.
fn default_queue() -> usize {
    10_000
}

fn default_failfast() -> Duration {
    Duration::from_secs(1)
}

fn default_dns_refresh() -> Duration {
    Duration::from_secs(10)
}

fn bad(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        message: message.into(),
    }
}

impl ProxyConfig {
    /// Checks what serde cannot; errors name the key (prefixed `proxy.`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.inbound.is_none() && self.outbound.is_none() {
            return Err(bad(
                "proxy".into(),
                "needs an `inbound` or `outbound` section",
            ));
        }
        if let Some(inbound) = &self.inbound {
            if !inbound.app.ip().is_loopback() {
                return Err(bad(
                    "proxy.inbound.app".into(),
                    "must be a loopback address",
                ));
            }
            Authorizer::new(&inbound.authorization)
                .map_err(|e| bad("proxy.inbound.authorization.allow".into(), e))?;
        }
        if let Some(outbound) = &self.outbound {
            if !outbound.listen.ip().is_loopback() {
                return Err(bad(
                    "proxy.outbound.listen".into(),
                    "must be a loopback address: it accepts plaintext",
                ));
            }
            if outbound.balancer.decay.is_zero() {
                return Err(bad(
                    "proxy.outbound.balancer.decay".into(),
                    "must be positive",
                ));
            }
            if outbound.queue_capacity == 0 {
                return Err(bad(
                    "proxy.outbound.queue_capacity".into(),
                    "must be at least 1",
                ));
            }
            for (name, d) in &outbound.destinations {
                let key = format!("proxy.outbound.destinations.{name}");
                SpiffeId::parse(&d.identity)
                    .map_err(|e| bad(format!("{key}.identity"), e.to_string()))?;
                match (d.endpoints.is_empty(), &d.dns) {
                    (true, None) => return Err(bad(key, "needs `endpoints` or `dns`")),
                    (false, Some(_)) => {
                        return Err(bad(key, "takes `endpoints` or `dns`, not both"));
                    }
                    (true, Some(dns)) if !dns.contains(':') => {
                        return Err(bad(format!("{key}.dns"), "must be host:port"));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
