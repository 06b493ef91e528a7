//! End-to-end sandbox for the cloudsec platform.
//!
//! [`Sandbox::start`] makes a fresh data directory (and, for PostgreSQL, a
//! fresh database), starts auth, documents and the gateway on port-0
//! listeners exactly as `cloudsec up` wires them, and returns once every
//! component reports ready. Tests then talk REST to the gateway or mTLS
//! gRPC to the services.

// A test harness: panicking with a clear message is how it reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod oidc;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudsec::{Addresses, LocalPlatform, PlatformError};
use cloudsec_bus::{DomainEvent, QueueSpec};
use cloudsec_proto::events::v1::{ConfirmationPurpose, UserConfirmationRequested};
use cloudsec_runtime::Shutdown;
use cloudsec_runtime::tls::MeshTls;
use sea_orm::{ConnectionTrait, Database};
use tonic::transport::Channel;

/// The relational backend a sandbox runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub use cloudsec_testkit::{moto_url, postgres_admin_url};

/// Retries `check` until it returns `Some`, for at most `timeout`; the
/// alternative to sleeping a fixed time.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
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
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}

/// A database made for one sandbox and dropped with it.
#[derive(Debug)]
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Option<Self> {
        let admin_url = postgres_admin_url();
        let admin = cloudsec_testkit::postgres_admin().await?;
        let name = format!("cloudsec_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let url = cloudsec_testkit::postgres_database_url(&name);
        let _ = admin.close().await;
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    async fn drop_now(&self) {
        if let Ok(admin) = Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}

/// A running platform for one test.
#[derive(Debug)]
pub struct Sandbox {
    pub backend: Backend,
    pub addrs: Addresses,
    pub http: reqwest::Client,
    client_tls: MeshTls,
    auth_name: String,
    documents_name: String,
    audit_name: String,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<Result<(), PlatformError>>>,
    dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
    extra: Extra,
    /// Every confirmation code the platform sent, in order, opened: the
    /// sandbox reads its own queue and holds the mailer's key, as a mailer
    /// would.
    mail: Arc<Mutex<Vec<(UserConfirmationRequested, String)>>>,
    /// The mailer's key, to open codes.
    seal: cloudsec_auth::codes::CodeSeal,
    /// The body of every message on the bus, as a subscriber to every
    /// event type receives it.
    wire: Arc<Mutex<Vec<String>>>,
}

/// Configuration a test adds on top of the sandbox's own.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// TOML appended to the sandbox's file; it may not repeat a table the
    /// sandbox writes (`[auth]`, `[documents]`, ...): use `env` for those.
    pub toml: String,
    /// `CLOUDSEC__...` variables.
    pub env: std::collections::BTreeMap<String, String>,
}

/// One signed-up user.
#[derive(Debug, Clone)]
pub struct User {
    pub email: String,
    pub password: String,
    pub tenant: String,
    pub user_id: String,
    pub token: String,
}

impl Sandbox {
    /// Starts a platform; `None` only when PostgreSQL is wanted, missing,
    /// and this is not CI (CI fails instead).
    pub async fn start(backend: Backend) -> Option<Self> {
        let _ = cloudsec_runtime::telemetry::init(
            "cloudsec-tests",
            cloudsec_runtime::telemetry::LogFormat::Test,
            None,
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await?),
        };
        Some(Self::launch(backend, dir, pg, Extra::default()).await)
    }

    /// Starts a platform with `extra` configuration; `None` as for
    /// [`Sandbox::start`].
    pub async fn start_with(backend: Backend, extra: Extra) -> Option<Self> {
        let _ = cloudsec_runtime::telemetry::init(
            "cloudsec-tests",
            cloudsec_runtime::telemetry::LogFormat::Test,
            None,
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await?),
        };
        Some(Self::launch(backend, dir, pg, extra).await)
    }

    fn overrides(pg: Option<&PgDatabase>, data_dir: &std::path::Path) -> String {
        // Both services may share one database: their tables and migration
        // tables have distinct names.
        let db = pg.map_or(String::new(), |pg| {
            format!("database_url = \"{}\"\n", pg.url)
        });
        // On PostgreSQL the embedded bus lives there too (every table set
        // has its own names, so one database holds them all).
        let events = if db.is_empty() {
            String::new()
        } else {
            format!("[events]\n{db}\n")
        };
        // Without a SQLite file there is no directory to default to: the
        // content objects and their keys go to the sandbox's directory.
        let content = if db.is_empty() {
            String::new()
        } else {
            format!(
                "[documents.content.store]\nbackend = \"local\"\ndir = \"{}\"\n\
                 [documents.content.keys]\nbackend = \"local\"\ndir = \"{}\"\n",
                data_dir.join("objects").display(),
                data_dir.join("documents-keys").display()
            )
        };
        let listeners = "grpc_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\n";
        // Revoked tokens are refused within a pull; tests wait for that,
        // so the pulls come often.
        let revocations = "[tokens]\nrevocation_interval = \"100ms\"\n";
        format!(
            "{revocations}{events}[auth]\n{listeners}{db}\n[documents]\n{listeners}{db}\n{content}[audit]\n{listeners}{db}\n\
             [gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\n"
        )
    }

    async fn launch(
        backend: Backend,
        dir: tempfile::TempDir,
        pg: Option<PgDatabase>,
        extra: Extra,
    ) -> Self {
        let overrides = Self::overrides(pg.as_ref(), dir.path()) + &extra.toml;
        let config = cloudsec::local_config(dir.path(), Some(&overrides), &extra.env)
            .await
            .expect("sandbox configuration");
        let platform = LocalPlatform::build(dir.path(), &config)
            .await
            .expect("platform builds");
        let addrs = platform.addresses();
        let client_tls = platform
            .issue("e2e-client")
            .await
            .expect("client certificate");
        let auth_name = platform.server_name("auth");
        let documents_name = platform.server_name("documents");
        let audit_name = platform.server_name("audit");
        let shutdown = Shutdown::new();
        let mail = Arc::new(Mutex::new(Vec::new()));
        let mailbox = platform
            .bus()
            .queue(
                &QueueSpec::new("sandbox-mailer", &[UserConfirmationRequested::TYPE]),
                config.config.events.provisioning,
            )
            .await
            .expect("sandbox mail queue");
        let seal = cloudsec_auth::codes::CodeSeal::from_config(
            &config
                .config
                .auth
                .as_ref()
                .expect("auth section")
                .confirmation,
            config.secrets.as_ref(),
        )
        .await
        .expect("the mailer's key");
        tokio::spawn(read_mail(
            mailbox,
            seal.clone(),
            mail.clone(),
            shutdown.clone(),
        ));
        let wire = Arc::new(Mutex::new(Vec::new()));
        let everything = platform
            .bus()
            .queue(
                &QueueSpec::new("sandbox-everything", &[]),
                config.config.events.provisioning,
            )
            .await
            .expect("sandbox queue of every event");
        tokio::spawn(read_wire(everything, wire.clone(), shutdown.clone()));
        let task = tokio::spawn(platform.run_until_stopped(shutdown.clone()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let sandbox = Self {
            backend,
            addrs,
            http,
            client_tls,
            auth_name,
            documents_name,
            audit_name,
            shutdown,
            task: Some(task),
            dir,
            pg,
            extra,
            mail,
            seal,
            wire,
        };
        sandbox.wait_ready().await;
        sandbox
    }

    async fn wait_ready(&self) {
        for admin in [
            self.addrs.gateway_admin,
            self.addrs.auth_admin,
            self.addrs.documents_admin,
            self.addrs.audit_admin,
        ] {
            let url = format!("http://{admin}/ready");
            let ready = eventually(Duration::from_secs(20), || async {
                let r = self.http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            })
            .await;
            assert!(ready.is_some(), "{url} never became ready");
        }
    }

    /// The data directory, e.g. to read the auth service's key in tests.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The database URL the auth service uses.
    pub fn auth_database_url(&self) -> String {
        self.database_url("auth")
    }

    /// The database URL `component` (auth, documents, audit) uses.
    pub fn database_url(&self, component: &str) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => format!(
                "sqlite://{}",
                self.dir.path().join(format!("{component}.db")).display()
            ),
        }
    }

    /// The gateway URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs.gateway)
    }

    /// The TLS material of the test's own mesh workload (`e2e-client`).
    pub fn client_tls(&self) -> &MeshTls {
        &self.client_tls
    }

    /// An mTLS channel to `auth` or `documents`, presenting the test's
    /// workload certificate.
    pub fn channel(&self, service: &str) -> Channel {
        self.channel_with(service, &self.client_tls)
    }

    /// An mTLS channel presenting `tls`.
    pub fn channel_with(&self, service: &str, tls: &MeshTls) -> Channel {
        let (addr, name) = match service {
            "auth" => (self.addrs.auth, &self.auth_name),
            "documents" => (self.addrs.documents, &self.documents_name),
            "audit" => (self.addrs.audit, &self.audit_name),
            other => panic!("no service {other}"),
        };
        cloudsec_runtime::grpc::channel(&format!("https://{addr}"), name, tls).expect("channel")
    }

    /// `GET path` with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// `DELETE path` with a bearer token.
    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("DELETE")
    }

    /// `POST path` with a JSON body and a bearer token.
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// `POST path` with a JSON body and no token (sign-up, login).
    pub async fn post_public(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// The text of `http://{admin}{path}` on an admin listener.
    pub async fn admin_text(&self, admin: std::net::SocketAddr, path: &str) -> String {
        let r = self
            .http
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .expect("admin GET");
        assert!(r.status().is_success(), "{admin}{path}: {}", r.status());
        r.text().await.expect("admin body")
    }

    /// `PATCH path` with a JSON body and a bearer token.
    pub async fn patch(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .patch(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("PATCH")
    }

    /// The latest code sent to `email` for `purpose`, waiting for its
    /// event to arrive; it is taken, so the next call waits for a new one.
    pub async fn code(&self, email: &str, purpose: ConfirmationPurpose) -> String {
        let code = eventually(Duration::from_secs(15), || async {
            let mut mail = self.mail.lock().expect("mail lock");
            let latest = mail
                .iter()
                .rposition(|(m, _)| m.email == email && m.purpose() == purpose)?;
            let code = mail[latest].1.clone();
            mail.retain(|(m, _)| !(m.email == email && m.purpose() == purpose));
            Some(code)
        })
        .await;
        code.unwrap_or_else(|| panic!("no {purpose:?} code reached {email}"))
    }

    /// Whether any code for `email` arrived and was not taken.
    pub fn has_mail(&self, email: &str) -> bool {
        self.mail
            .lock()
            .expect("mail lock")
            .iter()
            .any(|(m, _)| m.email == email)
    }

    /// Confirms `email`'s sign-up with the code the platform sent.
    pub async fn confirm(&self, email: &str) {
        let code = self.code(email, ConfirmationPurpose::SignUp).await;
        let r = self
            .post_public(
                "/v1/auth:confirmSignUp",
                &serde_json::json!({"email": email, "code": code}),
            )
            .await;
        assert_eq!(
            r.status(),
            200,
            "confirm sign-up: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Signs up a fresh user in a fresh tenant through the gateway,
    /// confirms the code it was sent, and logs in.
    pub async fn user(&self) -> User {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("user-{}@example.com", &suffix[..12]);
        let tenant = format!("t-{}", &suffix[..12]);
        let password = "correct horse battery staple".to_owned();
        let r = self
            .post_public(
                "/v1/auth:signUp",
                &serde_json::json!({"email": email, "password": password, "tenant": tenant}),
            )
            .await;
        assert_eq!(
            r.status(),
            200,
            "sign up: {}",
            r.text().await.unwrap_or_default()
        );
        let body: serde_json::Value = r.json().await.expect("sign up json");
        let user_id = body["userId"].as_str().expect("userId").to_owned();
        self.confirm(&email).await;
        let token = self.login(&email, &password).await;
        User {
            email,
            password,
            tenant,
            user_id,
            token,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .post_public(
                "/v1/auth:login",
                &serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(
            r.status(),
            200,
            "login: {}",
            r.text().await.unwrap_or_default()
        );
        let body: serde_json::Value = r.json().await.expect("login json");
        body["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned()
    }

    /// Stops the platform gracefully and starts it again on the same data.
    pub async fn restart(mut self) -> Self {
        self.stop_platform().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let pg = self.pg.take();
        Self::launch(self.backend, dir, pg, self.extra.clone()).await
    }

    async fn stop_platform(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("platform stops within 20 s")
                .expect("platform task");
            result.expect("platform stops cleanly");
        }
    }

    /// Sends the platform the shutdown signal (as SIGTERM does) without
    /// waiting; [`Sandbox::stop`] then waits for the drain.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the platform and drops its database.
    pub async fn stop(mut self) {
        self.stop_platform().await;
        if let Some(pg) = self.pg.take() {
            pg.drop_now().await;
        }
    }
}

/// The body of every message on the bus so far, as a subscriber of
/// every event type saw it.
impl Sandbox {
    pub fn wire(&self) -> Vec<String> {
        self.wire.lock().expect("wire lock").clone()
    }

    /// Opens the sealed code of `request` with the mailer's key.
    pub async fn open_code(
        &self,
        request: &UserConfirmationRequested,
    ) -> Result<String, cloudsec_auth::AuthError> {
        self.seal.open(request).await
    }
}

/// Keeps the body of every message from `queue` in `wire` until
/// `shutdown`.
async fn read_wire(
    queue: Arc<dyn cloudsec_bus::Queue>,
    wire: Arc<Mutex<Vec<String>>>,
    shutdown: Shutdown,
) {
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            r = queue.receive(10, Duration::from_secs(1), Duration::from_secs(30)) => r,
        };
        let Ok(deliveries) = received else {
            continue;
        };
        for delivery in deliveries {
            wire.lock().expect("wire lock").push(delivery.body.clone());
            let _ = queue.delete(&delivery).await;
        }
    }
}

/// Moves every confirmation event from `queue` into `mail`, with its code
/// opened, until `shutdown`.
async fn read_mail(
    queue: Arc<dyn cloudsec_bus::Queue>,
    seal: cloudsec_auth::codes::CodeSeal,
    mail: Arc<Mutex<Vec<(UserConfirmationRequested, String)>>>,
    shutdown: Shutdown,
) {
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            r = queue.receive(10, Duration::from_secs(1), Duration::from_secs(30)) => r,
        };
        let Ok(deliveries) = received else {
            continue;
        };
        for delivery in deliveries {
            if let Ok(event) = &delivery.event
                && let Ok(request) = event.decode::<UserConfirmationRequested>()
            {
                match seal.open(&request).await {
                    Ok(code) => mail.lock().expect("mail lock").push((request, code)),
                    Err(error) => panic!("the sandbox mailer cannot open a code: {error}"),
                }
            }
            let _ = queue.delete(&delivery).await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // A test that panicked never reached `stop`; drop its database from
        // a thread of its own since the test's runtime may be gone.
        if let Some(pg) = self.pg.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(pg.drop_now());
                }
            })
            .join();
        }
    }
}
