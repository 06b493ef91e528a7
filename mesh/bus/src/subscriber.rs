//! The subscriber: receives from one queue and runs a handler per event.
//!
//! - **Receive.** Long polls, asking only for as many messages as it has
//!   free handler slots (`max_in_flight`), so a message never waits hidden
//!   in a local buffer while its visibility runs out.
//! - **Heartbeat.** While a handler runs, the message's visibility is
//!   extended every third of the visibility timeout, so a slow handler is
//!   not raced by a second delivery. After `handler_timeout` the handler
//!   is abandoned and the message retried.
//! - **Outcome.** [`Outcome::Ack`] deletes the message (after recording
//!   it in the inbox); [`Outcome::Retry`] hides it for a backoff that grows
//!   with its receive count (ChangeMessageVisibility; the queue's redrive
//!   policy dead-letters it after `max_receives`); [`Outcome::DeadLetter`]
//!   moves it to the dead-letter queue at once. A handler that panics is
//!   retried; a message that is not an event is dead-lettered at once.
//!   Retries happen only through the queue, never inside the subscriber as
//!   well, so attempts do not multiply.
//! - **FIFO groups.** Messages of one group that arrive in one receive are
//!   handled one after another, in order; a retry makes the rest visible
//!   again (the queue holds them back until the retried one is done).
//! - **Shutdown.** Stops receiving, lets handlers finish within
//!   `shutdown_grace`, then aborts the rest and makes their messages
//!   visible again at once.
//! - **Metrics** (with [`Subscriber::with_metrics`]): each event's lag at
//!   receipt, each settled message's outcome, and the queue's and its
//!   dead-letter queue's depth, every [`DEPTH_INTERVAL`] and after each
//!   dead letter.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::backoff::Backoff;
use crate::envelope::Envelope;
use crate::error::{BusError, Result};
use crate::inbox::{Claim, ClaimToken, Inbox};
use crate::metrics::SubscriberMetrics;
use crate::transport::{Delivery, MAX_BATCH, Queue};
use cloudsec_runtime::metrics::Metrics;

/// What a handler says about an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: delete the message.
    Ack,
    /// Not now: deliver again after the given delay, or after the
    /// subscriber's backoff for this receive count when `None`.
    Retry(Option<Duration>),
    /// Never: move it to the dead-letter queue now.
    DeadLetter(String),
}

impl Outcome {
    pub fn retry() -> Self {
        Self::Retry(None)
    }

    pub fn retry_after(delay: Duration) -> Self {
        Self::Retry(Some(delay))
    }

    pub fn dead_letter(reason: impl Into<String>) -> Self {
        Self::DeadLetter(reason.into())
    }
}

/// About the delivery an event came in.
#[derive(Clone, Debug)]
pub struct DeliveryInfo {
    pub queue: String,
    pub message_id: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
    pub group: Option<String>,
}

/// Handles one event at a time (the subscriber runs several at once).
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, event: Envelope, info: DeliveryInfo) -> Outcome;
}

/// A handler from an async closure; see [`handler_fn`].
#[derive(Clone)]
pub struct FnHandler<F>(F);

impl<F> std::fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnHandler")
    }
}

/// Wraps `f(event, info)` as a [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Envelope, DeliveryInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    FnHandler(f)
}

#[async_trait::async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Envelope, DeliveryInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    async fn handle(&self, event: Envelope, info: DeliveryInfo) -> Outcome {
        (self.0)(event, info).await
    }
}

