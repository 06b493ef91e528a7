//! The schema of the audit service, one migration per file, applied in
//! order at start by [`cloudsec_runtime::db::connect`].
//!
//! The statements are portable sea-query, so the same migrations run on
//! SQLite and PostgreSQL. The bus's own tables (the inbox) come from
//! [`cloudsec_bus::Migrator`], recorded in their own migration table.

use sea_orm_migration::prelude::*;

mod m20250801_000001_create_audit_record;
mod m20250801_000002_create_audit_chain_head;
mod m20250801_000003_create_audit_secret;
mod m20261205_000004_create_audit_signature;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250801_000001_create_audit_record::Migration),
            Box::new(m20250801_000002_create_audit_chain_head::Migration),
            Box::new(m20250801_000003_create_audit_secret::Migration),
            Box::new(m20261205_000004_create_audit_signature::Migration),
        ]
    }

    // Its own table, so the audit log can share a database with other
    // services (documents uses sea-orm's default one).
    fn migration_table_name() -> DynIden {
        "audit_migrations".into_iden()
    }
}

/// The table and column names the migrations use.
#[derive(DeriveIden)]
pub(crate) enum AuditRecord {
    Table,
    Tenant,
    Seq,
    EventId,
    EventType,
    Source,
    Subject,
    Actor,
    OccurTime,
    RecordTime,
    Summary,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
pub(crate) enum AuditChainHead {
    Table,
    Tenant,
    Seq,
    Hash,
}

#[derive(DeriveIden)]
pub(crate) enum AuditSignature {
    Table,
    Tenant,
    Seq,
    Signature,
}

#[derive(DeriveIden)]
pub(crate) enum AuditSecret {
    Table,
    Name,
    Value,
}
