//! Email confirmation: when a user confirmed, and the codes in flight.

// The trait declares `&SchemaManager` with an elided lifetime; matching it
// exactly is required, so the 2018-idioms lint cannot be satisfied here.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    ConfirmedAt,
}

#[derive(DeriveIden)]
enum ConfirmationCodes {
    Table,
    UserId,
    Purpose,
    CodeHash,
    Attempts,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(
                        ColumnDef::new(Users::ConfirmedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Users from before confirmation existed could already log in.
        manager
            .get_connection()
            .execute_unprepared("UPDATE users SET confirmed_at = created_at")
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConfirmationCodes::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ConfirmationCodes::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(ConfirmationCodes::Purpose)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConfirmationCodes::CodeHash)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConfirmationCodes::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(ConfirmationCodes::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConfirmationCodes::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ConfirmationCodes::UserId)
                            .col(ConfirmationCodes::Purpose),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_confirmation_codes_user")
                            .from(ConfirmationCodes::Table, ConfirmationCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConfirmationCodes::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::ConfirmedAt)
                    .to_owned(),
            )
            .await
    }
}
