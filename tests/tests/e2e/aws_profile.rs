//! The platform on the AWS profile (`deploy/profiles/aws-moto.toml`)
//! against moto: events over SNS -> SQS, auth's signing keys sealed with
//! KMS data keys, content in S3 sealed with data
//! keys from KMS, the audit log and its subscriber's inbox in DynamoDB
//! with KMS-signed chain heads (and no SQL database for audit).
//! The profile file itself is what runs, only its endpoint replaced.

use std::time::Duration;

use serde_json::json;

use crate::create;
use cloudsec_tests::{Backend, Extra, Sandbox, eventually};

/// The profile as committed, pointed at `moto`.
fn profile(moto: &str) -> String {
    let path = cloudsec_testkit::workspace_root().join("deploy/profiles/aws-moto.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        text.contains("http://127.0.0.1:5000"),
        "the profile's moto URL"
    );
    text.replace("http://127.0.0.1:5000", moto)
}

async fn aws(moto: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "cloudsec", "cloudsec", None, None, "test",
        ))
        .load()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_runs_on_the_aws_profile() {
    // A moto of its own: the profile's fixed names (topic, queues, bucket,
    // table) must not meet another test's.
    let moto = match cloudsec_testkit::start_moto(&[]) {
        Ok(url) => url,
        Err(error) => {
            cloudsec_testkit::unavailable("moto", error, "install moto_server");
            return;
        }
    };
    let sb = Sandbox::start_with(
        Backend::Sqlite,
        Extra {
            toml: profile(&moto),
            env: Default::default(),
        },
    )
    .await
    .expect("sandbox on the AWS profile");

    // The same walk as on the embedded bus: sign-up, create, update,
    // delete, all in the audit log, chained and verified.
    crate::events::changes_reach_the_audit_log(&sb).await;

    // Content: a document's key object in S3 holds a KMS-wrapped data key
    // bound to its tenant, document and classification.
    let user = sb.user().await;
    let doc = create(
        &sb,
        &user.token,
        json!({"title": "On AWS", "classification": "CONFIDENTIAL", "content": "kms sealed"}),
    )
    .await;
    let id = doc["id"].as_str().expect("id").to_owned();
    let r = sb.get(&format!("/v1/documents/{id}"), &user.token).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["content"], "kms sealed");
    let config = aws(&moto).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let listed = s3
        .list_objects_v2()
        .bucket("cloudsec-documents")
        .prefix(format!("{}/{id}/", user.tenant))
        .send()
        .await
        .unwrap();
    let key = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .find(|k| k.ends_with(".key"))
        .expect("the document's key object")
        .to_owned();
    let object = s3
        .get_object()
        .bucket("cloudsec-documents")
        .key(&key)
        .send()
        .await
        .unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert!(
        record["wrapped_key"]
            .as_str()
            .unwrap()
            .starts_with("kms:v1:"),
        "{record}"
    );
    assert_eq!(record["binding"]["tenant"], user.tenant.as_str());
    assert_eq!(record["binding"]["document"], id.as_str());
    assert_eq!(record["binding"]["classification"], "confidential");

    // Audit: the records are DynamoDB items, each with a KMS signature.
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let items = eventually(Duration::from_secs(20), || async {
        let page = dynamo
            .query()
            .table_name("cloudsec-audit-log")
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("tenant#{}", user.tenant)),
            )
            .send()
            .await
            .ok()?;
        // Sign-up, its code, the create, and the head item.
        (page.items().len() >= 4).then(|| page.items().to_vec())
    })
    .await
    .expect("the audit items in DynamoDB");
    let signed = items
        .iter()
        .filter(|item| {
            matches!(item.get("signature"),
                Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) if s.starts_with("kms:"))
        })
        .count();
    assert_eq!(signed, items.len() - 1, "every record but the head item");
    let r = sb.get("/v1/audit/chain:verify", &user.token).await;
    let verdict: serde_json::Value = r.json().await.unwrap();
    assert_eq!(verdict["ok"], true, "{verdict}");

    // The audit subscriber's claims are in the DynamoDB inbox, each
    // with its TTL, and audit opened no SQL database.
    let claims = dynamo
        .scan()
        .table_name("cloudsec-inbox")
        .send()
        .await
        .unwrap();
    let audit_claims: Vec<_> = claims
        .items()
        .iter()
        .filter(|item| {
            matches!(item.get("pk"),
                Some(aws_sdk_dynamodb::types::AttributeValue::S(pk)) if pk.starts_with("audit#"))
        })
        .collect();
    assert!(audit_claims.len() >= 4, "{claims:?}");
    assert!(
        audit_claims
            .iter()
            .all(|item| item.contains_key(cloudsec_bus::dynamo_inbox::TTL_ATTRIBUTE)),
        "{audit_claims:?}"
    );
    assert!(
        !sb.data_dir().join("audit.db").exists(),
        "audit opened a SQL database on the AWS profile"
    );

    // Auth: its signing keys are sealed with KMS data keys, each bound to
    // its kid.
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(&sb.auth_database_url())
        .await
        .unwrap();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT kid, private_pem FROM signing_keys",
        ))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let kid: String = row.try_get("", "kid").unwrap();
        let stored: String = row.try_get("", "private_pem").unwrap();
        let b64 = stored.strip_prefix("sealed:v1:").expect("sealed");
        use base64::Engine;
        let sealed: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        assert!(
            sealed["wrapped_key"]
                .as_str()
                .unwrap()
                .starts_with("kms:v1:"),
            "{sealed}"
        );
        assert_eq!(sealed["key_name"], "auth");
        assert_eq!(sealed["binding"]["kid"], kid.as_str());
    }
    db.close().await.unwrap();

    sb.stop().await;
}

