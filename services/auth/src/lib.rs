//! cloudsec's identity service: users sign up and log in, and get RS256
//! access tokens that every other service verifies against the JWKS this
//! service publishes.
//!
//! # Layout
//! - [`config`]: the `[auth]` configuration section.
//! - [`core`]: sign-up, login and keys; no gRPC in here.
//! - [`password`]: the password policy and argon2id on a bounded pool.
//! - [`grpc`]: the adapter from the generated trait to the core.
//! - [`entity`], [`migration`]: the tables and their migrations.
//! - [`error`]: the one error type and its gRPC mapping.

pub mod config;
pub mod core;
pub mod entity;
pub mod error;
pub mod grpc;
pub mod migration;
pub mod password;

use std::net::SocketAddr;

use cloudsec_proto::auth::v1::Jwks;
use cloudsec_proto::auth::v1::auth_service_server::AuthServiceServer;
use cloudsec_runtime::Shutdown;
use cloudsec_runtime::host::{HostError, ServiceHost};
use cloudsec_runtime::tls::MeshTls;

pub use crate::config::AuthConfig;
pub use crate::core::{AuthCore, TokenSettings};
pub use crate::error::{AuthError, Result};

/// Largest accepted request; sign-up and login messages are tiny.
const MAX_MESSAGE: usize = 64 * 1024;

/// A running-to-be auth service: database migrated, key loaded, listeners
/// bound.
#[derive(Debug)]
pub struct Auth {
    host: ServiceHost,
    jwks: Jwks,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Db(#[from] cloudsec_runtime::db::DbError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl Auth {
    pub async fn build(
        config: &AuthConfig,
        tokens: TokenSettings,
    ) -> std::result::Result<Self, BuildError> {
        let db = cloudsec_runtime::db::connect::<migration::Migrator>(config.database_url.expose())
            .await?;
        let concurrency = config
            .hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let hasher = password::Hasher::new(concurrency).await?;
        let core = AuthCore::new(db, hasher, tokens).await?;
        let jwks = core.jwks().clone();
        let mut host = ServiceHost::bind(
            "auth",
            config.grpc_listen,
            config.admin_listen,
            cloudsec_proto::FILE_DESCRIPTOR_SET,
            config.shutdown_grace,
        )
        .await?;
        host.add_service(
            AuthServiceServer::new(grpc::AuthGrpc::new(core))
                .max_decoding_message_size(MAX_MESSAGE),
        );
        Ok(Self { host, jwks })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// The keys that verify this service's tokens.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    pub async fn run_until_stopped(
        self,
        tls: Option<&MeshTls>,
        shutdown: Shutdown,
    ) -> std::result::Result<(), HostError> {
        self.host.run_until_stopped(tls, shutdown).await
    }
}
