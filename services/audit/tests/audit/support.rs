//! The test harness: a real database (SQLite in a temp file, or a fresh
//! PostgreSQL database that is dropped afterwards), the embedded bus on
//! it, the whole service on port-0 listeners, and tokens signed by a test
//! key.

use std::future::Future;
use std::sync::{Arc, LazyLock, Once};
use std::time::Duration;

use cloudsec_audit::metrics::AuditMetrics;
use cloudsec_audit::{Audit, AuditConfig, AuditLog};
use cloudsec_bus::transport::Publisher;
use cloudsec_bus::{EmbeddedBus, Envelope, Provisioning};
use cloudsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use cloudsec_proto::auth::v1::Jwks;
use cloudsec_proto::events::v1 as ev;
use cloudsec_runtime::token::{Claims, Signer, TokenVerifier};
use cloudsec_runtime::{Secret, Shutdown};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tonic::Request;
use tonic::transport::Channel;

pub(crate) const ISSUER: &str = "https://auth.cloudsec.test";
pub(crate) const AUDIENCE: &str = "cloudsec";
/// How long a test waits for the subscriber before it gives up.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// RSA key generation is slow, so every test in the binary shares one key.
static SIGNER: LazyLock<Signer> =
    LazyLock::new(|| Signer::generate().expect("generate a test signing key"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// What a scenario gets: a migrated database and its URL.
#[derive(Clone)]
pub(crate) struct Harness {
    pub(crate) url: String,
    pub(crate) db: DatabaseConnection,
}

impl Harness {
    /// A log over the harness's database, as the service opens it.
    pub(crate) async fn log(&self) -> AuditLog {
        AuditLog::open(self.db.clone(), "audit", AuditMetrics::default())
            .await
            .expect("open the audit log")
    }

    /// Runs `sql` (written for both databases) and returns the rows it changed.
    pub(crate) async fn sql(&self, sql: &str) -> u64 {
        self.db
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    pub(crate) fn config(&self) -> AuditConfig {
        AuditConfig {
            grpc_listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            database_url: Some(Secret::new(self.url.clone()).into()),
            tls: None,
            shutdown_grace: Duration::from_secs(2),
            queue: "audit".into(),
            store: Default::default(),
            signing: None,
        }
    }

    /// Starts the whole service on this database, its queue on the
    /// embedded bus in the same database.
    pub(crate) async fn start(&self) -> Service {
        let config = self.config();
        let bus = EmbeddedBus::new(self.db.clone());
        let queue = bus
            .provision(&cloudsec_audit::queue_spec(&config), Provisioning::Create)
            .await
            .expect("provision the audit queue");
        let audit = Audit::build(&config, verifier(), Arc::new(queue))
            .await
            .expect("build the audit service");
        let addr = audit.grpc_addr();
        let log = audit.log().clone();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(audit.run_until_stopped(None, shutdown.clone()));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the audit service");
        Service {
            client: AuditServiceClient::new(channel),
            bus,
            log,
            shutdown,
            task,
        }
    }
}

/// A running service, its client and the bus that feeds it.
pub(crate) struct Service {
    pub(crate) client: AuditServiceClient<Channel>,
    pub(crate) bus: EmbeddedBus,
    pub(crate) log: AuditLog,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<cloudsec_audit::Result<()>>,
}

impl Service {
    pub(crate) async fn publish(&self, events: &[Envelope]) {
        for event in events {
            self.bus
                .publish(std::slice::from_ref(event))
                .await
                .expect("publish");
        }
    }

    /// Publishes `events` and waits until the log holds `total` records.
    pub(crate) async fn publish_until(&self, events: &[Envelope], total: u64) {
        self.publish(events).await;
        wait_for_records(self.log.connection().expect("a SQL log"), total).await;
    }

    /// Stops the service and checks that it stopped cleanly.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the service stops within its grace")
            .expect("the service task does not panic");
        stopped.expect("the service stops cleanly");
    }
}

pub(crate) async fn record_count(db: &DatabaseConnection) -> u64 {
    use sea_orm::{EntityTrait, PaginatorTrait};
    cloudsec_audit::entity::audit_record::Entity::find()
        .count(db)
        .await
        .expect("count records")
}

/// Waits, without a fixed sleep, until the log holds exactly `total`
/// records; fails after [`PATIENCE`].
pub(crate) async fn wait_for_records(db: &DatabaseConnection, total: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut wait = Duration::from_millis(5);
    loop {
        let count = record_count(db).await;
        if count == total {
            return;
        }
        assert!(count < total, "expected {total} records, found {count}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {total} records within {PATIENCE:?}, found {count}"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}

/// Retries `check` until it returns `Some`, for at most [`PATIENCE`].
pub(crate) async fn eventually<T, F, Fut>(mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut wait = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(100));
    }
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

pub(crate) fn verifier() -> Arc<TokenVerifier> {
    let verifier = TokenVerifier::fixed(ISSUER, AUDIENCE);
    verifier.set_keys(&Jwks {
        keys: vec![SIGNER.jwk().clone()],
    });
    Arc::new(verifier)
}

pub(crate) fn token(tenant: &str, user: &str, scope: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    SIGNER
        .sign(&Claims {
            iss: ISSUER.into(),
            sub: user.into(),
            aud: AUDIENCE.into(),
            exp: now + 300,
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            tenant: tenant.into(),
            scope: scope.into(),
        })
        .expect("sign a test token")
}

pub(crate) fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii header"),
    );
    request
}

/// `message` as an admin of `tenant`, with the scopes the auth service
/// gives a tenant's first user.
pub(crate) fn admin<T>(tenant: &str, message: T) -> Request<T> {
    with_token(&token(tenant, "root", "documents tenant:admin"), message)
}

/// `message` as an ordinary member of `tenant`.
pub(crate) fn member<T>(tenant: &str, message: T) -> Request<T> {
    with_token(&token(tenant, "bob", "documents"), message)
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

pub(crate) const SOURCE: &str = "/cloudsec/documents";
pub(crate) const CREATED: &str = "cloudsec.events.v1.DocumentCreated";
pub(crate) const UPDATED: &str = "cloudsec.events.v1.DocumentUpdated";

pub(crate) fn created(tenant: &str, document: &str) -> Envelope {
    Envelope::new(
        SOURCE,
        &ev::DocumentCreated {
            document_id: document.into(),
            tenant: tenant.into(),
            actor: "alice".into(),
            title: format!("title of {document}"),
            classification: 2,
            labels: [("env".to_owned(), "prod".to_owned())].into(),
            content_type: "text/plain".into(),
            size_bytes: 12,
            etag: "e1".into(),
            ..Default::default()
        },
    )
}

pub(crate) fn updated(tenant: &str, document: &str) -> Envelope {
    Envelope::new(
        SOURCE,
        &ev::DocumentUpdated {
            document_id: document.into(),
            tenant: tenant.into(),
            actor: "carol".into(),
            changed_fields: vec!["title".into()],
            title: format!("new title of {document}"),
            ..Default::default()
        },
    )
}

pub(crate) fn relabelled(tenant: &str, document: &str) -> Envelope {
    Envelope::new(
        SOURCE,
        &ev::DocumentUpdated {
            document_id: document.into(),
            tenant: tenant.into(),
            actor: "dave".into(),
            changed_fields: vec!["labels".into()],
            labels: [("team".to_owned(), "ops".to_owned())].into(),
            ..Default::default()
        },
    )
}

pub(crate) fn deleted(tenant: &str, document: &str) -> Envelope {
    Envelope::new(
        SOURCE,
        &ev::DocumentDeleted {
            document_id: document.into(),
            tenant: tenant.into(),
            actor: "alice".into(),
            ..Default::default()
        },
    )
}

pub(crate) fn signed_up(tenant: &str, user: &str) -> Envelope {
    Envelope::new(
        "/cloudsec/auth",
        &ev::UserSignedUp {
            user_id: user.into(),
            tenant: tenant.into(),
            email: format!("{user}@example.com"),
            tenant_created: true,
            ..Default::default()
        },
    )
}

/// An event of a type the audit service has never heard of.
pub(crate) fn unknown(tenant: &str) -> Envelope {
    let mut event = deleted(tenant, "x");
    event.event_type = "com.example.v1.SomethingHappened".into();
    event.source = "/example".into();
    event.subject = Some("thing-1".into());
    event
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
            let url = format!("sqlite://{}", dir.path().join("audit.db").display());
            let db = cloudsec_audit::connect(&url.as_str().into())
                .await
                .expect("open and migrate sqlite");
            let harness = Harness {
                url,
                db: db.clone(),
            };
            let outcome = tokio::spawn(scenario(harness)).await;
            let _ = db.close().await;
            drop(dir);
            if let Err(error) = outcome {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        Backend::Postgres => {
            let Some(database) = cloudsec_testkit::TestDatabase::create("audit_test").await else {
                return;
            };
            let url = database.url().to_owned();
            let name = database.name().to_owned();
            let outcome = match cloudsec_audit::connect(&url.as_str().into()).await {
                Ok(db) => {
                    let harness = Harness {
                        url,
                        db: db.clone(),
                    };
                    let outcome = tokio::spawn(scenario(harness)).await;
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
