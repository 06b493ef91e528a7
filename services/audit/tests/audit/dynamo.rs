//! The audit log on DynamoDB (moto): concurrent writers on one tenant
//! never fork its chain, redelivery is a no-op, a changed or deleted item
//! is found by verification, tenants stay apart, pagination and filters
//! work as on SQL, and `existing` mode does not create the table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use cloudsec_audit::dynamo::{Attempt, DynamoConfig, DynamoStore};
use cloudsec_audit::metrics::AuditMetrics;
use cloudsec_audit::store::{Appended, ListParams, ListQuery};
use cloudsec_audit::{AuditError, AuditLog};
use cloudsec_bus::{Envelope, Provisioning};
use cloudsec_proto::events::v1 as ev;
use cloudsec_testkit::{moto_url, unique};

const CREATED: &str = "cloudsec.events.v1.DocumentCreated";

fn created(tenant: &str, document: &str) -> Envelope {
    let mut event = Envelope::new(
        "/cloudsec/documents",
        &ev::DocumentCreated {
            document_id: document.into(),
            tenant: tenant.into(),
            actor: "alice".into(),
            title: format!("title of {document}"),
            ..Default::default()
        },
    );
    event.subject = Some(document.into());
    event
}

fn deleted(tenant: &str, document: &str) -> Envelope {
    let mut event = Envelope::new(
        "/cloudsec/documents",
        &ev::DocumentDeleted {
            document_id: document.into(),
            tenant: tenant.into(),
            actor: "alice".into(),
            ..Default::default()
        },
    );
    event.subject = Some(document.into());
    event
}

/// A replica of the audit service on `table`: its own client, its own
/// in-process locks.
async fn replica(url: &str, table: &str) -> AuditLog {
    let store = DynamoStore::connect(&DynamoConfig::emulator(table, url))
        .await
        .unwrap();
    AuditLog::open_dynamodb(store, "audit", AuditMetrics::default())
        .await
        .unwrap()
}

fn all(log: &AuditLog, tenant: &str) -> ListQuery {
    ListQuery::validate(
        ListParams {
            page_size: 500,
            ..Default::default()
        },
        tenant,
        log.page_tokens(),
    )
    .unwrap()
}

/// Appends `events` for one tenant all at once, spread over `replicas`.
async fn append_concurrently(replicas: &[AuditLog], events: &[Envelope]) {
    let mut tasks = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let log = replicas[i % replicas.len()].clone();
        let event = event.clone();
        tasks.push(tokio::spawn(async move { log.append(&event).await }));
    }
    for task in tasks {
        assert!(matches!(
            task.await.unwrap().unwrap(),
            Appended::Recorded(_)
        ));
    }
}

/// Many writers in one replica (as the subscriber runs handlers): every
/// event is recorded once, numbered 1..=N with no gap and no fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_tenant_never_fork_the_chain() {
    let Some(url) = moto_url() else { return };
    let table = unique("audit");
    let log = replica(&url, &table).await;
    let events: Vec<Envelope> = (0..40).map(|i| created("acme", &format!("d{i}"))).collect();
    append_concurrently(std::slice::from_ref(&log), &events).await;
    let verdict = log.verify("acme").await.unwrap();
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!((verdict.records_checked, verdict.head_seq), (40, 40));
    let page = log.list("acme", &all(&log, "acme")).await.unwrap();
    let seqs: Vec<i64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    let ids: HashSet<&str> = page.records.iter().map(|r| r.event_id.as_str()).collect();
    let sent: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, sent, "every event once");
}

/// The mechanism itself, deterministically: a writer whose head is stale
/// (another replica appended after it read the head) has its whole
/// transaction cancelled by the head's condition: no record, no inbox
/// entry, the chain intact. The retry loop then reads the new head.
#[tokio::test]
async fn a_stale_head_cancels_the_whole_transaction() {
    let Some(url) = moto_url() else { return };
    let table = unique("audit");
    let log = replica(&url, &table).await;
    let store = log.dynamodb().unwrap().clone();
    let first = created("acme", "d1");
    log.append(&first).await.unwrap();
    let stale = store.head("acme").await.unwrap().unwrap();
    assert_eq!(stale.0, 1);
    // Another replica appends: the head moves to 2.
    replica(&url, &table)
        .await
        .append(&created("acme", "d2"))
        .await
        .unwrap();
    // A record built on the stale head, at seq 2 (taken) ...
    let late = created("acme", "d3");
    let mut record = log.list("acme", &all(&log, "acme")).await.unwrap().records[0].clone();
    record.event_id = late.id.clone();
    record.seq = 2;
    record.prev_hash = stale.1.clone();
    record.hash = record.compute_hash();
    assert_eq!(
        store
            .try_append("audit", &late.id, Some(&stale), &record, None)
            .await
            .unwrap(),
        Attempt::Stale
    );
    // ... and at seq 3 (free), still on the stale head: refused too.
    record.seq = 3;
    record.hash = record.compute_hash();
    assert_eq!(
        store
            .try_append("audit", &late.id, Some(&stale), &record, None)
            .await
            .unwrap(),
        Attempt::Stale
    );
    // Nothing of it was written: the inbox entry neither, so the event
    // is appended normally afterwards, at 3, linked to record 2.
    assert!(log.verify("acme").await.unwrap().ok);
    let Appended::Recorded(appended) = log.append(&late).await.unwrap() else {
        panic!("the late event was taken for a duplicate");
    };
    assert_eq!(appended.seq, 3);
    let verdict = log.verify("acme").await.unwrap();
    assert!(verdict.ok && verdict.head_seq == 3, "{verdict:?}");
}

