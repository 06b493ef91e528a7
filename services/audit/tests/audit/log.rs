//! Events in, records out: the subscriber on a real embedded bus, the
//! append transaction, idempotency and the handler's outcomes.

use std::collections::HashMap;

use cloudsec_audit::chain::{AuditRecord, GENESIS_HASH, format_time};
use cloudsec_audit::entity::audit_record;
use cloudsec_audit::store::Appended;
use cloudsec_audit::subscriber::handle;
use cloudsec_bus::{Envelope, Outcome};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;

use crate::support::{
    CREATED, Harness, SOURCE, created, deleted, eventually, record_count, relabelled, signed_up,
    unknown, updated,
};

/// A tenant's records, in seq order.
async fn chain_of(h: &Harness, tenant: &str) -> Vec<audit_record::Model> {
    audit_record::Entity::find()
        .filter(audit_record::Column::Tenant.eq(tenant))
        .order_by_asc(audit_record::Column::Seq)
        .all(&h.db)
        .await
        .unwrap()
}

fn domain(row: &audit_record::Model) -> AuditRecord {
    AuditRecord {
        tenant: row.tenant.clone(),
        seq: row.seq,
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        source: row.source.clone(),
        subject: row.subject.clone(),
        actor: row.actor.clone(),
        occur_time: row.occur_time,
        record_time: row.record_time,
        summary: row.summary.clone(),
        prev_hash: row.prev_hash.clone(),
        hash: row.hash.clone(),
    }
}

/// Checks the links of a chain read straight from the table.
fn assert_linked(rows: &[audit_record::Model]) {
    let mut prev = GENESIS_HASH.to_owned();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i as i64 + 1, "seq without gaps");
        assert_eq!(
            row.prev_hash, prev,
            "record {} links to its predecessor",
            row.seq
        );
        assert_eq!(
            row.hash,
            domain(row).compute_hash(),
            "record {} hash",
            row.seq
        );
        assert_eq!(row.hash.len(), 64);
        prev = row.hash.clone();
    }
}

fn summary(row: &audit_record::Model) -> Value {
    serde_json::from_str(&row.summary).unwrap()
}

pub(crate) async fn bus_events_become_per_tenant_chains(h: Harness) {
    let service = h.start().await;
    let acme = [
        created("acme", "d1"),
        updated("acme", "d1"),
        relabelled("acme", "d1"),
        deleted("acme", "d1"),
        unknown("acme"),
    ];
    let globex = [signed_up("globex", "u1"), created("globex", "d9")];
    let mut all: Vec<Envelope> = acme.to_vec();
    all.extend(globex.iter().cloned());
    service.publish_until(&all, 7).await;

    let acme_rows = chain_of(&h, "acme").await;
    let globex_rows = chain_of(&h, "globex").await;
    assert_eq!(acme_rows.len(), 5);
    assert_eq!(globex_rows.len(), 2);
    assert_linked(&acme_rows);
    assert_linked(&globex_rows);
    assert_eq!(acme_rows[0].prev_hash, GENESIS_HASH);
    assert_eq!(globex_rows[0].prev_hash, GENESIS_HASH);

    // The queue is not FIFO, so records follow the order of recording;
    // each event is there once, with its envelope's attributes.
    let by_id: HashMap<&str, &audit_record::Model> = acme_rows
        .iter()
        .chain(&globex_rows)
        .map(|r| (r.event_id.as_str(), r))
        .collect();
    assert_eq!(by_id.len(), 7);
    for event in &all {
        let row = by_id[event.id.as_str()];
        assert_eq!(row.tenant, event.tenant);
        assert_eq!(row.event_type, event.event_type);
        assert_eq!(row.source, event.source);
        assert_eq!(row.subject, event.subject.clone().unwrap_or_default());
        assert_eq!(format_time(row.occur_time), format_time(event.time));
        assert!(row.record_time >= row.occur_time);
        assert_eq!(summary(row)["@type"], event.event_type.as_str());
    }

    let created_row = by_id[acme[0].id.as_str()];
    assert_eq!(created_row.actor, "alice");
    assert_eq!(created_row.subject, "d1");
    let s = summary(created_row);
    assert_eq!(s["title"], "title of d1");
    assert_eq!(s["classification"], "INTERNAL");
    assert_eq!(s["labels"]["env"], "prod");
    assert_eq!(s["size_bytes"], "12");
    assert!(s.get("content").is_none());

    assert_eq!(by_id[acme[1].id.as_str()].actor, "carol");
    assert_eq!(by_id[acme[2].id.as_str()].actor, "dave");
    assert_eq!(summary(by_id[acme[2].id.as_str()])["labels"]["team"], "ops");
    let unknown_row = by_id[acme[4].id.as_str()];
    assert_eq!(
        unknown_row.summary,
        r#"{"@type":"com.example.v1.SomethingHappened"}"#
    );
    assert_eq!(unknown_row.actor, "");
    assert_eq!(unknown_row.subject, "thing-1");
    let sign_up = by_id[globex[0].id.as_str()];
    assert_eq!(sign_up.actor, "u1", "a sign-up is the new user's act");
    assert_eq!(summary(sign_up)["email"], "u1@example.com");

    // An event without a tenant fits no chain: dead-lettered, not recorded.
    let mut orphan = created("acme", "d2");
    orphan.tenant.clear();
    service.publish(&[orphan]).await;
    let dead = eventually(|| async {
        let dead = service.bus.dead_letters("audit").await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await
    .expect("the tenantless event is dead-lettered");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "event names no tenant");
    assert_eq!(record_count(&h.db).await, 7);

    for tenant in ["acme", "globex"] {
        let verdict = service.log.verify(tenant).await.unwrap();
        assert!(verdict.ok, "{tenant}: {verdict:?}");
    }
    assert_eq!(service.log.metrics().appended(), 7);
    service.stop().await;
}

pub(crate) async fn redelivered_events_are_recorded_once(h: Harness) {
    let service = h.start().await;
    let first = created("acme", "d1");
    service.publish_until(std::slice::from_ref(&first), 1).await;

    // The bus delivers the same event again (a relay that crashed before
    // marking it published), followed by a new one.
    let next = updated("acme", "d1");
    service.publish(std::slice::from_ref(&first)).await;
    service.publish_until(std::slice::from_ref(&next), 2).await;
    let depth = eventually(|| async {
        let depth = service.bus.depth("audit").await.unwrap();
        (depth == Default::default()).then_some(depth)
    })
    .await;
    assert!(
        depth.is_some(),
        "the redelivery was consumed, not left behind"
    );
    let rows = chain_of(&h, "acme").await;
    assert_eq!(
        rows.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
        [first.id.as_str(), next.id.as_str()]
    );
    service.stop().await;

    // Straight through the log: the second append of an id is a no-op,
    // even when the subscriber's inbox check is bypassed.
    let log = h.log().await;
    assert_eq!(log.append(&first).await.unwrap(), Appended::Duplicate);
    assert_eq!(handle(&log, first.clone()).await, Outcome::Ack);

    // Many deliveries of one new event at once: one record.
    let racing = deleted("acme", "d1");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let log = log.clone();
            let event = racing.clone();
            tokio::spawn(async move { log.append(&event).await.unwrap() })
        })
        .collect();
    let mut recorded = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Appended::Recorded(_)) {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1);
    let rows = chain_of(&h, "acme").await;
    assert_eq!(rows.len(), 3);
    assert_linked(&rows);
}

