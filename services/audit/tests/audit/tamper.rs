//! Tampering done straight in the database, as someone with write access
//! to it would, and what the verification says about it.

use cloudsec_audit::AuditLog;
use cloudsec_audit::chain::{AuditRecord, Verification};
use cloudsec_audit::entity::{audit_chain_head, audit_record};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
};

use crate::support::{Harness, created, deleted, signed_up, updated};

/// Five acme records, two globex ones and two initech ones.
async fn seed(h: &Harness) -> AuditLog {
    let log = h.log().await;
    for event in [
        created("acme", "d1"),
        updated("acme", "d1"),
        created("acme", "d2"),
        deleted("acme", "d1"),
        updated("acme", "d2"),
        signed_up("globex", "u1"),
        created("globex", "d9"),
        signed_up("initech", "u2"),
        created("initech", "d8"),
    ] {
        log.append(&event).await.unwrap();
    }
    log
}

async fn row(h: &Harness, tenant: &str, seq: i64) -> audit_record::Model {
    audit_record::Entity::find_by_id((tenant.to_owned(), seq))
        .one(&h.db)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("record {tenant}/{seq}"))
}

/// Puts a row back exactly as it was.
async fn restore(h: &Harness, original: audit_record::Model) {
    let active = original.into_active_model().reset_all();
    active.update(&h.db).await.unwrap();
}

fn assert_broken(verdict: &Verification, seq: i64, reason: &str, what: &str) {
    assert!(!verdict.ok, "{what}: {verdict:?}");
    assert_eq!(verdict.first_invalid_seq, seq, "{what}: {verdict:?}");
    assert!(
        verdict.reason.contains(reason),
        "{what}: expected `{reason}` in {verdict:?}"
    );
}

fn recomputed(row: &audit_record::Model) -> String {
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
        hash: String::new(),
    }
    .compute_hash()
}

pub(crate) async fn an_untouched_chain_verifies(h: Harness) {
    let log = seed(&h).await;
    let verdict = log.verify("acme").await.unwrap();
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!(verdict.records_checked, 5);
    assert_eq!(verdict.first_invalid_seq, 0);
    assert_eq!(verdict.reason, "");
    assert_eq!(verdict.head_seq, 5);
    assert_eq!(verdict.head_hash, row(&h, "acme", 5).await.hash);

    let nobody = log.verify("nobody").await.unwrap();
    assert!(nobody.ok);
    assert_eq!(nobody.records_checked, 0);
    assert_eq!(nobody.head_seq, 0);
    assert_eq!(log.metrics().verify_failures(), 0);
}

pub(crate) async fn a_changed_field_is_reported_at_its_seq(h: Harness) {
    let log = seed(&h).await;
    let cases: [(i64, &str, &str); 7] = [
        (
            1,
            "UPDATE audit_record SET actor = 'mallory' WHERE tenant = 'acme' AND seq = 1",
            "hash does not match",
        ),
        (
            2,
            "UPDATE audit_record SET subject = 'forged' WHERE tenant = 'acme' AND seq = 2",
            "hash does not match",
        ),
        (
            3,
            "UPDATE audit_record SET source = '/elsewhere' WHERE tenant = 'acme' AND seq = 3",
            "hash does not match",
        ),
        (
            4,
            r#"UPDATE audit_record SET summary = '{"@type":"cloudsec.events.v1.DocumentDeleted","actor":"bob"}' WHERE tenant = 'acme' AND seq = 4"#,
            "hash does not match",
        ),
        (
            5,
            "UPDATE audit_record SET event_type = 'cloudsec.events.v1.DocumentForged' WHERE tenant = 'acme' AND seq = 5",
            "hash does not match",
        ),
        (
            3,
            "UPDATE audit_record SET hash = 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff' WHERE tenant = 'acme' AND seq = 3",
            "hash does not match",
        ),
        (
            2,
            "UPDATE audit_record SET prev_hash = 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff' WHERE tenant = 'acme' AND seq = 2",
            "prev_hash does not match the hash of record 1",
        ),
    ];
    for (seq, sql, reason) in cases {
        let original = row(&h, "acme", seq).await;
        assert_eq!(h.sql(sql).await, 1, "{sql}");
        let verdict = log.verify("acme").await.unwrap();
        assert_broken(&verdict, seq, reason, sql);
        assert_eq!(verdict.records_checked, seq, "{sql}");
        // Other tenants' chains are their own.
        assert!(log.verify("globex").await.unwrap().ok);
        restore(&h, original).await;
        assert!(log.verify("acme").await.unwrap().ok, "restored after {sql}");
    }

    // The times are covered too.
    let original = row(&h, "acme", 4).await;
    audit_record::Entity::update_many()
        .col_expr(
            audit_record::Column::OccurTime,
            (original.occur_time - chrono::Duration::hours(1)).into(),
        )
        .filter(audit_record::Column::Tenant.eq("acme"))
        .filter(audit_record::Column::Seq.eq(4))
        .exec(&h.db)
        .await
        .unwrap();
    assert_broken(&log.verify("acme").await.unwrap(), 4, "hash", "occur_time");
    restore(&h, original.clone()).await;
    let mut later = original.clone().into_active_model();
    later.record_time = Set(original.record_time + chrono::Duration::microseconds(1));
    later.update(&h.db).await.unwrap();
    assert_broken(&log.verify("acme").await.unwrap(), 4, "hash", "record_time");
    restore(&h, original).await;
    assert!(log.verify("acme").await.unwrap().ok);
    assert_eq!(log.metrics().verify_failures(), 9);
}

