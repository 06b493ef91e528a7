//! What the bus's metrics say about a relay whose broker is down and a
//! subscriber that dead-letters, read back from the registry's exposition
//! as Prometheus would scrape it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cloudsec_bus::transport::memory::MemoryPublisher;
use cloudsec_bus::{
    Backoff, EmbeddedBus, Outbox, Outcome, Provisioning, QueueSpec, Relay, RelayConfig, Subscriber,
    SubscriberConfig, handler_fn,
};
use cloudsec_runtime::metrics::Metrics;
use tokio_util::sync::CancellationToken;

use crate::support::{Backend, append_all, created, eventually, with_db};

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(metrics: &Metrics, series: &str) -> Option<f64> {
    metrics.encode().lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

async fn outbox_backlog_shows_while_the_broker_is_down(backend: Backend) {
    with_db(backend, |db| async move {
        let registry = Metrics::new("documents");
        let outbox = Outbox::new();
        let publisher = MemoryPublisher::new();
        publisher.set_down(true);
        let config = RelayConfig {
            poll_interval: Duration::from_millis(50),
            backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(100)),
            metrics_interval: Duration::from_millis(50),
            ..RelayConfig::default()
        };
        let relay = Relay::new(db.clone(), Arc::new(publisher.clone()), &outbox, config)
            .unwrap()
            .with_metrics(&registry);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(relay.run(shutdown.clone()));
        append_all(&db, &outbox, &[created("a"), created("b"), created("c")]).await;

        let backlog = eventually(Duration::from_secs(10), || async {
            let depth = sample(&registry, "bus_outbox_depth{component=\"documents\"}")?;
            let age = sample(
                &registry,
                "bus_outbox_oldest_age_seconds{component=\"documents\"}",
            )?;
            let failed = sample(
                &registry,
                "bus_relay_events_total{component=\"documents\",outcome=\"failed\"}",
            )?;
            (depth == 3.0 && age > 0.0 && failed >= 3.0).then_some(age)
        })
        .await;
        assert!(
            backlog.is_some(),
            "depth, age and failures show the outage:\n{}",
            registry.encode()
        );

        publisher.set_down(false);
        let drained = eventually(Duration::from_secs(10), || async {
            let depth = sample(&registry, "bus_outbox_depth{component=\"documents\"}")?;
            let age = sample(
                &registry,
                "bus_outbox_oldest_age_seconds{component=\"documents\"}",
            )?;
            let published = sample(
                &registry,
                "bus_relay_events_total{component=\"documents\",outcome=\"published\"}",
            )?;
            (depth == 0.0 && age == 0.0 && published == 3.0).then_some(())
        })
        .await;
        assert!(
            drained.is_some(),
            "the backlog drains and is measured again:\n{}",
            registry.encode()
        );
        assert!(
            sample(
                &registry,
                "bus_relay_publish_duration_seconds_count{component=\"documents\"}"
            )
            .is_some_and(|n| n >= 2.0)
        );
        shutdown.cancel();
        running.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn metrics_outbox_backlog_shows_while_the_broker_is_down_sqlite() {
    outbox_backlog_shows_while_the_broker_is_down(Backend::Sqlite).await;
}

#[tokio::test]
async fn metrics_outbox_backlog_shows_while_the_broker_is_down_postgres() {
    outbox_backlog_shows_while_the_broker_is_down(Backend::Postgres).await;
}

async fn subscriber_counts_outcomes_lag_and_dead_letters(backend: Backend) {
    with_db(backend, |db| async move {
        let registry = Metrics::new("audit");
        let bus = EmbeddedBus::new(db.clone());
        let queue = bus
            .provision(&QueueSpec::new("audit", &[]), Provisioning::Create)
            .await
            .unwrap();
        let handler = handler_fn(|event, _| async move {
            if event.aggregate() == "poison" {
                Outcome::dead_letter("cannot be handled")
            } else {
                Outcome::Ack
            }
        });
        let config = SubscriberConfig {
            wait_time: Duration::from_millis(200),
            ..SubscriberConfig::default()
        };
        let subscriber = Subscriber::new(queue, handler, config)
            .unwrap()
            .with_metrics(&registry);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(subscriber.run(shutdown.clone()));
        use cloudsec_bus::transport::Publisher;
        bus.publish(&[created("good"), created("poison")])
            .await
            .unwrap();

        let settled = eventually(Duration::from_secs(10), || async {
            let ack = sample(
                &registry,
                "bus_subscriber_handled_total{component=\"audit\",queue=\"audit\",outcome=\"ack\"}",
            )?;
            let dead = sample(
                &registry,
                "bus_subscriber_handled_total{component=\"audit\",queue=\"audit\",outcome=\"dead_letter\"}",
            )?;
            let dlq = sample(&registry, "bus_dlq_depth{component=\"audit\",queue=\"audit\"}")?;
            (ack == 1.0 && dead == 1.0 && dlq == 1.0).then_some(())
        })
        .await;
        assert!(
            settled.is_some(),
            "outcomes and the dead letter show at once:\n{}",
            registry.encode()
        );
        assert_eq!(
            sample(
                &registry,
                "bus_subscriber_handled_total{component=\"audit\",queue=\"audit\",outcome=\"retry\"}"
            ),
            Some(0.0),
            "every outcome exists from the start"
        );
        assert_eq!(
            sample(
                &registry,
                "bus_subscriber_lag_seconds_count{component=\"audit\",queue=\"audit\"}"
            ),
            Some(2.0)
        );
        // Measured with the dead letter, when the other message may still
        // be in flight: at most that one.
        assert!(
            sample(&registry, "bus_queue_depth{component=\"audit\",queue=\"audit\"}")
                .is_some_and(|n| n <= 1.0)
        );
        shutdown.cancel();
        running.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn metrics_subscriber_counts_outcomes_lag_and_dead_letters_sqlite() {
    subscriber_counts_outcomes_lag_and_dead_letters(Backend::Sqlite).await;
}

#[tokio::test]
async fn metrics_subscriber_counts_outcomes_lag_and_dead_letters_postgres() {
    subscriber_counts_outcomes_lag_and_dead_letters(Backend::Postgres).await;
}
