//! Signed chain heads: a tail rewritten consistently (every hash and the
//! head recomputed, as someone who can write the store can) is caught by
//! its forged head signatures, on SQL with a local Ed25519 key and on
//! DynamoDB with a KMS key (moto).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use cloudsec_audit::AuditLog;
use cloudsec_audit::chain::AuditRecord;
use cloudsec_audit::dynamo::{DynamoConfig, DynamoStore};
use cloudsec_audit::entity::{audit_chain_head, audit_record, audit_signature};
use cloudsec_audit::metrics::AuditMetrics;
use cloudsec_audit::signing::{self, HeadSigner, LocalSigner, SigningConfig, head_message};
use cloudsec_bus::Envelope;
use cloudsec_proto::events::v1 as ev;
use cloudsec_testkit::{moto_url, unique};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};

fn created(tenant: &str, document: &str) -> Envelope {
    Envelope::new(
        "/cloudsec/documents",
        &ev::DocumentCreated {
            document_id: document.into(),
            tenant: tenant.into(),
            actor: "alice".into(),
            title: format!("title of {document}"),
            ..Default::default()
        },
    )
}

fn record_of(row: &audit_record::Model) -> AuditRecord {
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

#[tokio::test]
async fn sql_a_rewritten_tail_with_forged_signatures_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let db = cloudsec_audit::connect(&url.as_str().into()).await.unwrap();
    let signer: Arc<dyn HeadSigner> =
        Arc::new(LocalSigner::open(&dir.path().join("keys/audit-signing.pk8")).unwrap());
    let log = AuditLog::open(db.clone(), "audit", AuditMetrics::default())
        .await
        .unwrap()
        .with_signer(signer);
    for i in 0..5 {
        log.append(&created("acme", &format!("d{i}")))
            .await
            .unwrap();
    }
    assert!(log.verify("acme").await.unwrap().ok);

    // The attacker: changes record 3, recomputes 3..5 and the head, and
    // signs with a key of their own.
    let forger = LocalSigner::open(&dir.path().join("forger.pk8")).unwrap();
    let mut rows: Vec<audit_record::Model> = audit_record::Entity::find().all(&db).await.unwrap();
    rows.sort_by_key(|r| r.seq);
    let mut prev = rows[1].hash.clone();
    for row in rows.iter().skip(2) {
        let mut record = record_of(row);
        if record.seq == 3 {
            record.actor = "mallory".into();
        }
        record.prev_hash = prev.clone();
        record.hash = record.compute_hash();
        prev = record.hash.clone();
        let mut active = row.clone().into_active_model();
        active.actor = Set(record.actor.clone());
        active.prev_hash = Set(record.prev_hash.clone());
        active.hash = Set(record.hash.clone());
        active.update(&db).await.unwrap();
        let forged = forger
            .sign(&head_message("acme", record.seq, &record.hash))
            .await
            .unwrap();
        let mut signature = audit_signature::Entity::find_by_id(("acme".to_owned(), record.seq))
            .one(&db)
            .await
            .unwrap()
            .unwrap()
            .into_active_model();
        signature.signature = Set(forged);
        signature.update(&db).await.unwrap();
    }
    let mut head = audit_chain_head::Entity::find_by_id("acme".to_owned())
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    head.hash = Set(prev);
    head.update(&db).await.unwrap();

    // Without signatures the rewrite would pass; with them it does not.
    let unsigned = AuditLog::open(db.clone(), "audit", AuditMetrics::default())
        .await
        .unwrap();
    assert!(unsigned.verify("acme").await.unwrap().ok);
    let verdict = log.verify("acme").await.unwrap();
    assert!(!verdict.ok);
    assert_eq!(verdict.first_invalid_seq, 3);
    assert_eq!(
        verdict.reason,
        "the head signature of record 3 is not valid"
    );

    // A signature row deleted is reported as missing.
    audit_signature::Entity::delete_by_id(("acme".to_owned(), 1))
        .exec(&db)
        .await
        .unwrap();
    let verdict = log.verify("acme").await.unwrap();
    assert_eq!(verdict.first_invalid_seq, 1);
    assert_eq!(verdict.reason, "record 1 has no head signature");
}

#[tokio::test]
async fn dynamodb_with_kms_a_rewritten_tail_is_caught() {
    let Some(url) = moto_url() else { return };
    let table = unique("audit");
    let config = SigningConfig::Kms {
        key: format!("alias/{}", unique("audit-signing")),
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.clone()),
        dummy_credentials: true,
        create_key: true,
    };
    let signer = signing::from_config(&config).await.unwrap();
    let store = DynamoStore::connect(&DynamoConfig::emulator(&table, &url))
        .await
        .unwrap();
    let log = AuditLog::open_dynamodb(store.clone(), "audit", AuditMetrics::default())
        .await
        .unwrap()
        .with_signer(signer.clone());
    for i in 0..4 {
        log.append(&created("acme", &format!("d{i}")))
            .await
            .unwrap();
    }
    let verdict = log.verify("acme").await.unwrap();
    assert!(verdict.ok, "{verdict:?}");

    // Rewrite records 2..4 consistently; forge signatures with another
    // KMS key (the attacker's own).
    let forger_config = SigningConfig::Kms {
        key: format!("alias/{}", unique("forger")),
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.clone()),
        dummy_credentials: true,
        create_key: true,
    };
    let forger = signing::from_config(&forger_config).await.unwrap();
    let page = log
        .list(
            "acme",
            &cloudsec_audit::store::ListQuery {
                page_size: 10,
                after: 0,
                event_type: None,
                subject: None,
            },
        )
        .await
        .unwrap();
    let mut prev = page.records[0].hash.clone();
    for original in page.records.iter().skip(1) {
        let mut record = original.clone();
        if record.seq == 2 {
            record.summary = "{}".into();
        }
        record.prev_hash = prev.clone();
        record.hash = record.compute_hash();
        prev = record.hash.clone();
        let forged = forger
            .sign(&head_message("acme", record.seq, &record.hash))
            .await
            .unwrap();
        store
            .client()
            .update_item()
            .table_name(&table)
            .key("pk", AttributeValue::S("tenant#acme".into()))
            .key("sk", AttributeValue::S(format!("{:020}", record.seq)))
            .update_expression("SET summary = :s, prev_hash = :p, #h = :h, signature = :g")
            .expression_attribute_names("#h", "hash")
            .expression_attribute_values(":s", AttributeValue::S(record.summary.clone()))
            .expression_attribute_values(":p", AttributeValue::S(record.prev_hash.clone()))
            .expression_attribute_values(":h", AttributeValue::S(record.hash.clone()))
            .expression_attribute_values(":g", AttributeValue::S(forged))
            .send()
            .await
            .unwrap();
    }
    store
        .client()
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("tenant#acme".into()))
        .key("sk", AttributeValue::S("#head".into()))
        .update_expression("SET #h = :h")
        .expression_attribute_names("#h", "hash")
        .expression_attribute_values(":h", AttributeValue::S(prev))
        .send()
        .await
        .unwrap();

    let unsigned = AuditLog::open_dynamodb(store, "audit", AuditMetrics::default())
        .await
        .unwrap();
    assert!(
        unsigned.verify("acme").await.unwrap().ok,
        "consistent without keys"
    );
    let verdict = log.verify("acme").await.unwrap();
    assert!(!verdict.ok);
    assert_eq!(verdict.first_invalid_seq, 2);
    assert_eq!(
        verdict.reason,
        "the head signature of record 2 is not valid"
    );
}
