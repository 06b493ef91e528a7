//! The bus's metrics, registered in the registry of the component that
//! runs the relay or the subscriber (`component="documents"`, ...).
//!
//! - Outbox: `bus_outbox_depth` and `bus_outbox_oldest_age_seconds`,
//!   measured every `[events.relay] metrics_interval` whatever the relay
//!   is doing (a relay backing off from a dead broker still reports the
//!   backlog growing).
//! - Relay: `bus_relay_events_total{outcome}` (`published`, `refused` by
//!   the broker, `failed` with the whole call) and
//!   `bus_relay_publish_duration_seconds` per publish call.
//! - Subscribers, by `queue`: `bus_subscriber_lag_seconds` (event time to
//!   receipt), `bus_subscriber_handled_total{outcome}` (`ack`, `retry`,
//!   `dead_letter`), and the queue's `bus_queue_depth` and `bus_dlq_depth`
//!   where the transport can count them.
//!
//! Without metrics (`Relay::new`, `Subscriber::new` alone) everything is
//! recorded into families no registry exposes, so the hot paths have no
//! branches for it.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    queue: String,
    outcome: &'static str,
}

fn publish_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn lag_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        3600.0,
    ])
}

cloudsec_runtime::metric_families! {
    /// The relay's and its outbox's metrics. Cheap to clone.
    pub struct RelayMetrics {
        depth: Gauge = "bus_outbox_depth", "events in the outbox not yet published";
        oldest_age: Gauge<f64, AtomicU64> = "bus_outbox_oldest_age_seconds",
            "age of the oldest unpublished event in the outbox (0 when none waits)";
        events: Family<OutcomeLabels, Counter> = "bus_relay_events",
            "outbox events the relay tried to publish, by outcome (published, refused by the broker, failed with the call)",
            outcome_family();
        publish_duration: Histogram = "bus_relay_publish_duration_seconds",
            "time of one publish call to the broker", publish_histogram();
    }
}

/// Every outcome exists from the start, so that an error rate is 0 rather
/// than absent before the first error.
fn outcome_family() -> Family<OutcomeLabels, Counter> {
    let family = Family::default();
    for outcome in ["published", "refused", "failed"] {
        drop(family.get_or_create(&OutcomeLabels { outcome }));
    }
    family
}

impl RelayMetrics {
    pub(crate) fn outcome(&self, outcome: &'static str, events: usize) {
        self.events
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
    }

    pub(crate) fn publish_took(&self, seconds: f64) {
        self.publish_duration.observe(seconds);
    }

    pub(crate) fn outbox(&self, depth: u64, oldest_age_seconds: f64) {
        self.depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.oldest_age.set(oldest_age_seconds);
    }

    /// Events published so far (tests).
    pub fn published(&self) -> u64 {
        self.events
            .get_or_create(&OutcomeLabels {
                outcome: "published",
            })
            .get()
    }

    /// The last measured outbox depth (tests).
    pub fn depth(&self) -> i64 {
        self.depth.get()
    }
}

cloudsec_runtime::metric_families! {
    /// The subscribers' metrics, labelled by queue. Cheap to clone.
    pub struct SubscriberMetrics {
        lag: Family<QueueLabels, Histogram, fn() -> Histogram> = "bus_subscriber_lag_seconds",
            "time from an event's occurrence to its receipt by the subscriber",
            Family::new_with_constructor(lag_histogram);
        handled: Family<HandledLabels, Counter> = "bus_subscriber_handled",
            "messages settled by the subscriber, by queue and outcome (ack, retry, dead_letter)";
        depth: Family<QueueLabels, Gauge> = "bus_queue_depth",
            "messages waiting in the subscriber's queue, visible or in flight (where the transport can count them)";
        dead: Family<QueueLabels, Gauge> = "bus_dlq_depth",
            "messages in the subscriber's dead-letter queue (where the transport can count them)";
    }
}

impl SubscriberMetrics {
    /// Makes the series of `queue` exist at 0.
    pub(crate) fn queue(&self, queue: &str) {
        for outcome in ["ack", "retry", "dead_letter"] {
            drop(self.handled.get_or_create(&HandledLabels {
                queue: queue.to_owned(),
                outcome,
            }));
        }
        drop(self.lag.get_or_create(&QueueLabels {
            queue: queue.to_owned(),
        }));
    }

    pub(crate) fn received(&self, queue: &str, lag_seconds: f64) {
        self.lag
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .observe(lag_seconds.max(0.0));
    }

    pub(crate) fn handled(&self, queue: &str, outcome: &'static str) {
        self.handled
            .get_or_create(&HandledLabels {
                queue: queue.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn depth(&self, queue: &str, depth: &crate::transport::QueueDepth) {
        let labels = QueueLabels {
            queue: queue.to_owned(),
        };
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        if let Some(n) = depth.messages {
            self.depth.get_or_create(&labels).set(gauge(n));
        }
        if let Some(n) = depth.dead_letters {
            self.dead.get_or_create(&labels).set(gauge(n));
        }
    }

    /// Messages settled with `outcome` so far (tests).
    pub fn count(&self, queue: &str, outcome: &'static str) -> u64 {
        self.handled
            .get_or_create(&HandledLabels {
                queue: queue.to_owned(),
                outcome,
            })
            .get()
    }

    /// The last measured dead-letter depth (tests).
    pub fn dead_letters(&self, queue: &str) -> i64 {
        self.dead
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .get()
    }
}