/// How a subscriber receives and paces its handlers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriberConfig {
    /// Handlers running at once.
    pub max_in_flight: usize,
    /// Messages asked for per receive, 1 to 10.
    pub batch_size: usize,
    /// How long one receive waits for messages (SQS: at most 20 s).
    #[serde(with = "humantime_serde")]
    pub wait_time: Duration,
    /// How long a received message stays hidden; the heartbeat extends it
    /// every third of this while the handler runs.
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// The delay of a retry, growing with the receive count.
    pub retry: Backoff,
    /// After this long a handler is abandoned and its message retried.
    #[serde(with = "humantime_serde")]
    pub handler_timeout: Duration,
    /// How long shutdown waits for running handlers.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 16,
            batch_size: MAX_BATCH,
            wait_time: Duration::from_secs(20),
            visibility_timeout: Duration::from_secs(30),
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(15 * 60)),
            handler_timeout: Duration::from_secs(15 * 60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl SubscriberConfig {
    /// How often a running handler's message gets its visibility extended.
    /// How long an inbox claim lives unless extended: two visibility
    /// timeouts, extended at every heartbeat, so a claim whose holder died
    /// frees the event soon after its message reappears.
    pub fn claim_lease(&self) -> Duration {
        self.visibility_timeout.saturating_mul(2)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        (self.visibility_timeout / 3).max(Duration::from_millis(100))
    }
}

/// How often an observed subscriber measures its queue's depth.
pub const DEPTH_INTERVAL: Duration = Duration::from_secs(15);

/// Receives from one queue and runs one handler.
pub struct Subscriber {
    queue: Arc<dyn Queue>,
    handler: Arc<dyn Handler>,
    inbox: Option<Inbox>,
    config: SubscriberConfig,
    metrics: SubscriberMetrics,
    /// Whether `metrics` is registered, so that an unobserved subscriber
    /// does not poll its queue's depth.
    observed: bool,
    /// How long handled inbox entries are kept; `None` keeps them forever.
    inbox_retention: Option<Duration>,
}

/// How long a subscriber keeps handled inbox entries unless told: 15 days,
/// longer than SQS's longest retention (14 days), so no copy of an event
/// can arrive after its entry is gone.
pub const DEFAULT_INBOX_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);

