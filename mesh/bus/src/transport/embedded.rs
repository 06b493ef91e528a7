//! The embedded bus: durable queues in the local database (SQLite or
//! PostgreSQL) with SQS's semantics, for `cloudsec up` and for tests.
//!
//! - Publishing copies each event into every queue subscribed to its type,
//!   in one transaction; an event already queued (a relay's duplicate) is
//!   not queued twice.
//! - Receiving claims visible messages, hides them for the visibility
//!   timeout and counts the receive. A message received `max_receives`
//!   times and still not deleted becomes a dead letter on its next
//!   receive, as with an SQS redrive policy. On a FIFO queue only the
//!   oldest live message of each group can be received.
//! - Receivers in the process wake when a publish commits; others (and
//!   anything missed) are found by polling every [`POLL_INTERVAL`].
//!
//! Dead letters stay in `bus_message` with `dead_at_ms` set: list them
//! with [`EmbeddedBus::dead_letters`] and send them back with
//! [`EmbeddedBus::redrive`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Value};
use tokio::sync::Notify;

use crate::envelope::Envelope;
use crate::error::{BusError, Result};
use crate::sql::{ms, now_ms, stmt};
use crate::transport::{Delivery, Provisioning, Published, Publisher, Queue, QueueSpec};

/// How often an idle receiver looks for messages that no in-process wake
/// announced (published by another process).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The bus on one database. Cheap to clone; clones share wake-ups.
#[derive(Clone, Debug)]
pub struct EmbeddedBus {
    db: DatabaseConnection,
    wake: Arc<Notify>,
}

/// A dead letter of the embedded bus.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub receive_count: u32,
    pub reason: String,
}

/// A queue's message counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Waiting to be received.
    pub ready: u64,
    /// Received and hidden.
    pub in_flight: u64,
    /// Dead letters.
    pub dead: u64,
}

impl EmbeddedBus {
    /// The bus over `db`, whose bus migrations must have run.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The queue of `spec`: created (or brought in line with `spec`) in
    /// `Create` mode; in `Existing` mode it must exist and its stored
    /// settings win.
    pub async fn provision(&self, spec: &QueueSpec, mode: Provisioning) -> Result<EmbeddedQueue> {
        spec.validate()?;
        if mode == Provisioning::Create {
            let txn = crate::outbox::begin_write(&self.db).await?;
            let backend = txn.get_database_backend();
            txn.execute_raw(stmt(
                backend,
                "INSERT INTO bus_queue (name, max_receives, visibility_ms, fifo, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET max_receives = $2, visibility_ms = $3, fifo = $4",
                [
                    spec.name.clone().into(),
                    i32::try_from(spec.max_receives).unwrap_or(i32::MAX).into(),
                    ms(spec.visibility_timeout).into(),
                    spec.fifo.into(),
                    now_ms().into(),
                ],
            ))
            .await?;
            txn.execute_raw(stmt(
                backend,
                "DELETE FROM bus_subscription WHERE queue = $1",
                [spec.name.clone().into()],
            ))
            .await?;
            let types: Vec<String> = if spec.event_types.is_empty() {
                vec![ALL_TYPES.to_owned()]
            } else {
                spec.event_types.clone()
            };
            for event_type in types {
                txn.execute_raw(stmt(
                    backend,
                    "INSERT INTO bus_subscription (queue, event_type) VALUES ($1, $2)",
                    [spec.name.clone().into(), event_type.into()],
                ))
                .await?;
            }
            txn.commit().await?;
        }
        self.open(&spec.name).await
    }

