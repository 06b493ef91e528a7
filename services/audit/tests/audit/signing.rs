//! Signed chain heads: a tail rewritten consistently (every hash and the
//! head recomputed, as someone who can write the store can) is caught by
//! its forged head signatures, on SQL with a local Ed25519 key or a Vault
//! transit key (OpenBao) and on DynamoDB with a KMS key (moto).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use cloudsec_audit::chain::AuditRecord;
use cloudsec_audit::dynamo::{DynamoConfig, DynamoStore};
use cloudsec_audit::entity::{audit_chain_head, audit_record, audit_signature};
use cloudsec_audit::metrics::AuditMetrics;
use cloudsec_audit::signing::{self, HeadSigner, LocalSigner, SigningConfig, head_message};
use cloudsec_audit::store::Appended;
use cloudsec_audit::{AuditError, AuditLog};
use cloudsec_bus::Envelope;
use cloudsec_proto::events::v1 as ev;
use cloudsec_secrets::test_util::{CutProxy, host_port, openbao};
use cloudsec_testkit::{moto_url, unique};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait,
};

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

/// What someone who can write the SQL store does: changes record
/// `from`'s actor, recomputes every hash from there and the head, and
/// signs each rewritten head with `forger`.
async fn rewrite_sql_tail(db: &DatabaseConnection, from: i64, forger: &dyn HeadSigner) {
    let mut rows: Vec<audit_record::Model> = audit_record::Entity::find().all(db).await.unwrap();
    rows.sort_by_key(|r| r.seq);
    let start = usize::try_from(from - 1).unwrap();
    let mut prev = rows[start - 1].hash.clone();
    for row in rows.iter().skip(start) {
        let mut record = record_of(row);
        if record.seq == from {
            record.actor = "mallory".into();
        }
        record.prev_hash = prev.clone();
        record.hash = record.compute_hash();
        prev = record.hash.clone();
        let mut active = row.clone().into_active_model();
        active.actor = Set(record.actor.clone());
        active.prev_hash = Set(record.prev_hash.clone());
        active.hash = Set(record.hash.clone());
        active.update(db).await.unwrap();
        let forged = forger
            .sign(&head_message(&record.tenant, record.seq, &record.hash))
            .await
            .unwrap();
        let mut signature =
            audit_signature::Entity::find_by_id((record.tenant.clone(), record.seq))
                .one(db)
                .await
                .unwrap()
                .unwrap()
                .into_active_model();
        signature.signature = Set(forged);
        signature.update(db).await.unwrap();
    }
    let tenant = rows[start].tenant.clone();
    let mut head = audit_chain_head::Entity::find_by_id(tenant)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    head.hash = Set(prev);
    head.update(db).await.unwrap();
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
    rewrite_sql_tail(&db, 3, &forger).await;

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
        aws: cloudsec_runtime::aws::AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.clone()),
            dummy_credentials: true,
        },
        create_key: true,
    };
    let signer = signing::from_config(&config, None).await.unwrap();
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
        aws: cloudsec_runtime::aws::AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.clone()),
            dummy_credentials: true,
        },
        create_key: true,
    };
    let forger = signing::from_config(&forger_config, None).await.unwrap();
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

async fn sqlite_log(
    dir: &std::path::Path,
    signer: Arc<dyn HeadSigner>,
) -> (DatabaseConnection, AuditLog) {
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let db = cloudsec_audit::connect(&url.as_str().into()).await.unwrap();
    let log = AuditLog::open(db.clone(), "audit", AuditMetrics::default())
        .await
        .unwrap()
        .with_signer(signer);
    (db, log)
}

fn transit(key: &str, mount: &str, create_key: bool) -> SigningConfig {
    SigningConfig::Transit {
        key: key.into(),
        mount: mount.into(),
        create_key,
    }
}