/// How often the SQL inbox is purged of entries past the retention.
const INBOX_PURGE_EVERY: Duration = Duration::from_secs(3600);

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("queue", &self.queue.name())
            .field("inbox", &self.inbox)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    pub fn new(queue: impl Queue, handler: impl Handler, config: SubscriberConfig) -> Result<Self> {
        Self::from_arcs(Arc::new(queue), Arc::new(handler), config)
    }

    pub fn from_arcs(
        queue: Arc<dyn Queue>,
        handler: Arc<dyn Handler>,
        config: SubscriberConfig,
    ) -> Result<Self> {
        if !(1..=MAX_BATCH).contains(&config.batch_size) || config.max_in_flight == 0 {
            return Err(BusError::Config(format!(
                "subscriber needs batch_size 1 to {MAX_BATCH} and max_in_flight >= 1, not {} and {}",
                config.batch_size, config.max_in_flight
            )));
        }
        Ok(Self {
            queue,
            handler,
            inbox: None,
            config,
            metrics: SubscriberMetrics::default(),
            observed: false,
            inbox_retention: Some(DEFAULT_INBOX_RETENTION),
        })
    }

    /// Keeps handled inbox entries for `retention` (`None`: forever). On
    /// SQL the subscriber deletes older ones every hour while it runs; on
    /// DynamoDB the inbox's TTL does (see [`crate::dynamo_inbox`]).
    pub fn with_inbox_retention(mut self, retention: Option<Duration>) -> Self {
        self.inbox_retention = retention;
        self
    }

    /// Records lag, outcomes and queue depths in `metrics` (the registry
    /// of the component that subscribes).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.metrics = SubscriberMetrics::register(metrics);
        self.observed = true;
        self
    }

    /// The subscriber's metric families (tests read them).
    pub fn metrics(&self) -> &SubscriberMetrics {
        &self.metrics
    }

    /// Skips events the inbox has recorded and records handled ones.
    pub fn with_inbox(mut self, inbox: Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// Runs until `shutdown` is cancelled, then drains (see the module
    /// docs) and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let queue_name = self.queue.name().to_owned();
        let shared = Arc::new(Shared {
            queue: self.queue,
            handler: self.handler,
            inbox: self.inbox,
            config: self.config,
            in_flight: Mutex::new(HashMap::new()),
            metrics: self.metrics,
            observed: self.observed,
        });
        let purging = match (&shared.inbox, self.inbox_retention) {
            (Some(inbox), Some(retention)) => Some(tokio::spawn(purge_inbox(
                inbox.clone(),
                retention,
                shutdown.clone(),
            ))),
            _ => None,
        };
        let measuring = shared.observed.then(|| {
            shared.metrics.queue(&queue_name);
            tokio::spawn(measure_depth(shared.clone(), shutdown.clone()))
        });
        let permits = Arc::new(Semaphore::new(shared.config.max_in_flight));
        let mut tasks = JoinSet::new();
        let mut next_key: u64 = 0;
        let mut failures: u32 = 0;
        info!(queue = %queue_name, "subscriber started");
        loop {
            while let Some(joined) = tasks.try_join_next() {
                log_join(joined);
            }
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let mut held = vec![first];
            while held.len() < shared.config.batch_size {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = shared.queue.receive(
                    held.len(),
                    shared.config.wait_time,
                    shared.config.visibility_timeout,
                ) => received,
            };
            let deliveries = match received {
                Ok(deliveries) => {
                    failures = 0;
                    deliveries
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
                        .jittered(failures);
                    warn!(queue = %queue_name, %error, retry_in = ?delay, "receive failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if shared.observed {
                let now = chrono::Utc::now();
                for delivery in &deliveries {
                    if let Ok(event) = &delivery.event {
                        let lag = (now - event.time).num_microseconds().unwrap_or(0) as f64 / 1e6;
                        shared.metrics.received(&queue_name, lag);
                    }
                }
            }
            for chain in chains(deliveries) {
                // One permit per message; a chain holds its messages' permits
                // until it ends.
                let mut permits_of_chain = Vec::with_capacity(chain.len());
                let mut accepted = Vec::with_capacity(chain.len());
                for delivery in chain {
                    match held.pop() {
                        Some(permit) => {
                            permits_of_chain.push(permit);
                            accepted.push(delivery);
                        }
                        // More messages than asked for: make the extra ones
                        // visible again rather than hold them unhandled.
                        None => release(&*shared.queue, &delivery).await,
                    }
                }
                let mut keyed = Vec::with_capacity(accepted.len());
                if let Ok(mut in_flight) = shared.in_flight.lock() {
                    for delivery in accepted {
                        next_key += 1;
                        in_flight.insert(next_key, delivery.clone());
                        keyed.push((next_key, delivery));
                    }
                }
                let shared = shared.clone();
                tasks.spawn(async move {
                    shared.process_chain(keyed).await;
                    drop(permits_of_chain);
                });
            }
        }

        info!(queue = %queue_name, in_flight = tasks.len(), "subscriber draining");
        let drained = tokio::time::timeout(shared.config.shutdown_grace, async {
            while let Some(joined) = tasks.join_next().await {
                log_join(joined);
            }
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let left: Vec<Delivery> = shared
                .in_flight
                .lock()
                .map(|mut m| m.drain().map(|(_, d)| d).collect())
                .unwrap_or_default();
            warn!(queue = %queue_name, released = left.len(), "handlers outlived the shutdown grace; releasing their messages");
            for delivery in &left {
                release(&*shared.queue, delivery).await;
            }
        }
        if let Some(measuring) = measuring {
            measuring.abort();
        }
        if let Some(purging) = purging {
            purging.abort();
        }
        info!(queue = %queue_name, "subscriber stopped");
        Ok(())
    }
}

/// Splits a receive into chains handled one after another: each FIFO
/// message group's messages in the order received (SQS returns several of
/// a group in one receive, in order), every other message on its own.
fn chains(deliveries: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut chains: Vec<Vec<Delivery>> = Vec::new();
    let mut by_group: HashMap<String, usize> = HashMap::new();
    for delivery in deliveries {
        match delivery.group.clone() {
            Some(group) => match by_group.get(&group) {
                Some(&at) => chains[at].push(delivery),
                None => {
                    by_group.insert(group, chains.len());
                    chains.push(vec![delivery]);
                }
            },
            None => chains.push(vec![delivery]),
        }
    }
    chains
}

fn log_join(joined: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        warn!(%error, "subscriber task panicked");
    }
}

/// Measures the queue every [`DEPTH_INTERVAL`] until `shutdown`.
async fn measure_depth(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        shared.measure_depth().await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(DEPTH_INTERVAL) => {}
        }
    }
}

/// Makes a message visible again now.
async fn release(queue: &dyn Queue, delivery: &Delivery) {
    if let Err(error) = queue.set_visibility(delivery, Duration::ZERO).await {
        warn!(queue = queue.name(), message_id = %delivery.message_id, %error, "releasing a message failed; it returns when its visibility ends");
    }
}