/// Cognito mode on the AWS profile: the profile's commented
/// `[tokens.cognito]` section, filled with a pool made on moto's
/// cognito-idp, lets a pool user (tenant group and admin group) create a
/// document (sealed by KMS in S3) and read her tenant's audit log (DynamoDB,
/// KMS-signed, verified) through the gateway's authorizer and the services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_tokens_work_on_the_aws_profile() {
    let moto = match cloudsec_testkit::start_moto(&[]) {
        Ok(url) => url,
        Err(error) => {
            cloudsec_testkit::unavailable("moto", error, "install moto_server");
            return;
        }
    };
    let http = reqwest::Client::new();
    let pool = crate::cognito::Pool::create(&http, &moto).await;
    let text = profile(&moto);
    assert!(
        text.contains("# [tokens.cognito]"),
        "the documented section"
    );
    let cognito = format!(
        "\n[tokens.cognito]\nuser_pool_id = \"{id}\"\nclient_ids = [\"{client}\"]\n\
         jwks_url = \"{moto}/{id}/.well-known/jwks.json\"\n\
         tenant_group_prefix = \"tenant-\"\nadmin_group = \"admins\"\n\n[gateway.jwt]\n",
        id = pool.id,
        client = pool.client,
    );
    let sb = Sandbox::start_with(
        Backend::Sqlite,
        Extra {
            toml: format!("{text}{cognito}"),
            env: Default::default(),
        },
    )
    .await
    .expect("sandbox on the AWS profile in Cognito mode");
    let (alice, _) = pool
        .user(
            &http,
            &moto,
            "alice",
            &["tenant-acme", "admins"],
            &pool.client,
        )
        .await;
    let r = sb
        .post(
            "/v1/documents",
            &alice,
            &json!({"title": "From Cognito on AWS", "classification": "INTERNAL", "content": "hello"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let doc: serde_json::Value = r.json().await.unwrap();
    let id = doc["id"].as_str().unwrap().to_owned();
    let r = sb.get(&format!("/v1/documents/{id}"), &alice).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["content"], "hello");
    // Her tenant's audit log (DynamoDB) has the creation, and verifies.
    let found = eventually(Duration::from_secs(20), || async {
        let r = sb.get("/v1/audit/records?pageSize=100", &alice).await;
        let page: serde_json::Value = r.json().await.ok()?;
        page["records"]
            .as_array()?
            .iter()
            .any(|r| r["subject"].as_str() == Some(id.as_str()))
            .then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "the creation in the pool tenant's audit log"
    );
    let r = sb.get("/v1/audit/chain:verify", &alice).await;
    let verdict: serde_json::Value = r.json().await.unwrap();
    assert_eq!(verdict["ok"], true, "{verdict}");
    sb.stop().await;
}
