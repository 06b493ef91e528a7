//! cloudsec's audit service: every domain event, recorded once in an
//! append-only, tamper-evident log per tenant.
//!
//! The service drains its queue on the event bus (all event types) and
//! appends each event to its tenant's chain: records numbered 1, 2, 3, ...
//! per tenant, each carrying the SHA-256 hash of its own fields and of the
//! record before it, in its own database. A redelivered event is recorded
//! once (the bus inbox, written in the append's transaction). Over gRPC
//! (and REST through the gateway) a tenant admin lists the tenant's records
//! and has the chain verified: a changed, deleted or inserted record is
//! reported with the first bad `seq`.
//!
//! # Layout
//! - [`config`]: [`AuditConfig`], the service's configuration.
//! - [`error`]: [`AuditError`], its error kinds and gRPC statuses.
//! - [`chain`]: records, the hash formula and the chain check; knows
//!   nothing of tonic or the database.
//! - [`summary`]: what a record says about an event's payload.
//! - [`store`]: [`AuditLog`], the append transaction, listing and
//!   verification on the database.
//! - [`dynamo`]: the same on DynamoDB ([`dynamo::DynamoStore`]): the head
//!   moved by a conditional write in the record's `TransactWriteItems`.
//! - [`subscriber`]: the queue spec and the event handler.
//! - [`grpc`]: the thin adapter from the generated trait to the log.
//! - [`signing`]: signed chain heads (KMS, Vault transit or a local
//!   Ed25519 key).
//! - [`metrics`]: the service's own counters.
//! - [`entity`], [`migration`]: the sea-orm entities and the `Migrator`.
//!
//! [`Audit::build`] connects, migrates and binds; [`Audit::run_until_stopped`]
//! serves gRPC and runs the subscriber until shutdown, then drains both.

#![forbid(unsafe_code)]

pub mod chain;
pub mod config;
pub mod dynamo;
pub mod entity;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod migration;
pub mod signing;
pub mod store;
pub mod subscriber;
pub mod summary;

use std::net::SocketAddr;
use std::sync::Arc;

use cloudsec_bus::dynamo_inbox::DynamoInbox;
use cloudsec_bus::{Inbox, Queue, Subscriber, SubscriberConfig};
use cloudsec_runtime::Shutdown;
use cloudsec_runtime::host::ServiceHost;
use cloudsec_runtime::tls::MeshTls;
use cloudsec_runtime::token::TokenVerifier;
use sea_orm::DatabaseConnection;
use tracing::Instrument;

pub use config::AuditConfig;
pub use error::{AuditError, Result};
pub use migration::Migrator;
pub use store::AuditLog;
pub use subscriber::{handler, queue_spec};

use crate::grpc::AuditGrpc;
use crate::metrics::AuditMetrics;

/// The component name, in metrics and health.
pub const NAME: &str = "audit";

/// The token scope of a tenant's admins; the audit log is theirs (and
/// [`READ_SCOPE`]'s holders').
pub use cloudsec_runtime::token::ADMIN_SCOPE;

/// The scope that reads the audit log without being an admin, granted
/// through a group (`auth.group_scopes`).
pub const READ_SCOPE: &str = "audit:read";

/// Opens the audit database at `url` and applies the service's and the
/// bus's migrations (the inbox lives next to the records, so an append
/// and its inbox entry commit together).
pub async fn connect(url: &cloudsec_runtime::db::DatabaseUrl) -> Result<DatabaseConnection> {
    let db = cloudsec_runtime::db::connect_to::<Migrator>(url).await?;
    cloudsec_bus::migration::migrate(&db)
        .await
        .map_err(|source| cloudsec_runtime::db::DbError::Migrate {
            url: url.redacted(),
            source,
        })?;
    Ok(db)
}

/// An audit service whose listeners are bound, database migrated and
/// subscriber ready to run.
#[derive(Debug)]
pub struct Audit {
    host: ServiceHost,
    subscriber: Subscriber,
    log: AuditLog,
}

impl Audit {
    /// Connects to the database and applies migrations, binds both
    /// listeners (port 0 picks a free one) and sets up the subscriber on
    /// `queue`, which should have been provisioned from [`queue_spec`].
    pub async fn build(
        config: &AuditConfig,
        verifier: Arc<TokenVerifier>,
        queue: Arc<dyn Queue>,
    ) -> Result<Self> {
        Self::build_with_vault(config, verifier, queue, None).await
    }