pub(crate) async fn concurrent_appends_keep_every_chain_gapless(h: Harness) {
    let log = h.log().await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let log = log.clone();
            let tenant = if i % 2 == 0 { "acme" } else { "globex" };
            let event = created(tenant, &format!("d{i}"));
            tokio::spawn(async move { log.append(&event).await.unwrap() })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Appended::Recorded(_)));
    }
    for tenant in ["acme", "globex"] {
        let rows = chain_of(&h, tenant).await;
        assert_eq!(rows.len(), 20, "{tenant}");
        assert_linked(&rows);
        let verdict = log.verify(tenant).await.unwrap();
        assert!(verdict.ok, "{verdict:?}");
        assert_eq!(verdict.head_seq, 20);
        assert_eq!(verdict.head_hash, rows[19].hash);
    }
}

pub(crate) async fn outcomes_ack_retry_and_dead_letter(h: Harness) {
    let log = h.log().await;
    assert_eq!(handle(&log, created("acme", "d1")).await, Outcome::Ack);

    let mut orphan = created("acme", "d2");
    orphan.tenant.clear();
    assert_eq!(
        handle(&log, orphan).await,
        Outcome::dead_letter("event names no tenant")
    );

    // A log whose database has gone away asks for the event again later.
    let db = cloudsec_audit::connect(&h.url.as_str().into())
        .await
        .unwrap();
    let unreachable = cloudsec_audit::AuditLog::open(db.clone(), "audit", Default::default())
        .await
        .unwrap();
    db.close().await.unwrap();
    assert_eq!(
        handle(&unreachable, created("acme", "d3")).await,
        Outcome::retry()
    );
    assert_eq!(record_count(&h.db).await, 1);

    // Appending straight away takes the next seq, whatever the source.
    let mut custom = created("acme", "d4");
    custom.source = SOURCE.into();
    let Appended::Recorded(record) = log.append(&custom).await.unwrap() else {
        panic!("a new event is recorded");
    };
    assert_eq!(record.seq, 2);
    assert_eq!(record.event_type, CREATED);
    assert_eq!(record_count(&h.db).await, 2);
}

pub(crate) async fn the_page_token_key_survives_a_restart(h: Harness) {
    let first = h.log().await;
    let second = h.log().await;
    let token = first.page_tokens().seal("acme", "", 3);
    assert_eq!(second.page_tokens().open(&token, "acme", ""), Ok(3));
}
