//! Refresh tokens and failed-login counters.

// The trait declares `&SchemaManager` with an elided lifetime; matching it
// exactly is required, so the 2018-idioms lint cannot be satisfied here.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    TokenHash,
    FamilyId,
    UserId,
    Tenant,
    ClientId,
    AuthTime,
    IssuedAt,
    ExpiresAt,
    RotatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum LoginAttempts {
    Table,
    EmailHash,
    Failures,
    LockedUntil,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RefreshTokens::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::TokenHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(RefreshTokens::FamilyId).uuid().not_null())
                    .col(ColumnDef::new(RefreshTokens::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(RefreshTokens::Tenant)
                            .string_len(63)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::ClientId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(timestamp(RefreshTokens::AuthTime))
                    .col(timestamp(RefreshTokens::IssuedAt))
                    .col(timestamp(RefreshTokens::ExpiresAt))
                    .col(
                        ColumnDef::new(RefreshTokens::RotatedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refresh_tokens_user")
                            .from(RefreshTokens::Table, RefreshTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Revoking a family or all of a user's tokens finds them by these.
        for (name, col) in [
            ("idx_refresh_tokens_family", RefreshTokens::FamilyId),
            ("idx_refresh_tokens_user", RefreshTokens::UserId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(RefreshTokens::Table)
                        .col(col)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(LoginAttempts::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(LoginAttempts::EmailHash)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(LoginAttempts::Failures).integer().not_null())
                    .col(
                        ColumnDef::new(LoginAttempts::LockedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(timestamp(LoginAttempts::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoginAttempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RefreshTokens::Table).to_owned())
            .await
    }
}