#[tokio::test]
async fn sql_with_vault_transit_a_rewritten_tail_is_caught() {
    let Some(vault) = openbao() else { return };
    let mount = vault.mount("transit").await;
    let root = vault.root().await;
    let signer = signing::from_config(
        &transit("cloudsec-audit-signing", &mount, true),
        Some(&root),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = sqlite_log(dir.path(), signer.clone()).await;
    for i in 0..5 {
        log.append(&created("acme", &format!("d{i}")))
            .await
            .unwrap();
    }
    assert!(log.verify("acme").await.unwrap().ok);
    let first = audit_signature::Entity::find_by_id(("acme".to_owned(), 1))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        first.signature.starts_with("transit:vault:v1:"),
        "{}",
        first.signature
    );

    // Rotating the key: new heads are signed by version 2, the old ones
    // still verify.
    root.request(
        reqwest::Method::POST,
        &format!("{mount}/keys/cloudsec-audit-signing/rotate"),
        None,
    )
    .await
    .unwrap();
    log.append(&created("acme", "d5")).await.unwrap();
    let sixth = audit_signature::Entity::find_by_id(("acme".to_owned(), 6))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        sixth.signature.starts_with("transit:vault:v2:"),
        "{}",
        sixth.signature
    );
    let verdict = log.verify("acme").await.unwrap();
    assert!(verdict.ok && verdict.head_seq == 6, "{verdict:?}");

    // Signatures that are not this key's: another transit key's, a
    // mangled one, another scheme's.
    let message = head_message("acme", 1, &"0".repeat(64));
    let good = signer.sign(&message).await.unwrap();
    assert!(signer.verify(&message, &good).await.unwrap());
    assert!(
        !signer
            .verify(&head_message("acme", 2, &"0".repeat(64)), &good)
            .await
            .unwrap()
    );
    assert!(
        !signer
            .verify(&message, "transit:vault:v1:AAAA")
            .await
            .unwrap()
    );
    assert!(!signer.verify(&message, "transit:garbage").await.unwrap());
    assert!(
        !signer
            .verify(&message, &good.replacen("transit:", "kms:", 1))
            .await
            .unwrap()
    );

    // The attacker rewrites the tail from record 3 and signs with a
    // transit key of their own (same engine, another key).
    let forger = signing::from_config(&transit("forger", &mount, true), Some(&root))
        .await
        .unwrap();
    rewrite_sql_tail(&db, 3, forger.as_ref()).await;
    let unsigned = AuditLog::open(db.clone(), "audit", AuditMetrics::default())
        .await
        .unwrap();
    assert!(
        unsigned.verify("acme").await.unwrap().ok,
        "consistent without keys"
    );
    let verdict = log.verify("acme").await.unwrap();
    assert!(!verdict.ok);
    assert_eq!(verdict.first_invalid_seq, 3);
    assert_eq!(
        verdict.reason,
        "the head signature of record 3 is not valid"
    );

    // A genuine signature replayed onto another record is caught too.
    let mut second = audit_signature::Entity::find_by_id(("acme".to_owned(), 2))
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    second.signature = Set(first.signature.clone());
    second.update(&db).await.unwrap();
    let verdict = log.verify("acme").await.unwrap();
    assert_eq!(verdict.first_invalid_seq, 2);
    assert_eq!(
        verdict.reason,
        "the head signature of record 2 is not valid"
    );
}

#[tokio::test]
async fn transit_keys_are_checked_at_start() {
    let Some(vault) = openbao() else { return };
    let mount = vault.mount("transit").await;
    let root = vault.root().await;
    // Not there, and not to be created: a clear start-up error.
    let error = signing::from_config(&transit("absent", &mount, false), Some(&root))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AuditError::Signing(m) if m.contains("absent") && m.contains("unknown key")),
        "{error}"
    );
    // A symmetric key cannot sign.
    root.request(
        reqwest::Method::POST,
        &format!("{mount}/keys/symmetric"),
        None,
    )
    .await
    .unwrap();
    let error = signing::from_config(&transit("symmetric", &mount, false), Some(&root))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AuditError::Signing(m) if m.contains("cannot sign")),
        "{error}"
    );
    // No Vault connection at all.
    let error = signing::from_config(&transit("k", &mount, true), None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("[secrets]"), "{error}");
}

