//! The `audit_signature` table: the head signature of each record (see
//! `crate::signing`), beside the record rather than in it, so that the
//! record's columns and hash stay as they were.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, text};

use super::AuditSignature;

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
                    .table(AuditSignature::Table)
                    .if_not_exists()
                    .col(string(AuditSignature::Tenant))
                    .col(big_integer(AuditSignature::Seq))
                    .col(text(AuditSignature::Signature))
                    .primary_key(
                        Index::create()
                            .col(AuditSignature::Tenant)
                            .col(AuditSignature::Seq),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(AuditSignature::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
