//! The event bus benchmark (`scripts/bench-bus`), one run, three parts:
//!
//! 1. Document create latency with the outbox (the documents store's create
//!    transaction: row, labels and the event in one transaction, the relay
//!    publishing to the embedded bus meanwhile) against the same transaction
//!    without the event append, interleaved in blocks so drift hits both
//!    alike.
//! 2. Relay throughput: a pre-filled outbox drained by `Relay::pump` into a
//!    null publisher, into the embedded bus, and into SNS on moto.
//! 3. Commit -> handler latency on the embedded bus at a steady rate.
//!
//! Prints a markdown report. Arguments (all optional):
//! `--postgres URL` (also measure on PostgreSQL; a scratch database is made
//! and dropped), `--moto URL`, `--creates N`, `--relay-events N`,
//! `--rate EVENTS_PER_S`, `--seconds S`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudsec_bus::transport::aws::{AwsClients, AwsSettings, sdk_config, sns_topic};
use cloudsec_bus::transport::memory::NullPublisher;
use cloudsec_bus::{
    EmbeddedBus, Envelope, Outbox, Outcome, Provisioning, Publisher, QueueSpec, Relay, RelayConfig,
    Subscriber, SubscriberConfig, handler_fn,
};
use cloudsec_documents::domain::{Caller, Classification, NewDocument};
use cloudsec_documents::entity::{document, document_label};
use cloudsec_proto::events::v1::DocumentCreated;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};
use tokio_util::sync::CancellationToken;

struct Args {
    postgres: Option<String>,
    moto: Option<String>,
    creates: usize,
    relay_events: usize,
    rate: u64,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        postgres: None,
        moto: None,
        creates: 3000,
        relay_events: 20_000,
        rate: 500,
        seconds: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--postgres" => a.postgres = Some(value).filter(|v| !v.is_empty()),
            "--moto" => a.moto = Some(value).filter(|v| !v.is_empty()),
            "--creates" => a.creates = value.parse().expect("--creates N"),
            "--relay-events" => a.relay_events = value.parse().expect("--relay-events N"),
            "--rate" => a.rate = value.parse().expect("--rate N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// A database for one measurement: a SQLite file in `dir`, or a scratch
/// PostgreSQL database (dropped by [`Scratch::drop_all`]).
struct Scratch {
    dir: tempfile::TempDir,
    postgres: Option<(String, Vec<String>)>,
}

impl Scratch {
    fn new(postgres: Option<&str>) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            postgres: postgres.map(|url| (url.to_owned(), Vec::new())),
        }
    }

    async fn sqlite(&self, name: &str) -> DatabaseConnection {
        let url = format!("sqlite://{}", self.dir.path().join(name).display());
        open(&url).await
    }

