//! Refresh tokens and lockout through the gateway: rotation, reuse
//! detection, logout, global sign-out, and the lockout that answers known
//! and unknown emails alike.

use serde_json::json;

use crate::expect_error;
use cloudsec_tests::Sandbox;

async fn login_body(sb: &Sandbox, email: &str, password: &str) -> serde_json::Value {
    let r = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn refresh(sb: &Sandbox, token: &serde_json::Value) -> reqwest::Response {
    sb.post_public("/v1/auth:refresh", &json!({"refreshToken": token}))
        .await
}

pub(crate) async fn refresh_rotates_and_reuse_revokes(sb: &Sandbox) {
    let user = sb.user().await;
    let first = login_body(sb, &user.email, &user.password).await;
    assert!(
        first["refreshToken"]
            .as_str()
            .is_some_and(|t| t.len() >= 43)
    );

    let r = refresh(sb, &first["refreshToken"]).await;
    assert_eq!(r.status(), 200);
    let second: serde_json::Value = r.json().await.unwrap();
    assert_ne!(second["refreshToken"], first["refreshToken"], "rotated");
    // The new access token works.
    let token = second["accessToken"].as_str().unwrap();
    assert_eq!(sb.get("/v1/documents", token).await.status(), 200);

    // The spent token again: 401, and its successor is revoked with it.
    expect_error(refresh(sb, &first["refreshToken"]).await, 401, 16, "").await;
    expect_error(refresh(sb, &second["refreshToken"]).await, 401, 16, "").await;

    // Logout revokes a login; global sign-out revokes all of them.
    let a = login_body(sb, &user.email, &user.password).await;
    let b = login_body(sb, &user.email, &user.password).await;
    let r = sb
        .post_public(
            "/v1/auth:logout",
            &json!({"refreshToken": a["refreshToken"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    expect_error(refresh(sb, &a["refreshToken"]).await, 401, 16, "").await;
    assert_eq!(refresh(sb, &b["refreshToken"]).await.status(), 200);
    let c = login_body(sb, &user.email, &user.password).await;
    let r = sb
        .post(
            "/v1/auth:globalSignOut",
            c["accessToken"].as_str().unwrap(),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    expect_error(refresh(sb, &c["refreshToken"]).await, 401, 16, "").await;
}

pub(crate) async fn lockout_answers_known_and_unknown_alike(sb: &Sandbox) {
    let user = sb.user().await;
    let unknown = format!("nobody-{}@example.com", &user.tenant[2..]);
    for email in [user.email.as_str(), unknown.as_str()] {
        for _ in 0..5 {
            let r = sb
                .post_public(
                    "/v1/auth:login",
                    &json!({"email": email, "password": "wrong password entirely"}),
                )
                .await;
            expect_error(r, 401, 16, "invalid email or password").await;
        }
        let r = sb
            .post_public(
                "/v1/auth:login",
                &json!({"email": email, "password": "wrong password entirely"}),
            )
            .await;
        let body = expect_error(r, 429, 8, "too many failed attempts").await;
        assert!(body.to_string().contains("RetryInfo"), "{body}");
    }
    // While locked, even the right password is refused.
    let r = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": user.email, "password": user.password}),
        )
        .await;
    expect_error(r, 429, 8, "").await;
}
