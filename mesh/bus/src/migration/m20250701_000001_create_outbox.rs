//! The outbox (`bus_outbox`), its shard rows (`bus_outbox_shard`, locked by
//! PostgreSQL relays) and the relay lease (`bus_lease`, held by SQLite
//! relays).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, integer, string, string_null, text, text_null,
};

use super::{BusLease, BusOutbox, BusOutboxShard};
use crate::outbox::{RELAY_LEASE, SHARDS};

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
                    .table(BusOutbox::Table)
                    .if_not_exists()
                    .col(big_pk_auto(BusOutbox::Seq))
                    .col(string(BusOutbox::EventId).unique_key())
                    .col(integer(BusOutbox::Shard))
                    .col(string(BusOutbox::Aggregate))
                    .col(string(BusOutbox::EventType))
                    .col(text(BusOutbox::Envelope))
                    .col(big_integer(BusOutbox::CreatedAtMs))
                    .col(big_integer_null(BusOutbox::PublishedAtMs))
                    .col(integer(BusOutbox::Attempts).default(0))
                    .col(text_null(BusOutbox::LastError))
                    .to_owned(),
            )
            .await?;
        // The relay reads only pending rows: per shard in order (PostgreSQL)
        // or all in order (SQLite). Partial indexes stay as small as the
        // backlog, however long published rows are kept.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_bus_outbox_pending_shard \
             ON bus_outbox (shard, seq) WHERE published_at_ms IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_bus_outbox_pending \
             ON bus_outbox (seq) WHERE published_at_ms IS NULL",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_bus_outbox_published_at")
                    .table(BusOutbox::Table)
                    .col(BusOutbox::PublishedAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BusOutboxShard::Table)
                    .if_not_exists()
                    .col(integer(BusOutboxShard::Shard).primary_key())
                    .to_owned(),
            )
            .await?;
        let mut shards = Query::insert();
        shards
            .into_table(BusOutboxShard::Table)
            .columns([BusOutboxShard::Shard]);
        for shard in 0..SHARDS {
            shards.values_panic([i32::from(shard).into()]);
        }
        manager.execute(shards.to_owned()).await?;

        manager
            .create_table(
                Table::create()
                    .table(BusLease::Table)
                    .if_not_exists()
                    .col(string(BusLease::Name).primary_key())
                    .col(string_null(BusLease::Holder))
                    .col(big_integer(BusLease::ExpiresAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .execute(
                Query::insert()
                    .into_table(BusLease::Table)
                    .columns([BusLease::Name, BusLease::ExpiresAtMs])
                    .values_panic([RELAY_LEASE.into(), 0i64.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BusLease::Table.into_iden(),
            BusOutboxShard::Table.into_iden(),
            BusOutbox::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