#[tokio::test]
async fn vault_down_is_unavailable_and_nothing_is_written() {
    let Some(vault) = openbao() else { return };
    let mount = vault.mount("transit").await;
    let proxy = CutProxy::start(&host_port(&vault.addr)).await;
    let client = vault.client_at(&proxy.url()).await;
    let config = transit("cloudsec-audit-signing", &mount, true);
    let signer = signing::from_config(&config, Some(&client)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = sqlite_log(dir.path(), signer).await;
    log.append(&created("acme", "d0")).await.unwrap();

    proxy.cut();
    let event = created("acme", "d1");
    let error = log.append(&event).await.unwrap_err();
    assert!(
        matches!(error, AuditError::SigningUnavailable(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("vault"), "{error}");
    assert_eq!(tonic::Status::from(error).code(), tonic::Code::Unavailable);
    // Nothing of the failed append is left: one record, one signature,
    // the head where it was, and the event still new (the inbox entry
    // rolled back with the rest), so the redelivery records it.
    assert_eq!(audit_record::Entity::find().count(&db).await.unwrap(), 1);
    assert_eq!(audit_signature::Entity::find().count(&db).await.unwrap(), 1);
    let head = audit_chain_head::Entity::find_by_id("acme".to_owned())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.seq, 1);
    // Verification cannot give a verdict without the key: unavailable,
    // never "valid" or "invalid".
    let error = log.verify("acme").await.unwrap_err();
    assert!(
        matches!(error, AuditError::SigningUnavailable(_)),
        "{error:?}"
    );
    // A start with Vault down fails as unavailable too.
    let error = signing::from_config(&config, Some(&client))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AuditError::SigningUnavailable(_)),
        "{error:?}"
    );

    proxy.restore();
    match log.append(&event).await.unwrap() {
        Appended::Recorded(record) => assert_eq!(record.seq, 2),
        other => panic!("the redelivery was not recorded: {other:?}"),
    }
    let verdict = log.verify("acme").await.unwrap();
    assert!(verdict.ok && verdict.head_seq == 2, "{verdict:?}");
}

#[tokio::test]
async fn the_audit_vault_policy_signs_and_verifies_but_cannot_manage_the_key() {
    let Some(vault) = openbao() else { return };
    let mount = vault.mount("transit").await;
    let root = vault.root().await;
    let key = "cloudsec-audit-signing";
    // The operator makes the key; the service's policy is the committed
    // file, on this test's mount.
    signing::from_config(&transit(key, &mount, true), Some(&root))
        .await
        .unwrap();
    let policy = std::fs::read_to_string(
        cloudsec_testkit::workspace_root().join("deploy/vault/policies/audit.hcl"),
    )
    .unwrap()
    .replace("\"transit/", &format!("\"{mount}/"));
    let name = unique("audit-policy");
    root.request(
        reqwest::Method::PUT,
        &format!("sys/policies/acl/{name}"),
        Some(&serde_json::json!({ "policy": policy })),
    )
    .await
    .unwrap();
    let created = root
        .request(
            reqwest::Method::POST,
            "auth/token/create",
            Some(&serde_json::json!({ "policies": [name], "no_default_policy": true })),
        )
        .await
        .unwrap();
    let token = created["auth"]["client_token"].as_str().unwrap();
    let audit = cloudsec_secrets::VaultClient::connect(vault.config_at(&vault.addr, token))
        .await
        .unwrap();

    let signer = signing::from_config(&transit(key, &mount, false), Some(&audit))
        .await
        .unwrap();
    let message = head_message("acme", 1, "h");
    let signature = signer.sign(&message).await.unwrap();
    assert!(signer.verify(&message, &signature).await.unwrap());
    // Creating, rotating or using another key is refused.
    let transit_keys = cloudsec_secrets::TransitKeys::new(audit.clone(), mount.as_str());
    for refused in [
        transit_keys
            .ensure_signing_key("other", "ed25519")
            .await
            .unwrap_err(),
        transit_keys.sign("other", &message).await.unwrap_err(),
        audit
            .request(
                reqwest::Method::POST,
                &format!("{mount}/keys/{key}/rotate"),
                None,
            )
            .await
            .unwrap_err(),
    ] {
        assert!(refused.is_permission_denied(), "{refused}");
    }
}
