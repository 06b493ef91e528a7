//! Cognito mode against moto's cognito-idp: the test administers a user
//! pool over the Cognito API, logs users in there, and the platform
//! (gateway authorizer and services) accepts their access tokens.

use serde_json::{Value, json};

use crate::expect_error;
use cloudsec_tests::{Backend, Extra, Sandbox, eventually, moto_url};

/// One call of the Cognito user-pool API on moto.
async fn cognito(http: &reqwest::Client, moto: &str, action: &str, body: Value) -> Value {
    let r = http
        .post(format!("{moto}/"))
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{action}"),
        )
        .header("content-type", "application/x-amz-json-1.1")
        // moto routes on the credential scope; it does not check signatures.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/cognito-idp/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("moto answers");
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{action}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A user pool and its app client (also used by the AWS-profile test).
pub(crate) struct Pool {
    pub(crate) id: String,
    pub(crate) client: String,
}

impl Pool {
    pub(crate) async fn create(http: &reqwest::Client, moto: &str) -> Self {
        // `custom:tenant` is an attribute users may write themselves.
        let pool = cognito(
            http,
            moto,
            "CreateUserPool",
            json!({"PoolName": "cloudsec-e2e",
                   "Schema": [{"Name": "tenant", "AttributeDataType": "String", "Mutable": true}]}),
        )
        .await;
        let id = pool["UserPool"]["Id"].as_str().unwrap().to_owned();
        let client = Self::client(http, moto, &id).await;
        Self { id, client }
    }

