//! Transports: where the relay publishes and where subscribers receive.
//!
//! Every transport implements [`Publisher`] (what the relay calls with up
//! to [`MAX_BATCH`] envelopes) and hands out [`Queue`]s (what a
//! [`Subscriber`](crate::Subscriber) polls): the embedded bus on the local
//! database, SNS fanning out to SQS, EventBridge with rules targeting SQS,
//! and two in-memory publishers for tests and benchmarks.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::envelope::Envelope;
use crate::error::{BusError, Result};

pub mod aws;
pub mod embedded;
pub mod memory;

/// The most events one publish call carries: the limit of SNS
/// `PublishBatch`, EventBridge `PutEvents` and SQS `SendMessageBatch`.
pub const MAX_BATCH: usize = 10;

/// Publishes batches of events, in order.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync + fmt::Debug + 'static {
    /// Publishes `batch` (at most [`MAX_BATCH`] events). An `Err` means
    /// nothing is known to be published; otherwise [`Published::failed`]
    /// names the entries the broker refused, and every other entry is
    /// durably accepted.
    async fn publish(&self, batch: &[Envelope]) -> Result<Published>;
}

/// The outcome of one publish call that reached the broker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Indices into the batch of the entries that were refused, with why.
    pub failed: Vec<(usize, String)>,
}

impl Published {
    pub fn all() -> Self {
        Self::default()
    }
}

/// One message received from a queue.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The broker's message id.
    pub message_id: String,
    /// What `delete`, `set_visibility` and `dead_letter` need.
    pub receipt: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    /// The FIFO message group, if any.
    pub group: Option<String>,
    /// The event, or why the message is not one (such a message goes to
    /// the dead-letter queue at once).
    pub event: std::result::Result<Envelope, String>,
    /// The message as it arrived, so that it can be dead-lettered as is.
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}

/// A subscriber's queue.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + fmt::Debug + 'static {
    /// The queue's name, for logs.
    fn name(&self) -> &str;

    /// Waits up to `wait` for at least one message and returns at most
    /// `max`, each hidden from other receivers for `visibility`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Acknowledges a message: it is never delivered again.
    async fn delete(&self, delivery: &Delivery) -> Result<()>;

    /// Hides the message for `timeout` from now (zero makes it visible at
    /// once): the heartbeat of a long handler, or a retry's backoff.
    async fn set_visibility(&self, delivery: &Delivery, timeout: Duration) -> Result<()>;

    /// Moves the message to the dead-letter queue now, whatever its
    /// receive count.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<()>;

    /// How many messages the queue and its dead-letter queue hold, as far
    /// as the transport can count them (for `bus_queue_depth` and
    /// `bus_dlq_depth`); unknown by default.
    async fn depth(&self) -> Result<QueueDepth> {
        Ok(QueueDepth::default())
    }
}

/// A queue's size; `None` where the transport cannot tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages not yet deleted or dead-lettered: visible and in flight.
    pub messages: Option<u64>,
    /// Messages in the dead-letter queue.
    pub dead_letters: Option<u64>,
}

/// Whether the bus creates its infrastructure or only uses what exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provisioning {
    /// Create topics, queues, subscriptions and rules at start, and bring
    /// their settings in line with the configuration (development).
    #[default]
    Create,
    /// Use only resources that exist under the configured names; a missing
    /// one is an error (production, where Terraform owns them).
    Existing,
}

/// One subscriber's queue and what it receives.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// The queue's name (SQS: with `.fifo` when `fifo`). Its dead-letter
    /// queue is named after it with `-dlq`.
    pub name: String,
    /// The event types it receives; empty means every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Receives after which a message moves to the dead-letter queue.
    #[serde(default = "default_max_receives")]
    pub max_receives: u32,
    /// The queue's default visibility timeout.
    #[serde(with = "humantime_serde", default = "default_visibility")]
    pub visibility_timeout: Duration,
    /// In-order delivery per message group (the event's aggregate).
    #[serde(default)]
    pub fifo: bool,
}

fn default_max_receives() -> u32 {
    5
}

fn default_visibility() -> Duration {
    Duration::from_secs(30)
}

impl QueueSpec {
    /// A queue named `name` receiving `event_types` (all when empty), with
    /// the defaults: 5 receives, 30 s visibility, not FIFO.
    pub fn new(name: impl Into<String>, event_types: &[&str]) -> Self {
        Self {
            name: name.into(),
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            max_receives: default_max_receives(),
            visibility_timeout: default_visibility(),
            fifo: false,
        }
    }

    pub fn max_receives(mut self, max: u32) -> Self {
        self.max_receives = max;
        self
    }

    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    pub fn fifo(mut self, fifo: bool) -> Self {
        self.fifo = fifo;
        self
    }

    /// Whether an event of `event_type` belongs in this queue.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.len() > 80 {
            return Err(BusError::Config(format!(
                "queue name `{}` must be 1 to 80 characters",
                self.name
            )));
        }
        if self.max_receives == 0 {
            return Err(BusError::Config(format!(
                "queue `{}`: max_receives must be at least 1",
                self.name
            )));
        }
        Ok(())
    }
}

/// Reads a received message: binary mode when it carries `ce_specversion`,
/// otherwise structured JSON (bare, or as an EventBridge event's detail).
pub(crate) fn decode_message(
    attributes: &BTreeMap<String, String>,
    body: &str,
) -> std::result::Result<Envelope, String> {
    let decoded = if attributes.contains_key("ce_specversion") {
        Envelope::from_binary(attributes, body)
    } else {
        Envelope::from_json(body)
    };
    decoded.map_err(|e| e.to_string())
}
