//! The last passwords of each user, so that a change cannot reuse one.

// The trait declares `&SchemaManager` with an elided lifetime; matching it
// exactly is required, so the 2018-idioms lint cannot be satisfied here.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum PasswordHistory {
    Table,
    Id,
    UserId,
    PasswordHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PasswordHistory::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PasswordHistory::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(PasswordHistory::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(PasswordHistory::PasswordHash)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PasswordHistory::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_password_history_user")
                            .from(PasswordHistory::Table, PasswordHistory::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_password_history_user")
                    .table(PasswordHistory::Table)
                    .col(PasswordHistory::UserId)
                    .col(PasswordHistory::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PasswordHistory::Table).to_owned())
            .await
    }
}
