//! The inbox: which events a subscriber has handled or is handling, so that
//! a redelivered event (the bus delivers at least once) runs its handler
//! once.
//!
//! A [`Subscriber`](crate::Subscriber) with an inbox **claims** an event
//! before its handler runs: one atomic insert of `(subscriber, event id)`
//! with a lease. Whoever inserts first runs the handler; a copy that
//! arrives meanwhile (SNS and SQS duplicates often come together, and
//! replicas share the inbox) finds the claim and is never run. Ack turns
//! the claim into a handled entry; Retry and dead-lettering release it, so
//! a later copy runs again; a claim whose holder died expires with its
//! lease, which the holder extends while its handler runs.
//!
//! A crash between a handler's effect and the end of its claim can still
//! repeat the effect once the lease expires; a handler whose effects live
//! in the same database closes that gap by calling [`Inbox::record_in`]
//! inside its own transaction and treating `false` as "already done".

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::dynamo_inbox::DynamoInbox;
use crate::error::Result;
use crate::sql::{ms, now_ms, stmt};

/// One subscriber's inbox: on a database whose bus migrations have run
/// ([`Inbox::new`]), or on DynamoDB ([`Inbox::dynamodb`]).
#[derive(Clone, Debug)]
pub struct Inbox {
    store: Store,
    subscriber: String,
}

#[derive(Clone, Debug)]
enum Store {
    Sql(DatabaseConnection),
    Dynamo(DynamoInbox),
}

/// What [`Inbox::claim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The event is this caller's to handle, under this claim.
    Acquired(ClaimToken),
    /// The event was handled already.
    Handled,
    /// Someone else is handling the event; `message_id` is the message it
    /// holds and `lease` how long its claim still runs.
    Busy { message_id: String, lease: Duration },
}

/// Proof of a claim, for extending, completing or releasing exactly it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToken(String);

