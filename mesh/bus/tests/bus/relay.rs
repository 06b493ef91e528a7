//! The outbox and the relay on SQLite and PostgreSQL, with in-memory
//! publishers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cloudsec_bus::transport::memory::MemoryPublisher;
use cloudsec_bus::{Backoff, Envelope, Outbox, Relay, RelayConfig};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tokio_util::sync::CancellationToken;

use crate::support::{Backend, append_all, created, eventually, updated, with_db};

fn fast() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(50),
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
        publish_timeout: Duration::from_secs(5),
        ..RelayConfig::default()
    }
}

/// 3 aggregates, 10 events each, interleaved.
fn history() -> Vec<Envelope> {
    let mut events = Vec::new();
    for round in 0..10 {
        for doc in ["a", "b", "c"] {
            events.push(if round == 0 {
                created(doc)
            } else {
                updated(doc, &format!("v{round}"))
            });
        }
    }
    events
}

/// Each aggregate's event ids in the order `events` lists them.
fn per_aggregate(events: &[Envelope]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        map.entry(e.aggregate().to_owned())
            .or_default()
            .push(e.id.clone());
    }
    map
}

async fn attempts(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) AS n FROM bus_outbox",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

async fn publishes_in_order_per_aggregate(backend: Backend) {
    with_db(backend, |db| async move {
        let outbox = Outbox::new();
        let events = history();
        for chunk in events.chunks(4) {
            append_all(&db, &outbox, chunk).await;
        }
        assert_eq!(Outbox::pending(&db).await.unwrap(), 30);
        let publisher = MemoryPublisher::new();
        let relay = Relay::new(db.clone(), Arc::new(publisher.clone()), &outbox, fast()).unwrap();
        assert_eq!(relay.pump().await.unwrap(), 30);
        assert_eq!(Outbox::pending(&db).await.unwrap(), 0);
        let got = publisher.events();
        assert_eq!(got.len(), 30, "no duplicates");
        assert_eq!(per_aggregate(&got), per_aggregate(&events));
        assert_eq!(relay.pump().await.unwrap(), 0, "nothing twice");
    })
    .await;
}

#[tokio::test]
async fn relay_publishes_in_order_per_aggregate_sqlite() {
    publishes_in_order_per_aggregate(Backend::Sqlite).await;
}

#[tokio::test]
async fn relay_publishes_in_order_per_aggregate_postgres() {
    publishes_in_order_per_aggregate(Backend::Postgres).await;
}

async fn rolled_back_events_are_never_published(backend: Backend) {
    with_db(backend, |db| async move {
        let outbox = Outbox::new();
        let txn = db.begin().await.unwrap();
        outbox.append(&txn, &created("ghost")).await.unwrap();
        txn.rollback().await.unwrap();
        append_all(&db, &outbox, &[created("real")]).await;
        let publisher = MemoryPublisher::new();
        let relay = Relay::new(db.clone(), Arc::new(publisher.clone()), &outbox, fast()).unwrap();
        relay.pump().await.unwrap();
        let subjects: Vec<_> = publisher
            .events()
            .into_iter()
            .filter_map(|e| e.subject)
            .collect();
        assert_eq!(subjects, ["real"]);
    })
    .await;
}

#[tokio::test]
async fn rolled_back_events_are_never_published_sqlite() {
    rolled_back_events_are_never_published(Backend::Sqlite).await;
}

#[tokio::test]
async fn rolled_back_events_are_never_published_postgres() {
    rolled_back_events_are_never_published(Backend::Postgres).await;
}

