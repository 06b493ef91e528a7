//! Least privilege, proven on moto with IAM enforced: each component runs
//! its AWS flows as an IAM user whose only policy is its own
//! `deploy/iam/<component>.json` (the file Terraform's security module
//! renders with `templatefile()`); what it needs works, a call outside its
//! job is refused.
//!
//! moto starts with `INITIAL_NO_AUTH_ACTION_COUNT` = the IAM calls that
//! make the users (unsigned); every later call is signed and checked.
//! Where moto's checks fall short of AWS (docs/security.md, "The IAM proof
//! on moto"):
//! - S3 and SQS are authorised against the real resource ARN, so their
//!   placeholders get real ARNs. SNS, KMS, DynamoDB and EventBridge are
//!   authorised against `*`, which no specific ARN matches, so their ARN
//!   placeholders render as `*` here: for them the proof is of actions,
//!   not resources.
//! - Conditions (`kms:ViaService`, `kms:EncryptionContextKeys`) are not
//!   evaluated.
//! - moto names an action after the API call, where AWS authorises some
//!   calls under another action: `TransactWriteItems` (AWS: `PutItem` and
//!   `ConditionCheckItem` per item), `kms:ReEncrypt` (AWS:
//!   `kms:ReEncryptFrom` and `kms:ReEncryptTo`) and `sns:PublishBatch`
//!   (AWS: `sns:Publish`). The rendered policy gets one extra statement,
//!   `MotoNamesOnly`, with exactly those names (and the one below).
//! - moto authorises `sqs:GetQueueUrl` against `*` (it looks for the
//!   queue in a `QueueUrl` parameter that call does not have), so
//!   `MotoNamesOnly` grants it on `*` too: a name look-up, no data.
//! - moto's KMS refusals carry no error code, so a refused KMS call is
//!   checked as a refusal (not unavailability), not by its code.
//! - For auth and the mailer the events key renders as a specific ARN:
//!   its statements allow KMS only through SNS or SQS
//!   (`kms:ViaService`), which moto cannot evaluate, and rendered as `*`
//!   they would let every direct KMS call through and hide what the
//!   sealing statements alone allow (the components never call KMS on
//!   the events key themselves; SNS and SQS do).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cloudsec_audit::AuditLog;
use cloudsec_audit::dynamo::DynamoStore;
use cloudsec_audit::metrics::AuditMetrics;
use cloudsec_audit::signing::{HeadSigner, KmsSigner, head_message};
use cloudsec_auth::codes::CodeSeal;
use cloudsec_auth::keys::{KeyRing, KeySealer, KeyStore, Policy, SigningConfig};
use cloudsec_bus::Envelope;
use cloudsec_bus::dynamo_inbox::DynamoInbox;
use cloudsec_documents::content::ObjectStore;
use cloudsec_proto::events::v1 as ev;
use cloudsec_runtime::token::TokenVerifier;
use cloudsec_secrets::{KeyContext, KeyService, KmsKeys};
use cloudsec_testkit::{start_moto, unavailable, unique, workspace_root};
use sea_orm::ConnectionTrait;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
/// Users made unsigned before enforcement starts, three IAM calls each.
const USERS: [&str; 5] = ["admin", "documents", "audit", "auth", "mailer"];

/// An IAM Query API call, unsigned: only within the no-auth budget.
async fn iam(http: &reqwest::Client, moto: &str, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
    form.extend_from_slice(params);
    let r = http
        .post(format!("{moto}/"))
        // moto routes on the credential scope; within the budget it
        // checks no signature.
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish(),
        )
        .send()
        .await
        .expect("moto answers");
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "IAM {params:?}: {status} {text}");
    text
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).expect(open) + open.len();
    let end = text[start..].find(close).expect(close) + start;
    &text[start..end]
}

#[derive(Clone)]
struct Keys {
    id: String,
    secret: String,
}

/// A user whose one inline policy is `policy`, and its access key.
async fn user(http: &reqwest::Client, moto: &str, name: &str, policy: &str) -> Keys {
    iam(http, moto, &[("Action", "CreateUser"), ("UserName", name)]).await;
    iam(
        http,
        moto,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", name),
            ("PolicyDocument", policy),
        ],
    )
    .await;
    let created = iam(
        http,
        moto,
        &[("Action", "CreateAccessKey"), ("UserName", name)],
    )
    .await;
    Keys {
        id: between(&created, "<AccessKeyId>", "</AccessKeyId>").to_owned(),
        secret: between(&created, "<SecretAccessKey>", "</SecretAccessKey>").to_owned(),
    }
}

