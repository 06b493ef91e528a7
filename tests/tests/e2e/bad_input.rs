//! Client mistakes: each gets a clear 4xx and changes nothing.

use serde_json::json;

use crate::{create, document_ids, expect_error};
use cloudsec_tests::Sandbox;

async fn post_raw(sb: &Sandbox, token: &str, body: &str) -> reqwest::Response {
    sb.http
        .post(sb.url("/v1/documents"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request")
}

pub(crate) async fn malformed_json(sb: &Sandbox) {
    let user = sb.user().await;
    for body in [r#"{"title": "#, "not json", r#"{"title": "x",}"#, "[1,2]"] {
        let r = post_raw(sb, &user.token, body).await;
        expect_error(r, 400, 3, "").await;
    }
    assert!(document_ids(sb, &user.token).await.is_empty());
}

pub(crate) async fn unknown_fields(sb: &Sandbox) {
    let user = sb.user().await;
    let r = post_raw(
        sb,
        &user.token,
        r#"{"title": "x", "classification": "PUBLIC", "colour": "red"}"#,
    )
    .await;
    expect_error(r, 400, 3, "colour").await;
    let r = sb
        .get("/v1/documents?pageSize=2&colour=red", &user.token)
        .await;
    expect_error(r, 400, 3, "colour").await;
    assert!(document_ids(sb, &user.token).await.is_empty());
}

pub(crate) async fn wrong_types(sb: &Sandbox) {
    let user = sb.user().await;
    for body in [
        r#"{"title": 42, "classification": "PUBLIC"}"#,
        r#"{"title": "x", "classification": "TOP_SECRET"}"#,
        r#"{"title": "x", "classification": "PUBLIC", "labels": ["a"]}"#,
    ] {
        let r = post_raw(sb, &user.token, body).await;
        expect_error(r, 400, 3, "").await;
    }
    let r = sb.get("/v1/documents?pageSize=lots", &user.token).await;
    expect_error(r, 400, 3, "page").await;
    assert!(document_ids(sb, &user.token).await.is_empty());
}

pub(crate) async fn missing_required_fields(sb: &Sandbox) {
    let user = sb.user().await;
    let r = post_raw(sb, &user.token, r#"{"content": "no title"}"#).await;
    let body = expect_error(r, 400, 3, "title").await;
    let details = body["details"].to_string();
    assert!(details.contains("BadRequest"), "{details}");
    assert!(details.contains("document.title"), "{details}");
    assert!(details.contains("document.classification"), "{details}");

    let r = sb
        .post_public("/v1/auth:signUp", &json!({"email": "", "password": ""}))
        .await;
    let body = expect_error(r, 400, 3, "email").await;
    let details = body["details"].to_string();
    for field in ["email", "password", "tenant"] {
        assert!(
            details.contains(&format!("\"{field}\"")),
            "{field} missing in {details}"
        );
    }
    assert!(document_ids(sb, &user.token).await.is_empty());
}

pub(crate) async fn oversized_body(sb: &Sandbox) {
    let user = sb.user().await;
    // Over the gateway's body limit: refused before any parsing.
    let huge = "x".repeat(3 * 1024 * 1024);
    let r = post_raw(
        sb,
        &user.token,
        &format!(r#"{{"title":"big","classification":"PUBLIC","content":"{huge}"}}"#),
    )
    .await;
    expect_error(r, 413, 3, "").await;
    // Within the body limit but over the 1 MiB content rule.
    let content = "y".repeat(1024 * 1024 + 1);
    let r = post_raw(
        sb,
        &user.token,
        &format!(r#"{{"title":"big","classification":"PUBLIC","content":"{content}"}}"#),
    )
    .await;
    expect_error(r, 400, 3, "content").await;
    // Exactly 1 MiB is fine.
    let content = "z".repeat(1024 * 1024);
    let doc = create(
        sb,
        &user.token,
        json!({"title": "max", "classification": "PUBLIC", "content": content}),
    )
    .await;
    assert_eq!(doc["sizeBytes"], "1048576");
    assert_eq!(document_ids(sb, &user.token).await.len(), 1);
}

pub(crate) async fn forged_page_token(sb: &Sandbox) {
    let alice = sb.user().await;
    let mallory = sb.user().await;
    for i in 0..3 {
        create(
            sb,
            &alice.token,
            json!({"title": format!("a{i}"), "classification": "PUBLIC"}),
        )
        .await;
    }
    let page: serde_json::Value = sb
        .get("/v1/documents?pageSize=1", &alice.token)
        .await
        .json()
        .await
        .unwrap();
    let token = page["nextPageToken"]
        .as_str()
        .expect("a next page")
        .to_owned();

    // Alice's token is no key to her rows for another tenant.
    let r = sb
        .get(&format!("/v1/documents?pageToken={token}"), &mallory.token)
        .await;
    expect_error(r, 400, 3, "page_token").await;

    // Nor is it reusable with other filters, nor after tampering.
    let r = sb
        .get(
            &format!("/v1/documents?pageToken={token}&classification=INTERNAL"),
            &alice.token,
        )
        .await;
    expect_error(r, 400, 3, "page_token").await;
    let mut tampered = token.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for forged in [tampered.as_str(), "garbage", "eyJ0IjoieCJ9"] {
        let r = sb
            .get(&format!("/v1/documents?pageToken={forged}"), &alice.token)
            .await;
        expect_error(r, 400, 3, "page_token").await;
    }
    assert_eq!(document_ids(sb, &alice.token).await.len(), 3);
    assert!(document_ids(sb, &mallory.token).await.is_empty());
}

pub(crate) async fn unknown_route(sb: &Sandbox) {
    let r = sb
        .http
        .get(sb.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, 5, "").await;
    let r = sb
        .http
        .put(sb.url("/v1/documents"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 404 | 405), "{}", r.status());
}
