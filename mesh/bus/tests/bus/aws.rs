//! SNS -> SQS and EventBridge -> SQS against a real moto server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cloudsec_bus::transport::Publisher;
use cloudsec_bus::transport::aws::{
    AwsClients, SqsQueue, dead_letter_name, event_bus, eventbridge_subscription, sns_subscription,
    sns_topic,
};
use cloudsec_bus::{
    Backoff, Envelope, Inbox, Outbox, Outcome, Provisioning, Queue, QueueSpec, Relay, RelayConfig,
    Subscriber, SubscriberConfig, handler_fn,
};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::support::{
    Backend, Seen, Switch, append_all, aws_clients, closed_port_url, created, deleted, eventually,
    moto_url, signed_up, unique, updated, with_db,
};

const CREATED: &str = "cloudsec.events.v1.DocumentCreated";
const DELETED: &str = "cloudsec.events.v1.DocumentDeleted";

fn quick() -> SubscriberConfig {
    SubscriberConfig {
        max_in_flight: 4,
        batch_size: 10,
        wait_time: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(10),
        retry: Backoff::new(Duration::ZERO, Duration::ZERO),
        handler_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(5),
    }
}

fn fast_relay() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(100),
        backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
        publish_timeout: Duration::from_secs(10),
        ..RelayConfig::default()
    }
}

