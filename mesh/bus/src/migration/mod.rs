//! The bus's tables, one migration per file, recorded in their own
//! migration table (`cloudsec_bus_migrations`) so that a service runs
//! [`Migrator`] next to its own migrator on the same database.
//!
//! The statements are portable sea-query, except two partial indexes whose
//! SQL is the same on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod m20250701_000001_create_outbox;
mod m20250701_000002_create_queues;
mod m20250701_000003_create_inbox;
mod m20261205_000001_inbox_claims;

/// Creates the outbox, the embedded bus's queues and the inbox.
#[derive(Debug)]
pub struct Migrator;

/// The name of the table that records which bus migrations ran.
pub const MIGRATION_TABLE: &str = "cloudsec_bus_migrations";

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250701_000001_create_outbox::Migration),
            Box::new(m20250701_000002_create_queues::Migration),
            Box::new(m20250701_000003_create_inbox::Migration),
            Box::new(m20261205_000001_inbox_claims::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        MIGRATION_TABLE.into_iden()
    }
}

/// Runs the bus's pending migrations on `db`; on PostgreSQL under the
/// advisory lock of [`cloudsec_runtime::db::migrate`], since every
/// component that shares the events database runs them at start.
pub async fn migrate(db: &sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    cloudsec_runtime::db::migrate::<Migrator>(db).await
}

#[derive(DeriveIden)]
pub(crate) enum BusOutbox {
    Table,
    Seq,
    EventId,
    Shard,
    Aggregate,
    EventType,
    Envelope,
    CreatedAtMs,
    PublishedAtMs,
    Attempts,
    LastError,
}

#[derive(DeriveIden)]
pub(crate) enum BusOutboxShard {
    Table,
    Shard,
}

#[derive(DeriveIden)]
pub(crate) enum BusLease {
    Table,
    Name,
    Holder,
    ExpiresAtMs,
}

#[derive(DeriveIden)]
pub(crate) enum BusQueue {
    Table,
    Name,
    MaxReceives,
    VisibilityMs,
    Fifo,
    CreatedAtMs,
}

#[derive(DeriveIden)]
pub(crate) enum BusSubscription {
    Table,
    Queue,
    EventType,
}

#[derive(DeriveIden)]
pub(crate) enum BusMessage {
    Table,
    Id,
    Queue,
    EventId,
    EventType,
    GroupKey,
    Envelope,
    EnqueuedAtMs,
    VisibleAtMs,
    ReceiveCount,
    Receipt,
    DeadAtMs,
    DeadReason,
}

#[derive(DeriveIden)]
pub(crate) enum BusInbox {
    Table,
    Subscriber,
    EventId,
    HandledAtMs,
    LeaseUntilMs,
    ClaimToken,
    ClaimMessage,
}
