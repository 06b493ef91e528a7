//! cloudsec's core business service: tenants' documents over gRPC.
//!
//! `DocumentService` creates, reads, lists (newest first, filtered by
//! classification and label, with opaque keyset page tokens), updates
//! (with a field mask and an optional etag) and deletes documents. Every
//! call carries an access token; its tenant scopes every query, so another
//! tenant's document is indistinguishable from a missing one. Metadata
//! lives in SQLite or PostgreSQL, content in a directory or an S3 bucket,
//! encrypted per document (envelope encryption). Every change writes its
//! domain event (`cloudsec.events.v1.Document*`) to the transactional
//! outbox in the same transaction; the service's relay publishes them.
//!
//! # Layout
//! - [`config`]: [`DocumentsConfig`], the service's configuration.
//! - [`error`]: [`DocumentsError`], its error kinds and gRPC statuses.
//! - [`domain`]: documents, validation rules and validated inputs; knows
//!   nothing of tonic or the database.
//! - [`store`]: the tenant-scoped queries and transactions.
//! - [`content`]: the object store and the per-document encryption.
//! - [`page_token`]: HMAC-sealed page tokens bound to tenant and filters.
//! - [`grpc`]: the thin adapter from the generated trait to the domain.
//! - [`entity`], [`migration`]: the sea-orm entities and the `Migrator`.
//!
//! [`Documents::build`] connects, migrates and binds; [`Documents::run_until_stopped`]
//! serves until shutdown.

#![forbid(unsafe_code)]

pub mod config;
pub mod content;
pub mod domain;
pub mod entity;
pub mod error;
pub mod grpc;
pub mod migration;
pub mod page_token;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use cloudsec_bus::{Bus, BusConfig, Outbox, Relay};
use cloudsec_runtime::Shutdown;
use cloudsec_runtime::host::{HostError, ServiceHost};
use cloudsec_runtime::tls::MeshTls;
use cloudsec_runtime::token::TokenVerifier;

pub use config::DocumentsConfig;
pub use error::{DocumentsError, Result};
pub use migration::Migrator;

use crate::content::ContentStore;
use crate::grpc::DocumentsGrpc;
use crate::store::Store;

/// The component name, in metrics and health.
pub const NAME: &str = "documents";

/// A documents service whose listeners are bound and database migrated.
#[derive(Debug)]
pub struct Documents {
    host: ServiceHost,
    relay: Relay,
    /// The store and `[documents.content]` timings for the maintenance job.
    maintenance: (Store, config::ContentConfig),
}

/// The CloudEvents `source` of the service's events.
pub const EVENT_SOURCE: &str = "/cloudsec/documents";

impl Documents {
    /// Checks the page token key, connects to the database and applies
    /// its migrations and the outbox's, opens the content store and its
    /// keys (see [`content::ContentStore::from_config`]), connects the event bus (`shared`
    /// when the process has one, else as `events` says), then binds both
    /// listeners (port 0 picks a free one).
    pub async fn build(
        config: &DocumentsConfig,
        verifier: Arc<TokenVerifier>,
        events: &BusConfig,
        shared: Option<&Bus>,
    ) -> Result<Self> {
        // Checked first, so a bad key fails before any connection is made.
        let tokens = page_token::key(config.page_token_key.expose().as_bytes())?;
        let db = cloudsec_runtime::db::connect_to::<Migrator>(&config.database_url).await?;
        // Before anything listens, so a service that cannot seal content
        // (no store configured, Vault down, a missing transit key) fails at
        // start rather than at its first write.
        let content =
            ContentStore::from_config(&config.content, &config.database_url.expose()).await?;
        cloudsec_bus::migration::migrate(&db).await?;
        let bus = Bus::for_service(events, shared, &db).await?;
        let outbox = Outbox::new();
        let relay = Relay::new(db.clone(), bus.publisher(), &outbox, events.relay.clone())?;
        let mut host = ServiceHost::bind(
            NAME,
            config.grpc_listen,
            config.admin_listen,
            cloudsec_proto::FILE_DESCRIPTOR_SET,
            config.shutdown_grace,
        )
        .await?;
        host.metrics().watch_pool(NAME, &db);
        let relay = relay.with_metrics(host.metrics());
        let store = Store::new(db, tokens, outbox, content);
        host.add_service(
            DocumentsGrpc::new(store.clone(), verifier)
                .with_restricted_group(&config.restricted_group)
                .into_server(),
        );
        Ok(Self {
            host,
            relay,
            maintenance: (store, config.content.clone()),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// Serves over mutual TLS until `shutdown` is cancelled, then drains.
    /// The outbox relay runs alongside and stops last, so that events of
    /// calls that finish during the drain are published too.
    pub async fn run_until_stopped(
        self,
        tls: Option<&MeshTls>,
        shutdown: Shutdown,
    ) -> Result<(), HostError> {
        let relay_stop = Shutdown::new();
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let (store, content) = self.maintenance;
        let maintenance = (!content.maintenance_interval.is_zero())
            .then(|| tokio::spawn(maintain_every(store, content, shutdown.clone())));
        let served = self.host.run_until_stopped(tls, shutdown).await;
        // It ends at the shutdown signal; joined so that a rewrap is not
        // cut off between sealing and storing when the process exits.
        if let Some(task) = maintenance
            && let Err(error) = task.await
        {
            tracing::error!(%error, "content maintenance task failed");
        }
        relay_stop.cancel();
        if let Err(error) = relay.await {
            tracing::error!(%error, "outbox relay task failed");
        }
        served
    }
}

/// What one maintenance run did.
#[derive(Debug)]
pub struct MaintenanceReport {
    pub rewrap: store::RewrapSummary,
    pub garbage: store::GcSummary,
}

/// One maintenance run: re-wraps every sealed generation under its key's
/// latest version, then deletes orphan generations older than `grace`.
pub async fn maintain(store: &Store, grace: std::time::Duration) -> Result<MaintenanceReport> {
    let rewrap = store.rewrap_all().await?;
    let garbage = store.collect_garbage(grace).await?;
    Ok(MaintenanceReport { rewrap, garbage })
}

/// Runs [`maintain`] every `maintenance_interval` (the first run one
/// interval after start, so replicas started together spread out by
/// their start times) until `shutdown`. Replicas may overlap: both steps
/// are idempotent.
async fn maintain_every(store: Store, content: config::ContentConfig, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(content.maintenance_interval) => {}
        }
        match maintain(&store, content.orphan_grace).await {
            Ok(report) => tracing::info!(
                rewrapped = report.rewrap.rewrapped,
                rewrap_failed = report.rewrap.failed.len(),
                orphans_deleted = report.garbage.deleted,
                orphans_recent = report.garbage.recent,
                gc_failed = report.garbage.failed.len(),
                "content maintenance done"
            ),
            Err(error) => {
                tracing::error!(%error, "content maintenance failed; retrying next interval")
            }
        }
    }
}

/// The service's store without its listeners, for tools such as
/// `cloudsec maintain documents`: the same checks and connections as
/// [`Documents::build`].
pub async fn open_store(config: &DocumentsConfig) -> Result<Store> {
    let tokens = page_token::key(config.page_token_key.expose().as_bytes())?;
    let db = cloudsec_runtime::db::connect_to::<Migrator>(&config.database_url).await?;
    let content = ContentStore::from_config(&config.content, &config.database_url.expose()).await?;
    cloudsec_bus::migration::migrate(&db).await?;
    Ok(Store::new(db, tokens, Outbox::new(), content))
}
