//! The test harness: a real database (SQLite in a temp file, or a fresh
//! PostgreSQL database that is dropped afterwards), the auth core on a
//! manual clock, and the gRPC adapter over it.

use std::future::Future;
use std::sync::{Arc, Once};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use cloudsec_auth::clock::ManualClock;
use cloudsec_auth::grpc::AuthGrpc;
use cloudsec_auth::migration::Migrator;
use cloudsec_auth::password::Hasher;
use cloudsec_auth::{AuthCore, SessionSettings, TokenSettings};
use cloudsec_proto::auth::v1 as pb;
use cloudsec_proto::auth::v1::auth_service_server::AuthService;
pub(crate) use cloudsec_proto::events::v1::ConfirmationPurpose as Purpose;
use cloudsec_proto::events::v1::UserConfirmationRequested;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};
use tonic::Request;

pub(crate) const ISSUER: &str = "https://auth.cloudsec.test";
pub(crate) const AUDIENCE: &str = "cloudsec";
pub(crate) const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// What a scenario gets.
#[derive(Clone)]
pub(crate) struct Harness {
    pub(crate) api: AuthGrpc,
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: ManualClock,
    pub(crate) hasher: Hasher,
    /// The mailer's side of the code seal: tests read codes as a mailer.
    pub(crate) seal: cloudsec_auth::codes::CodeSeal,
    /// The keystore behind the seal, alive as long as the harness.
    _keys: Arc<tempfile::TempDir>,
}

/// A signed-up user.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) email: String,
    pub(crate) user_id: String,
    pub(crate) tenant: String,
}

impl Harness {
    /// The same database, clock and code seal with a core whose signing
    /// keys and MFA secrets are sealed as `signing` says (e.g. by KMS).
    pub(crate) async fn with_signing(
        &self,
        signing: &cloudsec_auth::keys::SigningConfig,
    ) -> Result<Harness, cloudsec_auth::AuthError> {
        let core = AuthCore::new(
            self.db.clone(),
            self.hasher.clone(),
            TokenSettings {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                access_ttl: Duration::from_secs(900),
            },
            SessionSettings::default(),
            cloudsec_bus::Outbox::new(),
            signing,
            None,
        )
        .await?
        .with_code_seal(self.seal.clone())
        .with_clock(Arc::new(self.clock.clone()));
        Ok(Harness {
            api: AuthGrpc::new(core),
            ..self.clone()
        })
    }

    pub(crate) async fn sign_up(&self, name: &str) -> User {
        let email = format!("{name}@example.com");
        let tenant = format!("t-{name}");
        let r = self
            .api
            .sign_up(Request::new(pb::SignUpRequest {
                email: email.clone(),
                password: PASSWORD.into(),
                tenant: tenant.clone(),
            }))
            .await
            .expect("sign up")
            .into_inner();
        let code = self.code(&email, Purpose::SignUp).await;
        self.api
            .confirm_sign_up(Request::new(pb::ConfirmSignUpRequest {
                email: email.clone(),
                code,
            }))
            .await
            .expect("confirm sign-up");
        User {
            email,
            user_id: r.user_id,
            tenant,
        }
    }

    /// Every code sent to `email` for `purpose`, oldest first, read from
    /// the outbox the events leave through.
    pub(crate) async fn codes(&self, email: &str, purpose: Purpose) -> Vec<String> {
        let envelopes = self
            .strings(
                "SELECT envelope FROM bus_outbox WHERE event_type = \
                 'cloudsec.events.v1.UserConfirmationRequested' ORDER BY seq",
                "envelope",
            )
            .await;
        let mut codes = Vec::new();
        for json in &envelopes {
            let event = cloudsec_bus::Envelope::from_json(json)
                .unwrap()
                .decode::<UserConfirmationRequested>()
                .unwrap();
            if event.email == email && event.purpose() == purpose {
                codes.push(
                    self.seal
                        .open(&event)
                        .await
                        .expect("the mailer opens the code"),
                );
            }
        }
        codes
    }

    /// The latest code sent to `email` for `purpose`.
    pub(crate) async fn code(&self, email: &str, purpose: Purpose) -> String {
        self.codes(email, purpose)
            .await
            .pop()
            .unwrap_or_else(|| panic!("no {purpose:?} code for {email}"))
    }

    /// A user added to `tenant` who is not its admin (there is no API for
    /// that yet, so straight into the table).
    pub(crate) async fn add_member(&self, name: &str, tenant: &str) -> User {
        let email = format!("{name}@example.com");
        let id = uuid::Uuid::now_v7();
        let hash = self.hasher.hash(PASSWORD.into()).await.unwrap();
        cloudsec_auth::entity::user::Entity::insert(cloudsec_auth::entity::user::ActiveModel {
            id: sea_orm::Set(id),
            email: sea_orm::Set(email.clone()),
            tenant: sea_orm::Set(tenant.into()),
            password_hash: sea_orm::Set(hash),
            is_tenant_admin: sea_orm::Set(false),
            created_at: sea_orm::Set(Utc::now()),
            disabled_at: sea_orm::Set(None),
            confirmed_at: sea_orm::Set(Some(Utc::now())),
            token_generation: sea_orm::Set(0),
        })
        .exec(&self.db)
        .await
        .unwrap();
        User {
            email,
            user_id: id.to_string(),
            tenant: tenant.into(),
        }
    }