    /// An existing queue, with its stored settings.
    pub async fn open(&self, name: &str) -> Result<EmbeddedQueue> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.db.get_database_backend(),
                "SELECT max_receives, visibility_ms, fifo FROM bus_queue WHERE name = $1",
                [name.into()],
            ))
            .await?
            .ok_or_else(|| BusError::Missing {
                kind: "queue",
                name: name.to_owned(),
            })?;
        let max_receives: i32 = row.try_get("", "max_receives")?;
        Ok(EmbeddedQueue {
            bus: self.clone(),
            name: name.to_owned(),
            max_receives: u32::try_from(max_receives).unwrap_or(1).max(1),
            fifo: row.try_get("", "fifo")?,
        })
    }

    /// The dead letters of `queue`, oldest first.
    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>> {
        let rows = self
            .db
            .query_all_raw(stmt(
                self.db.get_database_backend(),
                "SELECT id, event_id, event_type, receive_count, dead_reason FROM bus_message \
                 WHERE queue = $1 AND dead_at_ms IS NOT NULL ORDER BY id",
                [queue.into()],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                let count: i32 = row.try_get("", "receive_count")?;
                Ok(DeadLetter {
                    id: row.try_get("", "id")?,
                    event_id: row.try_get("", "event_id")?,
                    event_type: row.try_get("", "event_type")?,
                    receive_count: u32::try_from(count).unwrap_or_default(),
                    reason: row
                        .try_get::<Option<String>>("", "dead_reason")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Makes every dead letter of `queue` a fresh message again; returns
    /// how many.
    pub async fn redrive(&self, queue: &str) -> Result<u64> {
        let moved = self
            .db
            .execute_raw(stmt(
                self.db.get_database_backend(),
                "UPDATE bus_message SET dead_at_ms = NULL, dead_reason = NULL, receipt = NULL, \
                 receive_count = 0, visible_at_ms = $1 \
                 WHERE queue = $2 AND dead_at_ms IS NOT NULL",
                [now_ms().into(), queue.into()],
            ))
            .await?
            .rows_affected();
        if moved > 0 {
            self.wake.notify_waiters();
        }
        Ok(moved)
    }

    /// How many messages `queue` holds, by state.
    pub async fn depth(&self, queue: &str) -> Result<Depth> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.db.get_database_backend(),
                "SELECT \
                 COALESCE(SUM(CASE WHEN dead_at_ms IS NULL AND visible_at_ms <= $2 THEN 1 ELSE 0 END), 0) AS ready, \
                 COALESCE(SUM(CASE WHEN dead_at_ms IS NULL AND visible_at_ms > $2 THEN 1 ELSE 0 END), 0) AS in_flight, \
                 COALESCE(SUM(CASE WHEN dead_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS dead \
                 FROM bus_message WHERE queue = $1",
                [queue.into(), now_ms().into()],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(Depth::default());
        };
        let get = |column: &str| -> Result<u64> {
            let n: i64 = row.try_get("", column)?;
            Ok(u64::try_from(n).unwrap_or_default())
        };
        Ok(Depth {
            ready: get("ready")?,
            in_flight: get("in_flight")?,
            dead: get("dead")?,
        })
    }
}

/// The subscription row that means "every event type".
const ALL_TYPES: &str = "*";

#[async_trait::async_trait]
impl Publisher for EmbeddedBus {
    async fn publish(&self, batch: &[Envelope]) -> Result<Published> {
        if batch.is_empty() {
            return Ok(Published::all());
        }
        let txn = crate::outbox::begin_write(&self.db).await?;
        let backend = txn.get_database_backend();
        let rows = txn
            .query_all_raw(stmt(
                backend,
                "SELECT queue, event_type FROM bus_subscription",
                [],
            ))
            .await?;
        let mut subscriptions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in &rows {
            let queue: String = row.try_get("", "queue")?;
            let event_type: String = row.try_get("", "event_type")?;
            subscriptions.entry(queue).or_default().push(event_type);
        }
        let now = now_ms();
        for envelope in batch {
            let json = envelope.to_json();
            for (queue, types) in &subscriptions {
                if !types
                    .iter()
                    .any(|t| t == ALL_TYPES || *t == envelope.event_type)
                {
                    continue;
                }
                txn.execute_raw(stmt(
                    backend,
                    "INSERT INTO bus_message (queue, event_id, event_type, group_key, envelope, \
                     enqueued_at_ms, visible_at_ms, receive_count) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, 0) \
                     ON CONFLICT (queue, event_id) DO NOTHING",
                    [
                        queue.clone().into(),
                        envelope.id.clone().into(),
                        envelope.event_type.clone().into(),
                        envelope.aggregate().to_owned().into(),
                        json.clone().into(),
                        now.into(),
                    ],
                ))
                .await?;
            }
        }
        txn.commit().await?;
        self.wake.notify_waiters();
        Ok(Published::all())
    }
}

/// One queue of the embedded bus.
#[derive(Clone, Debug)]
pub struct EmbeddedQueue {
    bus: EmbeddedBus,
    name: String,
    max_receives: u32,
    fifo: bool,
}

impl EmbeddedQueue {
    /// Turns messages that have used up their receives into dead letters.
    async fn expire(&self, now: i64) -> Result<()> {
        let db = &self.bus.db;
        db.execute_raw(stmt(
            db.get_database_backend(),
            "UPDATE bus_message SET dead_at_ms = $1, dead_reason = $2, receipt = NULL \
             WHERE queue = $3 AND dead_at_ms IS NULL AND visible_at_ms <= $1 \
             AND receive_count >= $4",
            [
                now.into(),
                format!("received {} times without success", self.max_receives).into(),
                self.name.clone().into(),
                i32::try_from(self.max_receives).unwrap_or(i32::MAX).into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// Claims up to `max` visible messages in one statement. A message
    /// that used up its receives is never claimed, even when it became
    /// visible after [`Self::expire`] looked; the next expiry takes it.
    async fn claim(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>> {
        let now = now_ms();
        self.expire(now).await?;
        let db = &self.bus.db;
        let backend = db.get_database_backend();
        // FIFO: only a group's oldest live message is eligible, so a group
        // is handled strictly in order, one message at a time.
        let fifo = if self.fifo {
            "AND NOT EXISTS (SELECT 1 FROM bus_message e WHERE e.queue = m.queue \
             AND e.group_key = m.group_key AND e.dead_at_ms IS NULL AND e.id < m.id) "
        } else {
            ""
        };
        let lock = if backend == DbBackend::Postgres {
            "FOR UPDATE OF m SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE bus_message SET visible_at_ms = $1, receive_count = receive_count + 1, \
             receipt = $2 \
             WHERE id IN (SELECT m.id FROM bus_message m \
                          WHERE m.queue = $3 AND m.dead_at_ms IS NULL AND m.visible_at_ms <= $4 \
                          AND m.receive_count < $6 \
                          {fifo}ORDER BY m.id LIMIT $5 {lock}) \
             RETURNING id, envelope, receive_count, group_key"
        );
        let token = uuid::Uuid::new_v4().simple().to_string();
        let rows = db
            .query_all_raw(stmt(
                backend,
                &sql,
                [
                    now.saturating_add(ms(visibility)).into(),
                    token.clone().into(),
                    self.name.clone().into(),
                    now.into(),
                    i64::try_from(max).unwrap_or(10).into(),
                    i32::try_from(self.max_receives).unwrap_or(i32::MAX).into(),
                ],
            ))
            .await?;
        let mut deliveries = rows
            .iter()
            .map(|row| {
                let id: i64 = row.try_get("", "id")?;
                let body: String = row.try_get("", "envelope")?;
                let count: i32 = row.try_get("", "receive_count")?;
                let group: String = row.try_get("", "group_key")?;
                Ok(Delivery {
                    message_id: id.to_string(),
                    receipt: format!("{id}:{token}"),
                    receive_count: u32::try_from(count).unwrap_or_default(),
                    group: self.fifo.then_some(group),
                    event: Envelope::from_json(&body).map_err(|e| e.to_string()),
                    body,
                    attributes: BTreeMap::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING promises no order.
        deliveries.sort_by_key(|d| d.message_id.parse::<i64>().unwrap_or_default());
        Ok(deliveries)
    }

    /// The message id and claim token of a receipt.
    fn parse_receipt(delivery: &Delivery) -> Result<(i64, &str)> {
        delivery
            .receipt
            .split_once(':')
            .and_then(|(id, token)| Some((id.parse().ok()?, token)))
            .ok_or_else(|| BusError::Invalid(format!("bad receipt `{}`", delivery.receipt)))
    }

    async fn update_by_receipt(
        &self,
        delivery: &Delivery,
        sql: &str,
        mut values: Vec<Value>,
    ) -> Result<()> {
        let (id, token) = Self::parse_receipt(delivery)?;
        let next = values.len() + 1;
        values.push(id.into());
        values.push(token.to_owned().into());
        let sql = format!("{sql} WHERE id = ${next} AND receipt = ${}", next + 1);
        let db = &self.bus.db;
        let changed = db
            .execute_raw(stmt(db.get_database_backend(), &sql, values))
            .await?
            .rows_affected();
        if changed == 0 {
            // The visibility ran out and someone else received it since:
            // that receiver now owns the message.
            tracing::debug!(queue = %self.name, message_id = %delivery.message_id, "stale receipt");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Queue for EmbeddedQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a publish that commits between
            // the look and the wait still wakes this receiver.
            let notified = self.bus.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claimed = self.claim(max.max(1), visibility).await?;
            let now = tokio::time::Instant::now();
            if !claimed.is_empty() || now >= deadline {
                return Ok(claimed);
            }
            let nap = POLL_INTERVAL.min(deadline - now);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn delete(&self, delivery: &Delivery) -> Result<()> {
        let (id, token) = Self::parse_receipt(delivery)?;
        let db = &self.bus.db;
        db.execute_raw(stmt(
            db.get_database_backend(),
            "DELETE FROM bus_message WHERE id = $1 AND receipt = $2",
            [id.into(), token.to_owned().into()],
        ))
        .await?;
        if self.fifo {
            // The group's next message just became eligible.
            self.bus.wake.notify_waiters();
        }
        Ok(())
    }

    async fn set_visibility(&self, delivery: &Delivery, timeout: Duration) -> Result<()> {
        self.update_by_receipt(
            delivery,
            "UPDATE bus_message SET visible_at_ms = $1",
            vec![now_ms().saturating_add(ms(timeout)).into()],
        )
        .await?;
        if timeout.is_zero() {
            self.bus.wake.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<()> {
        self.update_by_receipt(
            delivery,
            "UPDATE bus_message SET dead_at_ms = $1, dead_reason = $2, receipt = NULL",
            vec![now_ms().into(), reason.to_owned().into()],
        )
        .await?;
        if self.fifo {
            self.bus.wake.notify_waiters();
        }
        Ok(())
    }

    async fn depth(&self) -> Result<crate::transport::QueueDepth> {
        let depth = self.bus.depth(&self.name).await?;
        Ok(crate::transport::QueueDepth {
            messages: Some(depth.ready + depth.in_flight),
            dead_letters: Some(depth.dead),
        })
    }
}
