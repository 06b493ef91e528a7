//! The cloudsec sidecar proxy, run as `cloudsec proxy` beside each service.
//!
//! - **Inbound** terminates mTLS (a client certificate from the mesh CA is
//!   required), authorizes the peer's SPIFFE identity per gRPC service or
//!   method, passes the verified identity to the application in
//!   [`inbound::PEER_IDENTITY`] and forwards on loopback.
//! - **Outbound** takes plaintext HTTP/2 from the application on loopback,
//!   routes by `:authority`, applies the route's timeout and one retry
//!   layer with a budget, balances with P2C over peak-EWMA latency across
//!   endpoints that each have a circuit breaker, and originates mTLS that
//!   checks the peer's SPIFFE identity.
//! - **Admin** serves `/live`, `/ready` and `/metrics`.
//!
//! # Layout
//! - [`config`]: the `[proxy]` section and its validation.
//! - [`tls`]: rotating certificate, reloadable trust bundle, SPIFFE checks.
//! - [`authz`]: the inbound authorization policy.
//! - [`policy`]: timeout, retry, breaker and per-route policies as tower
//!   layers.
//! - `inbound`, `outbound`: the two data paths; `io`: accept loop,
//!   connector, TCP metrics.
//! - [`runtime`]: the process's tokio runtime, sized by
//!   `proxy.worker_threads`.

pub mod authz;
pub mod config;
pub mod inbound;
mod io;
mod outbound;
pub mod policy;
pub mod runtime;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use cloudsec_runtime::Shutdown;
use cloudsec_runtime::admin::{self, Readiness};
use cloudsec_runtime::metrics::Metrics;
use tokio::net::TcpListener;

pub use config::ProxyConfig;
pub use tls::TlsState;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid configuration: {0}")]
    Config(#[from] cloudsec_runtime::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("inbound set-up failed: {0}")]
    Inbound(String),
    #[error("outbound set-up failed: {0}")]
    Outbound(String),
    #[error("admin listener failed: {0}")]
    Admin(std::io::Error),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

/// A sidecar with its listeners bound.
pub struct Proxy {
    config: ProxyConfig,
    tls: Arc<TlsState>,
    inbound: Option<TcpListener>,
    outbound: Option<TcpListener>,
    admin: TcpListener,
    metrics: Metrics,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("inbound", &self.inbound_addr())
            .field("outbound", &self.outbound_addr())
            .field("admin", &self.admin_addr())
            .finish()
    }
}

impl Proxy {
    /// Validates `config` and binds every listener (port 0 works).
    pub async fn build(config: &ProxyConfig, tls: Arc<TlsState>) -> Result<Self, ProxyError> {
        config.validate()?;
        let inbound = match &config.inbound {
            Some(c) => Some(bind(c.listen).await?),
            None => None,
        };
        let outbound = match &config.outbound {
            Some(c) => Some(bind(c.listen).await?),
            None => None,
        };
        let metrics = Metrics::new("proxy");
        metrics.register_collector(tls::ExpiryCollector(tls.clone()));
        Ok(Self {
            config: config.clone(),
            tls,
            inbound,
            outbound,
            admin: bind(config.admin_listen).await?,
            metrics,
        })
    }

