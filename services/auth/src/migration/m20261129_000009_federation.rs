//! Federation: sign-ins in flight at a provider, and linked identities.

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
}

#[derive(DeriveIden)]
enum FederatedIdentities {
    Table,
    Provider,
    Subject,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum FederationLogins {
    Table,
    StateHash,
    Provider,
    Nonce,
    CodeVerifier,
    ClientId,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FederatedIdentities::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(FederatedIdentities::Provider)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederatedIdentities::Subject)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederatedIdentities::UserId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederatedIdentities::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(FederatedIdentities::Provider)
                            .col(FederatedIdentities::Subject),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_federated_identities_user")
                            .from(FederatedIdentities::Table, FederatedIdentities::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FederationLogins::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(FederationLogins::StateHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(FederationLogins::Provider)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(FederationLogins::Nonce).string().not_null())
                    .col(
                        ColumnDef::new(FederationLogins::CodeVerifier)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederationLogins::ClientId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FederationLogins::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(FederationLogins::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(FederatedIdentities::Table).to_owned())
            .await
    }
}