/// A subscriber that records what it sees and acks; runs until cancelled.
fn recorder(
    queue: impl Queue,
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

/// What `seen` saw, each event once (delivery is at least once: a publish
/// that timed out under load goes again), sorted by id.
fn distinct(seen: &Seen) -> Vec<Envelope> {
    let mut events = seen.all();
    events.sort_by(|a, b| a.id.cmp(&b.id));
    events.dedup_by(|a, b| a.id == b.id);
    events
}

fn sorted_types(seen: &Seen) -> Vec<String> {
    let mut types: Vec<String> = distinct(seen).into_iter().map(|e| e.event_type).collect();
    types.sort();
    types
}

/// Receives whatever is in the queue `name` right now (up to 10).
async fn peek(clients: &AwsClients, name: &str) -> Vec<cloudsec_bus::Delivery> {
    let queue = SqsQueue::open(clients.sqs.clone(), name).await.unwrap();
    queue
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap()
}

/// The outbox on SQLite, a relay to `publisher`, and events appended.
async fn relay_events(
    db: &DatabaseConnection,
    publisher: Arc<dyn Publisher>,
    events: &[Envelope],
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<cloudsec_bus::Result<()>> {
    let outbox = Outbox::new();
    let relay = Relay::new(db.clone(), publisher, &outbox, fast_relay()).unwrap();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    append_all(db, &outbox, events).await;
    task
}

#[tokio::test]
async fn sns_sqs_routes_event_types_with_filter_policies() {
    let Some(url) = moto_url() else { return };
    with_db(Backend::Sqlite, |db| async move {
        let clients = aws_clients(&url).await;
        let topic = sns_topic(&clients.sns, &unique("events"), Provisioning::Create)
            .await
            .unwrap();
        let all = sns_subscription(
            &clients,
            &topic,
            &QueueSpec::new(unique("all"), &[]),
            Provisioning::Create,
        )
        .await
        .unwrap();
        let lifecycle = sns_subscription(
            &clients,
            &topic,
            &QueueSpec::new(unique("lifecycle"), &[CREATED, DELETED]),
            Provisioning::Create,
        )
        .await
        .unwrap();
        // Provisioning twice is harmless (a second `cloudsec up`).
        let lifecycle_name = lifecycle.name().to_owned();
        sns_subscription(
            &clients,
            &topic,
            &QueueSpec::new(lifecycle_name.clone(), &[CREATED, DELETED]),
            Provisioning::Create,
        )
        .await
        .unwrap();

        let shutdown = CancellationToken::new();
        let (seen_all, t1) = recorder(all, &shutdown);
        let (seen_lifecycle, t2) = recorder(lifecycle, &shutdown);
        let events = [
            created("d1"),
            updated("d1", "x"),
            deleted("d1"),
            signed_up("u1"),
        ];
        let relay = relay_events(&db, Arc::new(topic), &events, &shutdown).await;

        let done = eventually(Duration::from_secs(20), || async {
            (distinct(&seen_all).len() >= 4 && distinct(&seen_lifecycle).len() >= 2).then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "all={:?} lifecycle={:?}",
            sorted_types(&seen_all),
            sorted_types(&seen_lifecycle)
        );
        // Filtered out, not just late.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(sorted_types(&seen_lifecycle), [CREATED, DELETED]);
        let got = distinct(&seen_all);
        let mut sent = events.to_vec();
        sent.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got, sent, "binary mode round-trips through SNS and SQS");
        shutdown.cancel();
        for task in [relay, t1, t2] {
            task.await.unwrap().unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn eventbridge_sqs_routes_event_types_with_rules() {
    let Some(url) = moto_url() else { return };
    with_db(Backend::Sqlite, |db| async move {
        let clients = aws_clients(&url).await;
        let bus = event_bus(&clients.eventbridge, &unique("bus"), Provisioning::Create)
            .await
            .unwrap();
        let all = eventbridge_subscription(
            &clients,
            &bus,
            &QueueSpec::new(unique("all"), &[]),
            Provisioning::Create,
        )
        .await
        .unwrap();
        let creations = eventbridge_subscription(
            &clients,
            &bus,
            &QueueSpec::new(unique("created"), &[CREATED]),
            Provisioning::Create,
        )
        .await
        .unwrap();
        let shutdown = CancellationToken::new();
        let (seen_all, t1) = recorder(all, &shutdown);
        let (seen_created, t2) = recorder(creations, &shutdown);
        let events = [created("d1"), created("d2"), deleted("d1"), signed_up("u1")];
        let relay = relay_events(&db, Arc::new(bus), &events, &shutdown).await;

        let done = eventually(Duration::from_secs(20), || async {
            (distinct(&seen_all).len() >= 4 && distinct(&seen_created).len() >= 2).then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "all={:?} created={:?}",
            sorted_types(&seen_all),
            sorted_types(&seen_created)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(sorted_types(&seen_created), [CREATED, CREATED]);
        let got = distinct(&seen_all);
        let mut sent = events.to_vec();
        sent.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got, sent, "structured mode round-trips through EventBridge");
        shutdown.cancel();
        for task in [relay, t1, t2] {
            task.await.unwrap().unwrap();
        }
    })
    .await;
}

/// The broker is unreachable (a closed port) while events are committed;
/// after it comes back every event arrives.
#[tokio::test]
async fn sns_relay_delivers_everything_after_the_broker_was_unreachable() {
    let Some(url) = moto_url() else { return };
    with_db(Backend::Sqlite, |db| async move {
        let clients = aws_clients(&url).await;
        let topic = sns_topic(&clients.sns, &unique("outage"), Provisioning::Create)
            .await
            .unwrap();
        let queue = sns_subscription(
            &clients,
            &topic,
            &QueueSpec::new(unique("outage"), &[]),
            Provisioning::Create,
        )
        .await
        .unwrap();
        let unreachable = aws_clients(&closed_port_url()).await;
        let down =
            cloudsec_bus::transport::aws::SnsPublisher::new(unreachable.sns, topic.topic_arn());
        let switch = Switch::new(Arc::new(down));

        let shutdown = CancellationToken::new();
        let events: Vec<Envelope> = (0..25).map(|i| created(&format!("doc-{i}"))).collect();
        let relay = relay_events(&db, switch.clone(), &events, &shutdown).await;
        let tried = eventually(Duration::from_secs(20), || async {
            let row = sea_orm::ConnectionTrait::query_one_raw(
                &db,
                sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Sqlite,
                    "SELECT COALESCE(SUM(attempts), 0) AS n FROM bus_outbox",
                ),
            )
            .await
            .unwrap()
            .unwrap();
            let n: i64 = row.try_get("", "n").unwrap();
            (n >= 2).then_some(())
        })
        .await;
        assert!(tried.is_some(), "the relay kept trying");
        assert_eq!(Outbox::pending(&db).await.unwrap(), 25);

        switch.set(Arc::new(topic));
        let (seen, consumer) = recorder(queue, &shutdown);
        let done = eventually(Duration::from_secs(30), || async {
            (seen.len() >= 25).then_some(())
        })
        .await;
        assert!(done.is_some(), "only {} of 25 arrived", seen.len());
        let mut ids = seen.ids();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 25, "every event, none lost");
        assert_eq!(Outbox::pending(&db).await.unwrap(), 0);
        shutdown.cancel();
        relay.await.unwrap().unwrap();
        consumer.await.unwrap().unwrap();
    })
    .await;
}

/// A subscriber over `spec` on a fresh topic with `handler`; publishes
/// `events` directly and runs until `done`.
#[allow(clippy::too_many_arguments)]
async fn sns_scenario(
    clients: &AwsClients,
    spec: QueueSpec,
    topic_name: &str,
    config: SubscriberConfig,
    inbox: Option<Inbox>,
    handler: impl cloudsec_bus::Handler,
    publishes: &[Vec<Envelope>],
    mut done: impl FnMut() -> bool,
) {
    let topic = sns_topic(&clients.sns, topic_name, Provisioning::Create)
        .await
        .unwrap();
    let queue = sns_subscription(clients, &topic, &spec, Provisioning::Create)
        .await
        .unwrap();
    let mut subscriber = Subscriber::new(queue, handler, config).unwrap();
    if let Some(inbox) = inbox {
        subscriber = subscriber.with_inbox(inbox);
    }
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(subscriber.run(shutdown.clone()));
    for batch in publishes {
        let published = topic.publish(batch).await.unwrap();
        assert!(published.failed.is_empty(), "{published:?}");
    }
    let finished = eventually(Duration::from_secs(30), || {
        let d = done();
        async move { d.then_some(()) }
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(finished.is_some(), "the scenario did not finish in time");
}

#[tokio::test]
async fn sqs_poison_goes_to_the_dead_letter_queue_after_max_receives() {
    let Some(url) = moto_url() else { return };
    let clients = aws_clients(&url).await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let handler = handler_fn(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Outcome::retry() }
    });
    let name = unique("poison");
    let event = created("poison");
    let c = calls.clone();
    sns_scenario(
        &clients,
        QueueSpec::new(name.clone(), &[]).max_receives(2),
        &unique("poison"),
        quick(),
        None,
        handler,
        &[vec![event.clone()]],
        move || c.load(Ordering::SeqCst) >= 2,
    )
    .await;
    let dead = eventually(Duration::from_secs(15), || async {
        // The redrive happens on the receive after the last one, which
        // only a receiver triggers.
        let _ = peek(&clients, &name).await;
        let dead = peek(&clients, &dead_letter_name(&name)).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await
    .expect("the poison message reaches the dead-letter queue");
    assert_eq!(dead[0].event.as_ref().unwrap().id, event.id);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "handled max_receives times"
    );
}

#[tokio::test]
async fn sqs_dead_letter_now_moves_the_message_at_once() {
    let Some(url) = moto_url() else { return };
    let clients = aws_clients(&url).await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let handler = handler_fn(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Outcome::dead_letter("unknown schema") }
    });
    let name = unique("strict");
    let event = deleted("gone");
    let c = calls.clone();
    sns_scenario(
        &clients,
        QueueSpec::new(name.clone(), &[]).max_receives(5),
        &unique("strict"),
        quick(),
        None,
        handler,
        &[vec![event.clone()]],
        move || c.load(Ordering::SeqCst) >= 1,
    )
    .await;
    let dead = eventually(Duration::from_secs(10), || async {
        let dead = peek(&clients, &dead_letter_name(&name)).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await
    .expect("dead-lettered");
    assert_eq!(dead[0].event.as_ref().unwrap(), &event, "moved unchanged");
    assert_eq!(
        dead[0]
            .attributes
            .get("cloudsec_dead_letter_reason")
            .map(String::as_str),
        Some("unknown schema")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        peek(&clients, &name).await.is_empty(),
        "gone from the source queue"
    );
    // What `bus_queue_depth` and `bus_dlq_depth` report.
    let depth = SqsQueue::open(clients.sqs.clone(), &name)
        .await
        .unwrap()
        .depth()
        .await
        .unwrap();
    assert_eq!(depth.messages, Some(0));
    assert_eq!(depth.dead_letters, Some(1), "counted while being inspected");
}

#[tokio::test]
async fn sqs_heartbeat_keeps_a_slow_handler_from_redelivery() {
    let Some(url) = moto_url() else { return };
    let clients = aws_clients(&url).await;
    let calls = Arc::new(AtomicU32::new(0));
    let finished = Arc::new(AtomicU32::new(0));
    let (c, f) = (calls.clone(), finished.clone());
    let handler = handler_fn(move |_, _| {
        let (c, f) = (c.clone(), f.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            // Two and a half visibility timeouts.
            tokio::time::sleep(Duration::from_secs(5)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Outcome::Ack
        }
    });
    let config = SubscriberConfig {
        visibility_timeout: Duration::from_secs(2),
        max_in_flight: 4,
        ..quick()
    };
    let f = finished.clone();
    sns_scenario(
        &clients,
        QueueSpec::new(unique("slow"), &[]).visibility_timeout(Duration::from_secs(2)),
        &unique("slow"),
        config,
        None,
        handler,
        &[vec![created("slow")]],
        move || f.load(Ordering::SeqCst) >= 1,
    )
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "not redelivered while running"
    );
}

#[tokio::test]
async fn sqs_inbox_absorbs_a_duplicate_publish() {
    let Some(url) = moto_url() else { return };
    with_db(Backend::Sqlite, |db| async move {
        let clients = aws_clients(&url).await;
        let seen = Seen::default();
        let s = seen.clone();
        let handler = handler_fn(move |event, _| {
            let s = s.clone();
            async move {
                s.push(event);
                Outcome::Ack
            }
        });
        let name = unique("dedup");
        let inbox = Inbox::new(db.clone(), name.clone());
        let event = created("twice");
        let s = seen.clone();
        let start = tokio::time::Instant::now();
        sns_scenario(
            &clients,
            QueueSpec::new(name.clone(), &[]),
            &unique("dedup"),
            quick(),
            Some(inbox.clone()),
            handler,
            // The relay published, crashed before marking, and published again.
            &[vec![event.clone()], vec![event.clone()]],
            move || !s.all().is_empty() && start.elapsed() > Duration::from_secs(3),
        )
        .await;
        assert_eq!(seen.ids(), std::slice::from_ref(&event.id), "handled once");
        assert!(inbox.seen(&event.id).await.unwrap());
        assert!(
            peek(&clients, &name).await.is_empty(),
            "the duplicate was deleted"
        );
    })
    .await;
}

#[tokio::test]
async fn sns_fifo_keeps_per_aggregate_order() {
    let Some(url) = moto_url() else { return };
    let clients = aws_clients(&url).await;
    let seen = Seen::default();
    let s = seen.clone();
    let handler = handler_fn(move |event: Envelope, _| {
        let s = s.clone();
        async move {
            let jitter = u64::from(event.id.as_bytes()[event.id.len() - 1] % 5);
            tokio::time::sleep(Duration::from_millis(jitter * 20)).await;
            s.push(event);
            Outcome::Ack
        }
    });
    let events: Vec<Envelope> = (0..18)
        .map(|i| updated(["p", "q", "r"][i % 3], &i.to_string()))
        .collect();
    let batches: Vec<Vec<Envelope>> = events.chunks(10).map(<[Envelope]>::to_vec).collect();
    let s = seen.clone();
    sns_scenario(
        &clients,
        QueueSpec::new(format!("{}.fifo", unique("ordered")), &[]).fifo(true),
        &format!("{}.fifo", unique("ordered")),
        SubscriberConfig {
            max_in_flight: 8,
            ..quick()
        },
        None,
        handler,
        &batches,
        move || s.len() >= 18,
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
}

#[tokio::test]
async fn existing_mode_uses_only_what_exists() {
    let Some(url) = moto_url() else { return };
    let clients = aws_clients(&url).await;
    let missing = sns_topic(&clients.sns, &unique("absent"), Provisioning::Existing).await;
    assert!(
        matches!(missing, Err(cloudsec_bus::BusError::Missing { .. })),
        "{missing:?}"
    );
    let name = unique("present");
    let created_topic = sns_topic(&clients.sns, &name, Provisioning::Create)
        .await
        .unwrap();
    let found = sns_topic(&clients.sns, &name, Provisioning::Existing)
        .await
        .unwrap();
    assert_eq!(found.topic_arn(), created_topic.topic_arn());
    let queue = sns_subscription(
        &clients,
        &found,
        &QueueSpec::new(unique("absent"), &[]),
        Provisioning::Existing,
    )
    .await;
    assert!(
        matches!(queue, Err(cloudsec_bus::BusError::Missing { .. })),
        "{queue:?}"
    );
    let bus = event_bus(
        &clients.eventbridge,
        &unique("absent"),
        Provisioning::Existing,
    )
    .await;
    assert!(
        matches!(bus, Err(cloudsec_bus::BusError::Missing { .. })),
        "{bus:?}"
    );
    // The queue made in create mode is found with its dead-letter queue.
    let spec = QueueSpec::new(unique("found"), &[]);
    sns_subscription(&clients, &created_topic, &spec, Provisioning::Create)
        .await
        .unwrap();
    let opened = sns_subscription(&clients, &found, &spec, Provisioning::Existing)
        .await
        .unwrap();
    assert!(
        opened
            .dead_letter_url()
            .unwrap()
            .ends_with(&dead_letter_name(&spec.name))
    );
}
