//! The embedded bus on SQLite and PostgreSQL: outbox -> relay -> queues ->
//! subscribers, with the same semantics as SNS/SQS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cloudsec_bus::transport::Publisher;
use cloudsec_bus::{
    Backoff, EmbeddedBus, Envelope, Inbox, Outbox, Outcome, Provisioning, QueueSpec, Relay,
    RelayConfig, Subscriber, SubscriberConfig, handler_fn,
};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::support::{
    Backend, Seen, append_all, created, deleted, eventually, signed_up, updated, with_db,
};

const CREATED: &str = "cloudsec.events.v1.DocumentCreated";
const DELETED: &str = "cloudsec.events.v1.DocumentDeleted";

fn quick() -> SubscriberConfig {
    SubscriberConfig {
        max_in_flight: 4,
        batch_size: 10,
        wait_time: Duration::from_millis(200),
        visibility_timeout: Duration::from_secs(5),
        retry: Backoff::new(Duration::ZERO, Duration::ZERO),
        handler_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Starts a subscriber that records what it sees and acks.
fn recorder(
    queue: cloudsec_bus::EmbeddedQueue,
    shutdown: &CancellationToken,
) -> (Seen, tokio::task::JoinHandle<cloudsec_bus::Result<()>>) {
    let seen = Seen::default();
    let s = seen.clone();
    let handler = handler_fn(move |event, _| {
        let s = s.clone();
        async move {
            s.push(event);
            Outcome::Ack
        }
    });
    let subscriber = Subscriber::new(queue, handler, quick()).unwrap();
    (seen, tokio::spawn(subscriber.run(shutdown.clone())))
}

fn types(seen: &Seen) -> Vec<String> {
    let mut types: Vec<String> = seen.all().into_iter().map(|e| e.event_type).collect();
    types.sort();
    types
}

async fn publish_consume_routes_by_type(backend: Backend) {
    with_db(backend, |db| async move {
        let bus = EmbeddedBus::new(db.clone());
        let all = bus
            .provision(&QueueSpec::new("audit", &[]), Provisioning::Create)
            .await
            .unwrap();
        let lifecycle = bus
            .provision(
                &QueueSpec::new("lifecycle", &[CREATED, DELETED]),
                Provisioning::Create,
            )
            .await
            .unwrap();
        let outbox = Outbox::new();
        let relay = Relay::new(
            db.clone(),
            Arc::new(bus.clone()),
            &outbox,
            RelayConfig::default(),
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        let relay_task = tokio::spawn(relay.run(shutdown.clone()));
        let (seen_all, all_task) = recorder(all, &shutdown);
        let (seen_lifecycle, lifecycle_task) = recorder(lifecycle, &shutdown);

        let events = [
            created("d1"),
            updated("d1", "new"),
            deleted("d1"),
            signed_up("u1"),
        ];
        append_all(&db, &outbox, &events).await;

        let done = eventually(Duration::from_secs(10), || async {
            (seen_all.len() == 4 && seen_lifecycle.len() == 2).then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "all={:?} lifecycle={:?}",
            types(&seen_all),
            types(&seen_lifecycle)
        );
        assert_eq!(types(&seen_lifecycle), [CREATED, DELETED]);
        let mut sent: Vec<Envelope> = events.to_vec();
        sent.sort_by(|a, b| a.id.cmp(&b.id));
        let mut got = seen_all.all();
        got.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got, sent, "envelopes arrive unchanged");

        // Every message acknowledged: nothing left, nothing dead.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for queue in ["audit", "lifecycle"] {
            assert_eq!(
                bus.depth(queue).await.unwrap(),
                Default::default(),
                "{queue}"
            );
        }
        shutdown.cancel();
        for task in [relay_task, all_task, lifecycle_task] {
            task.await.unwrap().unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn embedded_publish_consume_routes_by_type_sqlite() {
    publish_consume_routes_by_type(Backend::Sqlite).await;
}

#[tokio::test]
async fn embedded_publish_consume_routes_by_type_postgres() {
    publish_consume_routes_by_type(Backend::Postgres).await;
}

/// Runs a subscriber with `handler` over queue `spec` after publishing
/// `events` straight to the bus; returns when `done` holds.
async fn run_with(
    db: &DatabaseConnection,
    spec: QueueSpec,
    config: SubscriberConfig,
    inbox: bool,
    handler: impl cloudsec_bus::Handler,
    events: &[Envelope],
    mut done: impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>,
) -> EmbeddedBus {
    let bus = EmbeddedBus::new(db.clone());
    let queue = bus.provision(&spec, Provisioning::Create).await.unwrap();
    let mut subscriber = Subscriber::new(queue, handler, config).unwrap();
    if inbox {
        subscriber = subscriber.with_inbox(Inbox::new(db.clone(), spec.name.clone()));
    }
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(subscriber.run(shutdown.clone()));
    for event in events {
        bus.publish(std::slice::from_ref(event)).await.unwrap();
    }
    let finished = eventually(Duration::from_secs(20), || {
        let check = done();
        async move { check.await.then_some(()) }
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(finished.is_some(), "the scenario did not finish in time");
    bus
}

async fn poison_goes_to_the_dead_letters_after_max_receives(backend: Backend) {
    with_db(backend, |db| async move {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let handler = handler_fn(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Outcome::retry() }
        });
        let db2 = db.clone();
        let bus = run_with(
            &db,
            QueueSpec::new("poison", &[]).max_receives(3),
            quick(),
            false,
            handler,
            &[created("bad")],
            move || {
                let db = db2.clone();
                Box::pin(
                    async move { EmbeddedBus::new(db).depth("poison").await.unwrap().dead == 1 },
                )
            },
        )
        .await;
        let dead = bus.dead_letters("poison").await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].receive_count, 3);
        assert!(dead[0].reason.contains("3 times"), "{}", dead[0].reason);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "handled exactly max_receives times"
        );

        // Redrive puts it back as a fresh message.
        assert_eq!(bus.redrive("poison").await.unwrap(), 1);
        let depth = bus.depth("poison").await.unwrap();
        assert_eq!((depth.ready, depth.dead), (1, 0));
    })
    .await;
}

#[tokio::test]
async fn embedded_poison_goes_to_dead_letters_after_max_receives_sqlite() {
    poison_goes_to_the_dead_letters_after_max_receives(Backend::Sqlite).await;
}

#[tokio::test]
async fn embedded_poison_goes_to_dead_letters_after_max_receives_postgres() {
    poison_goes_to_the_dead_letters_after_max_receives(Backend::Postgres).await;
}

async fn dead_letter_now_skips_the_retries(backend: Backend) {
    with_db(backend, |db| async move {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let handler = handler_fn(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Outcome::dead_letter("schema violation") }
        });
        let c = calls.clone();
        let bus = run_with(
            &db,
            QueueSpec::new("strict", &[]).max_receives(5),
            quick(),
            false,
            handler,
            &[created("bad")],
            move || {
                let done = c.load(Ordering::SeqCst) >= 1;
                Box::pin(async move { done })
            },
        )
        .await;
        let dead = eventually(Duration::from_secs(5), || async {
            let dead = bus.dead_letters("strict").await.unwrap();
            (!dead.is_empty()).then_some(dead)
        })
        .await
        .unwrap();
        assert_eq!(dead[0].reason, "schema violation");
        assert_eq!(dead[0].receive_count, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn embedded_dead_letter_now_skips_the_retries_sqlite() {
    dead_letter_now_skips_the_retries(Backend::Sqlite).await;
}

#[tokio::test]
async fn embedded_dead_letter_now_skips_the_retries_postgres() {
    dead_letter_now_skips_the_retries(Backend::Postgres).await;
}

async fn inbox_absorbs_a_redelivered_event(backend: Backend) {
    with_db(backend, |db| async move {
        let seen = Seen::default();
        let s = seen.clone();
        let handler = handler_fn(move |event, _| {
            let s = s.clone();
            async move {
                s.push(event);
                Outcome::Ack
            }
        });
        let event = created("once");
        let bus = EmbeddedBus::new(db.clone());
        let queue = bus
            .provision(&QueueSpec::new("once", &[]), Provisioning::Create)
            .await
            .unwrap();
        let subscriber = Subscriber::new(queue, handler, quick())
            .unwrap()
            .with_inbox(Inbox::new(db.clone(), "once"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(subscriber.run(shutdown.clone()));
        // The relay published it, crashed before marking, and published
        // it again after the first copy was handled.
        bus.publish(std::slice::from_ref(&event)).await.unwrap();
        assert!(
            eventually(Duration::from_secs(5), || async {
                (seen.len() == 1).then_some(())
            })
            .await
            .is_some()
        );
        assert!(
            eventually(Duration::from_secs(5), || async {
                (bus.depth("once").await.unwrap() == Default::default()).then_some(())
            })
            .await
            .is_some()
        );
        bus.publish(std::slice::from_ref(&event)).await.unwrap();
        let drained = eventually(Duration::from_secs(5), || async {
            (bus.depth("once").await.unwrap() == Default::default()).then_some(())
        })
        .await;
        assert!(drained.is_some(), "the duplicate is deleted");
        assert_eq!(seen.ids(), std::slice::from_ref(&event.id), "handled once");
        assert!(
            Inbox::new(db.clone(), "once")
                .seen(&event.id)
                .await
                .unwrap()
        );
        shutdown.cancel();
        task.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn embedded_inbox_absorbs_a_redelivered_event_sqlite() {
    inbox_absorbs_a_redelivered_event(Backend::Sqlite).await;
}

#[tokio::test]
async fn embedded_inbox_absorbs_a_redelivered_event_postgres() {
    inbox_absorbs_a_redelivered_event(Backend::Postgres).await;
}

/// A handler three times slower than the visibility timeout, with a second
/// subscriber polling the same queue: the heartbeat keeps the message
/// hidden, so it is handled once.
async fn heartbeat_keeps_a_slow_handler_exclusive(backend: Backend) {
    with_db(backend, |db| async move {
        let calls = Arc::new(AtomicU32::new(0));
        let finished = Arc::new(AtomicU32::new(0));
        let bus = EmbeddedBus::new(db.clone());
        let spec = QueueSpec::new("slow", &[]).visibility_timeout(Duration::from_millis(600));
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let queue = bus.provision(&spec, Provisioning::Create).await.unwrap();
            let (c, f) = (calls.clone(), finished.clone());
            let handler = handler_fn(move |_, _| {
                let (c, f) = (c.clone(), f.clone());
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1800)).await;
                    f.fetch_add(1, Ordering::SeqCst);
                    Outcome::Ack
                }
            });
            let config = SubscriberConfig {
                visibility_timeout: Duration::from_millis(600),
                wait_time: Duration::from_millis(100),
                ..quick()
            };
            let subscriber = Subscriber::new(queue, handler, config).unwrap();
            tasks.push(tokio::spawn(subscriber.run(shutdown.clone())));
        }
        bus.publish(&[created("slow")]).await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || async {
                (finished.load(Ordering::SeqCst) == 1).then_some(())
            })
            .await
            .is_some()
        );
        // Long enough for a redelivery, had there been one.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "never redelivered while running"
        );
        assert_eq!(bus.depth("slow").await.unwrap(), Default::default());
        shutdown.cancel();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn embedded_heartbeat_keeps_a_slow_handler_exclusive_sqlite() {
    heartbeat_keeps_a_slow_handler_exclusive(Backend::Sqlite).await;
}

#[tokio::test]
async fn embedded_heartbeat_keeps_a_slow_handler_exclusive_postgres() {
    heartbeat_keeps_a_slow_handler_exclusive(Backend::Postgres).await;
}

/// A FIFO queue hands out each aggregate's events one at a time, in order,
/// even to a subscriber running many handlers at once.
async fn fifo_keeps_per_aggregate_order(backend: Backend) {
    with_db(backend, |db| async move {
        let seen = Seen::default();
        let s = seen.clone();
        let handler = handler_fn(move |event: Envelope, _| {
            let s = s.clone();
            async move {
                // Uneven handling times would reorder a non-FIFO queue.
                let jitter = u64::from(event.id.as_bytes()[event.id.len() - 1] % 7);
                tokio::time::sleep(Duration::from_millis(jitter * 5)).await;
                s.push(event);
                Outcome::Ack
            }
        });
        let mut events = Vec::new();
        for i in 0..24 {
            let doc = ["x", "y", "z"][i % 3];
            events.push(updated(doc, &i.to_string()));
        }
        let s = seen.clone();
        run_with(
            &db,
            QueueSpec::new("ordered", &[]).fifo(true),
            SubscriberConfig {
                max_in_flight: 8,
                ..quick()
            },
            false,
            handler,
            &events,
            move || {
                let done = s.len() == 24;
                Box::pin(async move { done })
            },
        )
        .await;
        let order = |list: &[Envelope]| {
            let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for e in list {
                map.entry(e.aggregate().to_owned())
                    .or_default()
                    .push(e.id.clone());
            }
            map
        };
        assert_eq!(order(&seen.all()), order(&events));
    })
    .await;
}

#[tokio::test]
async fn embedded_fifo_keeps_per_aggregate_order_sqlite() {
    fifo_keeps_per_aggregate_order(Backend::Sqlite).await;
}

#[tokio::test]
async fn embedded_fifo_keeps_per_aggregate_order_postgres() {
    fifo_keeps_per_aggregate_order(Backend::Postgres).await;
}

#[tokio::test]
async fn embedded_existing_mode_needs_the_queue() {
    with_db(Backend::Sqlite, |db| async move {
        let bus = EmbeddedBus::new(db);
        let err = bus
            .provision(&QueueSpec::new("absent", &[]), Provisioning::Existing)
            .await
            .unwrap_err();
        assert!(
            matches!(err, cloudsec_bus::BusError::Missing { .. }),
            "{err}"
        );
        bus.provision(
            &QueueSpec::new("present", &[]).max_receives(2),
            Provisioning::Create,
        )
        .await
        .unwrap();
        // Existing mode keeps the stored settings.
        bus.provision(&QueueSpec::new("present", &[]), Provisioning::Existing)
            .await
            .unwrap();
    })
    .await;
}
