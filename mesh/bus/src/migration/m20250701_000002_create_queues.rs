//! The embedded bus: queues (`bus_queue`), which event types each receives
//! (`bus_subscription`) and their messages (`bus_message`), dead letters
//! included.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, boolean, integer, string, string_null, text,
    text_null,
};

use super::{BusMessage, BusQueue, BusSubscription};

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
                    .table(BusQueue::Table)
                    .if_not_exists()
                    .col(string(BusQueue::Name).primary_key())
                    .col(integer(BusQueue::MaxReceives))
                    .col(big_integer(BusQueue::VisibilityMs))
                    .col(boolean(BusQueue::Fifo).default(false))
                    .col(big_integer(BusQueue::CreatedAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BusSubscription::Table)
                    .if_not_exists()
                    .col(string(BusSubscription::Queue))
                    .col(string(BusSubscription::EventType))
                    .primary_key(
                        Index::create()
                            .col(BusSubscription::Queue)
                            .col(BusSubscription::EventType),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_bus_subscription_queue")
                            .from(BusSubscription::Table, BusSubscription::Queue)
                            .to(BusQueue::Table, BusQueue::Name)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BusMessage::Table)
                    .if_not_exists()
                    .col(big_pk_auto(BusMessage::Id))
                    .col(string(BusMessage::Queue))
                    .col(string(BusMessage::EventId))
                    .col(string(BusMessage::EventType))
                    .col(string(BusMessage::GroupKey))
                    .col(text(BusMessage::Envelope))
                    .col(big_integer(BusMessage::EnqueuedAtMs))
                    .col(big_integer(BusMessage::VisibleAtMs))
                    .col(integer(BusMessage::ReceiveCount).default(0))
                    .col(string_null(BusMessage::Receipt))
                    .col(big_integer_null(BusMessage::DeadAtMs))
                    .col(text_null(BusMessage::DeadReason))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_bus_message_queue")
                            .from(BusMessage::Table, BusMessage::Queue)
                            .to(BusQueue::Table, BusQueue::Name)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A relay that publishes an event twice (at least once) enqueues it
        // once while the first copy is still queued.
        manager
            .create_index(
                Index::create()
                    .name("idx_bus_message_queue_event")
                    .table(BusMessage::Table)
                    .col(BusMessage::Queue)
                    .col(BusMessage::EventId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Receivers look for live messages of one queue by visibility.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_bus_message_ready \
                 ON bus_message (queue, visible_at_ms, id) WHERE dead_at_ms IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BusMessage::Table.into_iden(),
            BusSubscription::Table.into_iden(),
            BusQueue::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
