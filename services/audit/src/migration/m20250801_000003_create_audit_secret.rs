//! The `audit_secret` table: keys generated on first start.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, text};

use super::AuditSecret;

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
                    .table(AuditSecret::Table)
                    .if_not_exists()
                    .col(string(AuditSecret::Name).primary_key())
                    .col(text(AuditSecret::Value))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(AuditSecret::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
