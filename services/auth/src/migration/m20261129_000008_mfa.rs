//! TOTP multi-factor authentication: the tenant's mode, each user's
//! authenticator and recovery codes, and the sessions of login challenges.

// The trait declares `&SchemaManager` with an elided lifetime; matching it
// exactly is required, so the 2018-idioms lint cannot be satisfied here.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    MfaMode,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum MfaTotp {
    Table,
    UserId,
    Secret,
    PendingSecret,
    LastStep,
    EnabledAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MfaRecoveryCodes {
    Table,
    UserId,
    CodeHash,
    UsedAt,
}

#[derive(DeriveIden)]
enum MfaChallenges {
    Table,
    SessionHash,
    UserId,
    Kind,
    ClientId,
    Attempts,
    ExpiresAt,
}

fn user_fk<T: IntoTableRef, C: IntoIden>(
    table: T,
    column: C,
    name: &str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, column)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(
                        ColumnDef::new(Tenants::MfaMode)
                            .string()
                            .not_null()
                            .default("optional"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaTotp::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(MfaTotp::UserId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(MfaTotp::Secret).text().null())
                    .col(ColumnDef::new(MfaTotp::PendingSecret).text().null())
                    .col(ColumnDef::new(MfaTotp::LastStep).big_integer().null())
                    .col(
                        ColumnDef::new(MfaTotp::EnabledAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MfaTotp::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut user_fk(
                        MfaTotp::Table,
                        MfaTotp::UserId,
                        "fk_mfa_totp_user",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaRecoveryCodes::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(MfaRecoveryCodes::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(MfaRecoveryCodes::CodeHash)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MfaRecoveryCodes::UsedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(MfaRecoveryCodes::UserId)
                            .col(MfaRecoveryCodes::CodeHash),
                    )
                    .foreign_key(&mut user_fk(
                        MfaRecoveryCodes::Table,
                        MfaRecoveryCodes::UserId,
                        "fk_mfa_recovery_codes_user",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaChallenges::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(MfaChallenges::SessionHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(MfaChallenges::UserId).uuid().not_null())
                    .col(ColumnDef::new(MfaChallenges::Kind).string().not_null())
                    .col(ColumnDef::new(MfaChallenges::ClientId).string().not_null())
                    .col(
                        ColumnDef::new(MfaChallenges::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(MfaChallenges::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut user_fk(
                        MfaChallenges::Table,
                        MfaChallenges::UserId,
                        "fk_mfa_challenges_user",
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MfaChallenges::Table.into_iden(),
            MfaRecoveryCodes::Table.into_iden(),
            MfaTotp::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .drop_column(Tenants::MfaMode)
                    .to_owned(),
            )
            .await
    }
}