async fn sdk(moto: &str, keys: &Keys) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            keys.id.clone(),
            keys.secret.clone(),
            None,
            None,
            "iam-proof",
        ))
        // A refusal is an answer: no retries.
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

fn s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// `deploy/iam/<component>.json` with its placeholders filled (see the
/// module doc) and moto's extra action names.
fn render(component: &str, vars: &BTreeMap<&str, String>) -> String {
    let path = workspace_root().join(format!("deploy/iam/{component}.json"));
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (name, value) in vars {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !text.contains("${"),
        "{component}: a placeholder is left: {text}"
    );
    let mut policy: serde_json::Value = serde_json::from_str(&text).unwrap();
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "Sid": "MotoNamesOnly",
            "Effect": "Allow",
            "Action": [
                "dynamodb:TransactWriteItems",
                "kms:ReEncrypt",
                "sns:PublishBatch",
                "sqs:GetQueueUrl"
            ],
            "Resource": "*"
        }));
    policy.to_string()
}

/// The call was refused by IAM: HTTP 403 with `AccessDenied`. moto sends
/// its refusals as XML even to the JSON protocols (SQS, DynamoDB), whose
/// SDK parsers then find no error code, so the raw answer is what counts.
fn refused<T: std::fmt::Debug, E: std::fmt::Debug>(
    what: &str,
    result: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) {
    let error = result.expect_err(what);
    let status = error.raw_response().map(|r| r.status().as_u16());
    let text = format!("{error:?}");
    assert!(
        status == Some(403) && text.contains("AccessDenied"),
        "{what}: expected 403 AccessDenied, got {status:?}: {text}"
    );
}

