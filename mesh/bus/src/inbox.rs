//! The inbox: which events a subscriber has handled, so that a redelivered
//! event (the bus delivers at least once) is not handled twice.
//!
//! A [`Subscriber`](crate::Subscriber) with an inbox skips an event it has
//! recorded and records one after its handler succeeds. A crash between a
//! handler's effect and that record can still repeat the effect; a handler
//! whose effects live in the same database closes that gap by calling
//! [`Inbox::record_in`] inside its own transaction and treating `false` as
//! "already done".

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::error::Result;
use crate::sql::{ms, now_ms, stmt};

/// One subscriber's inbox on a database whose bus migrations have run.
#[derive(Clone, Debug)]
pub struct Inbox {
    db: DatabaseConnection,
    subscriber: String,
}

impl Inbox {
    pub fn new(db: DatabaseConnection, subscriber: impl Into<String>) -> Self {
        Self {
            db,
            subscriber: subscriber.into(),
        }
    }

    pub fn subscriber(&self) -> &str {
        &self.subscriber
    }

    /// Whether `event_id` has been recorded.
    pub async fn seen(&self, event_id: &str) -> Result<bool> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.db.get_database_backend(),
                "SELECT 1 AS seen FROM bus_inbox WHERE subscriber = $1 AND event_id = $2",
                [self.subscriber.clone().into(), event_id.into()],
            ))
            .await?;
        Ok(row.is_some())
    }

    /// Records `event_id`; `false` when it was already recorded.
    pub async fn record(&self, event_id: &str) -> Result<bool> {
        Self::record_in(&self.db, &self.subscriber, event_id).await
    }

    /// Records `event_id` for `subscriber` through `conn`, typically the
    /// handler's own transaction; `false` when it was already recorded (the
    /// handler should then change nothing and succeed).
    pub async fn record_in(
        conn: &impl ConnectionTrait,
        subscriber: &str,
        event_id: &str,
    ) -> Result<bool> {
        let inserted = conn
            .execute_raw(stmt(
                conn.get_database_backend(),
                "INSERT INTO bus_inbox (subscriber, event_id, handled_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (subscriber, event_id) DO NOTHING",
                [subscriber.into(), event_id.into(), now_ms().into()],
            ))
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }

    /// Forgets entries older than `age` (longer than any redelivery can
    /// take); returns how many.
    pub async fn purge(&self, age: Duration) -> Result<u64> {
        let before = now_ms().saturating_sub(ms(age));
        Ok(self
            .db
            .execute_raw(stmt(
                self.db.get_database_backend(),
                "DELETE FROM bus_inbox WHERE subscriber = $1 AND handled_at_ms < $2",
                [self.subscriber.clone().into(), before.into()],
            ))
            .await?
            .rows_affected())
    }
}
