//! Domain events end to end: each change leaves its service through the
//! outbox, crosses the embedded bus and lands in the audit log, which the
//! tenant's admin reads and verifies through the gateway.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::{create, expect_error};
use cloudsec_tests::{Sandbox, eventually};

/// The tenant's audit records once there are `n` of them.
async fn audit_records(sb: &Sandbox, token: &str, n: usize) -> Vec<serde_json::Value> {
    eventually(Duration::from_secs(20), || async {
        let r = sb.get("/v1/audit/records?pageSize=100", token).await;
        if r.status() != 200 {
            return None;
        }
        let body: serde_json::Value = r.json().await.ok()?;
        let records = body["records"].as_array().cloned().unwrap_or_default();
        (records.len() >= n).then_some(records)
    })
    .await
    .unwrap_or_else(|| panic!("{n} audit records never arrived"))
}

pub(crate) async fn changes_reach_the_audit_log(sb: &Sandbox) {
    let user = sb.user().await;
    let doc = create(
        sb,
        &user.token,
        json!({"title": "Audited", "classification": "INTERNAL", "content": "secret words"}),
    )
    .await;
    let id = doc["id"].as_str().expect("id").to_owned();
    let r = sb
        .patch(
            &format!("/v1/documents/{id}?updateMask=title"),
            &user.token,
            &json!({"title": "Audited v2"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // A failed change (stale etag) writes no event.
    let r = sb
        .patch(
            &format!("/v1/documents/{id}?updateMask=title"),
            &user.token,
            &json!({"title": "lost", "etag": doc["etag"]}),
        )
        .await;
    expect_error(r, 409, 10, "").await;
    let r = sb.delete(&format!("/v1/documents/{id}"), &user.token).await;
    assert_eq!(r.status(), 200);

    let records = audit_records(sb, &user.token, 5).await;
    assert_eq!(records.len(), 5, "{records:#?}");
    let mut by_type = BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], (i + 1).to_string(), "seq runs 1, 2, 3, ...");
        assert_eq!(record["tenant"], user.tenant.as_str());
        by_type.insert(
            record["eventType"].as_str().unwrap().to_owned(),
            record.clone(),
        );
        if i > 0 {
            assert_eq!(
                record["prevHash"],
                records[i - 1]["hash"],
                "the chain links"
            );
        }
    }
    let types: Vec<&str> = by_type.keys().map(String::as_str).collect();
    assert_eq!(
        types,
        [
            "cloudsec.events.v1.DocumentCreated",
            "cloudsec.events.v1.DocumentDeleted",
            "cloudsec.events.v1.DocumentUpdated",
            "cloudsec.events.v1.UserConfirmationRequested",
            "cloudsec.events.v1.UserSignedUp",
        ]
    );
    // The sign-up's code reached the mailer, never the audit log (not even
    // sealed).
    let requested = &by_type["cloudsec.events.v1.UserConfirmationRequested"];
    assert_eq!(
        requested["summary"]["sealed_code"], "[redacted]",
        "{requested}"
    );
    assert_eq!(requested["summary"]["purpose"], "SIGN_UP");
    assert_eq!(requested["actor"], user.user_id.as_str());
    let created = &by_type["cloudsec.events.v1.DocumentCreated"];
    assert_eq!(created["subject"], id.as_str());
    assert_eq!(created["actor"], user.user_id.as_str());
    assert_eq!(created["source"], "/cloudsec/documents");
    assert_eq!(
        by_type["cloudsec.events.v1.DocumentUpdated"]["summary"]["changed_fields"],
        json!(["title"])
    );
    assert_eq!(
        by_type["cloudsec.events.v1.UserSignedUp"]["source"],
        "/cloudsec/auth"
    );
    // Events carry metadata, never content.
    assert!(
        !serde_json::to_string(&records)
            .unwrap()
            .contains("secret words")
    );

    let r = sb.get("/v1/audit/chain:verify", &user.token).await;
    assert_eq!(r.status(), 200);
    let verdict: serde_json::Value = r.json().await.unwrap();
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["recordsChecked"], "5", "{verdict}");

    // Another tenant's admin sees only their own sign-up and its code.
    let other = sb.user().await;
    let theirs = audit_records(sb, &other.token, 2).await;
    assert_eq!(theirs.len(), 2, "{theirs:#?}");
    assert_eq!(theirs[0]["tenant"], other.tenant.as_str());

    // No token: 401 at the gateway.
    let r = sb
        .http
        .get(sb.url("/v1/audit/records"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
