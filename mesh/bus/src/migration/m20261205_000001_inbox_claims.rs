//! Claims in the inbox: an entry with a lease is an event being handled
//! (by the subscriber whose token it holds), one without is handled.
//! Existing entries have no lease, so they stay handled.

use sea_orm_migration::prelude::*;

use super::BusInbox;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

// The trait elides `SchemaManager`'s lifetime; naming it (`<'_>`) makes
// the lifetime early-bound under async_trait and no longer matches.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [
            ColumnDef::new(BusInbox::LeaseUntilMs)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(BusInbox::ClaimToken)
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(BusInbox::ClaimMessage)
                .string()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(BusInbox::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            BusInbox::ClaimMessage,
            BusInbox::ClaimToken,
            BusInbox::LeaseUntilMs,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(BusInbox::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