struct Shared {
    queue: Arc<dyn Queue>,
    handler: Arc<dyn Handler>,
    inbox: Option<Inbox>,
    config: SubscriberConfig,
    /// Deliveries being handled, to release if shutdown aborts them.
    in_flight: Mutex<HashMap<u64, Delivery>>,
    metrics: SubscriberMetrics,
    observed: bool,
}

/// Aborts the task when dropped, so an aborted subscriber task takes its
/// handler down with it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Shared {
    async fn measure_depth(&self) {
        match self.queue.depth().await {
            Ok(depth) => self.metrics.depth(self.queue.name(), &depth),
            Err(error) => debug!(queue = self.queue.name(), %error, "measuring the queue failed"),
        }
    }

    /// Handles a chain in order. A retried message ends it: the rest are
    /// made visible again, and a FIFO queue holds them back until the
    /// retried one is done, so the group's order survives.
    async fn process_chain(&self, chain: Vec<(u64, Delivery)>) {
        let mut chain = chain.into_iter();
        for (key, delivery) in chain.by_ref() {
            let outcome = self.process(&delivery).await;
            self.forget(key);
            if matches!(outcome, Outcome::Retry(_)) {
                break;
            }
        }
        for (key, delivery) in chain {
            release(&*self.queue, &delivery).await;
            self.forget(key);
        }
    }

    fn forget(&self, key: u64) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.remove(&key);
        }
    }

    /// Handles one message and settles it; returns how.
    async fn process(&self, delivery: &Delivery) -> Outcome {
        let queue = self.queue.name();
        let event = match &delivery.event {
            Ok(event) => event.clone(),
            Err(reason) => {
                warn!(queue, message_id = %delivery.message_id, %reason, "message is not an event; dead-lettering it");
                let outcome = Outcome::dead_letter(format!("not an event: {reason}"));
                self.settle(delivery, outcome.clone()).await;
                return outcome;
            }
        };
        let span = info_span!(
            "bus.handle",
            queue,
            event_type = %event.event_type,
            event_id = %event.id,
            message_id = %delivery.message_id,
            receive_count = delivery.receive_count,
        );
        if let Some(traceparent) = &event.traceparent {
            crate::trace::continue_trace(&span, traceparent);
        }
        async {
            let claim = match &self.inbox {
                None => None,
                Some(inbox) => {
                    let lease = self.config.claim_lease();
                    match inbox.claim(&event.id, &delivery.message_id, lease).await {
                        Ok(Claim::Acquired(token)) => Some((inbox, token)),
                        Ok(Claim::Handled) => {
                            debug!("already handled; deleting the duplicate");
                            self.settle(delivery, Outcome::Ack).await;
                            return Outcome::Ack;
                        }
                        // Another message carrying the same event is being
                        // handled: this copy is a duplicate. Deleting it
                        // loses nothing, since the other message stays
                        // until its handler settles it.
                        Ok(Claim::Busy { message_id, .. })
                            if !message_id.is_empty() && message_id != delivery.message_id =>
                        {
                            debug!(holder = %message_id, "a copy is being handled; deleting this one");
                            self.settle(delivery, Outcome::Ack).await;
                            return Outcome::Ack;
                        }
                        // This very message is still being handled (its
                        // visibility ran out): back once the claim ends.
                        Ok(Claim::Busy { lease, .. }) => {
                            debug!(?lease, "being handled elsewhere; deferring");
                            let outcome = Outcome::retry_after(lease.max(Duration::from_secs(1)));
                            self.settle(delivery, outcome.clone()).await;
                            return outcome;
                        }
                        Err(error) => {
                            warn!(%error, "inbox unavailable; retrying the event later");
                            self.settle(delivery, Outcome::retry()).await;
                            return Outcome::retry();
                        }
                    }
                }
            };
            let event_id = event.id.clone();
            let outcome = self
                .run_handler(delivery, event, claim.as_ref().map(|(_, t)| t))
                .await;
            if let Some((inbox, token)) = &claim {
                let ended = if outcome == Outcome::Ack {
                    inbox.complete(&event_id, token).await
                } else {
                    inbox.release(&event_id, token).await
                };
                if let Err(error) = ended {
                    // Settling anyway: after an Ack a redelivery would
                    // repeat the handler for certain; after a Retry the
                    // claim expires with its lease and the event runs then.
                    warn!(%error, ?outcome, "ending the inbox claim failed");
                }
            }
            self.settle(delivery, outcome.clone()).await;
            outcome
        }
        .instrument(span)
        .await
    }

    /// Runs the handler in its own task (a panic becomes a retry) while
    /// extending the message's visibility.
    async fn run_handler(
        &self,
        delivery: &Delivery,
        event: Envelope,
        claim: Option<&ClaimToken>,
    ) -> Outcome {
        let event_id = event.id.clone();
        let info = DeliveryInfo {
            queue: self.queue.name().to_owned(),
            message_id: delivery.message_id.clone(),
            receive_count: delivery.receive_count,
            group: delivery.group.clone(),
        };
        let handler = self.handler.clone();
        let mut task = AbortOnDrop(tokio::spawn(
            async move { handler.handle(event, info).await }.in_current_span(),
        ));
        let every = self.config.heartbeat_interval();
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timeout = tokio::time::sleep(self.config.handler_timeout);
        tokio::pin!(timeout);
        loop {
            tokio::select! {
                joined = &mut task.0 => {
                    return match joined {
                        Ok(outcome) => outcome,
                        Err(error) => {
                            warn!(%error, "handler failed; retrying");
                            Outcome::retry()
                        }
                    };
                }
                _ = heartbeat.tick() => {
                    if let Err(error) = self
                        .queue
                        .set_visibility(delivery, self.config.visibility_timeout)
                        .await
                    {
                        warn!(%error, "visibility heartbeat failed");
                    }
                    if let (Some(inbox), Some(claim)) = (&self.inbox, claim) {
                        match inbox.extend(&event_id, claim, self.config.claim_lease()).await {
                            Ok(true) => {}
                            Ok(false) => warn!("the inbox claim was lost while the handler ran"),
                            Err(error) => warn!(%error, "extending the inbox claim failed"),
                        }
                    }
                }
                () = &mut timeout => {
                    warn!(timeout = ?self.config.handler_timeout, "handler timed out; retrying");
                    return Outcome::retry();
                }
            }
        }
    }

    async fn settle(&self, delivery: &Delivery, outcome: Outcome) {
        let result = match &outcome {
            Outcome::Ack => self.queue.delete(delivery).await,
            Outcome::Retry(after) => {
                let delay =
                    after.unwrap_or_else(|| self.config.retry.delay(delivery.receive_count));
                self.queue.set_visibility(delivery, delay).await
            }
            Outcome::DeadLetter(reason) => {
                warn!(%reason, "dead-lettering event");
                self.queue.dead_letter(delivery, reason).await
            }
        };
        let name = match &outcome {
            Outcome::Ack => "ack",
            Outcome::Retry(_) => "retry",
            Outcome::DeadLetter(_) => "dead_letter",
        };
        self.metrics.handled(self.queue.name(), name);
        match result {
            Err(error) => {
                warn!(?outcome, %error, "settling a message failed; it will be delivered again");
            }
            // The alert on dead letters should not wait for the next
            // scheduled measurement.
            Ok(()) if self.observed && name == "dead_letter" => self.measure_depth().await,
            Ok(()) => {}
        }
    }
}

