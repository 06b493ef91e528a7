//! The relay: publishes committed outbox events and marks them published.
//!
//! - **Order.** Events of one aggregate are published in `seq` order. An
//!   entry the broker refuses stops its aggregate: later events of the same
//!   aggregate in the batch stay unpublished even if the broker took them,
//!   and go again (after the refused one) in the next round.
//! - **Replicas.** On PostgreSQL a round locks one outbox shard row with
//!   `FOR UPDATE SKIP LOCKED` for the length of its transaction, so
//!   replicas work on different shards in parallel and never split an
//!   aggregate. On SQLite a round first takes (or renews) the one lease
//!   row; only its holder publishes, and a crashed holder's lease expires.
//! - **Failures.** Any failure ends the pump; the relay then sleeps with
//!   exponential backoff (ignoring commit signals, so a broker outage is
//!   not hammered on every commit) and tries again. Nothing is lost: an
//!   event leaves the pending set only after the broker accepted it.
//! - **Latency.** Between pumps the relay waits for [`Outbox::committed`],
//!   a PostgreSQL `NOTIFY` (with [`Relay::listen`]) or the poll interval,
//!   whichever comes first.
//! - **Metrics** (with [`Relay::with_metrics`]): events by outcome, the
//!   time of each publish call, and, every `metrics_interval` in a task of
//!   its own (so a relay stuck in backoff still reports it), the outbox's
//!   depth and the age of its oldest unpublished event.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait, Value};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::envelope::Envelope;
use crate::error::{BusError, Result};
use crate::metrics::RelayMetrics;
use crate::outbox::{NOTIFY_CHANNEL, Outbox, RELAY_LEASE, SHARDS};
use crate::sql::{ms, now_ms, stmt};
use crate::transport::{MAX_BATCH, Published, Publisher};
use cloudsec_runtime::metrics::Metrics;

/// How the relay paces itself.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Events per publish call, 1 to 10.
    pub batch_size: usize,
    /// The longest wait between pumps when no commit signal arrives.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The wait after a failed publish, growing with each failure.
    pub backoff: Backoff,
    /// How long one publish call may take before it counts as failed.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// SQLite: how long the lease outlives its holder's last round.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long published events stay in the outbox (for inspection).
    #[serde(with = "humantime_serde")]
    pub retain_published: Duration,
    /// How often the outbox's depth and oldest event are measured for
    /// `bus_outbox_depth` and `bus_outbox_oldest_age_seconds`.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: MAX_BATCH,
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            publish_timeout: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(30),
            retain_published: Duration::from_secs(24 * 3600),
            metrics_interval: Duration::from_secs(5),
        }
    }
}

/// Publishes the outbox of one database through one publisher.
#[derive(Debug)]
pub struct Relay {
    db: DatabaseConnection,
    publisher: Arc<dyn Publisher>,
    signal: Arc<Notify>,
    config: RelayConfig,
    /// Who holds the SQLite lease.
    holder: String,
    /// Where the next PostgreSQL round starts looking, so that shards take
    /// turns.
    next_shard: AtomicU16,
    listen_url: Option<String>,
    metrics: RelayMetrics,
    /// Whether `metrics` is registered anywhere, so that an unobserved
    /// relay does not measure the outbox.
    observed: bool,
}

/// How many batches one PostgreSQL round publishes under one shard lock
/// and one commit.
const BATCHES_PER_ROUND: usize = 10;

/// What one round did.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// Published this many events; `refused` more stay pending.
    Published { count: usize, refused: usize },
    /// Nothing pending (or, PostgreSQL, every pending shard is locked).
    Idle,
    /// SQLite: another relay holds the lease.
    NotLeader,
}

impl Relay {
    /// A relay over `db` (whose bus migrations have run), woken by
    /// `outbox`'s commit signal.
    pub fn new(
        db: DatabaseConnection,
        publisher: Arc<dyn Publisher>,
        outbox: &Outbox,
        config: RelayConfig,
    ) -> Result<Self> {
        if !(1..=MAX_BATCH).contains(&config.batch_size) {
            return Err(BusError::Config(format!(
                "relay batch_size must be 1 to {MAX_BATCH}, not {}",
                config.batch_size
            )));
        }
        Ok(Self {
            db,
            publisher,
            signal: outbox.signal(),
            config,
            holder: uuid::Uuid::new_v4().to_string(),
            next_shard: AtomicU16::new(0),
            listen_url: None,
            metrics: RelayMetrics::default(),
            observed: false,
        })
    }

