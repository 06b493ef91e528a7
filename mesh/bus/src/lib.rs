//! cloudsec's event bus: domain events leave a service through a
//! transactional outbox and reach every subscriber at least once.
//!
//! A service appends an [`Envelope`] (CloudEvents 1.0 around a protobuf
//! payload) to the [`Outbox`] in the same database transaction as the
//! change it describes. A [`Relay`] publishes committed events, in order
//! per aggregate and in batches of up to ten, through a [`Publisher`]: the
//! [`EmbeddedBus`] on the local database, SNS fanning out to SQS queues, or
//! EventBridge with rules targeting SQS queues. A [`Subscriber`] drains one
//! [`Queue`], runs a [`Handler`] per event, keeps long handlers' messages
//! hidden, retries with backoff, dead-letters poison messages, and with an
//! [`Inbox`] handles each event id once.
//!
//! `docs/events.md` states the delivery guarantees and how to add an event
//! or a subscriber.
//!
//! # Layout
//! - [`envelope`]: the CloudEvents envelope, binary and structured modes,
//!   and the [`DomainEvent`] types of `cloudsec.events.v1`.
//! - [`config`]: the `[events]` section and [`Bus`], the connected
//!   transport that hands out the relay's publisher and subscribers' queues.
//! - [`outbox`]: appending within a transaction, the commit signal.
//! - [`relay`]: publishing the outbox (`SKIP LOCKED` shards on PostgreSQL,
//!   a lease on SQLite), backoff, wake-ups.
//! - [`transport`]: the [`Publisher`] and [`Queue`] traits and their
//!   implementations: [`transport::embedded`], [`transport::aws`] (SNS,
//!   SQS, EventBridge, and creating or finding their resources) and
//!   [`transport::memory`].
//! - [`subscriber`]: receive loop, bounded concurrency, heartbeat,
//!   outcomes, graceful shutdown.
//! - [`inbox`]: handled event ids per subscriber.
//! - [`metrics`]: outbox backlog, relay outcomes, subscriber lag and
//!   outcomes, queue and dead-letter depths.
//! - [`backoff`]: the one backoff rule.
//! - [`trace`]: trace context from the cause to the handler.
//! - [`migration`]: the bus's tables, in their own migration table.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod dynamo_inbox;
pub mod envelope;
pub mod error;
pub mod inbox;
pub mod metrics;
pub mod migration;
pub mod outbox;
pub mod relay;
mod sql;
pub mod subscriber;
pub mod trace;
pub mod transport;

pub use backoff::Backoff;
pub use config::{Bus, BusConfig, TransportKind};
pub use envelope::{DomainEvent, Envelope};
pub use error::{BusError, Result};
pub use inbox::{Claim, ClaimToken, Inbox};
pub use migration::Migrator;
pub use outbox::{Events, Outbox, begin_write, transaction};
pub use relay::{Relay, RelayConfig};
pub use subscriber::{DeliveryInfo, Handler, Outcome, Subscriber, SubscriberConfig, handler_fn};
pub use transport::embedded::{EmbeddedBus, EmbeddedQueue};
pub use transport::{Delivery, Provisioning, Published, Publisher, Queue, QueueDepth, QueueSpec};