    /// As [`build`](Self::build), with the platform's Vault connection,
    /// which `[audit.signing] backend = "transit"` signs through.
    pub async fn build_with_vault(
        config: &AuditConfig,
        verifier: Arc<TokenVerifier>,
        queue: Arc<dyn Queue>,
        vault: Option<&cloudsec_secrets::VaultClient>,
    ) -> Result<Self> {
        let mut host = ServiceHost::bind(
            NAME,
            config.grpc_listen,
            config.admin_listen,
            cloudsec_proto::FILE_DESCRIPTOR_SET,
            config.shutdown_grace,
        )
        .await?;
        let metrics = AuditMetrics::register(host.metrics());
        let (log, inbox) = match &config.store {
            config::StoreConfig::Sql => {
                let db = connect(config.sql_database_url()?).await?;
                host.metrics().watch_pool(NAME, &db);
                let log = AuditLog::open(db.clone(), config.queue.clone(), metrics).await?;
                (log, Some(Inbox::new(db, config.queue.clone())))
            }
            // The append's own inbox item (in its transaction) is what
            // makes a redelivery a no-op; the subscriber's claims go to
            // the DynamoDB inbox table when one is configured. No SQL
            // database is opened (`database_url` may be absent).
            config::StoreConfig::Dynamodb(dynamo) => {
                let store = dynamo::DynamoStore::connect(dynamo).await?;
                let inbox = match &dynamo.inbox_table {
                    Some(table) => Some(Inbox::dynamodb(
                        DynamoInbox::open(
                            store.client().clone(),
                            table,
                            cloudsec_bus::dynamo_inbox::DEFAULT_RETENTION,
                            dynamo.provisioning,
                        )
                        .await?,
                        config.queue.clone(),
                    )),
                    None => None,
                };
                let log = AuditLog::open_dynamodb(store, config.queue.clone(), metrics).await?;
                (log, inbox)
            }
        };
        let log = match &config.signing {
            Some(signing) => log.with_signer(signing::from_config(signing, vault).await?),
            None => log,
        };
        let subscriber_config = SubscriberConfig {
            shutdown_grace: config.shutdown_grace,
            ..SubscriberConfig::default()
        };
        let mut subscriber =
            Subscriber::from_arcs(queue, Arc::new(handler(log.clone())), subscriber_config)?
                .with_metrics(host.metrics());
        if let Some(inbox) = inbox {
            // Skips known duplicates before the append takes the write
            // lock (SQL) or reads the head (DynamoDB); the append's own
            // inbox entry is what guarantees once.
            subscriber = subscriber.with_inbox(inbox);
        }
        host.add_service(AuditGrpc::new(log.clone(), verifier).into_server());
        Ok(Self {
            host,
            subscriber,
            log,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// The log the service appends to and reads from.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Serves gRPC (over mutual TLS unless `tls` is `None`, which is for
    /// loopback) and runs the subscriber until `shutdown` is cancelled,
    /// then drains both. If either stops on its own, the other is stopped
    /// too: a service that cannot record, or cannot be read, is down.
    pub async fn run_until_stopped(self, tls: Option<&MeshTls>, shutdown: Shutdown) -> Result<()> {
        let stop = shutdown.child_token();
        let mut subscribing = tokio::spawn(
            self.subscriber
                .run(stop.clone())
                .instrument(tracing::info_span!("audit.subscriber")),
        );
        let serving = self.host.run_until_stopped(tls, stop.clone());
        tokio::pin!(serving);
        let (served, subscribed) = tokio::select! {
            served = &mut serving => {
                stop.cancel();
                (served, (&mut subscribing).await)
            }
            subscribed = &mut subscribing => {
                if !stop.is_cancelled() {
                    tracing::error!("event subscriber stopped before shutdown; stopping the service");
                }
                stop.cancel();
                (serving.await, subscribed)
            }
        };
        served?;
        match subscribed {
            Ok(result) => Ok(result?),
            Err(join) => Err(AuditError::SubscriberStopped(join.to_string())),
        }
    }
}
