//! Test harness: databases made for one test and removed after it, a moto
//! server, AWS clients for it, and a way to wait without sleeping blindly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use cloudsec_bus::transport::Publisher;
use cloudsec_bus::transport::aws::{AwsClients, AwsSettings, sdk_config};
use cloudsec_bus::{Envelope, Migrator, Outbox, Published};
use cloudsec_proto::events::v1 as ev;
use sea_orm::{DatabaseConnection, TransactionTrait};

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
            let Some(database) = cloudsec_testkit::TestDatabase::create("cloudsec_bus_test").await
            else {
                return;
            };
            let url = database.url().to_owned();
            let db = cloudsec_runtime::db::connect::<Migrator>(&url)
                .await
                .unwrap();
            let outcome = tokio::spawn(scenario(db.clone())).await;
            let _ = db.close().await;
            database.drop().await;
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

pub(crate) use cloudsec_testkit::{moto_url, unique};

pub(crate) async fn aws_clients(url: &str) -> AwsClients {
    let config = sdk_config(
        &AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.to_owned()),
            dummy_credentials: true,
        },
        None,
    )
    .await;
    AwsClients::new(&config)
}

/// A port on which nothing listens: a broker that is down.
pub(crate) fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