pub(crate) async fn a_rehashed_forgery_is_caught_at_the_next_record(h: Harness) {
    let log = seed(&h).await;
    let before = log.verify("acme").await.unwrap();

    // Changing a record and fixing up its own hash breaks the next link.
    let mut forged = row(&h, "acme", 2).await;
    forged.subject = "forged".into();
    forged.hash = recomputed(&forged);
    let active = forged.clone().into_active_model().reset_all();
    active.update(&h.db).await.unwrap();
    let verdict = log.verify("acme").await.unwrap();
    assert_broken(
        &verdict,
        3,
        "does not match the hash of record 2",
        "rehashed",
    );

    // Rewriting the whole tail and the head consistently passes the check
    // (there is no key): what gives it away is the head reported before,
    // kept outside the database.
    let mut prev = forged.hash.clone();
    for seq in 3..=5 {
        let mut next = row(&h, "acme", seq).await;
        next.prev_hash = prev.clone();
        next.hash = recomputed(&next);
        prev = next.hash.clone();
        let active = next.into_active_model().reset_all();
        active.update(&h.db).await.unwrap();
    }
    let verdict = log.verify("acme").await.unwrap();
    assert_broken(&verdict, 5, "chain head", "tail rewritten, head not");
    audit_chain_head::Entity::update_many()
        .col_expr(audit_chain_head::Column::Hash, prev.clone().into())
        .filter(audit_chain_head::Column::Tenant.eq("acme"))
        .exec(&h.db)
        .await
        .unwrap();
    let after = log.verify("acme").await.unwrap();
    assert!(after.ok, "{after:?}");
    assert_eq!(after.head_seq, before.head_seq);
    assert_ne!(
        after.head_hash, before.head_hash,
        "the rewrite shows in the head"
    );
}

pub(crate) async fn deleted_records_are_reported(h: Harness) {
    let log = seed(&h).await;

    assert_eq!(
        h.sql("DELETE FROM audit_record WHERE tenant = 'acme' AND seq = 3")
            .await,
        1
    );
    let verdict = log.verify("acme").await.unwrap();
    assert_broken(&verdict, 3, "record 3 is missing", "middle");
    assert_eq!(verdict.records_checked, 3);

    // The newest record: only the head knows it existed.
    assert_eq!(
        h.sql("DELETE FROM audit_record WHERE tenant = 'globex' AND seq = 2")
            .await,
        1
    );
    let verdict = log.verify("globex").await.unwrap();
    assert_broken(&verdict, 2, "record 2 (the chain head) is missing", "tail");
    assert_eq!(verdict.head_seq, 2);

    // A head that vanished while its records stayed.
    assert_eq!(
        h.sql("DELETE FROM audit_chain_head WHERE tenant = 'initech'")
            .await,
        1
    );
    let verdict = log.verify("initech").await.unwrap();
    assert_broken(&verdict, 2, "the chain head is missing", "head");

    // A record added behind the service's back, well linked, lies beyond
    // the head.
    log.append(&created("hooli", "d1")).await.unwrap();
    log.append(&created("hooli", "d2")).await.unwrap();
    let mut extra = row(&h, "hooli", 2).await;
    extra.seq = 3;
    extra.event_id = "smuggled".into();
    extra.prev_hash = extra.hash.clone();
    extra.hash = recomputed(&extra);
    audit_record::Entity::insert(extra.into_active_model())
        .exec_without_returning(&h.db)
        .await
        .unwrap();
    let verdict = log.verify("hooli").await.unwrap();
    assert_broken(&verdict, 3, "beyond the chain head", "inserted");

    assert!(log.verify("nobody").await.unwrap().ok);
    assert_eq!(log.metrics().verify_failures(), 4);
}