fn created(tenant: &str, document: &str) -> Envelope {
    Envelope::new(
        "/cloudsec/documents",
        &ev::DocumentCreated {
            document_id: document.into(),
            tenant: tenant.into(),
            actor: "alice".into(),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_component_can_do_its_job_and_nothing_else() {
    let budget = (USERS.len() * 3).to_string();
    let moto = match start_moto(&[("INITIAL_NO_AUTH_ACTION_COUNT", budget.as_str())]) {
        Ok(url) => url,
        Err(error) => {
            unavailable("moto", error, "install moto_server");
            return;
        }
    };
    let http = reqwest::Client::new();
    let bucket = unique("documents");
    let (queue, dlq) = (unique("audit"), unique("audit-dlq"));
    let table = unique("audit-log");
    let topic = unique("events");
    let sqs_arn = |name: &str| format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("region", REGION.into());
    vars.insert("documents_bucket_arn", format!("arn:aws:s3:::{bucket}"));
    vars.insert("audit_queue_arn", sqs_arn(&queue));
    vars.insert("audit_dlq_arn", sqs_arn(&dlq));
    for star in [
        "documents_key_arn",
        "events_topic_arn",
        "events_fifo_topic_arn",
        "event_bus_arn",
        "events_key_arn",
        "audit_table_arn",
        "inbox_table_arn",
        "dynamodb_key_arn",
        "audit_signing_key_arn",
    ] {
        vars.insert(star, "*".into());
    }
    let admin_policy =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let (mailer_queue, mailer_dlq) = (unique("mailer"), unique("mailer-dlq"));
    vars.insert("mailer_queue_arn", sqs_arn(&mailer_queue));
    vars.insert("mailer_dlq_arn", sqs_arn(&mailer_dlq));
    vars.insert("auth_key_arn", "*".into());
    vars.insert("mailer_key_arn", "*".into());
    let mut sealing_vars = vars.clone();
    sealing_vars.insert(
        "events_key_arn",
        format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/events"),
    );
    let admin = user(&http, &moto, "admin", admin_policy).await;
    let documents = user(&http, &moto, "documents", &render("documents", &vars)).await;
    let audit = user(&http, &moto, "audit", &render("audit", &vars)).await;
    let auth = user(&http, &moto, "auth", &render("auth", &sealing_vars)).await;
    let mailer = user(&http, &moto, "mailer", &render("mailer", &sealing_vars)).await;
    // From here on every call is signed and checked.

    // The estate, as Terraform would make it (admin).
    let root = sdk(&moto, &admin).await;
    s3(&root)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let sqs_root = aws_sdk_sqs::Client::new(&root);
    let queue_url = sqs_root
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs_root
        .create_queue()
        .queue_name(&dlq)
        .send()
        .await
        .unwrap();
    sqs_root
        .send_message()
        .queue_url(&queue_url)
        .message_body("an event")
        .send()
        .await
        .unwrap();
    let topic_arn = aws_sdk_sns::Client::new(&root)
        .create_topic()
        .name(&topic)
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let mailer_url = sqs_root
        .create_queue()
        .queue_name(&mailer_queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs_root
        .create_queue()
        .queue_name(&mailer_dlq)
        .send()
        .await
        .unwrap();
    sqs_root
        .send_message()
        .queue_url(&mailer_url)
        .message_body("a-code")
        .send()
        .await
        .unwrap();
    let prefix = format!("alias/{}-", unique("k"));
    let admin_keys = KmsKeys::new(aws_sdk_kms::Client::new(&root), &prefix);
    admin_keys.ensure_key("docs-internal").await.unwrap();
    admin_keys.ensure_key("auth").await.unwrap();
    admin_keys.ensure_key("mailer").await.unwrap();
    let signing_alias = format!("alias/{}", unique("audit-signing"));
    KmsSigner::new(aws_sdk_kms::Client::new(&root), &signing_alias)
        .ensure_key()
        .await
        .unwrap();
    let inbox_table = unique("inbox");
    DynamoInbox::open(
        aws_sdk_dynamodb::Client::new(&root),
        &inbox_table,
        cloudsec_bus::dynamo_inbox::DEFAULT_RETENTION,
        cloudsec_bus::Provisioning::Create,
    )
    .await
    .unwrap();
    aws_sdk_dynamodb::Client::new(&root)
        .create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("sk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("sk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Range)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // --- documents, as itself ---
    let as_documents = sdk(&moto, &documents).await;
    let objects = ObjectStore::S3 {
        client: s3(&as_documents),
        bucket: bucket.clone(),
    };
    objects.put("acme/d1/g1", b"sealed".to_vec()).await.unwrap();
    assert_eq!(
        objects.get("acme/d1/g1").await.unwrap().as_deref(),
        Some(&b"sealed"[..])
    );
    assert_eq!(objects.list().await.unwrap().len(), 1);
    objects.delete("acme/d1/g1").await.unwrap();
    let keys = KmsKeys::new(aws_sdk_kms::Client::new(&as_documents), &prefix);
    let binding = KeyContext::default()
        .with("tenant", "acme")
        .with("document", "d1")
        .with("classification", "internal");
    let (data_key, wrapped) = keys
        .generate_data_key_bound("docs-internal", &binding)
        .await
        .unwrap();
    keys.unwrap_bound("docs-internal", &wrapped, &binding)
        .await
        .unwrap();
    keys.wrap_bound("docs-internal", &data_key, &binding)
        .await
        .unwrap();
    keys.rewrap_bound("docs-internal", &wrapped, &binding)
        .await
        .unwrap();
    assert_eq!(keys.latest_version("docs-internal").await.unwrap(), 1);
    let sns = aws_sdk_sns::Client::new(&as_documents);
    sns.publish_batch()
        .topic_arn(&topic_arn)
        .publish_batch_request_entries(
            aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                .id("1")
                // moto's SigV4 check of SNS query bodies miscounts a space
                // (`+` against `%20`): a message without one.
                .message("an-event")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // Outside its job: reading the audit queue, deleting a queue, writing
    // the audit log, rotating a key.
    let sqs = aws_sdk_sqs::Client::new(&as_documents);
    refused(
        "documents reads the audit queue",
        sqs.receive_message().queue_url(&queue_url).send().await,
    );
    refused(
        "documents deletes a queue",
        sqs.delete_queue().queue_url(&queue_url).send().await,
    );
    refused(
        "documents writes the audit table",
        aws_sdk_dynamodb::Client::new(&as_documents)
            .put_item()
            .table_name(&table)
            .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("x".into()))
            .item("sk", aws_sdk_dynamodb::types::AttributeValue::S("#".into()))
            .send()
            .await,
    );
    let rotate = keys.rotate("docs-internal").await.unwrap_err();
    assert!(
        matches!(rotate, cloudsec_secrets::Error::Kms { ref operation, .. }
            if operation.starts_with("RotateKeyOnDemand")),
        "documents rotates a key: {rotate:?}"
    );

    // --- audit, as itself ---
    let as_audit = sdk(&moto, &audit).await;
    let sqs = aws_sdk_sqs::Client::new(&as_audit);
    let url = sqs
        .get_queue_url()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(30)
        .send()
        .await
        .unwrap();
    let message = received.messages().first().expect("the event").clone();
    let receipt = message.receipt_handle().unwrap();
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(receipt)
        .visibility_timeout(60)
        .send()
        .await
        .unwrap();
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(receipt)
        .send()
        .await
        .unwrap();
    let dlq_url = sqs
        .get_queue_url()
        .queue_name(&dlq)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&dlq_url)
        .message_body("poison")
        .send()
        .await
        .unwrap();
    let signer: Arc<dyn HeadSigner> = Arc::new(KmsSigner::new(
        aws_sdk_kms::Client::new(&as_audit),
        &signing_alias,
    ));
    let signature = signer.sign(&head_message("acme", 1, "h")).await.unwrap();
    assert!(
        signer
            .verify(&head_message("acme", 1, "h"), &signature)
            .await
            .unwrap()
    );
    let log = AuditLog::open_dynamodb(
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&as_audit), &table),
        "audit",
        AuditMetrics::default(),
    )
    .await
    .unwrap()
    .with_signer(signer);
    log.append(&created("acme", "d1")).await.unwrap();
    log.append(&created("acme", "d2")).await.unwrap();
    let verdict = log.verify("acme").await.unwrap();
    assert!(verdict.ok && verdict.head_seq == 2, "{verdict:?}");
    // Its subscriber's claims in the inbox table (`[audit.store]
    // inbox_table`): claim, release (an update, not a delete), claim
    // again, complete.
    let inbox = cloudsec_bus::Inbox::dynamodb(
        DynamoInbox::open(
            aws_sdk_dynamodb::Client::new(&as_audit),
            &inbox_table,
            cloudsec_bus::dynamo_inbox::DEFAULT_RETENTION,
            cloudsec_bus::Provisioning::Existing,
        )
        .await
        .unwrap(),
        "audit",
    );
    let lease = Duration::from_secs(60);
    let cloudsec_bus::Claim::Acquired(claim) = inbox.claim("e1", "m1", lease).await.unwrap() else {
        panic!("the first claim");
    };
    inbox.release("e1", &claim).await.unwrap();
    let cloudsec_bus::Claim::Acquired(claim) = inbox.claim("e1", "m2", lease).await.unwrap() else {
        panic!("a claim after the release");
    };
    inbox.complete("e1", &claim).await.unwrap();
    assert!(inbox.seen("e1").await.unwrap());
    // Outside its job: writing the content bucket, deleting a queue,
    // publishing events, making data keys of documents' key.
    refused(
        "audit writes the content bucket",
        s3(&as_audit)
            .put_object()
            .bucket(&bucket)
            .key("acme/d1/g2")
            .body(b"x".to_vec().into())
            .send()
            .await,
    );
    refused(
        "audit deletes a queue",
        sqs.delete_queue().queue_url(&url).send().await,
    );
    refused(
        "audit publishes events",
        aws_sdk_sns::Client::new(&as_audit)
            .publish()
            .topic_arn(&topic_arn)
            .message("forged")
            .send()
            .await,
    );
    // --- auth, as itself ---
    let as_auth = sdk(&moto, &auth).await;
    let auth_kms = KmsKeys::new(aws_sdk_kms::Client::new(&as_auth), &prefix);
    // The start-up check and the version label of `[auth.signing.kms]`.
    auth_kms.key_id("auth").await.unwrap();
    auth_kms.key_id("mailer").await.unwrap();
    assert_eq!(auth_kms.latest_version("auth").await.unwrap(), 1);
    let auth_keys: Arc<dyn KeyService> = Arc::new(auth_kms);
    // Its signing keys sealed in its database by KMS: a key ring makes
    // and seals one (GenerateDataKey), a second replica opens it (Decrypt).
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let db = cloudsec_runtime::db::connect_to::<cloudsec_auth::migration::Migrator>(
        &url.as_str().into(),
    )
    .await
    .unwrap();
    let store = KeyStore::Database {
        db: db.clone(),
        sealer: Some(KeySealer::new(auth_keys.clone(), "auth")),
    };
    let ring = |store: KeyStore| async move {
        KeyRing::open(
            store,
            Policy::new(&SigningConfig::default(), Duration::from_secs(900)),
            Duration::from_secs(60),
            Arc::new(TokenVerifier::fixed("iss", "aud")),
        )
        .await
        .unwrap()
    };
    let first = ring(store.clone()).await;
    let second = ring(store).await;
    assert_eq!(second.plan(), first.plan());
    let stored = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT private_pem FROM signing_keys",
        ))
        .await
        .unwrap()
        .unwrap();
    let stored: String = stored.try_get("", "private_pem").unwrap();
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    // Codes sealed for the mailer: auth makes the data key, the mailer
    // opens it.
    let mut request = ev::UserConfirmationRequested {
        user_id: "u1".into(),
        tenant: "acme".into(),
        email: "alice@example.com".into(),
        ..Default::default()
    };
    CodeSeal::new(auth_keys.clone(), "mailer")
        .seal(&mut request, "123456")
        .await
        .unwrap();
    // Its outbox relay publishes to the topic.
    aws_sdk_sns::Client::new(&as_auth)
        .publish_batch()
        .topic_arn(&topic_arn)
        .publish_batch_request_entries(
            aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                .id("1")
                .message("user-signed-up")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // Outside its job: reading the audit or mailer queue, deleting a
    // queue, writing the audit table or the content bucket, signing audit
    // heads, wrapping a key with Encrypt, rotating its key.
    let sqs = aws_sdk_sqs::Client::new(&as_auth);
    refused(
        "auth reads the audit queue",
        sqs.receive_message().queue_url(&queue_url).send().await,
    );
    refused(
        "auth reads the mailer queue",
        sqs.receive_message().queue_url(&mailer_url).send().await,
    );
    refused(
        "auth deletes a queue",
        sqs.delete_queue().queue_url(&mailer_url).send().await,
    );
    refused(
        "auth writes the audit table",
        aws_sdk_dynamodb::Client::new(&as_auth)
            .put_item()
            .table_name(&table)
            .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("x".into()))
            .item("sk", aws_sdk_dynamodb::types::AttributeValue::S("#".into()))
            .send()
            .await,
    );
    refused(
        "auth writes the content bucket",
        s3(&as_auth)
            .put_object()
            .bucket(&bucket)
            .key("acme/d1/g3")
            .body(b"x".to_vec().into())
            .send()
            .await,
    );
    refused(
        "auth signs an audit head",
        aws_sdk_kms::Client::new(&as_auth)
            .sign()
            .key_id(&signing_alias)
            .message(aws_sdk_kms::primitives::Blob::new(b"head".to_vec()))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await,
    );
    let auth_binding = KeyContext::default()
        .with("purpose", "auth-signing-key")
        .with("kid", "k1");
    let wrap = auth_keys
        .wrap_bound("auth", &data_key, &auth_binding)
        .await
        .unwrap_err();
    assert!(
        matches!(wrap, cloudsec_secrets::Error::Kms { ref operation, .. }
            if operation.starts_with("Encrypt")),
        "auth wraps with Encrypt: {wrap:?}"
    );
    let rotate = auth_keys.rotate("auth").await.unwrap_err();
    assert!(
        matches!(rotate, cloudsec_secrets::Error::Kms { ref operation, .. }
            if operation.starts_with("RotateKeyOnDemand")),
        "auth rotates its key: {rotate:?}"
    );

    // --- the mailer, as itself ---
    let as_mailer = sdk(&moto, &mailer).await;
    let sqs = aws_sdk_sqs::Client::new(&as_mailer);
    let url = sqs
        .get_queue_url()
        .queue_name(&mailer_queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(30)
        .send()
        .await
        .unwrap();
    let message = received.messages().first().expect("the code event").clone();
    let receipt = message.receipt_handle().unwrap();
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(receipt)
        .visibility_timeout(60)
        .send()
        .await
        .unwrap();
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(receipt)
        .send()
        .await
        .unwrap();
    let mailer_dlq_url = sqs
        .get_queue_url()
        .queue_name(&mailer_dlq)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&mailer_dlq_url)
        .message_body("poison")
        .send()
        .await
        .unwrap();
    // It opens the code auth sealed (Decrypt only).
    let mailer_keys: Arc<dyn KeyService> =
        Arc::new(KmsKeys::new(aws_sdk_kms::Client::new(&as_mailer), &prefix));
    assert_eq!(
        CodeSeal::new(mailer_keys, "mailer")
            .open(&request)
            .await
            .unwrap(),
        "123456"
    );
    // Outside its job: reading the audit queue, deleting its queue,
    // publishing events, sealing codes itself (GenerateDataKey), reading
    // the content bucket.
    refused(
        "the mailer reads the audit queue",
        sqs.receive_message().queue_url(&queue_url).send().await,
    );
    refused(
        "the mailer deletes its queue",
        sqs.delete_queue().queue_url(&url).send().await,
    );
    refused(
        "the mailer publishes events",
        aws_sdk_sns::Client::new(&as_mailer)
            .publish()
            .topic_arn(&topic_arn)
            .message("forged")
            .send()
            .await,
    );
    refused(
        "the mailer makes data keys under its key",
        aws_sdk_kms::Client::new(&as_mailer)
            .generate_data_key()
            .key_id(format!("{prefix}mailer"))
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .encryption_context("purpose", "auth-confirmation-code")
            .send()
            .await,
    );
    refused(
        "the mailer reads the content bucket",
        s3(&as_mailer)
            .get_object()
            .bucket(&bucket)
            .key("acme/d1/g1")
            .send()
            .await,
    );
}
