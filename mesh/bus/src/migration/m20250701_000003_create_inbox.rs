//! The inbox (`bus_inbox`): the event ids each subscriber has handled.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

use super::BusInbox;

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
                    .table(BusInbox::Table)
                    .if_not_exists()
                    .col(string(BusInbox::Subscriber))
                    .col(string(BusInbox::EventId))
                    .col(big_integer(BusInbox::HandledAtMs))
                    .primary_key(
                        Index::create()
                            .col(BusInbox::Subscriber)
                            .col(BusInbox::EventId),
                    )
                    .to_owned(),
            )
            .await?;
        // Purging old entries walks this index.
        manager
            .create_index(
                Index::create()
                    .name("idx_bus_inbox_handled_at")
                    .table(BusInbox::Table)
                    .col(BusInbox::HandledAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BusInbox::Table).if_exists().to_owned())
            .await
    }
}
