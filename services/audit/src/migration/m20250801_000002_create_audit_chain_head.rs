//! The `audit_chain_head` table: each tenant's last seq and hash.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, string_len};

use super::AuditChainHead;

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
                    .table(AuditChainHead::Table)
                    .if_not_exists()
                    .col(string(AuditChainHead::Tenant).primary_key())
                    .col(big_integer(AuditChainHead::Seq))
                    .col(string_len(AuditChainHead::Hash, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(AuditChainHead::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
