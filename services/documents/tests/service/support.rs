//! The test harness: a real database (SQLite in a temp file, or a fresh
//! PostgreSQL database that is dropped afterwards), the gRPC adapter over
//! it, and tokens signed by a test key.

use std::future::Future;
use std::sync::{Arc, LazyLock, Once};

use cloudsec_documents::Migrator;
use cloudsec_documents::content::{ContentStore, ObjectStore, Sealing};
use cloudsec_documents::grpc::DocumentsGrpc;
use cloudsec_documents::store::Store;
use cloudsec_proto::auth::v1::Jwks;
use cloudsec_proto::documents::v1 as pb;
use cloudsec_runtime::token::{AccessClaims, Claims, Signer, TokenVerifier};
use sea_orm::DatabaseConnection;
use tonic::Request;

pub(crate) const ISSUER: &str = "https://auth.cloudsec.test";
pub(crate) const AUDIENCE: &str = "cloudsec";

/// RSA key generation is slow, so every test in the binary shares one key.
static SIGNER: LazyLock<Signer> =
    LazyLock::new(|| Signer::generate().expect("generate a test signing key"));

#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// What a scenario gets: the adapter and its database.
#[derive(Clone)]
pub(crate) struct Harness {
    pub(crate) api: DocumentsGrpc,
    pub(crate) db: DatabaseConnection,
    pub(crate) backend: Backend,
    /// The store behind `api`, for content-level checks.
    pub(crate) store: Store,
}

pub(crate) fn init_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

pub(crate) fn token(tenant: &str, user: &str) -> String {
    token_with(tenant, user, "", &[])
}

/// A token with a scope and groups (`cognito:groups`).
pub(crate) fn token_with(tenant: &str, user: &str, scope: &str, groups: &[&str]) -> String {
    let now = chrono::Utc::now().timestamp();
    SIGNER
        .sign_claims(&AccessClaims {
            base: Claims {
                iss: ISSUER.into(),
                sub: user.into(),
                aud: AUDIENCE.into(),
                exp: now + 300,
                iat: now,
                nbf: None,
                jti: uuid::Uuid::new_v4().to_string(),
                tenant: tenant.into(),
                scope: scope.into(),
            },
            token_use: "access".into(),
            client_id: "cloudsec".into(),
            auth_time: Some(now),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            generation: 0,
        })
        .expect("sign a test token")
}

fn with_token<T>(token: String, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii header"),
    );
    request
}

/// `message` as `user` of `tenant`, with no groups.
pub(crate) fn as_user<T>(tenant: &str, user: &str, message: T) -> Request<T> {
    with_token(token(tenant, user), message)
}

/// `message` as alice of tenant acme, the usual caller; she is in the
/// `restricted` group.
pub(crate) fn alice<T>(message: T) -> Request<T> {
    with_token(
        token_with("acme", "alice", "documents", &["restricted"]),
        message,
    )
}

/// `message` as carol of acme, in no group.
pub(crate) fn carol<T>(message: T) -> Request<T> {
    with_token(
        token_with("acme", "carol", "documents", &["finance"]),
        message,
    )
}

/// `message` as dan, acme's tenant admin, in no group.
pub(crate) fn dan<T>(message: T) -> Request<T> {
    with_token(
        token_with("acme", "dan", "documents tenant:admin", &[]),
        message,
    )
}

/// `message` as mallory of another tenant.
pub(crate) fn mallory<T>(message: T) -> Request<T> {
    as_user("globex", "mallory", message)
}

pub(crate) fn verifier() -> Arc<TokenVerifier> {
    let verifier = TokenVerifier::fixed(ISSUER, AUDIENCE);
    verifier.set_keys(&Jwks {
        keys: vec![SIGNER.jwk().clone()],
    });
    Arc::new(verifier)
}

/// The content store of a harness: the local directory back end with the
/// local keystore, both in `dir`.
pub(crate) fn local_content(dir: &std::path::Path) -> ContentStore {
    let keystore = cloudsec_secrets::LocalKeystore::open(&dir.join("keys")).expect("keystore");
    let envelope = cloudsec_secrets::Envelope::new(
        Arc::new(cloudsec_secrets::LocalKeys::new(Arc::new(keystore))),
        cloudsec_secrets::DataKeyCacheConfig::default(),
    );
    ContentStore::new(
        ObjectStore::dir(&dir.join("objects")).expect("objects dir"),
        Sealing::Envelope {
            envelope: Arc::new(envelope),
            policy: Arc::new(cloudsec_documents::config::KeyPolicy::default()),
        },
    )
}

pub(crate) fn harness(db: DatabaseConnection, backend: Backend, content: ContentStore) -> Harness {
    let key = cloudsec_documents::page_token::key(b"0123456789abcdef0123456789abcdef")
        .expect("32-byte key");
    let store = Store::new(db.clone(), key, cloudsec_bus::Outbox::new(), content);
    let api = DocumentsGrpc::new(store.clone(), verifier());
    Harness {
        api,
        db,
        backend,
        store,
    }
}

/// A document to send.
pub(crate) fn doc(
    title: &str,
    classification: pb::Classification,
    labels: &[(&str, &str)],
) -> pb::Document {
    pb::Document {
        title: title.into(),
        classification: classification as i32,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        content: format!("content of {title}"),
        ..Default::default()
    }
}

/// The fields named by a status's `BadRequest` details.
pub(crate) fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Runs `scenario` against a fresh database of `backend`, then removes it,
/// even when the scenario panics.
pub(crate) async fn run<F, Fut>(backend: Backend, scenario: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    init_logs();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("documents.db").display());
            let db = cloudsec_runtime::db::connect::<Migrator>(&url)
                .await
                .expect("open and migrate sqlite");
            cloudsec_bus::migration::migrate(&db)
                .await
                .expect("bus migrations");
            let content = local_content(dir.path());
            let outcome = tokio::spawn(scenario(harness(db.clone(), backend, content))).await;
            let _ = db.close().await;
            drop(dir);
            if let Err(error) = outcome {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        Backend::Postgres => {
            let Some(database) = cloudsec_testkit::TestDatabase::create("documents_test").await
            else {
                return;
            };
            let url = database.url().to_owned();
            let name = database.name().to_owned();
            let dir = tempfile::tempdir().expect("temp dir");
            let outcome = match cloudsec_runtime::db::connect::<Migrator>(&url).await {
                Ok(db) => {
                    cloudsec_bus::migration::migrate(&db)
                        .await
                        .expect("bus migrations");
                    let content = local_content(dir.path());
                    let outcome =
                        tokio::spawn(scenario(harness(db.clone(), backend, content))).await;
                    let _ = db.close().await;
                    outcome.map_err(|e| e.into_panic())
                }
                Err(error) => {
                    let panic: Box<dyn std::any::Any + Send> =
                        Box::new(format!("cannot migrate {name}: {error}"));
                    Err(panic)
                }
            };
            database.drop().await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
    }
}