    /// Records the relay's and the outbox's metrics in `metrics` (the
    /// registry of the service whose outbox this is).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.metrics = RelayMetrics::register(metrics);
        self.observed = true;
        self
    }

    /// The relay's metric families (tests read them).
    pub fn metrics(&self) -> &RelayMetrics {
        &self.metrics
    }

    /// Also wakes on PostgreSQL `NOTIFY` (see [`Outbox::with_pg_notify`])
    /// by listening on a connection of its own to `url`.
    pub fn listen(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// Runs until `shutdown` is cancelled. A round in progress finishes
    /// first, so no event is published without being marked.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        if let Some(url) = self.listen_url.clone() {
            tokio::spawn(forward_notifications(
                url,
                self.signal.clone(),
                shutdown.clone(),
            ));
        }
        let monitor = self.observed.then(|| {
            tokio::spawn(measure_outbox(
                self.db.clone(),
                self.metrics.clone(),
                self.config.metrics_interval,
                shutdown.clone(),
            ))
        });
        let mut failures: u32 = 0;
        let mut last_purge = tokio::time::Instant::now();
        info!(holder = %self.holder, "outbox relay started");
        loop {
            let wait = match self.pump().await {
                Ok(_) => {
                    failures = 0;
                    None
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.config.backoff.jittered(failures);
                    warn!(%error, attempt = failures, retry_in = ?delay, "outbox relay round failed");
                    Some(delay)
                }
            };
            if last_purge.elapsed() >= Duration::from_secs(60) {
                last_purge = tokio::time::Instant::now();
                match Outbox::purge_published(&self.db, self.config.retain_published).await {
                    Ok(0) => {}
                    Ok(purged) => debug!(purged, "purged published outbox events"),
                    Err(error) => warn!(%error, "purging the outbox failed"),
                }
            }
            match wait {
                // Backing off: only shutdown interrupts the wait.
                Some(delay) => tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                },
                None => tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.signal.notified() => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                },
            }
        }
        self.release_lease().await;
        if let Some(monitor) = monitor {
            monitor.abort();
        }
        info!(holder = %self.holder, "outbox relay stopped");
        Ok(())
    }

    /// Publishes until nothing is pending; returns how many events went
    /// out. Stops at the first failure with its error.
    pub async fn pump(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            match self.round().await? {
                Round::Published { count, refused } => {
                    total += count;
                    if refused > 0 {
                        return Err(BusError::Aws {
                            service: "bus",
                            operation: "publish",
                            message: format!("the broker refused {refused} event(s)"),
                        });
                    }
                }
                Round::Idle | Round::NotLeader => return Ok(total),
            }
        }
    }

    async fn round(&self) -> Result<Round> {
        match self.db.get_database_backend() {
            DbBackend::Postgres => self.round_postgres().await,
            _ => self.round_sqlite().await,
        }
    }

    /// Locks one shard that has pending events, publishes its oldest batch
    /// and marks it, all in one transaction: a crash anywhere rolls the
    /// marks back and the batch goes again (at least once).
    async fn round_postgres(&self) -> Result<Round> {
        let txn = self.db.begin().await?;
        let start = self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let locked = txn
            .query_one_raw(stmt(
                DbBackend::Postgres,
                "SELECT s.shard FROM bus_outbox_shard s \
                 WHERE EXISTS (SELECT 1 FROM bus_outbox o \
                               WHERE o.shard = s.shard AND o.published_at_ms IS NULL) \
                 ORDER BY (s.shard + $1) % $2 \
                 FOR UPDATE OF s SKIP LOCKED LIMIT 1",
                [i32::from(SHARDS - start).into(), i32::from(SHARDS).into()],
            ))
            .await?;
        let Some(row) = locked else {
            txn.commit().await?;
            return Ok(Round::Idle);
        };
        let shard: i32 = row.try_get("", "shard")?;
        // Several batches per shard lock: a commit costs a WAL flush, which
        // at one batch per transaction, not the publishing, would bound the
        // relay. Stops at the first batch that is short, refused or failed,
        // so an aggregate's later events never overtake a refused one.
        let mut total = 0;
        let mut outcome = Ok(Round::Idle);
        for _ in 0..BATCHES_PER_ROUND {
            let rows = load(
                &txn,
                "SELECT seq, envelope FROM bus_outbox \
                 WHERE shard = $1 AND published_at_ms IS NULL ORDER BY seq LIMIT $2",
                vec![shard.into(), batch_limit(self.config.batch_size)],
            )
            .await?;
            let full = rows.len() >= self.config.batch_size;
            match self.publish_and_mark(&txn, rows).await {
                Ok(Round::Published { count, refused }) => {
                    total += count;
                    outcome = Ok(Round::Published {
                        count: total,
                        refused,
                    });
                    if refused > 0 || !full {
                        break;
                    }
                }
                Ok(other) => {
                    if total == 0 {
                        outcome = Ok(other);
                    }
                    break;
                }
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        // The marks (or the failure counts) commit either way.
        txn.commit().await?;
        outcome
    }

    /// Takes or renews the lease, then publishes the oldest batch. The
    /// publish happens outside any transaction, because a SQLite write
    /// transaction held across a network call would stall every writer.
    async fn round_sqlite(&self) -> Result<Round> {
        let now = now_ms();
        let taken = self
            .db
            .execute_raw(stmt(
                self.db.get_database_backend(),
                "UPDATE bus_lease SET holder = $1, expires_at_ms = $2 \
                 WHERE name = $3 AND (holder IS NULL OR holder = $1 OR expires_at_ms < $4)",
                [
                    self.holder.clone().into(),
                    now.saturating_add(ms(self.config.lease_ttl)).into(),
                    RELAY_LEASE.into(),
                    now.into(),
                ],
            ))
            .await?
            .rows_affected();
        if taken == 0 {
            return Ok(Round::NotLeader);
        }
        let rows = load(
            &self.db,
            "SELECT seq, envelope FROM bus_outbox \
             WHERE published_at_ms IS NULL ORDER BY seq LIMIT $1",
            vec![batch_limit(self.config.batch_size)],
        )
        .await?;
        // Marks are single statements after the publish; nothing here needs
        // them to be atomic with each other.
        self.publish_and_mark(&self.db, rows).await
    }

    async fn publish_and_mark(
        &self,
        txn: &impl ConnectionTrait,
        rows: Vec<(i64, String)>,
    ) -> Result<Round> {
        if rows.is_empty() {
            return Ok(Round::Idle);
        }
        // A row that no longer reads as an event cannot be fixed by
        // retrying; it is marked with its error and skipped, never lost.
        let mut batch = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        for (seq, json) in rows {
            match Envelope::from_json(&json) {
                Ok(envelope) => {
                    batch.push(envelope);
                    seqs.push(seq);
                }
                Err(error) => {
                    warn!(seq, %error, "outbox row is not an event; leaving it unpublished");
                    record_failure(txn, &[seq], &error.to_string()).await?;
                }
            }
        }
        if batch.is_empty() {
            return Ok(Round::Idle);
        }
        let started = std::time::Instant::now();
        let outcome =
            tokio::time::timeout(self.config.publish_timeout, self.publisher.publish(&batch)).await;
        self.metrics.publish_took(started.elapsed().as_secs_f64());
        if !matches!(outcome, Ok(Ok(_))) {
            self.metrics.outcome("failed", batch.len());
        }
        let published = match outcome {
            Ok(Ok(published)) => published,
            Ok(Err(error)) => {
                record_failure(txn, &seqs, &error.to_string()).await?;
                return Err(error);
            }
            Err(_) => {
                let error = BusError::Aws {
                    service: "bus",
                    operation: "publish",
                    message: format!("timed out after {:?}", self.config.publish_timeout),
                };
                record_failure(txn, &seqs, &error.to_string()).await?;
                return Err(error);
            }
        };
        let accepted = accepted_in_order(&batch, &published);
        let done: Vec<i64> = seqs
            .iter()
            .zip(&accepted)
            .filter_map(|(seq, ok)| ok.then_some(*seq))
            .collect();
        let pending: Vec<i64> = seqs
            .iter()
            .zip(&accepted)
            .filter_map(|(seq, ok)| (!ok).then_some(*seq))
            .collect();
        mark_published(txn, &done).await?;
        self.metrics.outcome("published", done.len());
        self.metrics.outcome("refused", pending.len());
        if !pending.is_empty() {
            let reasons: Vec<&str> = published.failed.iter().map(|(_, r)| r.as_str()).collect();
            record_failure(txn, &pending, &reasons.join("; ")).await?;
        }
        debug!(
            published = done.len(),
            pending = pending.len(),
            "outbox batch"
        );
        Ok(Round::Published {
            count: done.len(),
            refused: pending.len(),
        })
    }

    async fn release_lease(&self) {
        if self.db.get_database_backend() == DbBackend::Postgres {
            return;
        }
        let released = self
            .db
            .execute_raw(stmt(
                self.db.get_database_backend(),
                "UPDATE bus_lease SET holder = NULL, expires_at_ms = 0 \
                 WHERE name = $1 AND holder = $2",
                [RELAY_LEASE.into(), self.holder.clone().into()],
            ))
            .await;
        if let Err(error) = released {
            warn!(%error, "releasing the relay lease failed; it expires by itself");
        }
    }
}

/// Measures the outbox every `every` until `shutdown`. A failed query
/// leaves the last values in place (and logs): the database being down
/// shows in other metrics.
async fn measure_outbox(
    db: DatabaseConnection,
    metrics: RelayMetrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let every = every.max(Duration::from_millis(100));
    loop {
        match outbox_backlog(&db).await {
            Ok((depth, oldest_ms)) => {
                let age = oldest_ms.map_or(0.0, |at| {
                    // Milliseconds to seconds; a clock step back gives 0.
                    now_ms().saturating_sub(at).max(0) as f64 / 1000.0
                });
                metrics.outbox(depth, age);
            }
            Err(error) => debug!(%error, "measuring the outbox failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// The number of unpublished events and when the oldest was written (ms).
/// Both read the pending rows' partial index, so the cost follows the
/// backlog, not the retained history.
async fn outbox_backlog(db: &DatabaseConnection) -> Result<(u64, Option<i64>)> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n, MIN(created_at_ms) AS oldest FROM bus_outbox \
             WHERE published_at_ms IS NULL",
            [],
        ))
        .await?;
    let Some(row) = row else {
        return Ok((0, None));
    };
    let n: i64 = row.try_get("", "n")?;
    let oldest: Option<i64> = row.try_get("", "oldest")?;
    Ok((u64::try_from(n).unwrap_or_default(), oldest))
}

fn batch_limit(size: usize) -> Value {
    i64::try_from(size).unwrap_or(10).into()
}

async fn load(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<(i64, String)>> {
    let rows = db
        .query_all_raw(stmt(db.get_database_backend(), sql, values))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "seq")?, row.try_get("", "envelope")?)))
        .collect()
}

