//! Test harness: databases made for one test and removed after it, a moto
//! server, AWS clients for it, and a way to wait without sleeping blindly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use cloudsec_bus::transport::Publisher;
use cloudsec_bus::transport::aws::{AwsClients, AwsSettings, sdk_config};
use cloudsec_bus::{Envelope, Migrator, Outbox, Published};
use cloudsec_proto::events::v1 as ev;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

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

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `scenario` with a fresh, migrated database of `backend`, then
/// removes the database, even when the scenario panics. A PostgreSQL test
/// without a server says SKIPPED, except in CI, where it fails.
pub(crate) async fn with_db<F, Fut>(backend: Backend, scenario: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    init_logs();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("bus.db").display());
            let db = cloudsec_runtime::db::connect::<Migrator>(&url)
                .await
                .unwrap();
            let outcome = tokio::spawn(scenario(db.clone())).await;
            let _ = db.close().await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic.into_panic());
            }
        }
        Backend::Postgres => {
            let admin_url = std::env::var("CLOUDSEC_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
            let admin = match Database::connect(&admin_url).await {
                Ok(admin) => admin,
                Err(error) => {
                    assert!(
                        !in_ci(),
                        "PostgreSQL is required in CI but unreachable at {admin_url}: {error}"
                    );
                    eprintln!("SKIPPED: PostgreSQL unreachable at {admin_url} ({error})");
                    return;
                }
            };
            let name = format!("cloudsec_bus_test_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(b, _)| b);
            let url = format!("{base}/{name}");
            let db = cloudsec_runtime::db::connect::<Migrator>(&url)
                .await
                .unwrap();
            let outcome = tokio::spawn(scenario(db.clone())).await;
            let _ = db.close().await;
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic.into_panic());
            }
        }
    }
}

/// Retries `check` until it returns `Some`, for at most `timeout`.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}

pub(crate) const SOURCE: &str = "/cloudsec/test";

pub(crate) fn created(document: &str) -> Envelope {
    Envelope::new(
        SOURCE,
        &ev::DocumentCreated {
            document_id: document.into(),
            tenant: "acme".into(),
            actor: "alice".into(),
            title: format!("title of {document}"),
            ..Default::default()
        },
    )
}

pub(crate) fn updated(document: &str, title: &str) -> Envelope {
    Envelope::new(
        SOURCE,
        &ev::DocumentUpdated {
            document_id: document.into(),
            tenant: "acme".into(),
            actor: "alice".into(),
            title: title.into(),
            changed_fields: vec!["title".into()],
            ..Default::default()
        },
    )
}

pub(crate) fn deleted(document: &str) -> Envelope {
    Envelope::new(
        SOURCE,
        &ev::DocumentDeleted {
            document_id: document.into(),
            tenant: "acme".into(),
            actor: "alice".into(),
            ..Default::default()
        },
    )
}

pub(crate) fn signed_up(user: &str) -> Envelope {
    Envelope::new(
        SOURCE,
        &ev::UserSignedUp {
            user_id: user.into(),
            tenant: "acme".into(),
            email: format!("{user}@example.com"),
            tenant_created: true,
            ..Default::default()
        },
    )
}

/// Appends `events` in one transaction, as a service would, and signals.
pub(crate) async fn append_all(db: &DatabaseConnection, outbox: &Outbox, events: &[Envelope]) {
    let txn = db.begin().await.unwrap();
    for event in events {
        outbox.append(&txn, event).await.unwrap();
    }
    txn.commit().await.unwrap();
    outbox.committed();
}

/// What a test handler saw, shared with the test.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen(pub(crate) Arc<Mutex<Vec<Envelope>>>);

impl Seen {
    pub(crate) fn push(&self, event: Envelope) {
        self.0.lock().unwrap().push(event);
    }

    pub(crate) fn all(&self) -> Vec<Envelope> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.all().into_iter().map(|e| e.id).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A publisher whose target the test swaps (broker down, broker back).
#[derive(Debug)]
pub(crate) struct Switch(pub(crate) Mutex<Arc<dyn Publisher>>);

impl Switch {
    pub(crate) fn new(to: Arc<dyn Publisher>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(to)))
    }

    pub(crate) fn set(&self, to: Arc<dyn Publisher>) {
        *self.0.lock().unwrap() = to;
    }
}

#[async_trait::async_trait]
impl Publisher for Switch {
    async fn publish(&self, batch: &[Envelope]) -> cloudsec_bus::Result<Published> {
        let current = self.0.lock().unwrap().clone();
        current.publish(batch).await
    }
}

/// The moto server's URL: `CLOUDSEC_TEST_MOTO_URL` (scripts/test starts
/// one), else a `moto_server` this test binary starts and that dies with
/// it. `None` (SKIPPED) when neither works outside CI.
pub(crate) fn moto_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("CLOUDSEC_TEST_MOTO_URL") {
            return Some(url);
        }
        match start_moto() {
            Ok(url) => Some(url),
            Err(error) => {
                assert!(
                    !in_ci(),
                    "moto is required in CI: set CLOUDSEC_TEST_MOTO_URL or install moto_server ({error})"
                );
                eprintln!("SKIPPED: no moto server ({error}); set CLOUDSEC_TEST_MOTO_URL");
                None
            }
        }
    })
    .clone()
}

fn start_moto() -> Result<String, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // A watchdog shell stops moto once this test process is gone.
    let script = format!(
        "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $m",
        parent = std::process::id()
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start moto_server: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("moto_server did not start within 30 s (is it installed?)".into())
}

pub(crate) async fn aws_clients(url: &str) -> AwsClients {
    let config = sdk_config(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.to_owned()),
        dummy_credentials: true,
    })
    .await;
    AwsClients::new(&config)
}

/// A name no other test uses, so tests share one moto without a reset.
pub(crate) fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A port on which nothing listens: a broker that is down.
pub(crate) fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
