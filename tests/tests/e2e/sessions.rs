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

/// Waits until the documents service refuses `token` as revoked:
/// revocations reach verifiers by pull (every 100 ms in the sandbox), so
/// this polls, for at most 10 s.
pub(crate) async fn refused_as_revoked(sb: &Sandbox, token: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = sb.get("/v1/documents", token).await;
        if r.status() == 401 {
            let body = r.text().await.unwrap();
            assert!(body.contains("token revoked"), "{body}");
            return;
        }
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        assert!(
            std::time::Instant::now() < deadline,
            "the token still works 10 s after its revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
    // Every access token issued so far dies with the sign-out, the caller's
    // included; a login right after it (even within the same second) works.
    let d = login_body(sb, &user.email, &user.password).await;
    refused_as_revoked(sb, c["accessToken"].as_str().unwrap()).await;
    refused_as_revoked(sb, &user.token).await;
    let fresh = d["accessToken"].as_str().unwrap();
    assert_eq!(sb.get("/v1/documents", fresh).await.status(), 200);
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
            // RFC 6750: a 401 challenges, and names no error when the
            // request carried no credentials.
            assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"cloudsec\"");
            expect_error(r, 401, 16, "invalid email or password").await;
        }
        let r = sb
            .post_public(
                "/v1/auth:login",
                &json!({"email": email, "password": "wrong password entirely"}),
            )
            .await;
        // The lock's delay is in HTTP's own header too, in whole seconds.
        let retry_after: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=30).contains(&retry_after), "{retry_after}");
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

pub(crate) fn payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

