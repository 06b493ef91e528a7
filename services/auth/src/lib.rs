//! cloudsec's identity service: users sign up and log in, and get RS256
//! access tokens that every other service verifies against the JWKS this
//! service publishes.
//!
//! # Layout
//! The domain is a shared core and one module per use case, none of which
//! knows gRPC:
//! - [`core`]: [`AuthCore`], what every use case shares (settings, the
//!   database, the keys, token minting, email and tenant checks).
//! - [`signup`]: sign-up and confirmation codes.
//! - [`login`]: login, refresh, logout, global sign-out, revocations.
//! - [`passwords`]: history, forgotten passwords, changing one.
//! - [`mfa`]: TOTP enrolment, login challenges, recovery codes and the
//!   tenant's MFA mode.
//! - [`admin`]: a tenant admin's users and groups.
//! - [`federation`]: sign-in through an external OpenID Connect provider
//!   (authorization code with PKCE).
//!
//! Beside them:
//! - [`config`]: the `[auth]` configuration section (depends on nothing
//!   else in this crate).
//! - [`codes`]: one-time codes and their sealing for the mailer.
//! - [`keys`]: signing keys in the database or Vault, rotation with
//!   overlap, the JWKS.
//! - [`session`]: refresh tokens: minting, rotation, reuse detection.
//! - [`lockout`]: progressive lockout after failed logins.
//! - [`cleanup`]: the sweeper of expired and abandoned rows.
//! - [`clock`]: the time source, replaceable in tests.
//! - [`password`]: the password policy and argon2id on a bounded pool.
//! - [`grpc`]: the adapter from the generated trait to the use cases.
//! - [`entity`], [`migration`]: the tables and their migrations.
//! - [`error`]: the one error type and its row of the status table.

pub mod admin;
pub mod cleanup;
pub mod clock;
pub mod codes;
pub mod config;
pub mod core;
pub mod entity;
pub mod error;
pub mod federation;
pub mod grpc;
pub mod keys;
pub(crate) mod lockout;
pub mod login;
pub mod metrics;
pub mod mfa;
pub mod migration;
pub mod password;
pub mod passwords;
pub mod revocation;
pub(crate) mod session;
pub mod signup;

use std::net::SocketAddr;

use cloudsec_bus::{Bus, BusConfig, Outbox, Relay};
use cloudsec_proto::auth::v1::Jwks;
use cloudsec_proto::auth::v1::auth_service_server::AuthServiceServer;
use cloudsec_runtime::Shutdown;
use cloudsec_runtime::host::{HostError, ServiceHost};
use cloudsec_runtime::tls::MeshTls;

pub use crate::config::AuthConfig;
pub use crate::core::{AuthCore, LoginOutcome, SessionSettings, TokenSettings};
pub use crate::error::{AuthError, Result};

/// Largest accepted request; every auth message is tiny.
const MAX_MESSAGE: usize = 64 * 1024;

/// A running-to-be auth service: database migrated, key loaded, listeners
/// bound.
#[derive(Debug)]
pub struct Auth {
    host: ServiceHost,
    keys: std::sync::Arc<keys::KeyRing>,
    relay: Relay,
    /// A handle on the core for the cleanup sweeps.
    sweeper: AuthCore,
}

/// The CloudEvents `source` of the service's events.
pub const EVENT_SOURCE: &str = "/cloudsec/auth";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Db(#[from] cloudsec_runtime::db::DbError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("event bus: {0}")]
    Events(#[from] cloudsec_bus::BusError),
    #[error("event bus migrations: {0}")]
    EventsMigrate(#[from] sea_orm::DbErr),
}

impl Auth {
    /// Connects and migrates (its tables and the outbox), loads or
    /// creates the signing key, connects the event bus (`shared` when the
    /// process has one, else as `events` says) and binds the listeners.
    pub async fn build(
        config: &AuthConfig,
        tokens: TokenSettings,
        events: &BusConfig,
        shared: Option<&Bus>,
        secrets: Option<&cloudsec_secrets::Secrets>,
    ) -> std::result::Result<Self, BuildError> {
        let db =
            cloudsec_runtime::db::connect_to::<migration::Migrator>(&config.database_url).await?;
        cloudsec_bus::migration::migrate(&db).await?;
        let bus = Bus::for_service(events, shared, &db).await?;
        let outbox = Outbox::new();
        let relay = Relay::new(db.clone(), bus.publisher(), &outbox, events.relay.clone())?;
        let pool = db.clone();
        let concurrency = config
            .hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let hasher = password::Hasher::new(concurrency, config.hash_cpus.as_ref()).await?;
        let sessions = SessionSettings::from_config(config);
        let core = AuthCore::new(
            db,
            hasher,
            tokens,
            sessions,
            outbox,
            &config.signing,
            secrets,
        )
        .await?
        .with_federation(config.federation.clone())?;
        if !core.can_send_codes() {
            // Codes never leave in clear, so without a key service no
            // sign-up could be confirmed and no password reset.
            return Err(AuthError::Internal(
                "auth.confirmation.mailer_key: confirmation codes are sealed for the mailer, \
                 which needs a [secrets] back end (the local keystore or Vault) or \
                 auth.confirmation.kms"
                    .into(),
            )
            .into());
        }
        let keys = core.keys().clone();
        let mut host = ServiceHost::bind(
            "auth",
            config.grpc_listen,
            config.admin_listen,
            cloudsec_proto::FILE_DESCRIPTOR_SET,
            config.shutdown_grace,
        )
        .await?;
        let sweeper = core.clone();
        metrics::register(host.metrics());
        sweeper.hasher.register(host.metrics());
        host.metrics().watch_pool("auth", &pool);
        let relay = relay.with_metrics(host.metrics());
        host.add_service(
            AuthServiceServer::new(grpc::AuthGrpc::new(core))
                .max_decoding_message_size(MAX_MESSAGE),
        );
        Ok(Self {
            host,
            keys,
            relay,
            sweeper,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// The keys that verify this service's tokens now.
    pub fn jwks(&self) -> Jwks {
        self.keys.jwks()
    }

    /// The signing keys, e.g. to rotate them.
    pub fn keys(&self) -> &std::sync::Arc<keys::KeyRing> {
        &self.keys
    }

    /// Serves until `shutdown`, then drains; the outbox relay stops last
    /// so that events of calls finishing in the drain go out too.
    pub async fn run_until_stopped(
        self,
        tls: Option<&MeshTls>,
        shutdown: Shutdown,
    ) -> std::result::Result<(), HostError> {
        let relay_stop = Shutdown::new();
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let keys = self.keys.spawn(shutdown.clone());
        let sweeper = cleanup::spawn(self.sweeper, shutdown.clone());
        let served = self.host.run_until_stopped(tls, shutdown).await;
        // Both end at the shutdown signal; joined so that no key reload or
        // sweep is cut off mid-write when the process exits.
        for (task, name) in [(keys, "signing key reload"), (sweeper, "cleanup sweeper")] {
            if let Err(error) = task.await {
                tracing::error!(%error, "{name} task failed");
            }
        }
        relay_stop.cancel();
        if let Err(error) = relay.await {
            tracing::error!(%error, "outbox relay task failed");
        }
        served
    }
}