    /// Points inbound traffic at the application's loopback listener, for
    /// when the application is bound after its sidecar.
    pub fn set_inbound_app(&mut self, app: SocketAddr) -> Result<(), ProxyError> {
        if let Some(inbound) = self.config.inbound.as_mut() {
            inbound.app = app;
        }
        self.config.validate()?;
        Ok(())
    }

    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.inbound.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.outbound.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Loads the certificate files named in `config.tls`, follows them as
    /// they are rotated on disk, and serves until `shutdown`.
    /// `trust_domain`, when given, must be the trust domain of the
    /// certificate in the files (`[mesh] trust_domain`): a sidecar handed
    /// another domain's certificate would admit that domain's peers.
    pub async fn run_from_files(
        config: &ProxyConfig,
        trust_domain: Option<&str>,
        shutdown: Shutdown,
    ) -> Result<(), ProxyError> {
        config.validate()?;
        let files = config
            .tls
            .clone()
            .ok_or_else(|| cloudsec_runtime::ConfigError {
                key: "proxy.tls".into(),
                message: "required: the workload certificate, key and mesh CA".into(),
            })?;
        let bad_tls = |message: String| cloudsec_runtime::ConfigError {
            key: "proxy.tls".into(),
            message,
        };
        let material = files.load().map_err(|e| bad_tls(e.to_string()))?;
        let state = TlsState::new(&material).map_err(|e| bad_tls(e.to_string()))?;
        if let Some(expected) = trust_domain
            && state.trust_domain() != expected
        {
            return Err(cloudsec_runtime::ConfigError {
                key: "mesh.trust_domain".into(),
                message: format!(
                    "is `{expected}`, but the certificate in proxy.tls is for `{}`",
                    state.trust_domain()
                ),
            }
            .into());
        }
        // Certificates rotated on disk (cert-manager, a Vault agent, ...)
        // are picked up without a restart.
        state.follow(tls::watch_files(files, shutdown.clone()));
        let sidecar = Self::build(config, state).await?;
        tracing::info!(
            inbound = ?sidecar.inbound_addr(),
            outbound = ?sidecar.outbound_addr(),
            admin = %sidecar.admin_addr(),
            "proxy serving"
        );
        sidecar.run_until_stopped(shutdown).await
    }

    /// Serves until `shutdown`; `/ready` fails first, then listeners close
    /// and open streams finish within the grace period.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), ProxyError> {
        let Self {
            config,
            tls,
            inbound,
            outbound,
            admin,
            metrics,
        } = self;
        let tcp = io::TcpMetrics::register(&metrics);
        let readiness = Readiness::default();
        let grace = config.shutdown_grace;
        let mut tasks = tokio::task::JoinSet::new();

        if let (Some(listener), Some(c)) = (inbound, &config.inbound) {
            let authz = authz::Authorizer::new(&c.authorization)
                .map_err(|e| ProxyError::Inbound(e.to_string()))?;
            let handler = inbound::Inbound::new(c.app, authz, &metrics)
                .map_err(|e| ProxyError::Inbound(format!("inbound.app: {e}")))?;
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
            let tcp = tcp.clone();
            let accept = move |stream: tokio::net::TcpStream| {
                let acceptor = acceptor.clone();
                let tcp = tcp.clone();
                async move {
                    let stream = io::Counted::new(stream, &tcp, "inbound");
                    let tls = acceptor.accept(stream).await?;
                    // The verifier already insisted on a SPIFFE id.
                    let peer = tls::peer_identity(tls.get_ref().1)
                        .ok_or("peer certificate has no SPIFFE id")?;
                    Ok::<_, policy::BoxError>((tls, inbound::Peer::new(peer)))
                }
            };
            tasks.spawn(io::serve(
                listener,
                accept,
                handler,
                shutdown.clone(),
                grace,
            ));
        }
        if let (Some(listener), Some(c)) = (outbound, &config.outbound) {
            let handler = outbound::Outbound::new(c, &tls, &metrics, &tcp, &shutdown)
                .map_err(ProxyError::Outbound)?;
            let accept = |stream: tokio::net::TcpStream| async move {
                Ok::<_, policy::BoxError>((stream, ()))
            };
            tasks.spawn(io::serve(
                listener,
                accept,
                handler,
                shutdown.clone(),
                grace,
            ));
        }

        readiness.set(true);
        let flip = {
            let readiness = readiness.clone();
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                readiness.set(false);
            }
        };
        tasks.spawn(flip);
        tasks.spawn(cloudsec_runtime::timer::heartbeat(shutdown.clone()));
        let admin_result = admin::serve(admin, metrics, readiness, shutdown).await;
        while tasks.join_next().await.is_some() {}
        admin_result.map_err(ProxyError::Admin)
    }
}
