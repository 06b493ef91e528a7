//! The `audit_record` table: one row per event, keyed by (tenant, seq),
//! each event id at most once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, string_len, text, timestamp_with_time_zone};

use super::AuditRecord;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

// The trait elides `SchemaManager`'s lifetime; naming it (`<'_>`) makes
// the lifetime early-bound under async_trait and no longer matches.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditRecord::Table)
                    .if_not_exists()
                    .col(string(AuditRecord::Tenant))
                    .col(big_integer(AuditRecord::Seq))
                    .col(string(AuditRecord::EventId))
                    .col(string(AuditRecord::EventType))
                    .col(string(AuditRecord::Source))
                    .col(string(AuditRecord::Subject))
                    .col(string(AuditRecord::Actor))
                    .col(timestamp_with_time_zone(AuditRecord::OccurTime))
                    .col(timestamp_with_time_zone(AuditRecord::RecordTime))
                    .col(text(AuditRecord::Summary))
                    .col(string_len(AuditRecord::PrevHash, 64))
                    .col(string_len(AuditRecord::Hash, 64))
                    .primary_key(
                        Index::create()
                            .col(AuditRecord::Tenant)
                            .col(AuditRecord::Seq),
                    )
                    .to_owned(),
            )
            .await?;
        // A second delivery of an event must not become a second record,
        // whatever the inbox says.
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_record_event_id")
                    .table(AuditRecord::Table)
                    .col(AuditRecord::EventId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // The list's two filters, each walked in seq order.
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_record_tenant_type_seq")
                    .table(AuditRecord::Table)
                    .col(AuditRecord::Tenant)
                    .col(AuditRecord::EventType)
                    .col(AuditRecord::Seq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_record_tenant_subject_seq")
                    .table(AuditRecord::Table)
                    .col(AuditRecord::Tenant)
                    .col(AuditRecord::Subject)
                    .col(AuditRecord::Seq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(AuditRecord::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
