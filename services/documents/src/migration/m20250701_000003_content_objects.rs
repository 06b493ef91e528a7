//! Content moves to object storage: each row points to its content's
//! generation and says how it is stored. Existing rows keep their inline
//! content (`content_storage = 'inline'`) and are read from the column
//! until a write moves them (see `crate::store`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string_len, string_len_null};

use super::Documents;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

// The trait elides `SchemaManager`'s lifetime; naming it (`<'_>`) makes
// the lifetime early-bound under async_trait and no longer matches.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds only one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Documents::Table)
                    .add_column_if_not_exists(string_len_null(Documents::ContentGeneration, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Documents::Table)
                    .add_column_if_not_exists(
                        string_len(Documents::ContentStorage, 16).default("inline"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Documents::ContentGeneration, Documents::ContentStorage] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Documents::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