    pub(crate) async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> tonic::Result<pb::LoginResponse> {
        self.api
            .login(Request::new(pb::LoginRequest {
                email: email.into(),
                password: password.into(),
                client_id: String::new(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub(crate) async fn login_ok(&self, user: &User) -> pb::LoginResponse {
        self.login(&user.email, PASSWORD).await.expect("login")
    }

    pub(crate) async fn refresh(&self, token: &str) -> tonic::Result<pb::RefreshResponse> {
        self.api
            .refresh(Request::new(pb::RefreshRequest {
                refresh_token: token.into(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub(crate) async fn logout(&self, token: &str) -> tonic::Result<pb::LogoutResponse> {
        self.api
            .logout(Request::new(pb::LogoutRequest {
                refresh_token: token.into(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    /// The manual clock's time, in seconds since the epoch.
    pub(crate) fn core_now_secs(&self) -> i64 {
        use cloudsec_auth::clock::Clock;
        self.clock.now().timestamp()
    }

    /// The timestamp `sql` selects as `t`, in seconds since the epoch.
    pub(crate) async fn db_timestamp(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<chrono::DateTime<Utc>>("", "t")
            .unwrap()
            .timestamp()
    }

    /// One column of each row a query returns, as text.
    pub(crate) async fn strings(&self, sql: &str, column: &str) -> Vec<String> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String>("", column).unwrap())
            .collect()
    }

    /// A count from `sql`, which must select `count(*) AS n`.
    pub(crate) async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }
}

/// `message` with `token` as its bearer.
pub(crate) fn bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii header"),
    );
    request
}

/// The payload of a JWT, unverified (tests check signatures separately).
pub(crate) fn payload(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

async fn harness(db: DatabaseConnection) -> Harness {
    // Two hashes at once is enough for the concurrency tests and keeps a
    // two-core machine responsive.
    let hasher = Hasher::new(2, None).await.expect("hasher");
    let tokens = TokenSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        access_ttl: Duration::from_secs(900),
    };
    // Whole seconds, so timestamps survive every backend unchanged.
    let start = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = ManualClock::new(start);
    // Codes leave the service sealed for the mailer, so there is a key
    // service: a keystore of the test's own.
    let keys = tempfile::tempdir().expect("keystore dir");
    let secrets = cloudsec_secrets::Secrets::from_config(
        &cloudsec_secrets::SecretsConfig::Local {
            dir: Some(keys.path().join("keystore")),
        },
        keys.path(),
    )
    .await
    .expect("keystore");
    let sessions = SessionSettings::default();
    let seal = cloudsec_auth::codes::CodeSeal::from_config(&sessions.confirmation, Some(&secrets))
        .await
        .expect("code seal");
    // Signing keys stay in the clear here (the keys tests read them); the
    // sealing of those is tested with a key service of its own.
    let core = AuthCore::new(
        db.clone(),
        hasher.clone(),
        tokens,
        sessions,
        cloudsec_bus::Outbox::new(),
        &cloudsec_auth::keys::SigningConfig::default(),
        None,
    )
    .await
    .expect("auth core")
    .with_code_seal(seal.clone())
    .with_clock(Arc::new(clock.clone()));
    Harness {
        api: AuthGrpc::new(core),
        db,
        clock,
        hasher,
        seal,
        _keys: Arc::new(keys),
    }
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
            let url = format!("sqlite://{}", dir.path().join("auth.db").display());
            let db = open(&url).await.expect("open and migrate sqlite");
            let outcome = tokio::spawn(scenario(harness(db.clone()).await)).await;
            let _ = db.close().await;
            drop(dir);
            if let Err(error) = outcome {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        Backend::Postgres => {
            let Some(database) = cloudsec_testkit::TestDatabase::create("auth_test").await else {
                return;
            };
            let url = database.url().to_owned();
            let name = database.name().to_owned();
            let outcome = match open(&url).await {
                Ok(db) => {
                    let outcome = tokio::spawn(scenario(harness(db.clone()).await)).await;
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

async fn open(url: &str) -> Result<DatabaseConnection, String> {
    let db = cloudsec_runtime::db::connect::<Migrator>(url)
        .await
        .map_err(|e| e.to_string())?;
    cloudsec_bus::migration::migrate(&db)
        .await
        .map_err(|e| e.to_string())?;
    Ok(db)
}