/// OpenID discovery and the ID token through the gateway: the discovery
/// document is public, names the issuer and a JWKS that verifies the ID
/// token, and login and refresh both return an ID token about the user.
pub(crate) async fn openid_discovery_and_id_tokens(sb: &Sandbox) {
    let r = sb
        .http
        .get(sb.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "public, no token needed");
    let discovery: serde_json::Value = r.json().await.unwrap();
    assert_eq!(discovery["issuer"], "https://auth.cloudsec.local");
    assert_eq!(
        discovery["jwks_uri"],
        "https://auth.cloudsec.local/.well-known/jwks.json"
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert!(
        discovery["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("email"))
    );

    let user = sb.user().await;
    let login = login_body(sb, &user.email, &user.password).await;
    let id = payload(login["idToken"].as_str().expect("idToken"));
    assert_eq!(id["token_use"], "id");
    assert_eq!(id["sub"], user.user_id.as_str());
    assert_eq!(id["email"], user.email.as_str());
    assert_eq!(id["aud"], "cloudsec", "the app client");
    assert_eq!(id["iss"], discovery["issuer"]);
    assert_eq!(id["tenant"], user.tenant.as_str());
    // Signed by a key the published JWKS holds.
    let header: serde_json::Value = {
        use base64::Engine;
        let part = login["idToken"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    let jwks: serde_json::Value = sb
        .http
        .get(sb.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"])
    );
    // An ID token is not an access token, although the same key signs it
    // for the same audience: the gateway and the service refuse it.
    let r = sb
        .get("/v1/documents", login["idToken"].as_str().unwrap())
        .await;
    crate::expect_error(r, 401, 16, "not an access token").await;

    let r = refresh(sb, &login["refreshToken"]).await;
    assert_eq!(r.status(), 200);
    let refreshed: serde_json::Value = r.json().await.unwrap();
    let again = payload(refreshed["idToken"].as_str().expect("idToken"));
    assert_eq!(again["sub"], id["sub"]);
    assert_eq!(again["auth_time"], id["auth_time"], "the login's time");
}

/// A tenant admin adds, disables, enables and deletes users of their own
/// tenant through the gateway; a disabled user can neither log in nor
/// refresh; non-admins and other tenants' admins cannot touch them.
pub(crate) async fn admins_manage_the_users_of_their_tenant(sb: &Sandbox) {
    let admin = sb.user().await;
    let email = format!(
        "bob-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let password = "bob's long passphrase";
    let r = sb
        .post(
            "/v1/users",
            &admin.token,
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let created: serde_json::Value = r.json().await.unwrap();
    let bob_id = created["userId"].as_str().unwrap().to_owned();
    assert_eq!(created["tenant"], admin.tenant.as_str());

    // Bob is a plain member of the tenant: no admin scope, same documents.
    let bob = login_body(sb, &email, password).await;
    let bob_token = bob["accessToken"].as_str().unwrap().to_owned();
    let r = sb
        .post(
            "/v1/users",
            &bob_token,
            &json!({"email": "eve@example.com", "password": "eve's long passphrase"}),
        )
        .await;
    assert_eq!(r.status(), 403, "members cannot add users");
    crate::create(
        sb,
        &admin.token,
        json!({"title": "shared", "classification": "INTERNAL", "content": "x"}),
    )
    .await;
    assert_eq!(crate::document_ids(sb, &bob_token).await.len(), 1);

    // Bad input and other tenants.
    let r = sb
        .post(
            "/v1/users",
            &admin.token,
            &json!({"email": email, "password": password}),
        )
        .await;
    expect_error(r, 409, 6, "already exists").await;
    let r = sb
        .post(
            "/v1/users",
            &admin.token,
            &json!({"email": "weak@example.com", "password": "short"}),
        )
        .await;
    expect_error(r, 400, 3, "at least 12").await;
    let other = sb.user().await;
    let r = sb
        .post(
            &format!("/v1/users/{bob_id}:disable"),
            &other.token,
            &json!({}),
        )
        .await;
    expect_error(r, 404, 5, "not found").await;
    let r = sb
        .post(
            &format!("/v1/users/{}:disable", admin.user_id),
            &admin.token,
            &json!({}),
        )
        .await;
    expect_error(r, 400, 3, "themself").await;

    // Disabled: the login is revoked and no new one is possible.
    let r = sb
        .post(
            &format!("/v1/users/{bob_id}:disable"),
            &admin.token,
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = refresh(sb, &bob["refreshToken"]).await;
    expect_error(r, 401, 16, "invalid refresh token").await;
    // The access token Bob still holds stops working too.
    refused_as_revoked(sb, &bob_token).await;
    let r = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": email, "password": password}),
        )
        .await;
    expect_error(r, 401, 16, "invalid email or password").await;

    // Enabled again, then deleted.
    let r = sb
        .post(
            &format!("/v1/users/{bob_id}:enable"),
            &admin.token,
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let again = login_body(sb, &email, password).await;
    let again_token = again["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(crate::document_ids(sb, &again_token).await.len(), 1);
    let r = sb
        .delete(&format!("/v1/users/{bob_id}"), &admin.token)
        .await;
    assert_eq!(r.status(), 200);
    refused_as_revoked(sb, &again_token).await;
    let r = refresh(sb, &again["refreshToken"]).await;
    expect_error(r, 401, 16, "invalid refresh token").await;
    let r = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": email, "password": password}),
        )
        .await;
    expect_error(r, 401, 16, "invalid email or password").await;
    let r = sb
        .delete(&format!("/v1/users/{bob_id}"), &admin.token)
        .await;
    expect_error(r, 404, 5, "not found").await;
}

/// Changing a password through the gateway: the previous one must be
/// right, the new one must pass the policy and not repeat a recent one, and
/// every login of the user is revoked afterwards.
pub(crate) async fn change_password_checks_and_revokes(sb: &Sandbox) {
    let user = sb.user().await;
    let login = login_body(sb, &user.email, &user.password).await;
    let change = |previous: &str, proposed: &str| {
        let body = json!({"previousPassword": previous, "proposedPassword": proposed});
        let token = user.token.clone();
        async move { sb.post("/v1/auth:changePassword", &token, &body).await }
    };
    let r = change("not my password at all", "a brand new passphrase").await;
    expect_error(r, 400, 3, "is not the current password").await;
    let r = change(&user.password, "short").await;
    expect_error(r, 400, 3, "at least 12").await;
    let r = change(&user.password, "Password123456").await;
    expect_error(r, 400, 3, "common or breached").await;
    let r = change(&user.password, &user.password).await;
    expect_error(r, 400, 3, "must differ from the last 5").await;
    let r = sb
        .post_public(
            "/v1/auth:changePassword",
            &json!({"previousPassword": user.password, "proposedPassword": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), 401, "needs the user's access token");

    let r = change(&user.password, "a brand new passphrase").await;
    assert_eq!(r.status(), 200);
    let r = refresh(sb, &login["refreshToken"]).await;
    expect_error(r, 401, 16, "invalid refresh token").await;
    let r = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": user.email, "password": user.password}),
        )
        .await;
    expect_error(r, 401, 16, "invalid email or password").await;
    let fresh = login_body(sb, &user.email, "a brand new passphrase").await;
    refused_as_revoked(sb, &user.token).await;
    // The old password is in the history now.
    let body =
        json!({"previousPassword": "a brand new passphrase", "proposedPassword": user.password});
    let r = sb
        .post(
            "/v1/auth:changePassword",
            fresh["accessToken"].as_str().unwrap(),
            &body,
        )
        .await;
    expect_error(r, 400, 3, "must differ from the last 5").await;
}

/// Groups reach the documents service through the access token: a member
/// added to `restricted` by the tenant admin sees restricted documents
/// from their next token on, and loses them when removed.
pub(crate) async fn groups_open_restricted_documents(sb: &Sandbox) {
    let admin = sb.user().await;
    let email = format!(
        "rita-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let password = "rita's long passphrase";
    let r = sb
        .post(
            "/v1/users",
            &admin.token,
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let rita: serde_json::Value = r.json().await.unwrap();
    let rita_id = rita["userId"].as_str().unwrap().to_owned();
    let secret = crate::create(
        sb,
        &admin.token,
        json!({"title": "merger", "classification": "RESTRICTED", "content": "terms"}),
    )
    .await;
    let secret_id = secret["id"].as_str().unwrap();

    let token = |body: serde_json::Value| body["accessToken"].as_str().unwrap().to_owned();
    let before = token(login_body(sb, &email, password).await);
    let r = sb.get(&format!("/v1/documents/{secret_id}"), &before).await;
    expect_error(r, 404, 5, "not found").await;
    let r = sb
        .post(
            "/v1/documents",
            &before,
            &json!({"title": "mine", "classification": "RESTRICTED", "content": "x"}),
        )
        .await;
    expect_error(r, 403, 7, "restricted group").await;

    let r = sb
        .post(
            &format!("/v1/users/{rita_id}/groups"),
            &admin.token,
            &json!({"group": "restricted"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = sb
        .post(
            &format!("/v1/users/{rita_id}/groups"),
            &admin.token,
            &json!({"group": "no spaces allowed"}),
        )
        .await;
    // The contract's rule, checked at the edge, says what is wanted.
    let body = expect_error(r, 400, 3, "invalid field: group").await;
    assert_eq!(
        body["details"][0]["fieldViolations"][0]["description"],
        "must be 1 to 64 letters, digits, `-`, `_` and `.`"
    );
    let member = token(login_body(sb, &email, password).await);
    let r = sb.get(&format!("/v1/documents/{secret_id}"), &member).await;
    assert_eq!(r.status(), 200);
    let claims: serde_json::Value = {
        use base64::Engine;
        let part = member.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["cognito:groups"], json!(["restricted"]));

    let r = sb
        .delete(
            &format!("/v1/users/{rita_id}/groups/restricted"),
            &admin.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    let after = token(login_body(sb, &email, password).await);
    let r = sb.get(&format!("/v1/documents/{secret_id}"), &after).await;
    expect_error(r, 404, 5, "not found").await;
}

/// Sign-up confirmation and password reset, with the codes read from the
/// bus as a mailer reads them.
pub(crate) async fn sign_up_confirmation_and_password_reset(sb: &Sandbox) {
    use cloudsec_proto::events::v1::ConfirmationPurpose;

    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let email = format!("new-{suffix}@example.com");
    let password = "correct horse battery staple";
    let r = sb
        .post_public(
            "/v1/auth:signUp",
            &json!({"email": email, "password": password, "tenant": format!("t-{suffix}")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Not confirmed: the right password gets a 400 that says so.
    let r = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": email, "password": password}),
        )
        .await;
    expect_error(r, 400, 9, "not confirmed").await;

    let code = sb.code(&email, ConfirmationPurpose::SignUp).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for (who, what) in [
        (email.as_str(), wrong),
        ("nobody@example.com", code.as_str()),
    ] {
        let r = sb
            .post_public(
                "/v1/auth:confirmSignUp",
                &json!({"email": who, "code": what}),
            )
            .await;
        expect_error(r, 400, 3, "code: is wrong or has expired").await;
    }
    // A resend within the minute sends nothing and answers the same.
    let r = sb
        .post_public("/v1/auth:resendConfirmationCode", &json!({"email": email}))
        .await;
    assert_eq!(r.status(), 200);
    let r = sb
        .post_public(
            "/v1/auth:confirmSignUp",
            &json!({"email": email, "code": code}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let before = login_body(sb, &email, password).await;

    // Forgot password: unknown emails get the same 200 and no mail.
    for who in ["nobody@example.com", email.as_str()] {
        let r = sb
            .post_public("/v1/auth:forgotPassword", &json!({"email": who}))
            .await;
        assert_eq!(r.status(), 200);
    }
    let reset = sb.code(&email, ConfirmationPurpose::PasswordReset).await;
    assert!(!sb.has_mail("nobody@example.com"));
    let r = sb
        .post_public(
            "/v1/auth:confirmForgotPassword",
            &json!({"email": email, "code": reset, "password": "password"}),
        )
        .await;
    expect_error(r, 400, 3, "password").await;
    let r = sb
        .post_public(
            "/v1/auth:confirmForgotPassword",
            &json!({"email": email, "code": reset, "password": "an entirely new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // The old login and the old password are gone.
    let r = refresh(sb, &before["refreshToken"]).await;
    assert_eq!(r.status(), 401);
    let r = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status(), 401);
    login_body(sb, &email, "an entirely new passphrase").await;
}

/// TOTP through the gateway: enrol while logged in, then log in with a
/// code; the secret is sealed in the auth database.
pub(crate) async fn mfa_enrolment_and_login(sb: &Sandbox) {
    use sea_orm::{ConnectionTrait, Database, Statement};

    let user = sb.user().await;
    let r = sb
        .post("/v1/auth:associateSoftwareToken", &user.token, &json!({}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let enrol: serde_json::Value = r.json().await.unwrap();
    let secret = enrol["secretCode"].as_str().unwrap().to_owned();
    assert!(enrol["qrCodeSvg"].as_str().unwrap().contains("<svg"));
    let now = chrono::Utc::now();
    let code = cloudsec_auth::mfa::code_at(&secret, now).unwrap();
    let r = sb
        .post(
            "/v1/auth:verifySoftwareToken",
            &user.token,
            &json!({"code": code}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let done: serde_json::Value = r.json().await.unwrap();
    assert_eq!(done["recoveryCodes"].as_array().unwrap().len(), 10);

    // The secret is sealed, not stored in the clear.
    let db = Database::connect(&sb.auth_database_url()).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT secret FROM mfa_totp",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stored: String = rows[0].try_get("", "secret").unwrap();
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    db.close().await.unwrap();

    // A login now stops at the challenge.
    let r = sb
        .post_public(
            "/v1/auth:login",
            &json!({"email": user.email, "password": user.password}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let challenge: serde_json::Value = r.json().await.unwrap();
    assert_eq!(challenge["challengeName"], "SOFTWARE_TOKEN_MFA");
    assert!(challenge.get("accessToken").is_none_or(|t| t == ""));
    // The enrolment code is spent; the next step's code (one step of
    // drift) completes the login without waiting.
    let r = sb
        .post_public(
            "/v1/auth:respondToAuthChallenge",
            &json!({"session": challenge["session"], "code": code}),
        )
        .await;
    expect_error(r, 400, 3, "code").await;
    let ahead = cloudsec_auth::mfa::code_at(&secret, now + chrono::Duration::seconds(30)).unwrap();
    let r = sb
        .post_public(
            "/v1/auth:respondToAuthChallenge",
            &json!({"session": challenge["session"], "code": ahead}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let tokens: serde_json::Value = r.json().await.unwrap();
    let r = sb
        .get("/v1/documents", tokens["accessToken"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 200);

    // The authenticator is lost: another admin of the tenant resets it,
    // and the next login asks for no code.
    let second = format!(
        "second-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let password = "second admin's long passphrase";
    let r = sb
        .post(
            "/v1/users",
            tokens["accessToken"].as_str().unwrap(),
            &json!({"email": second, "password": password, "tenantAdmin": true}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let other_admin = sb.login(&second, password).await;
    let r = sb
        .post(
            &format!("/v1/users/{}:resetMfa", user.user_id),
            &other_admin,
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let after = login_body(sb, &user.email, &user.password).await;
    assert!(
        after.get("challengeName").is_none_or(|c| c == ""),
        "{after}"
    );
    assert!(after["accessToken"].as_str().is_some_and(|t| !t.is_empty()));
}

/// Roles: membership of `auditors` maps to the `audit:read` scope, which
/// the audit service accepts; admins list the groups.
pub(crate) async fn groups_map_to_scopes(sb: &Sandbox) {
    let admin = sb.user().await;
    let email = format!(
        "ava-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let password = "ava's long passphrase";
    let r = sb
        .post(
            "/v1/users",
            &admin.token,
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let ava: serde_json::Value = r.json().await.unwrap();
    let ava_id = ava["userId"].as_str().unwrap().to_owned();
    let token = |body: serde_json::Value| body["accessToken"].as_str().unwrap().to_owned();

    let plain = token(login_body(sb, &email, password).await);
    assert_eq!(payload(&plain)["scope"], "documents");
    let r = sb.get("/v1/audit/records", &plain).await;
    expect_error(r, 403, 7, "audit:read").await;
    // Members may not list groups.
    let r = sb.get("/v1/groups", &plain).await;
    assert_eq!(r.status(), 403);

    let r = sb
        .post(
            &format!("/v1/users/{ava_id}/groups"),
            &admin.token,
            &json!({"group": "auditors"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let auditor = token(login_body(sb, &email, password).await);
    assert_eq!(payload(&auditor)["scope"], "audit:read documents");
    let r = sb.get("/v1/audit/records", &auditor).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    let r = sb.get("/v1/groups", &admin.token).await;
    assert_eq!(r.status(), 200);
    let listed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        listed["groups"],
        json!([{"name": "auditors", "memberIds": [ava_id], "scopes": ["audit:read"]}]),
        "{listed}"
    );
    // Another tenant's admin sees none of it.
    let other = sb.user().await;
    let r = sb.get("/v1/groups", &other.token).await;
    let theirs: serde_json::Value = r.json().await.unwrap();
    assert!(
        theirs.get("groups").is_none_or(|g| g == &json!([])),
        "{theirs}"
    );

    // Out of the group, out of the scope at the next token.
    let r = sb
        .delete(&format!("/v1/users/{ava_id}/groups/auditors"), &admin.token)
        .await;
    assert_eq!(r.status(), 200);
    let after = token(login_body(sb, &email, password).await);
    assert_eq!(payload(&after)["scope"], "documents");
}

/// App clients: a registered client's logins get its lifetimes and at most
/// its scopes, across refreshes; unknown clients are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_clients_set_lifetimes_and_scopes() {
    let extra = cloudsec_tests::Extra {
        toml: "[auth.clients.reports]\naccess_token_ttl = \"5m\"\nrefresh_token_ttl = \"1h\"\n\
               scopes = [\"documents\"]\n"
            .into(),
        ..cloudsec_tests::Extra::default()
    };
    let sb = Sandbox::start_with(cloudsec_tests::Backend::Sqlite, extra)
        .await
        .expect("sqlite sandbox");
    let admin = sb.user().await;
    let login = |client: &'static str| {
        let sb = &sb;
        let admin = &admin;
        async move {
            sb.post_public(
                "/v1/auth:login",
                &json!({"email": admin.email, "password": admin.password, "clientId": client}),
            )
            .await
        }
    };

    let r = login("reports").await;
    assert_eq!(r.status(), 200);
    let reports: serde_json::Value = r.json().await.unwrap();
    assert_eq!(reports["expiresIn"], 300);
    let access = payload(reports["accessToken"].as_str().unwrap());
    assert_eq!(access["scope"], "documents", "{access}");
    assert_eq!(access["client_id"], "reports");
    assert_eq!(
        access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
        300
    );
    assert_eq!(
        payload(reports["idToken"].as_str().unwrap())["aud"],
        "reports"
    );
    // The narrower token cannot do what the admin's default one can.
    let r = sb
        .get(
            "/v1/audit/records",
            reports["accessToken"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status(), 403);
    // A refresh stays with the client.
    let r = refresh(&sb, &reports["refreshToken"]).await;
    assert_eq!(r.status(), 200);
    let refreshed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(refreshed["expiresIn"], 300);
    assert_eq!(
        payload(refreshed["accessToken"].as_str().unwrap())["scope"],
        "documents"
    );

    // The default client: the platform's lifetimes, every scope.
    let r = login("").await;
    let default: serde_json::Value = r.json().await.unwrap();
    assert_eq!(default["expiresIn"], 900);
    assert_eq!(
        payload(default["accessToken"].as_str().unwrap())["scope"],
        "documents tenant:admin"
    );
    let r = login("nope").await;
    expect_error(r, 400, 3, "client_id").await;
    sb.stop().await;
}

/// Confirmation and reset codes never travel in clear: not in a published
/// event, not in an outbox row; only the mailer (here, the sandbox, which
/// holds the mailer's key) reads them.
pub(crate) async fn codes_never_travel_in_clear(sb: &Sandbox) {
    use cloudsec_proto::events::v1::{ConfirmationPurpose, UserConfirmationRequested};
    use sea_orm::{ConnectionTrait, Database, Statement};

    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let email = format!("sealed-{suffix}@example.com");
    let password = "correct horse battery staple";
    let r = sb
        .post_public(
            "/v1/auth:signUp",
            &json!({"email": email, "password": password, "tenant": format!("s-{suffix}")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let sign_up = sb.code(&email, ConfirmationPurpose::SignUp).await;
    sb.post_public(
        "/v1/auth:confirmSignUp",
        &json!({"email": email, "code": sign_up}),
    )
    .await;
    let r = sb
        .post_public("/v1/auth:forgotPassword", &json!({"email": email}))
        .await;
    assert_eq!(r.status(), 200);
    let reset = sb.code(&email, ConfirmationPurpose::PasswordReset).await;

    // Every outbox row of the auth database.
    let db = Database::connect(sb.auth_database_url()).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT envelope FROM bus_outbox",
        ))
        .await
        .unwrap();
    let outbox: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "envelope").unwrap())
        .collect();
    // Every message a subscriber of every event type received, once both
    // codes' events have arrived there.
    let wire = cloudsec_tests::eventually(std::time::Duration::from_secs(20), || async {
        let wire = sb.wire();
        let requests = wire
            .iter()
            .filter_map(|body| cloudsec_bus::Envelope::from_json(body).ok())
            .filter_map(|e| e.decode::<UserConfirmationRequested>().ok())
            .filter(|r| r.email == email)
            .count();
        (requests >= 2).then_some(wire)
    })
    .await
    .expect("both requests reach a subscriber of every event");
    for code in [&sign_up, &reset] {
        for (place, texts) in [("an outbox row", &outbox), ("a published message", &wire)] {
            for text in texts.iter() {
                // The JSON body and, inside it, the base64 protobuf.
                let decoded = cloudsec_bus::Envelope::from_json(text)
                    .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                    .unwrap_or_default();
                assert!(
                    !text.contains(code.as_str()) && !decoded.contains(code.as_str()),
                    "the code {code} is readable in {place}: {text}"
                );
            }
        }
    }
    // A sealed code is bound to its recipient: moved into an event for
    // another address, it does not open, even with the mailer's key.
    let request = wire
        .iter()
        .filter_map(|body| cloudsec_bus::Envelope::from_json(body).ok())
        .filter_map(|e| e.decode::<UserConfirmationRequested>().ok())
        .find(|r| r.email == email)
        .unwrap();
    let mut forged = request.clone();
    forged.email = "attacker@example.com".into();
    assert!(sb.open_code(&request).await.is_ok());
    assert!(sb.open_code(&forged).await.is_err());
}