/// Replicas racing for one tenant's head: the losers' transactions are
/// cancelled by the head's condition and retried, so the chain never
/// forks (one record per seq, links intact, no event twice) and every
/// acknowledged append is in it.
///
/// moto on its own fails this: its TransactWriteItems applies the items
/// one by one and, when it cancels a transaction, restores the whole table
/// as it was when that transaction started, undoing (or half undoing)
/// another that committed meanwhile. The moto the test kit and
/// scripts/test start (`testkit/moto_server.py`) runs DynamoDB's writes one
/// at a time, as DynamoDB's serializable transactions appear to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_replicas_never_fork_the_chain() {
    let Some(url) = moto_url() else { return };
    let table = unique("audit");
    let replicas = [
        replica(&url, &table).await,
        replica(&url, &table).await,
        replica(&url, &table).await,
    ];
    let events: Vec<Envelope> = (0..36).map(|i| created("acme", &format!("d{i}"))).collect();
    append_concurrently(&replicas, &events).await;
    let log = &replicas[0];
    let verdict = log.verify("acme").await.unwrap();
    assert!(verdict.ok, "{verdict:?}");
    let page = log.list("acme", &all(log, "acme")).await.unwrap();
    let seqs: Vec<i64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!((verdict.records_checked, verdict.head_seq), (36, 36));
    assert_eq!(seqs, (1..=36).collect::<Vec<_>>());
    let ids: HashSet<&str> = page.records.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len(), page.records.len(), "no event twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_is_recorded_once() {
    let Some(url) = moto_url() else { return };
    let table = unique("audit");
    let (a, b) = (replica(&url, &table).await, replica(&url, &table).await);
    let event = created("acme", "d1");
    assert!(matches!(
        a.append(&event).await.unwrap(),
        Appended::Recorded(_)
    ));
    assert_eq!(a.append(&event).await.unwrap(), Appended::Duplicate);
    // The same event delivered to two replicas at once: one record.
    let twice = created("acme", "d2");
    let (x, y) = tokio::join!(a.append(&twice), b.append(&twice));
    let outcomes = [x.unwrap(), y.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Appended::Recorded(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    let page = a.list("acme", &all(&a, "acme")).await.unwrap();
    assert_eq!(page.records.len(), 2);
    assert!(a.verify("acme").await.unwrap().ok);
}

#[tokio::test]
async fn a_changed_or_deleted_item_is_detected() {
    let Some(url) = moto_url() else { return };
    let table = unique("audit");
    let log = replica(&url, &table).await;
    for i in 0..5 {
        log.append(&created("acme", &format!("d{i}")))
            .await
            .unwrap();
    }
    assert!(log.verify("acme").await.unwrap().ok);
    let store = log.dynamodb().unwrap().clone();
    let key = |seq: i64| {
        [
            ("pk".to_owned(), AttributeValue::S("tenant#acme".into())),
            ("sk".to_owned(), AttributeValue::S(format!("{seq:020}"))),
        ]
    };
    let original = store
        .client()
        .get_item()
        .table_name(&table)
        .set_key(Some(key(3).into()))
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
        .unwrap();

    // Someone with write access edits record 3's actor.
    store
        .client()
        .update_item()
        .table_name(&table)
        .set_key(Some(key(3).into()))
        .update_expression("SET actor = :a")
        .expression_attribute_values(":a", AttributeValue::S("mallory".into()))
        .send()
        .await
        .unwrap();
    let verdict = log.verify("acme").await.unwrap();
    assert!(!verdict.ok);
    assert_eq!(verdict.first_invalid_seq, 3);
    assert_eq!(verdict.reason, "hash does not match the record's contents");

    // Put back, then delete record 2.
    store
        .client()
        .put_item()
        .table_name(&table)
        .set_item(Some(original))
        .send()
        .await
        .unwrap();
    assert!(log.verify("acme").await.unwrap().ok);
    store
        .client()
        .delete_item()
        .table_name(&table)
        .set_key(Some(key(2).into()))
        .send()
        .await
        .unwrap();
    let verdict = log.verify("acme").await.unwrap();
    assert!(!verdict.ok);
    assert_eq!(verdict.first_invalid_seq, 2);
    assert_eq!(verdict.reason, "record 2 is missing");

    // Deleting the newest record is caught by the head.
    store
        .client()
        .delete_item()
        .table_name(&table)
        .set_key(Some(key(5).into()))
        .send()
        .await
        .unwrap();
    let other = replica(&url, &table).await;
    let verdict = other.verify("acme").await.unwrap();
    assert_eq!(verdict.first_invalid_seq, 2, "the first fault is reported");

    // An item of the wrong shape is a corrupt row, not a panic.
    store
        .client()
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("tenant#acme".into()))
        .item("sk", AttributeValue::S(format!("{:020}", 2)))
        .item("tenant", AttributeValue::N("7".into()))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        log.verify("acme").await,
        Err(AuditError::Corrupt(_))
    ));
}