impl ClaimToken {
    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl Inbox {
    pub fn new(db: DatabaseConnection, subscriber: impl Into<String>) -> Self {
        Self {
            store: Store::Sql(db),
            subscriber: subscriber.into(),
        }
    }

    /// The inbox on DynamoDB (see [`crate::dynamo_inbox`]): entries expire
    /// through the table's TTL instead of [`purge`](Self::purge).
    pub fn dynamodb(inbox: DynamoInbox, subscriber: impl Into<String>) -> Self {
        Self {
            store: Store::Dynamo(inbox),
            subscriber: subscriber.into(),
        }
    }

    pub fn subscriber(&self) -> &str {
        &self.subscriber
    }

    /// Whether `event_id` has been handled (a claim in progress is not).
    pub async fn seen(&self, event_id: &str) -> Result<bool> {
        let db = match &self.store {
            Store::Sql(db) => db,
            Store::Dynamo(inbox) => return inbox.seen(&self.subscriber, event_id).await,
        };
        let row = db
            .query_one_raw(stmt(
                db.get_database_backend(),
                "SELECT 1 AS seen FROM bus_inbox WHERE subscriber = $1 AND event_id = $2 \
                 AND lease_until_ms IS NULL",
                [self.subscriber.clone().into(), event_id.into()],
            ))
            .await?;
        Ok(row.is_some())
    }

    /// Claims `event_id` for `lease`, for the delivery of `message_id`.
    /// Atomic: of any number of concurrent callers, one acquires it.
    pub async fn claim(&self, event_id: &str, message_id: &str, lease: Duration) -> Result<Claim> {
        let db = match &self.store {
            Store::Sql(db) => db,
            Store::Dynamo(inbox) => {
                return inbox
                    .claim(&self.subscriber, event_id, message_id, lease)
                    .await;
            }
        };
        let backend = db.get_database_backend();
        let token = uuid::Uuid::new_v4().to_string();
        // Twice at most: a claim released between the insert and the read
        // is gone, and the second insert takes it.
        for _ in 0..2 {
            let now = now_ms();
            let until = now.saturating_add(ms(lease));
            let inserted = db
                .execute_raw(stmt(
                    backend,
                    "INSERT INTO bus_inbox \
                     (subscriber, event_id, handled_at_ms, lease_until_ms, claim_token, claim_message) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subscriber, event_id) DO NOTHING",
                    [
                        self.subscriber.clone().into(),
                        event_id.into(),
                        now.into(),
                        until.into(),
                        token.clone().into(),
                        message_id.into(),
                    ],
                ))
                .await?
                .rows_affected();
            if inserted == 1 {
                return Ok(Claim::Acquired(ClaimToken(token)));
            }
            // A claim whose holder stopped extending it (a crash) is taken
            // over once its lease has run out.
            let taken = db
                .execute_raw(stmt(
                    backend,
                    "UPDATE bus_inbox SET handled_at_ms = $1, lease_until_ms = $2, \
                     claim_token = $3, claim_message = $4 \
                     WHERE subscriber = $5 AND event_id = $6 \
                     AND lease_until_ms IS NOT NULL AND lease_until_ms < $7",
                    [
                        now.into(),
                        until.into(),
                        token.clone().into(),
                        message_id.into(),
                        self.subscriber.clone().into(),
                        event_id.into(),
                        now.into(),
                    ],
                ))
                .await?
                .rows_affected();
            if taken == 1 {
                return Ok(Claim::Acquired(ClaimToken(token)));
            }
            let row = db
                .query_one_raw(stmt(
                    backend,
                    "SELECT lease_until_ms, claim_message FROM bus_inbox \
                     WHERE subscriber = $1 AND event_id = $2",
                    [self.subscriber.clone().into(), event_id.into()],
                ))
                .await?;
            let Some(row) = row else { continue };
            let until: Option<i64> = row.try_get("", "lease_until_ms")?;
            let holder: Option<String> = row.try_get("", "claim_message")?;
            return Ok(match until {
                None => Claim::Handled,
                Some(until) => Claim::Busy {
                    message_id: holder.unwrap_or_default(),
                    lease: Duration::from_millis(until.saturating_sub(now).max(0) as u64),
                },
            });
        }
        // Claimed and released twice under our feet: someone else is busy
        // with it right now.
        Ok(Claim::Busy {
            message_id: String::new(),
            lease: Duration::from_secs(1),
        })
    }

    /// Extends a claim this caller holds; `false` if it is no longer held.
    pub async fn extend(
        &self,
        event_id: &str,
        claim: &ClaimToken,
        lease: Duration,
    ) -> Result<bool> {
        let db = match &self.store {
            Store::Sql(db) => db,
            Store::Dynamo(inbox) => {
                return inbox.extend(&self.subscriber, event_id, claim, lease).await;
            }
        };
        let until = now_ms().saturating_add(ms(lease));
        Ok(db
            .execute_raw(stmt(
                db.get_database_backend(),
                "UPDATE bus_inbox SET lease_until_ms = $1 \
                 WHERE subscriber = $2 AND event_id = $3 AND claim_token = $4 \
                 AND lease_until_ms IS NOT NULL",
                [
                    until.into(),
                    self.subscriber.clone().into(),
                    event_id.into(),
                    claim.0.clone().into(),
                ],
            ))
            .await?
            .rows_affected()
            == 1)
    }

    /// Marks a claimed event handled (a no-op when the handler recorded it
    /// itself with [`Inbox::record_in`]).
    pub async fn complete(&self, event_id: &str, claim: &ClaimToken) -> Result<()> {
        let db = match &self.store {
            Store::Sql(db) => db,
            Store::Dynamo(inbox) => return inbox.complete(&self.subscriber, event_id, claim).await,
        };
        db.execute_raw(stmt(
            db.get_database_backend(),
            "UPDATE bus_inbox SET handled_at_ms = $1, lease_until_ms = NULL, \
                 claim_token = NULL, claim_message = NULL \
                 WHERE subscriber = $2 AND event_id = $3 AND claim_token = $4",
            [
                now_ms().into(),
                self.subscriber.clone().into(),
                event_id.into(),
                claim.0.clone().into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// Gives a claim up, so that the next copy of the event runs.
    pub async fn release(&self, event_id: &str, claim: &ClaimToken) -> Result<()> {
        let db = match &self.store {
            Store::Sql(db) => db,
            Store::Dynamo(inbox) => return inbox.release(&self.subscriber, event_id, claim).await,
        };
        db.execute_raw(stmt(
            db.get_database_backend(),
            "DELETE FROM bus_inbox WHERE subscriber = $1 AND event_id = $2 \
                 AND claim_token = $3 AND lease_until_ms IS NOT NULL",
            [
                self.subscriber.clone().into(),
                event_id.into(),
                claim.0.clone().into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// Records `event_id` as handled; `false` when it already was.
    pub async fn record(&self, event_id: &str) -> Result<bool> {
        match &self.store {
            Store::Sql(db) => Self::record_in(db, &self.subscriber, event_id).await,
            Store::Dynamo(inbox) => inbox.record(&self.subscriber, event_id).await,
        }
    }

    /// Records `event_id` as handled for `subscriber` through `conn`,
    /// typically the handler's own transaction; `false` when it was already
    /// handled (the handler should then change nothing and succeed). A
    /// claim on the event (the subscriber's, around this very handler)
    /// becomes the handled entry.
    pub async fn record_in(
        conn: &impl ConnectionTrait,
        subscriber: &str,
        event_id: &str,
    ) -> Result<bool> {
        let inserted = conn
            .execute_raw(stmt(
                conn.get_database_backend(),
                "INSERT INTO bus_inbox (subscriber, event_id, handled_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (subscriber, event_id) DO UPDATE SET \
                 handled_at_ms = excluded.handled_at_ms, lease_until_ms = NULL, \
                 claim_token = NULL, claim_message = NULL \
                 WHERE bus_inbox.lease_until_ms IS NOT NULL",
                [subscriber.into(), event_id.into(), now_ms().into()],
            ))
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }

    /// Forgets handled entries older than `age` (longer than any
    /// redelivery can take); returns how many. On DynamoDB the table's TTL
    /// does this, and this returns 0.
    pub async fn purge(&self, age: Duration) -> Result<u64> {
        let db = match &self.store {
            Store::Sql(db) => db,
            Store::Dynamo(_) => return Ok(0),
        };
        let before = now_ms().saturating_sub(ms(age));
        Ok(db
            .execute_raw(stmt(
                db.get_database_backend(),
                "DELETE FROM bus_inbox WHERE subscriber = $1 AND handled_at_ms < $2 \
                 AND lease_until_ms IS NULL",
                [self.subscriber.clone().into(), before.into()],
            ))
            .await?
            .rows_affected())
    }
}