/// Deletes handled inbox entries older than `retention`, every hour while
/// the subscriber runs (the first pass soon after start). A failure is
/// logged and tried again next hour: the inbox only grows meanwhile.
async fn purge_inbox(inbox: Inbox, retention: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(60),
        INBOX_PURGE_EVERY,
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match inbox.purge(retention).await {
            Ok(0) => {}
            Ok(purged) => info!(
                subscriber = inbox.subscriber(),
                purged, "inbox entries past retention deleted"
            ),
            Err(error) => warn!(subscriber = inbox.subscriber(), %error, "inbox purge failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};

    use cloudsec_proto::events::v1::DocumentCreated;

    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Delete(String),
        Visibility(String, Duration),
        DeadLetter(String, String),
    }

    /// A queue that hands out the deliveries it is given and records what
    /// the subscriber does with them.
    #[derive(Debug, Default)]
    struct MockQueue {
        ready: Mutex<VecDeque<Delivery>>,
        calls: Mutex<Vec<Call>>,
    }

    impl MockQueue {
        fn with(deliveries: Vec<Delivery>) -> Arc<Self> {
            Arc::new(Self {
                ready: Mutex::new(deliveries.into()),
                calls: Mutex::default(),
            })
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Queue for MockQueue {
        fn name(&self) -> &str {
            "mock"
        }

        async fn receive(&self, max: usize, wait: Duration, _: Duration) -> Result<Vec<Delivery>> {
            let batch: Vec<Delivery> = {
                let mut ready = self.ready.lock().unwrap();
                let n = max.min(ready.len());
                ready.drain(..n).collect()
            };
            if batch.is_empty() {
                tokio::time::sleep(wait).await;
            }
            Ok(batch)
        }

        async fn delete(&self, d: &Delivery) -> Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Delete(d.message_id.clone()));
            Ok(())
        }

        async fn set_visibility(&self, d: &Delivery, timeout: Duration) -> Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Visibility(d.message_id.clone(), timeout));
            Ok(())
        }

        async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::DeadLetter(d.message_id.clone(), reason.to_owned()));
            Ok(())
        }
    }

    fn delivery(id: &str, receive_count: u32) -> Delivery {
        let event = Envelope::new(
            "/test",
            &DocumentCreated {
                document_id: id.into(),
                tenant: "t".into(),
                ..Default::default()
            },
        );
        Delivery {
            message_id: id.into(),
            receipt: format!("r-{id}"),
            receive_count,
            group: None,
            body: event.to_json(),
            event: Ok(event),
            attributes: Default::default(),
        }
    }

    fn config() -> SubscriberConfig {
        SubscriberConfig {
            max_in_flight: 4,
            batch_size: 10,
            wait_time: Duration::from_secs(1),
            visibility_timeout: Duration::from_secs(30),
            retry: Backoff::new(Duration::from_secs(2), Duration::from_secs(60)),
            handler_timeout: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// Runs a subscriber over `queue` until `until` holds (checked every
    /// virtual second), then shuts it down.
    async fn run_until(
        queue: Arc<MockQueue>,
        handler: impl Handler,
        config: SubscriberConfig,
        until: impl Fn(&[Call]) -> bool,
    ) {
        let shutdown = CancellationToken::new();
        let subscriber = Subscriber::from_arcs(queue.clone(), Arc::new(handler), config).unwrap();
        let running = tokio::spawn(subscriber.run(shutdown.clone()));
        for _ in 0..10_000 {
            if until(&queue.calls()) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        shutdown.cancel();
        running.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_extends_visibility_while_a_slow_handler_runs() {
        let queue = MockQueue::with(vec![delivery("slow", 1)]);
        let handler = handler_fn(|_, _| async {
            tokio::time::sleep(Duration::from_secs(95)).await;
            Outcome::Ack
        });
        run_until(queue.clone(), handler, config(), |calls| {
            calls.contains(&Call::Delete("slow".into()))
        })
        .await;
        let calls = queue.calls();
        let beats = calls
            .iter()
            .filter(|c| **c == Call::Visibility("slow".into(), Duration::from_secs(30)))
            .count();
        // Every 10 s (a third of 30 s) for 95 s.
        assert_eq!(beats, 9, "{calls:?}");
        assert_eq!(calls.last(), Some(&Call::Delete("slow".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_backs_off_by_receive_count_and_dead_letter_is_immediate() {
        let queue = MockQueue::with(vec![
            delivery("first", 1),
            delivery("fourth", 4),
            delivery("chosen", 1),
            delivery("poison", 1),
        ]);
        let handler = handler_fn(|event: Envelope, _| async move {
            match event.subject.as_deref() {
                Some("chosen") => Outcome::retry_after(Duration::from_secs(7)),
                Some("poison") => Outcome::dead_letter("cannot parse"),
                _ => Outcome::retry(),
            }
        });
        run_until(queue.clone(), handler, config(), |calls| calls.len() >= 4).await;
        let mut calls = queue.calls();
        calls.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            calls,
            vec![
                Call::DeadLetter("poison".into(), "cannot parse".into()),
                Call::Visibility("chosen".into(), Duration::from_secs(7)),
                Call::Visibility("first".into(), Duration::from_secs(2)),
                Call::Visibility("fourth".into(), Duration::from_secs(16)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn panics_retry_and_undecodable_messages_dead_letter() {
        let mut garbage = delivery("garbage", 1);
        garbage.event = Err("not JSON".into());
        let queue = MockQueue::with(vec![delivery("boom", 1), garbage]);
        let handler = handler_fn(|event: Envelope, _| async move {
            if event.subject.as_deref() == Some("boom") {
                panic!("handler bug");
            }
            Outcome::Ack
        });
        run_until(queue.clone(), handler, config(), |calls| calls.len() >= 2).await;
        let calls = queue.calls();
        assert!(
            calls.contains(&Call::Visibility("boom".into(), Duration::from_secs(2))),
            "{calls:?}"
        );
        assert!(
            calls.iter().any(|c| matches!(c, Call::DeadLetter(id, reason) if id == "garbage" && reason.contains("not JSON"))),
            "{calls:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let queue = MockQueue::with((0..12).map(|i| delivery(&format!("m{i}"), 1)).collect());
        let running = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let handler = handler_fn(move |_, _| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Outcome::Ack
            }
        });
        run_until(queue.clone(), handler, config(), |calls| calls.len() >= 12).await;
        assert_eq!(peak.load(Ordering::SeqCst), 4);
        assert_eq!(queue.calls().len(), 12);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_releases_what_outlives_the_grace() {
        let queue = MockQueue::with(vec![delivery("quick", 1), delivery("stuck", 1)]);
        let handler = handler_fn(|event: Envelope, _| async move {
            if event.subject.as_deref() == Some("stuck") {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Outcome::Ack
        });
        let mut cfg = config();
        cfg.shutdown_grace = Duration::from_secs(2);
        run_until(queue.clone(), handler, cfg, |calls| {
            calls.contains(&Call::Delete("quick".into()))
        })
        .await;
        let calls = queue.calls();
        assert_eq!(
            calls.last(),
            Some(&Call::Visibility("stuck".into(), Duration::ZERO)),
            "{calls:?}"
        );
        assert!(!calls.contains(&Call::Delete("stuck".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fifo_group_is_handled_in_order_and_a_retry_releases_the_rest() {
        let grouped = |id: &str, group: &str| {
            let mut d = delivery(id, 1);
            d.group = Some(group.into());
            d
        };
        let queue = MockQueue::with(vec![
            grouped("g1", "g"),
            grouped("h1", "h"),
            grouped("g2", "g"),
            grouped("h2", "h"),
            grouped("g3", "g"),
            grouped("h3", "h"),
        ]);
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let handler = handler_fn(move |event: Envelope, _| {
            let o = o.clone();
            async move {
                let id = event.subject.unwrap_or_default();
                // The first of each group is the slowest: running them
                // concurrently would reorder.
                let ms = if id.ends_with('1') { 300 } else { 10 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                o.lock().unwrap().push(id.clone());
                if id == "h2" {
                    Outcome::retry()
                } else {
                    Outcome::Ack
                }
            }
        });
        // All six in one receive (the mock, unlike SQS, has no group lock
        // across receives).
        let cfg = SubscriberConfig {
            max_in_flight: 10,
            ..config()
        };
        run_until(queue.clone(), handler, cfg, |calls| calls.len() >= 6).await;
        let order = order.lock().unwrap().clone();
        let of = |g: char| {
            order
                .iter()
                .filter(|id| id.starts_with(g))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(of('g'), ["g1", "g2", "g3"]);
        assert_eq!(of('h'), ["h1", "h2"], "h3 waits behind the retried h2");
        let calls = queue.calls();
        assert!(
            calls.contains(&Call::Visibility("h3".into(), Duration::ZERO)),
            "{calls:?}"
        );
    }

    #[test]
    fn bad_config_is_refused() {
        let queue = MockQueue::with(vec![]);
        let handler = Arc::new(handler_fn(|_, _| async { Outcome::Ack }));
        let mut cfg = config();
        cfg.batch_size = 11;
        assert!(Subscriber::from_arcs(queue.clone(), handler.clone(), cfg).is_err());
        let mut cfg = config();
        cfg.max_in_flight = 0;
        assert!(Subscriber::from_arcs(queue, handler, cfg).is_err());
    }
}
