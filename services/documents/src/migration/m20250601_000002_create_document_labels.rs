//! The `document_labels` table: a document's labels, removed with it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, uuid};

use super::{DocumentLabels, Documents};

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
                    .table(DocumentLabels::Table)
                    .if_not_exists()
                    .col(uuid(DocumentLabels::DocumentId))
                    .col(string(DocumentLabels::Key))
                    .col(string(DocumentLabels::Value))
                    .primary_key(
                        Index::create()
                            .col(DocumentLabels::DocumentId)
                            .col(DocumentLabels::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_document_labels_document")
                            .from(DocumentLabels::Table, DocumentLabels::DocumentId)
                            .to(Documents::Table, Documents::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The label filter looks rows up by key (and value).
        manager
            .create_index(
                Index::create()
                    .name("idx_document_labels_key_value")
                    .table(DocumentLabels::Table)
                    .col(DocumentLabels::Key)
                    .col(DocumentLabels::Value)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(DocumentLabels::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
