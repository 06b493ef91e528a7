//! The `documents` table and the index that serves the newest-first list.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, string, string_len, text, timestamp_with_time_zone, uuid,
};

use super::Documents;

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
                    .table(Documents::Table)
                    .if_not_exists()
                    .col(uuid(Documents::Id).primary_key())
                    .col(string(Documents::Tenant))
                    .col(string(Documents::Owner))
                    .col(string(Documents::Title))
                    .col(string_len(Documents::Classification, 16))
                    .col(text(Documents::Content))
                    .col(string(Documents::ContentType))
                    .col(big_integer(Documents::SizeBytes))
                    .col(string(Documents::Etag))
                    .col(timestamp_with_time_zone(Documents::CreateTime))
                    .col(timestamp_with_time_zone(Documents::UpdateTime))
                    .to_owned(),
            )
            .await?;
        // Every list is one tenant's, newest first with the id breaking
        // ties, so the keyset cursor walks this index.
        manager
            .create_index(
                Index::create()
                    .name("idx_documents_tenant_create_time_id")
                    .table(Documents::Table)
                    .col(Documents::Tenant)
                    .col(Documents::CreateTime)
                    .col(Documents::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Documents::Table).if_exists().to_owned())
            .await
    }
}