#[tokio::test]
async fn tenants_are_isolated_and_pages_follow_each_other() {
    let Some(url) = moto_url() else { return };
    let table = unique("audit");
    let log = replica(&url, &table).await;
    for i in 0..7 {
        log.append(&created("acme", &format!("a{i}")))
            .await
            .unwrap();
    }
    log.append(&deleted("acme", "a3")).await.unwrap();
    for i in 0..2 {
        log.append(&created("globex", &format!("g{i}")))
            .await
            .unwrap();
    }

    // Pages of 3 over acme's 8 records.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let query = ListQuery::validate(
            ListParams {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            },
            "acme",
            log.page_tokens(),
        )
        .unwrap();
        let page = log.list("acme", &query).await.unwrap();
        pages += 1;
        seen.extend(page.records.iter().map(|r| r.seq));
        assert!(page.records.iter().all(|r| r.tenant == "acme"));
        match page.next_page_token {
            Some(next) => token = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());

    // Filters: by type and by subject.
    let by_type = ListQuery::validate(
        ListParams {
            page_size: 2,
            event_type: CREATED.into(),
            ..Default::default()
        },
        "acme",
        log.page_tokens(),
    )
    .unwrap();
    let page = log.list("acme", &by_type).await.unwrap();
    assert_eq!(page.records.len(), 2);
    assert!(page.next_page_token.is_some());
    let by_subject = ListQuery::validate(
        ListParams {
            subject: "a3".into(),
            ..Default::default()
        },
        "acme",
        log.page_tokens(),
    )
    .unwrap();
    let page = log.list("acme", &by_subject).await.unwrap();
    assert_eq!(page.records.len(), 2, "created and deleted");
    assert!(page.next_page_token.is_none());

    // globex sees its own two, with its own numbering, and verifies alone.
    let page = log.list("globex", &all(&log, "globex")).await.unwrap();
    assert_eq!(
        page.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(page.records.iter().all(|r| r.tenant == "globex"));
    assert_eq!(log.verify("globex").await.unwrap().head_seq, 2);
    // acme's page token means nothing to globex.
    let first = log
        .list(
            "acme",
            &ListQuery::validate(
                ListParams {
                    page_size: 1,
                    ..Default::default()
                },
                "acme",
                log.page_tokens(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let stolen = ListParams {
        page_token: first.next_page_token.unwrap(),
        page_size: 1,
        ..Default::default()
    };
    assert!(ListQuery::validate(stolen, "globex", log.page_tokens()).is_err());
    // A second replica reads the same page token key, so its pages follow.
    let other = replica(&url, &table).await;
    let resumed = ListQuery::validate(
        ListParams {
            page_size: 3,
            page_token: token,
            ..Default::default()
        },
        "acme",
        other.page_tokens(),
    )
    .unwrap();
    assert_eq!(resumed.after, 6);
}

#[tokio::test]
async fn existing_mode_needs_the_table() {
    let Some(url) = moto_url() else { return };
    let mut config = DynamoConfig::emulator(&unique("missing"), &url);
    config.provisioning = Provisioning::Existing;
    let error = DynamoStore::connect(&config).await.unwrap_err().to_string();
    assert!(
        error.starts_with("dynamodb refused GetItem missing-")
            && error.contains("ResourceNotFoundException"),
        "{error}"
    );
    config.provisioning = Provisioning::Create;
    DynamoStore::connect(&config).await.unwrap();
    config.provisioning = Provisioning::Existing;
    DynamoStore::connect(&config).await.unwrap();
}
