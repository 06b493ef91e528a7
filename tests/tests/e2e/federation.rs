//! Sign in with an external OpenID Connect provider, started inside the
//! test (`cloudsec_tests::oidc`): authorization code with PKCE, through
//! the gateway, as a browser and an app would drive it.

use serde_json::{Value, json};

use crate::expect_error;
use crate::sessions::payload;
use cloudsec_tests::oidc::{OidcProvider, ProviderUser};
use cloudsec_tests::{Backend, Extra, Sandbox};

const REDIRECT: &str = "https://app.example/callback";

/// Start, follow the provider's redirect as a browser would, and return
/// the app's `CompleteFederatedLogin` body (state and code).
async fn sign_in_at_provider(sb: &Sandbox) -> Value {
    sign_in_with(sb, "corp-idp").await
}

/// [`sign_in_at_provider`] with the configured provider `provider`.
async fn sign_in_with(sb: &Sandbox, provider: &str) -> Value {
    let r = sb
        .post_public(
            "/v1/auth:startFederatedLogin",
            &json!({"provider": provider}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let started: Value = r.json().await.unwrap();
    let url = url::Url::parse(started["authorizationUrl"].as_str().unwrap()).unwrap();
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43, "SHA-256 in base64url");
    assert_eq!(query["state"], started["state"].as_str().unwrap());
    assert!(!query["nonce"].is_empty());
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser.get(url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    let back: std::collections::HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(back["state"], started["state"].as_str().unwrap());
    json!({"state": back["state"], "code": back["code"]})
}

async fn complete(sb: &Sandbox, body: &Value) -> reqwest::Response {
    sb.post_public("/v1/auth:completeFederatedLogin", body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_federation_with_pkce_state_and_nonce() {
    let idp = OidcProvider::start("cloudsec-app").await;
    let extra = Extra {
        toml: format!(
            "[auth.federation.corp-idp]\nissuer = \"{}\"\nclient_id = \"cloudsec-app\"\n\
             redirect_uri = \"{REDIRECT}\"\ntenant = \"corp\"\n\
             [auth.federation.corp-groups]\nissuer = \"{0}\"\nclient_id = \"cloudsec-app\"\n\
             redirect_uri = \"{REDIRECT}\"\ntenant = \"corp\"\n\
             attributes = {{ email = \"mail\", groups = \"roles\" }}\n\
             group_map = {{ idp-finance = \"restricted\", idp-audit = \"auditors\" }}\n",
            idp.issuer
        ),
        ..Extra::default()
    };
    let sb = Sandbox::start_with(Backend::Sqlite, extra)
        .await
        .expect("sqlite sandbox");
    // The tenant federated users join, with its admin.
    let admin_email = "admin@corp.example";
    let r = sb
        .post_public(
            "/v1/auth:signUp",
            &json!({"email": admin_email, "password": "correct horse battery staple", "tenant": "corp"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let admin_id = r.json::<Value>().await.unwrap()["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    sb.confirm(admin_email).await;

    // A new user: created in the provider's tenant, as a member.
    idp.sign_in_as(ProviderUser {
        sub: "idp-42".into(),
        email: "New.Person@corp.example".into(),
        email_verified: true,
        ..ProviderUser::default()
    });
    let first = sign_in_at_provider(&sb).await;
    let r = complete(&sb, &first).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let tokens: Value = r.json().await.unwrap();
    let claims = payload(tokens["accessToken"].as_str().unwrap());
    assert_eq!(claims["tenant"], "corp");
    assert_eq!(claims["scope"], "documents");
    let new_user = claims["sub"].as_str().unwrap().to_owned();
    assert_ne!(new_user, admin_id);
    assert_eq!(
        payload(tokens["idToken"].as_str().unwrap())["email"],
        "new.person@corp.example"
    );
    let r = sb
        .get("/v1/documents", tokens["accessToken"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 200);
    // The state is single-use.
    let r = complete(&sb, &first).await;
    expect_error(r, 401, 16, "start again").await;

    // The same provider user again is the same cloudsec user (linked).
    let again = sign_in_at_provider(&sb).await;
    let tokens: Value = complete(&sb, &again).await.json().await.unwrap();
    assert_eq!(
        payload(tokens["accessToken"].as_str().unwrap())["sub"],
        new_user.as_str()
    );

    // A verified email links to the existing account of that email.
    idp.sign_in_as(ProviderUser {
        sub: "idp-admin".into(),
        email: admin_email.into(),
        email_verified: true,
        ..ProviderUser::default()
    });
    let linked = sign_in_at_provider(&sb).await;
    let tokens: Value = complete(&sb, &linked).await.json().await.unwrap();
    let claims = payload(tokens["accessToken"].as_str().unwrap());
    assert_eq!(claims["sub"], admin_id.as_str());
    assert_eq!(claims["scope"], "documents tenant:admin");

    // An unverified email is never linked, nor made an account.
    idp.sign_in_as(ProviderUser {
        sub: "idp-mallory".into(),
        email: admin_email.into(),
        email_verified: false,
        ..ProviderUser::default()
    });
    let unverified = sign_in_at_provider(&sb).await;
    let r = complete(&sb, &unverified).await;
    expect_error(r, 401, 16, "not verified").await;

    // An ID token that answers another sign-in (wrong nonce) is refused.
    idp.sign_in_as(ProviderUser {
        sub: "idp-42".into(),
        email: "new.person@corp.example".into(),
        email_verified: true,
        ..ProviderUser::default()
    });
    idp.send_wrong_nonce(true);
    let replayed = sign_in_at_provider(&sb).await;
    let r = complete(&sb, &replayed).await;
    expect_error(r, 401, 16, "nonce").await;
    idp.send_wrong_nonce(false);

    // A forged code is refused by the provider, and so here.
    let mut forged = sign_in_at_provider(&sb).await;
    forged["code"] = json!("made-up");
    let r = complete(&sb, &forged).await;
    expect_error(r, 401, 16, "refused the code").await;

    let r = sb
        .post_public("/v1/auth:startFederatedLogin", &json!({"provider": "nope"}))
        .await;
    expect_error(r, 400, 3, "provider").await;

    // Attribute mapping: the email comes from `mail`, and the provider's
    // `roles` decide the mapped groups at every sign-in.
    let mut extra = serde_json::Map::new();
    extra.insert("mail".into(), json!("Grouped@corp.example"));
    extra.insert("roles".into(), json!(["idp-finance", "idp-unmapped"]));
    idp.sign_in_as(ProviderUser {
        sub: "idp-77".into(),
        email: String::new(),
        email_verified: true,
        extra: extra.clone(),
    });
    let body = sign_in_with(&sb, "corp-groups").await;
    let r = complete(&sb, &body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let tokens: Value = r.json().await.unwrap();
    let claims = payload(tokens["accessToken"].as_str().unwrap());
    assert_eq!(claims["cognito:groups"], json!(["restricted"]), "{claims}");
    assert_eq!(claims["scope"], "documents");
    let id = payload(tokens["idToken"].as_str().unwrap());
    assert_eq!(id["email"], "grouped@corp.example");
    let grouped = claims["sub"].as_str().unwrap().to_owned();
    // A group the admin gives is not the provider's to take away.
    let admin = sb.login(admin_email, "correct horse battery staple").await;
    let r = sb
        .post(
            &format!("/v1/users/{grouped}/groups"),
            &admin,
            &json!({"group": "editors"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    extra.insert("roles".into(), json!("idp-audit"));
    idp.sign_in_as(ProviderUser {
        sub: "idp-77".into(),
        email: String::new(),
        email_verified: true,
        extra,
    });
    let body = sign_in_with(&sb, "corp-groups").await;
    let tokens: Value = complete(&sb, &body).await.json().await.unwrap();
    let claims = payload(tokens["accessToken"].as_str().unwrap());
    assert_eq!(claims["sub"], grouped.as_str(), "linked");
    assert_eq!(
        claims["cognito:groups"],
        json!(["auditors", "editors"]),
        "{claims}"
    );
    assert_eq!(claims["scope"], "audit:read documents");
    sb.stop().await;
}