/// `count` placeholders numbered from `first`: `$2, $3, ...`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn mark_published(db: &impl ConnectionTrait, seqs: &[i64]) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE bus_outbox SET published_at_ms = $1 WHERE seq IN ({})",
        placeholders(2, seqs.len())
    );
    let mut values: Vec<Value> = vec![now_ms().into()];
    values.extend(seqs.iter().map(|s| Value::from(*s)));
    db.execute_raw(stmt(db.get_database_backend(), &sql, values))
        .await?;
    Ok(())
}

async fn record_failure(db: &impl ConnectionTrait, seqs: &[i64], error: &str) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE bus_outbox SET attempts = attempts + 1, last_error = $1 WHERE seq IN ({})",
        placeholders(2, seqs.len())
    );
    let mut values: Vec<Value> = vec![truncate(error, 1000).into()];
    values.extend(seqs.iter().map(|s| Value::from(*s)));
    db.execute_raw(stmt(db.get_database_backend(), &sql, values))
        .await?;
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Which entries of a published batch count as published: for each
/// aggregate, the entries before its first refused one. Anything after a
/// refusal goes again, so an aggregate's events never overtake each other.
pub(crate) fn accepted_in_order(batch: &[Envelope], published: &Published) -> Vec<bool> {
    let refused: HashSet<usize> = published.failed.iter().map(|(i, _)| *i).collect();
    let mut blocked: HashSet<&str> = HashSet::new();
    batch
        .iter()
        .enumerate()
        .map(|(i, envelope)| {
            let aggregate = envelope.aggregate();
            if blocked.contains(aggregate) {
                false
            } else if refused.contains(&i) {
                blocked.insert(aggregate);
                false
            } else {
                true
            }
        })
        .collect()
}