/// The broker is down while events are committed, then comes back: the
/// running relay backs off, then delivers every event, in order.
async fn survives_a_broker_outage(backend: Backend) {
    with_db(backend, |db| async move {
        let outbox = Outbox::new();
        let publisher = MemoryPublisher::new();
        publisher.set_down(true);
        let relay = Relay::new(db.clone(), Arc::new(publisher.clone()), &outbox, fast()).unwrap();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(relay.run(shutdown.clone()));

        let events = history();
        for chunk in events.chunks(3) {
            append_all(&db, &outbox, chunk).await;
        }
        let tried = eventually(Duration::from_secs(10), || async {
            (attempts(&db).await >= 3).then_some(())
        })
        .await;
        assert!(
            tried.is_some(),
            "the relay keeps trying while the broker is down"
        );
        assert!(publisher.events().is_empty());
        assert_eq!(Outbox::pending(&db).await.unwrap(), 30);

        publisher.set_down(false);
        let drained = eventually(Duration::from_secs(10), || async {
            (Outbox::pending(&db).await.unwrap() == 0).then_some(())
        })
        .await;
        assert!(drained.is_some(), "every event goes out after recovery");
        let got = publisher.events();
        assert_eq!(got.len(), 30);
        assert_eq!(per_aggregate(&got), per_aggregate(&events));
        shutdown.cancel();
        running.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn relay_survives_a_broker_outage_sqlite() {
    survives_a_broker_outage(Backend::Sqlite).await;
}

#[tokio::test]
async fn relay_survives_a_broker_outage_postgres() {
    survives_a_broker_outage(Backend::Postgres).await;
}

/// A refused entry holds back the later events of its aggregate only, and
/// goes again first.
async fn a_refused_event_keeps_its_aggregate_in_order(backend: Backend) {
    with_db(backend, |db| async move {
        let outbox = Outbox::new();
        let events = vec![
            created("a"),
            created("b"),
            updated("a", "2"),
            updated("b", "2"),
        ];
        append_all(&db, &outbox, &events).await;
        let publisher = MemoryPublisher::new();
        publisher.refuse_once(&events[0].id);
        let relay = Relay::new(db.clone(), Arc::new(publisher.clone()), &outbox, fast()).unwrap();
        assert!(relay.pump().await.is_err(), "a refusal is a failed round");
        assert_eq!(
            Outbox::pending(&db).await.unwrap(),
            2,
            "a's two events wait"
        );
        relay.pump().await.unwrap();
        let got = publisher.events();
        assert_eq!(got.len(), 4);
        assert_eq!(per_aggregate(&got), per_aggregate(&events));
    })
    .await;
}

#[tokio::test]
async fn a_refused_event_keeps_its_aggregate_in_order_sqlite() {
    a_refused_event_keeps_its_aggregate_in_order(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_refused_event_keeps_its_aggregate_in_order_postgres() {
    a_refused_event_keeps_its_aggregate_in_order(Backend::Postgres).await;
}

/// Three relay replicas over one outbox: every event once, in order per
/// aggregate (PostgreSQL: shards locked with SKIP LOCKED; SQLite: the
/// lease lets one publish).
async fn replicas_share_the_outbox(backend: Backend) {
    with_db(backend, |db| async move {
        let outbox = Outbox::new();
        let mut events = Vec::new();
        for i in 0..40 {
            let doc = format!("doc-{}", i % 13);
            events.push(if i < 13 {
                created(&doc)
            } else {
                updated(&doc, &i.to_string())
            });
        }
        let publisher = MemoryPublisher::new();
        let shutdown = CancellationToken::new();
        let mut relays = Vec::new();
        for _ in 0..3 {
            let relay =
                Relay::new(db.clone(), Arc::new(publisher.clone()), &outbox, fast()).unwrap();
            relays.push(tokio::spawn(relay.run(shutdown.clone())));
        }
        for chunk in events.chunks(5) {
            append_all(&db, &outbox, chunk).await;
            // Every relay hears about it.
            outbox.committed();
            outbox.committed();
        }
        let drained = eventually(Duration::from_secs(15), || async {
            (Outbox::pending(&db).await.unwrap() == 0).then_some(())
        })
        .await;
        assert!(drained.is_some());
        shutdown.cancel();
        for relay in relays {
            relay.await.unwrap().unwrap();
        }
        let got = publisher.events();
        let unique: HashSet<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(unique.len(), 40);
        assert_eq!(got.len(), 40, "no event published twice");
        assert_eq!(per_aggregate(&got), per_aggregate(&events));
    })
    .await;
}

#[tokio::test]
async fn relay_replicas_share_the_outbox_sqlite() {
    replicas_share_the_outbox(Backend::Sqlite).await;
}

#[tokio::test]
async fn relay_replicas_share_the_outbox_postgres() {
    replicas_share_the_outbox(Backend::Postgres).await;
}

#[tokio::test]
async fn oversized_events_are_refused_at_append() {
    with_db(Backend::Sqlite, |db| async move {
        let mut event = created("big");
        event.data = vec![7; 300 * 1024];
        let txn = db.begin().await.unwrap();
        let err = Outbox::new().append(&txn, &event).await.unwrap_err();
        assert!(
            matches!(err, cloudsec_bus::BusError::TooLarge { .. }),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn bus_migrations_live_beside_a_service_s_own() {
    // A service's migrator and the bus's keep separate records, so both
    // run on one database in either order, and again.
    with_db(Backend::Sqlite, |db| async move {
        use sea_orm_migration::MigratorTrait;
        cloudsec_bus::Migrator::up(&db, None).await.unwrap();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM cloudsec_bus_migrations",
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, 4);
    })
    .await;
}

/// Publishes to `inner`, then never returns: a relay that dies after the
/// broker took the batch and before marking it.
#[derive(Debug)]
struct DiesAfterPublish {
    inner: MemoryPublisher,
    published: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl cloudsec_bus::Publisher for DiesAfterPublish {
    async fn publish(&self, batch: &[Envelope]) -> cloudsec_bus::Result<cloudsec_bus::Published> {
        let published = self.inner.publish(batch).await?;
        self.published.notify_one();
        std::future::pending::<()>().await;
        Ok(published)
    }
}

/// The relay is killed in the middle of a batch: the batch goes again
/// (a duplicate, which the inbox absorbs), and nothing is lost.
async fn killed_mid_batch_loses_nothing(backend: Backend) {
    with_db(backend, |db| async move {
        let outbox = Outbox::new();
        let events = history();
        append_all(&db, &outbox, &events).await;
        let publisher = MemoryPublisher::new();
        let config = RelayConfig {
            lease_ttl: Duration::from_millis(300),
            ..fast()
        };
        let published = Arc::new(tokio::sync::Notify::new());
        let dying = Relay::new(
            db.clone(),
            Arc::new(DiesAfterPublish {
                inner: publisher.clone(),
                published: published.clone(),
            }),
            &outbox,
            config.clone(),
        )
        .unwrap();
        let running = tokio::spawn(dying.run(CancellationToken::new()));
        published.notified().await;
        running.abort();
        let _ = running.await;
        assert_eq!(publisher.events().len(), 10, "one batch reached the broker");
        assert_eq!(
            Outbox::pending(&db).await.unwrap(),
            30,
            "but none was marked"
        );

        // Its replacement (after the SQLite lease expired) starts over.
        let replacement =
            Relay::new(db.clone(), Arc::new(publisher.clone()), &outbox, config).unwrap();
        let drained = eventually(Duration::from_secs(10), || async {
            replacement.pump().await.ok();
            (Outbox::pending(&db).await.unwrap() == 0).then_some(())
        })
        .await;
        assert!(drained.is_some());
        let got = publisher.events();
        let unique: HashSet<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(unique.len(), 30, "nothing lost");
        assert_eq!(got.len(), 40, "the interrupted batch went twice");
    })
    .await;
}

#[tokio::test]
async fn relay_killed_mid_batch_loses_nothing_sqlite() {
    killed_mid_batch_loses_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn relay_killed_mid_batch_loses_nothing_postgres() {
    killed_mid_batch_loses_nothing(Backend::Postgres).await;
}
