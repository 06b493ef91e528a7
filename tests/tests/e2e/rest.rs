//! The REST walkthrough through the gateway.

use serde_json::json;

use crate::{create, document_ids, expect_error};
use cloudsec_tests::Sandbox;

pub(crate) async fn document_lifecycle(sb: &Sandbox) {
    let user = sb.user().await;
    let doc = create(
        sb,
        &user.token,
        json!({"title": "Quarterly plan", "classification": "CONFIDENTIAL",
               "labels": {"team": "finance"}, "content": "revenue up"}),
    )
    .await;
    let id = doc["id"].as_str().expect("id").to_owned();
    assert_eq!(doc["title"], "Quarterly plan");
    assert_eq!(doc["classification"], "CONFIDENTIAL");
    assert_eq!(doc["owner"], user.user_id.as_str());
    assert_eq!(doc["tenant"], user.tenant.as_str());
    assert_eq!(doc["sizeBytes"], "10", "int64 travels as a JSON string");
    assert_eq!(doc["contentType"], "text/plain");
    assert!(doc["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(doc["createTime"].as_str().is_some());

    let r = sb.get(&format!("/v1/documents/{id}"), &user.token).await;
    assert_eq!(r.status(), 200);
    let got: serde_json::Value = r.json().await.unwrap();
    assert_eq!(got["content"], "revenue up");
    assert_eq!(got["labels"]["team"], "finance");

    // Update only the title; the content stays.
    let r = sb
        .patch(
            &format!("/v1/documents/{id}?updateMask=title"),
            &user.token,
            &json!({"title": "Quarterly plan v2", "content": "ignored", "etag": doc["etag"]}),
        )
        .await;
    let status = r.status();
    let updated: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["title"], "Quarterly plan v2");
    assert_eq!(updated["content"], "revenue up");
    assert_ne!(updated["etag"], doc["etag"]);

    assert_eq!(document_ids(sb, &user.token).await, vec![id.clone()]);

    let r = sb.delete(&format!("/v1/documents/{id}"), &user.token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!({}));
    let r = sb.get(&format!("/v1/documents/{id}"), &user.token).await;
    expect_error(r, 404, 5, "not found").await;
    assert!(document_ids(sb, &user.token).await.is_empty());
}

pub(crate) async fn list_pages_and_filters(sb: &Sandbox) {
    let user = sb.user().await;
    for i in 0..5 {
        let class = if i % 2 == 0 { "PUBLIC" } else { "INTERNAL" };
        let env = if i < 3 { "prod" } else { "dev" };
        create(
            sb,
            &user.token,
            json!({"title": format!("doc {i}"), "classification": class, "labels": {"env": env}}),
        )
        .await;
    }
    // Pages of two, newest first, until the token runs out.
    let mut titles = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = sb
            .get(
                &format!("/v1/documents?pageSize=2&pageToken={token}"),
                &user.token,
            )
            .await;
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        pages += 1;
        for d in body["documents"].as_array().unwrap() {
            titles.push(d["title"].as_str().unwrap().to_owned());
        }
        match body["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_owned(),
            _ => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(titles, ["doc 4", "doc 3", "doc 2", "doc 1", "doc 0"]);

    let r = sb
        .get(
            "/v1/documents?classification=PUBLIC&label=env%3Dprod",
            &user.token,
        )
        .await;
    let body: serde_json::Value = r.json().await.unwrap();
    let titles: Vec<_> = body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["doc 2", "doc 0"]);
}

pub(crate) async fn tenants_are_isolated(sb: &Sandbox) {
    let alice = sb.user().await;
    let mallory = sb.user().await;
    let doc = create(
        sb,
        &alice.token,
        json!({"title": "secret", "classification": "RESTRICTED"}),
    )
    .await;
    let id = doc["id"].as_str().unwrap();

    let r = sb.get(&format!("/v1/documents/{id}"), &mallory.token).await;
    expect_error(r, 404, 5, "not found").await;
    let r = sb
        .patch(
            &format!("/v1/documents/{id}"),
            &mallory.token,
            &json!({"title": "pwned", "classification": "PUBLIC"}),
        )
        .await;
    expect_error(r, 404, 5, "not found").await;
    let r = sb
        .delete(&format!("/v1/documents/{id}"), &mallory.token)
        .await;
    expect_error(r, 404, 5, "not found").await;
    assert!(document_ids(sb, &mallory.token).await.is_empty());

    // Nothing changed for the owner.
    let r = sb.get(&format!("/v1/documents/{id}"), &alice.token).await;
    let got: serde_json::Value = r.json().await.unwrap();
    assert_eq!(got["title"], "secret");
    assert_eq!(got["etag"], doc["etag"]);
}

pub(crate) async fn stale_etag_conflicts(sb: &Sandbox) {
    let user = sb.user().await;
    let doc = create(
        sb,
        &user.token,
        json!({"title": "v1", "classification": "INTERNAL"}),
    )
    .await;
    let id = doc["id"].as_str().unwrap();
    let first = sb
        .patch(
            &format!("/v1/documents/{id}?updateMask=title"),
            &user.token,
            &json!({"title": "v2", "etag": doc["etag"]}),
        )
        .await;
    assert_eq!(first.status(), 200);
    // A writer that read v1 loses.
    let second = sb
        .patch(
            &format!("/v1/documents/{id}?updateMask=title"),
            &user.token,
            &json!({"title": "v3", "etag": doc["etag"]}),
        )
        .await;
    expect_error(second, 409, 10, "etag").await;
    let etag = doc["etag"].as_str().unwrap();
    let r = sb
        .delete(&format!("/v1/documents/{id}?etag={etag}"), &user.token)
        .await;
    expect_error(r, 409, 10, "etag").await;
    let got: serde_json::Value = sb
        .get(&format!("/v1/documents/{id}"), &user.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["title"], "v2");
}

pub(crate) async fn sign_up_and_login_errors(sb: &Sandbox) {
    let user = sb.user().await;
    // Same email again, another tenant: answered like a new sign-up (no
    // account enumeration), and nothing is created.
    let fresh = format!("fresh-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let r = sb.post_public("/v1/auth:signUp", &json!({"email": user.email.to_uppercase(), "password": "another good passphrase", "tenant": fresh})).await;
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["tenant"], fresh.as_str());
    assert_ne!(answer["userId"], user.user_id.as_str());
    // The tenant was not created: someone else may still take it, and the
    // original account still logs in with its own password.
    let r = sb.post_public("/v1/auth:signUp", &json!({"email": format!("{fresh}@example.com"), "password": "another good passphrase", "tenant": fresh})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    sb.login(&user.email, &user.password).await;
    // A taken tenant.
    let r = sb.post_public("/v1/auth:signUp", &json!({"email": "new-person@example.com", "password": "another good passphrase", "tenant": user.tenant})).await;
    expect_error(r, 409, 6, "already exists").await;
    // A weak password, with the violation in the details.
    let r = sb
        .post_public(
            "/v1/auth:signUp",
            &json!({"email": "weak@example.com", "password": "short", "tenant": "weak-tenant"}),
        )
        .await;
    let body = expect_error(r, 400, 3, "password").await;
    let details = body["details"].to_string();
    assert!(
        details.contains("BadRequest") && details.contains("password"),
        "{details}"
    );

    // Wrong password and unknown user: the same answer.
    let wrong = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": user.email, "password": "not the password at all"}),
        )
        .await;
    let a = expect_error(wrong, 401, 16, "invalid email or password").await;
    let unknown = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": "nobody-here@example.com", "password": "not the password at all"}),
        )
        .await;
    let b = expect_error(unknown, 401, 16, "invalid email or password").await;
    assert_eq!(a, b);

    // The login still works with any email case.
    sb.login(&user.email.to_uppercase(), &user.password).await;
}