/// Turns PostgreSQL notifications on [`NOTIFY_CHANNEL`] into relay wake-ups,
/// reconnecting after errors until shutdown.
async fn forward_notifications(url: String, signal: Arc<Notify>, shutdown: CancellationToken) {
    let mut failures: u32 = 0;
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = listen_once(&url, &signal) => {
                let Err(error) = result;
                failures = failures.saturating_add(1);
                warn!(%error, "outbox LISTEN connection failed; polling meanwhile");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff.delay(failures)) => {}
        }
    }
}

/// Listens until the connection fails.
async fn listen_once(
    url: &str,
    signal: &Notify,
) -> std::result::Result<std::convert::Infallible, sea_orm::sqlx::Error> {
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    loop {
        listener.recv().await?;
        signal.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudsec_proto::events::v1::DocumentCreated;

    fn event(aggregate: &str) -> Envelope {
        Envelope::new(
            "/test",
            &DocumentCreated {
                document_id: aggregate.into(),
                tenant: "t".into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_refusal_holds_back_the_rest_of_its_aggregate_only() {
        let batch = [event("a"), event("b"), event("a"), event("c"), event("b")];
        let published = Published {
            failed: vec![(0, "throttled".into())],
        };
        assert_eq!(
            accepted_in_order(&batch, &published),
            [false, true, false, true, true]
        );
        assert_eq!(accepted_in_order(&batch, &Published::all()), [true; 5]);
    }

    #[test]
    fn placeholders_are_numbered_from_first() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
