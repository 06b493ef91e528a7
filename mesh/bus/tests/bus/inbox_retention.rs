//! The inbox's retention: on SQL a purge deletes handled entries past the
//! window and nothing else; on DynamoDB (moto) every entry carries the TTL
//! attribute, the table's TTL is on, and the claims behave as on SQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use cloudsec_bus::dynamo_inbox::{DynamoInbox, TTL_ATTRIBUTE};
use cloudsec_bus::{Claim, Inbox, Provisioning};
use cloudsec_testkit::{moto_url, unique};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

const DAY_MS: i64 = 24 * 3600 * 1000;

#[tokio::test]
async fn sql_purge_deletes_only_handled_entries_past_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bus.db").display());
    let db = sea_orm::Database::connect(&url).await.unwrap();
    cloudsec_bus::migration::migrate(&db).await.unwrap();
    let inbox = Inbox::new(db.clone(), "audit");
    let other = Inbox::new(db.clone(), "mailer");
    assert!(inbox.record("old").await.unwrap());
    assert!(inbox.record("fresh").await.unwrap());
    assert!(other.record("old").await.unwrap());
    let Claim::Acquired(_) = inbox
        .claim("busy", "m1", Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("claim refused");
    };
    // Age "old" (both subscribers) and the claim to 16 days.
    let now = chrono::Utc::now().timestamp_millis();
    db.execute_raw(Statement::from_string(
        DbBackend::Sqlite,
        format!(
            "UPDATE bus_inbox SET handled_at_ms = {} WHERE event_id IN ('old', 'busy')",
            now - 16 * DAY_MS
        ),
    ))
    .await
    .unwrap();

    let purged = inbox
        .purge(Duration::from_secs(15 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(purged, 1, "only audit's handled `old`");
    assert!(!inbox.seen("old").await.unwrap());
    assert!(inbox.seen("fresh").await.unwrap());
    // Another subscriber's entries and a claim in progress stay.
    assert!(other.seen("old").await.unwrap());
    assert!(matches!(
        inbox
            .claim("busy", "m2", Duration::from_secs(60))
            .await
            .unwrap(),
        Claim::Busy { .. }
    ));
    // A purged event id is new again (its copies are long gone by then).
    assert!(inbox.record("old").await.unwrap());
}

async fn dynamo_inbox(url: &str) -> DynamoInbox {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "cloudsec", "cloudsec", None, None, "test",
        ))
        .load()
        .await;
    DynamoInbox::open(
        aws_sdk_dynamodb::Client::new(&config),
        &unique("inbox"),
        Duration::from_secs(15 * 24 * 3600),
        Provisioning::Create,
    )
    .await
    .unwrap()
}

async fn expires_at(store: &DynamoInbox, subscriber: &str, event_id: &str) -> Option<i64> {
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            AttributeValue::S(DynamoInbox::key(subscriber, event_id)),
        )
        .key("sk", AttributeValue::S("#".into()))
        .send()
        .await
        .unwrap()
        .item?;
    match item.get(TTL_ATTRIBUTE) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_inbox_sets_the_ttl_and_claims_once() {
    let Some(url) = moto_url() else { return };
    let store = dynamo_inbox(&url).await;
    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let description = ttl.time_to_live_description().unwrap();
    assert_eq!(description.attribute_name(), Some(TTL_ATTRIBUTE));
    assert_eq!(
        description.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );

    let inbox = Inbox::dynamodb(store.clone(), "audit");
    let lease = Duration::from_secs(60);
    let Claim::Acquired(token) = inbox.claim("e1", "m1", lease).await.unwrap() else {
        panic!("first claim refused");
    };
    // The TTL attribute: about 15 days from now, in epoch seconds.
    let now = chrono::Utc::now().timestamp();
    let expires = expires_at(&store, "audit", "e1").await.unwrap();
    assert!(
        (now + 15 * 24 * 3600 - 5..=now + 15 * 24 * 3600 + 5).contains(&expires),
        "{expires} vs {now}"
    );
    assert!(matches!(
        inbox.claim("e1", "m2", lease).await.unwrap(),
        Claim::Busy { message_id, .. } if message_id == "m1"
    ));
    assert!(!inbox.seen("e1").await.unwrap());
    assert!(inbox.extend("e1", &token, lease).await.unwrap());
    inbox.complete("e1", &token).await.unwrap();
    assert!(inbox.seen("e1").await.unwrap());
    assert_eq!(
        inbox.claim("e1", "m3", lease).await.unwrap(),
        Claim::Handled
    );
    assert!(expires_at(&store, "audit", "e1").await.is_some());
    // A released claim lets the next copy run; a stale token extends nothing.
    let Claim::Acquired(second) = inbox.claim("e2", "m4", lease).await.unwrap() else {
        panic!("claim refused");
    };
    inbox.release("e2", &second).await.unwrap();
    assert!(!inbox.extend("e2", &second, lease).await.unwrap());
    assert!(matches!(
        inbox.claim("e2", "m5", lease).await.unwrap(),
        Claim::Acquired(_)
    ));
    // record: once; subscribers are apart; purge leaves it to TTL.
    assert!(inbox.record("e3").await.unwrap());
    assert!(!inbox.record("e3").await.unwrap());
    assert!(expires_at(&store, "audit", "e3").await.is_some());
    let mailer = Inbox::dynamodb(store.clone(), "mailer");
    assert!(!mailer.seen("e3").await.unwrap());
    assert_eq!(inbox.purge(Duration::ZERO).await.unwrap(), 0);
    assert!(inbox.seen("e3").await.unwrap());

    // Many copies at once: one claim wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(async move {
            inbox.claim("e4", &format!("copy{i}"), lease).await.unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Claim::Acquired(_)) {
            won += 1;
        }
    }
    assert_eq!(won, 1);

    // `existing` mode finds the table it was given, and refuses a missing one.
    let client = store.client().clone();
    DynamoInbox::open(
        client.clone(),
        store.table(),
        Duration::from_secs(60),
        Provisioning::Existing,
    )
    .await
    .unwrap();
    assert!(
        DynamoInbox::open(
            client,
            &unique("missing"),
            Duration::from_secs(60),
            Provisioning::Existing
        )
        .await
        .is_err()
    );
}
