//! The scaffolding of one service process: its gRPC and admin listeners,
//! health, reflection, metrics and draining shutdown.
//!
//! `ServiceHost::bind` binds both listeners first (port 0 is fine, so tests
//! read the real ports), the service adds its gRPC services, and
//! `run_until_stopped` serves until shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic_health::ServingStatus;

use crate::admin::{self, Readiness};
use crate::grpc::{self, BaseServices, GrpcError};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::tls::MeshTls;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error("admin listener failed: {0}")]
    Admin(#[source] std::io::Error),
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HostError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HostError::Bind { addr, source })
}

#[derive(Debug)]
pub struct ServiceHost {
    grpc: TcpListener,
    admin: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    base: BaseServices,
    descriptor_set: Vec<u8>,
    names: Vec<&'static str>,
    grace: Duration,
}

impl ServiceHost {
    /// Binds the gRPC and admin listeners of component `name`.
    pub async fn bind(
        name: &str,
        grpc_addr: SocketAddr,
        admin_addr: SocketAddr,
        descriptor_set: &[u8],
        grace: Duration,
    ) -> Result<Self, HostError> {
        Ok(Self {
            grpc: bind(grpc_addr).await?,
            admin: bind(admin_addr).await?,
            metrics: Metrics::new(name),
            readiness: Readiness::default(),
            base: grpc::base_services(),
            descriptor_set: descriptor_set.to_vec(),
            names: Vec::new(),
            grace,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds a gRPC service; its health turns SERVING once the host runs.
    pub fn add_service<S>(&mut self, svc: S) -> &mut Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.base.routes.add_service(svc);
        self
    }

    /// Serves until `shutdown` is cancelled. Health turns NOT_SERVING and
    /// `/ready` fails first, so balancers stop sending before the drain.
    ///
    /// `tls: None` serves plaintext on a loopback listener, for a sidecar.
    pub async fn run_until_stopped(
        self,
        tls: Option<&MeshTls>,
        shutdown: Shutdown,
    ) -> Result<(), HostError> {
        let Self {
            grpc,
            admin,
            metrics,
            readiness,
            mut base,
            descriptor_set,
            names,
            grace,
        } = self;
        grpc::add_reflection(&mut base.routes, &descriptor_set, &names);
        let health = base.health;
        for name in &names {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        health.set_service_status("", ServingStatus::Serving).await;
        readiness.set(true);

        let admin_task = tokio::spawn(admin::serve(
            admin,
            metrics.clone(),
            readiness.clone(),
            shutdown.clone(),
        ));

        // Flip health before the listener closes.
        let draining = Shutdown::new();
        let flip = {
            let health = health.clone();
            let readiness = readiness.clone();
            let shutdown = shutdown.clone();
            let draining = draining.clone();
            async move {
                shutdown.cancelled().await;
                readiness.set(false);
                for name in &names {
                    health
                        .set_service_status(*name, ServingStatus::NotServing)
                        .await;
                }
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                draining.cancel();
            }
        };
        let flip = tokio::spawn(flip);
        let heartbeat_stop = shutdown.child_token();
        let heartbeat = tokio::spawn(crate::timer::heartbeat(heartbeat_stop.clone()));

        let served = grpc::serve(grpc, tls, base.routes.routes(), &metrics, draining, grace).await;
        flip.abort();
        heartbeat_stop.cancel();
        if let Err(error) = heartbeat.await {
            tracing::warn!(%error, "timer heartbeat task failed");
        }
        let admin = admin_task.await;
        served?;
        match admin {
            Ok(result) => result.map_err(HostError::Admin),
            Err(join) => Err(HostError::Admin(std::io::Error::other(join))),
        }
    }
}