    async fn postgres(&mut self, name: &str) -> Option<DatabaseConnection> {
        let (admin_url, made) = self.postgres.as_mut()?;
        let db_name = format!("bench_bus_{name}_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(admin_url.as_str())
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {db_name}"))
            .await
            .unwrap();
        let _ = admin.close().await;
        made.push(db_name.clone());
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        Some(open(&format!("{base}/{db_name}")).await)
    }

    async fn drop_all(self) {
        if let Some((admin_url, made)) = self.postgres {
            let admin = sea_orm::Database::connect(admin_url.as_str())
                .await
                .unwrap();
            for name in made {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        }
    }
}

async fn open(url: &str) -> DatabaseConnection {
    let db = cloudsec_runtime::db::connect::<cloudsec_documents::Migrator>(url)
        .await
        .unwrap();
    cloudsec_bus::migration::migrate(&db).await.unwrap();
    db
}

fn new_document(i: usize) -> NewDocument {
    NewDocument {
        title: format!("document {i}"),
        classification: Classification::Internal,
        labels: BTreeMap::from([("team".to_owned(), "red".to_owned())]),
        content: "x".repeat(1024),
        content_type: "text/plain".to_owned(),
    }
}

/// A create transaction as the documents store runs it (row and labels,
/// `BEGIN IMMEDIATE` on SQLite), with the `DocumentCreated` event appended
/// to the outbox in the same transaction when `outbox` is given. Both sides
/// of the comparison run exactly these statements, so the difference is the
/// outbox alone (content storage, which the store does first and outside
/// the transaction, is left out of both).
async fn create_document(
    db: &DatabaseConnection,
    caller: &Caller,
    new: NewDocument,
    outbox: Option<&Outbox>,
) {
    let now = chrono::Utc::now();
    let id = uuid::Uuid::now_v7();
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await
        .unwrap();
    let etag = uuid::Uuid::new_v4().simple().to_string();
    let event = DocumentCreated {
        document_id: id.to_string(),
        tenant: caller.tenant.clone(),
        actor: caller.user.clone(),
        title: new.title.clone(),
        classification: new.classification.number(),
        labels: new.labels.clone().into_iter().collect(),
        content_type: new.content_type.clone(),
        size_bytes: new.content.len() as i64,
        etag: etag.clone(),
        create_time: None,
    };
    document::Entity::insert(document::ActiveModel {
        id: Set(id),
        tenant: Set(caller.tenant.clone()),
        owner: Set(caller.user.clone()),
        title: Set(new.title),
        classification: Set(new.classification.as_str().to_owned()),
        size_bytes: Set(new.content.len() as i64),
        content: Set(new.content),
        content_generation: Set(None),
        content_storage: Set("inline".to_owned()),
        content_type: Set(new.content_type),
        etag: Set(etag),
        create_time: Set(now),
        update_time: Set(now),
    })
    .exec_without_returning(&txn)
    .await
    .unwrap();
    for (key, value) in new.labels {
        document_label::Entity::insert(document_label::ActiveModel {
            document_id: Set(id),
            key: Set(key),
            value: Set(value),
        })
        .exec_without_returning(&txn)
        .await
        .unwrap();
    }
    if let Some(outbox) = outbox {
        outbox
            .append(&txn, &Envelope::new("/cloudsec/documents", &event))
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    if let Some(outbox) = outbox {
        outbox.committed();
    }
}

/// Part 1 on one backend: p50/p99 with and without the outbox.
async fn create_latency(db: DatabaseConnection, bus_db: DatabaseConnection, n: usize) -> String {
    let bus = EmbeddedBus::new(bus_db);
    bus.provision(&QueueSpec::new("bench", &[]), Provisioning::Create)
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
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let caller = Caller::trusted("bench", "bencher");
    // Warm-up: pools, statement caches, the first pages of each table.
    for i in 0..100 {
        create_document(&db, &caller, new_document(i), Some(&outbox)).await;
        create_document(&db, &caller, new_document(i), None).await;
    }
    let (mut with, mut without) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let block = 50;
    for round in 0..n.div_ceil(block) {
        for i in 0..block {
            let doc = new_document(round * block + i);
            let start = Instant::now();
            if round % 2 == 0 {
                create_document(&db, &caller, doc, Some(&outbox)).await;
                with.push(start.elapsed());
            } else {
                create_document(&db, &caller, doc, None).await;
                without.push(start.elapsed());
            }
        }
    }
    stop.cancel();
    relay_task.await.unwrap().unwrap();
    with.sort();
    without.sort();
    let (w50, w99, o50, o99) = (
        percentile(&with, 50.0),
        percentile(&with, 99.0),
        percentile(&without, 50.0),
        percentile(&without, 99.0),
    );
    format!(
        "| {} | {} | {} | {} | {} | {:.2}x | {:.2}x |",
        with.len() + without.len(),
        ms(o50),
        ms(o99),
        ms(w50),
        ms(w99),
        w50.as_secs_f64() / o50.as_secs_f64(),
        w99.as_secs_f64() / o99.as_secs_f64(),
    )
}

/// Fills the outbox with `n` events, 100 per transaction.
async fn fill(db: &DatabaseConnection, n: usize) {
    let outbox = Outbox::new();
    for chunk in 0..n.div_ceil(100) {
        let txn = db.begin().await.unwrap();
        for i in 0..100.min(n - chunk * 100) {
            let event = DocumentCreated {
                document_id: format!("doc-{}", (chunk * 100 + i) % 500),
                tenant: "bench".into(),
                actor: "bencher".into(),
                title: "a title of ordinary length".into(),
                ..Default::default()
            };
            outbox
                .append(&txn, &Envelope::new("/cloudsec/bench", &event))
                .await
                .unwrap();
        }
        txn.commit().await.unwrap();
    }
}

/// Part 2: events per second that one relay drains into `publisher`.
async fn relay_throughput(
    db: DatabaseConnection,
    publisher: Arc<dyn Publisher>,
    n: usize,
) -> (f64, Duration) {
    fill(&db, n).await;
    let relay = Relay::new(
        db.clone(),
        publisher,
        &Outbox::new(),
        RelayConfig::default(),
    )
    .unwrap();
    let start = Instant::now();
    let mut published = 0;
    while published < n {
        published += relay.pump().await.unwrap();
    }
    let took = start.elapsed();
    assert_eq!(Outbox::pending(&db).await.unwrap(), 0);
    (n as f64 / took.as_secs_f64(), took)
}

/// Part 3: commit -> handler on the embedded bus at `rate` events/s.
async fn end_to_end(
    outbox_db: DatabaseConnection,
    bus_db: DatabaseConnection,
    rate: u64,
    seconds: u64,
) -> (usize, Duration, Duration, Duration) {
    let bus = EmbeddedBus::new(bus_db);
    let queue = bus
        .provision(&QueueSpec::new("latency", &[]), Provisioning::Create)
        .await
        .unwrap();
    let outbox = Outbox::new();
    let relay = Relay::new(
        outbox_db.clone(),
        Arc::new(bus.clone()),
        &outbox,
        RelayConfig::default(),
    )
    .unwrap();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let seen = latencies.clone();
    let subscriber = Subscriber::new(
        queue,
        handler_fn(move |event: Envelope, _| {
            let seen = seen.clone();
            async move {
                let sent = event.time;
                let now = chrono::Utc::now();
                let lag = (now - sent).to_std().unwrap_or_default();
                seen.lock().unwrap().push(lag);
                Outcome::Ack
            }
        }),
        SubscriberConfig::default(),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let subscriber_task = tokio::spawn(subscriber.run(stop.clone()));

    let total = (rate * seconds) as usize;
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        ticks.tick().await;
        let event = DocumentCreated {
            document_id: format!("doc-{i}"),
            tenant: "bench".into(),
            actor: "bencher".into(),
            ..Default::default()
        };
        let txn = outbox_db.begin().await.unwrap();
        outbox
            .append(&txn, &Envelope::new("/cloudsec/bench", &event))
            .await
            .unwrap();
        txn.commit().await.unwrap();
        outbox.committed();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.lock().unwrap().len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    relay_task.await.unwrap().unwrap();
    subscriber_task.await.unwrap().unwrap();
    let mut all = latencies.lock().unwrap().clone();
    all.sort();
    (
        all.len(),
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or_default(),
    )
}

#[tokio::main]
async fn main() {
    let a = args();
    let mut scratch = Scratch::new(a.postgres.as_deref());
    println!("## Event bus benchmark\n");
    println!(
        "Host: {} cores. Release build. Creates: {}; relay events: {}; steady rate {} events/s for {} s.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.creates,
        a.relay_events,
        a.rate,
        a.seconds
    );

    println!("### Document create latency, outbox vs none (ms)\n");
    println!(
        "| backend | creates | p50 without | p99 without | p50 with outbox | p99 with outbox | p50 ratio | p99 ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let row = create_latency(
        scratch.sqlite("docs-latency.db").await,
        scratch.sqlite("bus-latency.db").await,
        a.creates,
    )
    .await;
    println!("| SQLite (file, WAL) {row}");
    if let Some(db) = scratch.postgres("latency").await {
        let bus_db = scratch.postgres("latencybus").await.unwrap();
        let row = create_latency(db, bus_db, a.creates).await;
        println!("| PostgreSQL {row}");
    }

    println!("\n### Relay throughput (one relay, batches of 10)\n");
    println!("| outbox | publisher | events | seconds | events/s |");
    println!("|---|---|---|---|---|");
    let null = Arc::new(NullPublisher::new());
    let (eps, took) = relay_throughput(
        scratch.sqlite("relay-null.db").await,
        null.clone(),
        a.relay_events,
    )
    .await;
    println!(
        "| SQLite | null | {} | {:.2} | {eps:.0} |",
        a.relay_events,
        took.as_secs_f64()
    );
    if let Some(db) = scratch.postgres("relaynull").await {
        let (eps, took) =
            relay_throughput(db, Arc::new(NullPublisher::new()), a.relay_events).await;
        println!(
            "| PostgreSQL | null | {} | {:.2} | {eps:.0} |",
            a.relay_events,
            took.as_secs_f64()
        );
    }
    let bus = EmbeddedBus::new(scratch.sqlite("relay-bus-queues.db").await);
    bus.provision(&QueueSpec::new("sink", &[]), Provisioning::Create)
        .await
        .unwrap();
    let (eps, took) = relay_throughput(
        scratch.sqlite("relay-bus.db").await,
        Arc::new(bus),
        a.relay_events,
    )
    .await;
    println!(
        "| SQLite | embedded bus (SQLite, 1 queue) | {} | {:.2} | {eps:.0} |",
        a.relay_events,
        took.as_secs_f64()
    );
    if let Some(url) = &a.moto {
        let settings = AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.clone()),
            dummy_credentials: true,
        };
        let clients = AwsClients::new(&sdk_config(&settings, None).await);
        let topic = sns_topic(
            &clients.sns,
            &format!("bench-{}", uuid::Uuid::new_v4().simple()),
            Provisioning::Create,
        )
        .await
        .unwrap();
        let n = (a.relay_events / 10).max(100);
        let (eps, took) =
            relay_throughput(scratch.sqlite("relay-sns.db").await, Arc::new(topic), n).await;
        println!(
            "| SQLite | SNS PublishBatch on moto (a Python emulator; not AWS's speed) | {n} | {:.2} | {eps:.0} |",
            took.as_secs_f64()
        );
    }

    println!("\n### Commit -> handler latency, embedded bus (SQLite outbox and bus)\n");
    let (count, p50, p99, max) = end_to_end(
        scratch.sqlite("e2e-outbox.db").await,
        scratch.sqlite("e2e-bus.db").await,
        a.rate,
        a.seconds,
    )
    .await;
    println!("| rate | events handled | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} events/s | {count} | {} | {} | {} |",
        a.rate,
        ms(p50),
        ms(p99),
        ms(max)
    );
    scratch.drop_all().await;
}