    async fn client(http: &reqwest::Client, moto: &str, pool: &str) -> String {
        let client = cognito(
            http,
            moto,
            "CreateUserPoolClient",
            json!({"UserPoolId": pool, "ClientName": "app",
                   "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]}),
        )
        .await;
        client["UserPoolClient"]["ClientId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Logs `name` in through `client`; returns the access and ID tokens.
    async fn login(
        &self,
        http: &reqwest::Client,
        moto: &str,
        name: &str,
        client: &str,
    ) -> (String, String) {
        let auth = cognito(
            http,
            moto,
            "AdminInitiateAuth",
            json!({"UserPoolId": self.id, "ClientId": client, "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                   "AuthParameters": {"USERNAME": name, "PASSWORD": "Pool-password-2026!"}}),
        )
        .await;
        let result = &auth["AuthenticationResult"];
        (
            result["AccessToken"].as_str().unwrap().to_owned(),
            result["IdToken"].as_str().unwrap().to_owned(),
        )
    }

    /// A user in `groups`; returns the access and ID tokens of a login.
    pub(crate) async fn user(
        &self,
        http: &reqwest::Client,
        moto: &str,
        name: &str,
        groups: &[&str],
        client: &str,
    ) -> (String, String) {
        let password = "Pool-password-2026!";
        cognito(
            http,
            moto,
            "AdminCreateUser",
            json!({"UserPoolId": self.id, "Username": name, "MessageAction": "SUPPRESS",
                   "TemporaryPassword": "Temp-password-2026!"}),
        )
        .await;
        cognito(
            http,
            moto,
            "AdminSetUserPassword",
            json!({"UserPoolId": self.id, "Username": name, "Password": password, "Permanent": true}),
        )
        .await;
        for group in groups {
            // Creating an existing group fails; the first user makes it.
            let _ = http
                .post(format!("{moto}/"))
                .header(
                    "x-amz-target",
                    "AWSCognitoIdentityProviderService.CreateGroup",
                )
                .header("content-type", "application/x-amz-json-1.1")
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/cognito-idp/aws4_request, \
                     SignedHeaders=host, Signature=0",
                )
                .body(json!({"UserPoolId": self.id, "GroupName": group}).to_string())
                .send()
                .await;
            cognito(
                http,
                moto,
                "AdminAddUserToGroup",
                json!({"UserPoolId": self.id, "Username": name, "GroupName": group}),
            )
            .await;
        }
        let auth = cognito(
            http,
            moto,
            "AdminInitiateAuth",
            json!({"UserPoolId": self.id, "ClientId": client, "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                   "AuthParameters": {"USERNAME": name, "PASSWORD": password}}),
        )
        .await;
        let result = &auth["AuthenticationResult"];
        (
            result["AccessToken"].as_str().unwrap().to_owned(),
            result["IdToken"].as_str().unwrap().to_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_access_tokens_are_trusted_by_gateway_and_services() {
    let Some(moto) = moto_url() else { return };
    let http = reqwest::Client::new();
    let pool = Pool::create(&http, &moto).await;

    let cognito_toml = format!(
        "user_pool_id = \"{id}\"\nclient_ids = [\"{client}\"]\n\
         jwks_url = \"{moto}/{id}/.well-known/jwks.json\"\n\
         tenant_group_prefix = \"tenant-\"\nadmin_group = \"admins\"\n",
        id = pool.id,
        client = pool.client,
    );
    // The services trust the pool, and so does the gateway's authorizer,
    // which is switched on here (it reads the same `[tokens]`): a call
    // passes both checks.
    let extra = Extra {
        toml: format!("[tokens.cognito]\n{cognito_toml}\n[gateway.jwt]\n"),
        ..Extra::default()
    };
    let sb = Sandbox::start_with(Backend::Sqlite, extra)
        .await
        .expect("sqlite sandbox");

    // A native tenant, whose name the pool's group spells too.
    let local = sb.user().await;
    let native_doc = crate::create(
        &sb,
        &local.token,
        json!({"title": "native", "classification": "INTERNAL", "content": "ours"}),
    )
    .await;
    let native_doc = native_doc["id"].as_str().unwrap().to_owned();
    let tenant_group = format!("tenant-{}", local.tenant);
    let pool_tenant = format!("cognito:{}/{}", pool.id, local.tenant);

    let (alice, alice_id) = pool
        .user(
            &http,
            &moto,
            "alice",
            &[&tenant_group, "admins"],
            &pool.client,
        )
        .await;
    let (bob, _) = pool
        .user(&http, &moto, "bob", &[&tenant_group], &pool.client)
        .await;
    let (drifter, _) = pool.user(&http, &moto, "drifter", &[], &pool.client).await;
    let other_client = Pool::client(&http, &moto, &pool.id).await;
    let (stranger, _) = pool
        .user(&http, &moto, "stranger", &[&tenant_group], &other_client)
        .await;
    // Mallory, in no tenant group, writes the native tenant's name into her
    // own (user-writable) attribute.
    pool.user(&http, &moto, "mallory", &[], &pool.client).await;
    cognito(
        &http,
        &moto,
        "AdminUpdateUserAttributes",
        json!({"UserPoolId": pool.id, "Username": "mallory",
               "UserAttributes": [{"Name": "custom:tenant", "Value": local.tenant}]}),
    )
    .await;
    let (mallory, _) = pool.login(&http, &moto, "mallory", &pool.client).await;

    // Alice creates a document in her pool's tenant.
    let r = sb
        .post(
            "/v1/documents",
            &alice,
            &json!({"title": "From Cognito", "classification": "INTERNAL", "content": "hello"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let doc: Value = r.json().await.unwrap();
    let id = doc["id"].as_str().unwrap().to_owned();
    // Bob, same pool tenant, reads it; the owner is Alice's Cognito `sub`.
    let r = sb.get(&format!("/v1/documents/{id}"), &bob).await;
    assert_eq!(r.status(), 200);
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["title"], "From Cognito");
    let sub = crate::sessions::payload(&alice)["sub"].clone();
    assert_eq!(read["owner"], sub, "{read}");

    // Same name, two tenants: neither side sees the other's documents.
    let r = sb.get(&format!("/v1/documents/{id}"), &local.token).await;
    assert_eq!(r.status(), 404);
    let r = sb.get(&format!("/v1/documents/{native_doc}"), &alice).await;
    assert_eq!(r.status(), 404);
    assert_eq!(crate::document_ids(&sb, &alice).await, vec![id.clone()]);
    assert_eq!(
        crate::document_ids(&sb, &local.token).await,
        vec![native_doc.clone()]
    );

    // The admin group maps to tenant:admin in the pool's tenant only:
    // Alice's audit log holds her tenant's records, never the native
    // tenant's; Bob may not read it.
    let records = eventually(std::time::Duration::from_secs(20), || async {
        let r = sb.get("/v1/audit/records?pageSize=100", &alice).await;
        if r.status() != 200 {
            return None;
        }
        let body: Value = r.json().await.ok()?;
        let records = body["records"].as_array().cloned().unwrap_or_default();
        records
            .iter()
            .any(|r| r["subject"] == id.as_str())
            .then_some(records)
    })
    .await
    .expect("the pool tenant's audit records arrive");
    assert!(
        records.iter().all(|r| r["tenant"] == pool_tenant.as_str()),
        "{records:?}"
    );
    assert!(
        !records.iter().any(|r| r["subject"] == native_doc.as_str()),
        "a pool admin read the native tenant's audit log: {records:?}"
    );
    let r = sb.get("/v1/audit/records?pageSize=10", &bob).await;
    assert_eq!(r.status(), 403);

    // Refused: an ID token, another app client's token, a user with no
    // tenant group, and one whose self-written attribute names a tenant.
    for (token, message) in [
        (alice_id.as_str(), "not an access token"),
        (stranger.as_str(), "audience"),
        (drifter.as_str(), "names no tenant"),
        (mallory.as_str(), "names no tenant"),
    ] {
        let r = sb.get("/v1/documents", token).await;
        expect_error(r, 401, 16, message).await;
    }
    sb.stop().await;
}
