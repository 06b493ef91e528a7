//! The transactional outbox: a service writes its event in the same
//! transaction as the change it describes, so the event exists exactly when
//! the change does. The [`Relay`](crate::Relay) publishes it afterwards.
//!
//! [`Outbox::write`] is the one way services do it: it begins a write
//! transaction (SQLite `IMMEDIATE`, so writers queue at `BEGIN` rather
//! than fail when a read upgrades), runs the change, appends the events
//! the change recorded, commits, and wakes the relay; any error rolls all
//! of it back.
//!
//! ```ignore
//! let doc = outbox
//!     .write(&db, async |txn, events| {
//!         // ... change the aggregate, taking its row lock first ...
//!         events.push(Envelope::new("/cloudsec/documents", &created));
//!         Ok::<_, MyError>(doc)
//!     })
//!     .await?;
//! ```
//!
//! Rows are numbered by an auto-increment `seq`. Events of one aggregate
//! are published in `seq` order, which is their commit order as long as
//! the transactions that append them serialize on the aggregate (they
//! update its row first, as the documents store does; on SQLite every
//! write transaction is serialized anyway).

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tokio::sync::Notify;

use crate::envelope::Envelope;
use crate::error::{BusError, Result};
use crate::sql::{ms, now_ms, stmt};

/// How many shards the outbox is cut into. An aggregate always falls into
/// the same shard; PostgreSQL relays lock whole shards, so several relays
/// work in parallel without ever splitting one aggregate's events.
pub const SHARDS: u16 = 16;

/// The name of the SQLite relay's lease row.
pub const RELAY_LEASE: &str = "outbox-relay";

/// The largest envelope (in its JSON form) the outbox accepts: SNS, SQS and
/// EventBridge stop at 256 KiB, and the attributes need room too.
pub const MAX_EVENT_BYTES: usize = 240 * 1024;

/// The PostgreSQL channel on which appends announce themselves at commit.
pub const NOTIFY_CHANNEL: &str = "cloudsec_bus_outbox";

/// Appends events within a caller's transaction and wakes the relay.
/// Cheap to clone; the relay built with [`Outbox::signal`] shares it.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    signal: Arc<Notify>,
    pg_notify: bool,
}

/// The events a change records, appended in its transaction by
/// [`Outbox::write`].
#[derive(Debug, Default)]
pub struct Events(Vec<Envelope>);

impl Events {
    pub fn push(&mut self, event: Envelope) {
        self.0.push(event);
    }
}

/// A write transaction: SQLite `IMMEDIATE`, so that writers queue at
/// `BEGIN` instead of failing when a transaction that read first upgrades
/// to write; PostgreSQL's default elsewhere.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> std::result::Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Runs `change` in a write transaction ([`begin_write`]) and commits it;
/// an error from `change` rolls it back and is returned. For changes that
/// record no event; those that do use [`Outbox::write`].
pub async fn transaction<T, E>(
    db: &DatabaseConnection,
    change: impl AsyncFnOnce(&DatabaseTransaction) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    E: From<DbErr>,
{
    let txn = begin_write(db).await?;
    match change(&txn).await {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(error) => {
            txn.rollback().await?;
            Err(error)
        }
    }
}

impl Outbox {
    /// Runs `change` in a write transaction, appends the events it pushed,
    /// commits and wakes the relay. An error from `change`, an append or
    /// the commit rolls everything back and is returned.
    pub async fn write<T, E>(
        &self,
        db: &DatabaseConnection,
        change: impl AsyncFnOnce(&DatabaseTransaction, &mut Events) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<DbErr> + From<BusError>,
    {
        let mut events = Events::default();
        let value = transaction(db, async |txn| {
            let value = change(txn, &mut events).await?;
            for event in &events.0 {
                self.append(txn, event).await?;
            }
            Ok::<T, E>(value)
        })
        .await?;
        if !events.0.is_empty() {
            self.committed();
        }
        Ok(value)
    }

    pub fn new() -> Self {
        Self::default()
    }

    /// Also `NOTIFY` [`NOTIFY_CHANNEL`] on PostgreSQL with each append, so
    /// that relays in other processes wake at commit (PostgreSQL delivers
    /// a notification only when its transaction commits). It costs one
    /// statement per append; in-process relays need only [`Self::committed`].
    pub fn with_pg_notify(mut self, on: bool) -> Self {
        self.pg_notify = on;
        self
    }

    /// Writes `envelope` into the outbox as part of `txn` (any connection
    /// works, but only a transaction makes the event atomic with the
    /// change). Nothing is published unless `txn` commits.
    pub async fn append(&self, txn: &impl ConnectionTrait, envelope: &Envelope) -> Result<()> {
        envelope.validate()?;
        let json = envelope.to_json();
        if json.len() > MAX_EVENT_BYTES {
            return Err(BusError::TooLarge {
                size: json.len(),
                limit: MAX_EVENT_BYTES,
            });
        }
        let backend = txn.get_database_backend();
        let aggregate = envelope.aggregate();
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO bus_outbox \
             (event_id, shard, aggregate, event_type, envelope, created_at_ms, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, 0)",
            [
                envelope.id.clone().into(),
                i32::from(shard_of(aggregate)).into(),
                aggregate.to_owned().into(),
                envelope.event_type.clone().into(),
                json.into(),
                now_ms().into(),
            ],
        ))
        .await?;
        if self.pg_notify && backend == DbBackend::Postgres {
            txn.execute_unprepared(&format!("NOTIFY {NOTIFY_CHANNEL}"))
                .await?;
        }
        Ok(())
    }

    /// Tells the relay that a transaction with events committed. Call it
    /// after `commit`; a relay that is busy picks the events up when it
    /// finishes, one that is idle starts at once.
    pub fn committed(&self) {
        // `notify_one` keeps a permit when the relay is not waiting yet,
        // so a commit during a relay round is never missed.
        self.signal.notify_one();
    }

    /// What the relay waits on.
    pub(crate) fn signal(&self) -> Arc<Notify> {
        self.signal.clone()
    }

    /// How many events wait to be published.
    pub async fn pending(db: &impl ConnectionTrait) -> Result<u64> {
        let row = db
            .query_one_raw(stmt(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM bus_outbox WHERE published_at_ms IS NULL",
                [],
            ))
            .await?;
        let n: i64 = match row {
            Some(row) => row.try_get("", "n")?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Deletes published events older than `age`; returns how many.
    pub async fn purge_published(db: &impl ConnectionTrait, age: Duration) -> Result<u64> {
        let before = now_ms().saturating_sub(ms(age));
        let result = db
            .execute_raw(stmt(
                db.get_database_backend(),
                "DELETE FROM bus_outbox WHERE published_at_ms IS NOT NULL AND published_at_ms < $1",
                [before.into()],
            ))
            .await?;
        Ok(result.rows_affected())
    }
}

/// The shard of an aggregate: FNV-1a, so that it never changes between
/// builds or platforms (the standard hasher may).
pub fn shard_of(aggregate: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in aggregate.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    u16::try_from(hash % u32::from(SHARDS)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_in_range() {
        assert_eq!(shard_of("doc-1"), shard_of("doc-1"));
        // Pinned: a change here would reorder events across an upgrade.
        assert_eq!(shard_of(""), (0x811c_9dc5u32 % 16) as u16);
        let used: std::collections::BTreeSet<u16> =
            (0..1000).map(|i| shard_of(&format!("agg-{i}"))).collect();
        assert!(used.iter().all(|s| *s < SHARDS));
        assert_eq!(used.len(), usize::from(SHARDS), "every shard gets work");
    }
}
