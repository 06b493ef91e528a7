//! What every test suite shares, so that a backend is found, required and
//! skipped the same way everywhere:
//!
//! - [`in_ci`]: `CI=true` (or `1`). In CI a backend that cannot be reached
//!   fails the test ([`unavailable`]); elsewhere the test prints `SKIPPED`
//!   and returns.
//! - PostgreSQL: the server is `CLOUDSEC_TEST_POSTGRES_URL` (the one
//!   variable `scripts/test` exports; default the local server), and
//!   [`with_postgres`] runs a scenario on a fresh database there that is
//!   dropped afterwards, even when the scenario panics.
//! - moto: [`moto_url`] is `CLOUDSEC_TEST_MOTO_URL`, else a moto server
//!   that this process starts and that dies with it: `moto_server.py`,
//!   with DynamoDB's conditional writes atomic as they are on AWS.
//! - OpenBao: [`openbao_binary`] finds `bao` for the suites that start
//!   their own (`cloudsec-secrets`' `test-util` wraps it).

#![allow(clippy::expect_used)]

use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

/// The PostgreSQL server the tests use unless `CLOUDSEC_TEST_POSTGRES_URL`
/// names another.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Whether this is a CI run, where a missing backend is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A backend the test needs is unreachable: in CI the test fails with
/// `hint`; elsewhere it prints `SKIPPED` and the caller returns.
pub fn unavailable(what: &str, error: impl Display, hint: &str) {
    assert!(
        !in_ci(),
        "{what} is required in CI but unavailable: {error}; {hint}"
    );
    eprintln!("SKIPPED: {what} unavailable ({error}); {hint}");
}

/// The URL of the PostgreSQL database that test databases are created from.
pub fn postgres_admin_url() -> String {
    std::env::var("CLOUDSEC_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// The admin URL with its database replaced by `name`.
pub fn postgres_database_url(name: &str) -> String {
    database_url_on(&postgres_admin_url(), name)
}

/// `admin` with its database replaced by `name`: the credentials and the
/// query string (sslmode and the like) stay.
fn database_url_on(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// A connection to the admin database, or `None` after [`unavailable`].
pub async fn postgres_admin() -> Option<DatabaseConnection> {
    let url = postgres_admin_url();
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(2)
        .connect_timeout(Duration::from_secs(3))
        .sqlx_logging(false);
    match Database::connect(options).await {
        Ok(db) => Some(db),
        Err(error) => {
            unavailable(
                &format!("PostgreSQL at {}", redact(&url)),
                error,
                "start it or set CLOUDSEC_TEST_POSTGRES_URL",
            );
            None
        }
    }
}

/// A fresh database on the test server, dropped by [`TestDatabase::drop`].
#[derive(Debug)]
pub struct TestDatabase {
    admin: DatabaseConnection,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `<prefix>_<random>`; `None` when PostgreSQL is unreachable
    /// outside CI.
    pub async fn create(prefix: &str) -> Option<Self> {
        let admin = postgres_admin().await?;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = postgres_database_url(&name);
        Some(Self { admin, name, url })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database even when connections are still open.
    pub async fn drop(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = self.admin.execute_unprepared(&sql).await {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
        let _ = self.admin.close().await;
    }
}

/// Runs `scenario` with the URL of a fresh database named after `prefix`,
/// then drops the database, and only then re-raises a panic of the
/// scenario. Returns without running it when PostgreSQL is unreachable
/// outside CI.
pub async fn with_postgres<F, Fut>(prefix: &str, scenario: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(database) = TestDatabase::create(prefix).await else {
        return;
    };
    let outcome = tokio::spawn(scenario(database.url().to_owned())).await;
    database.drop().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A name no other test uses, so that tests share one server without a
/// reset.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The moto server's URL: `CLOUDSEC_TEST_MOTO_URL` (scripts/test starts
/// one), else a `moto_server` this process starts and that dies with it.
/// `None` after [`unavailable`] when neither works.
pub fn moto_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("CLOUDSEC_TEST_MOTO_URL") {
            return Some(url);
        }
        match start_moto(&[]) {
            Ok(url) => Some(url),
            Err(error) => {
                unavailable(
                    "moto",
                    error,
                    "set CLOUDSEC_TEST_MOTO_URL or install moto_server (pip install 'moto[server]')",
                );
                None
            }
        }
    })
    .clone()
}

/// `testkit/moto_server.py`: moto's server with DynamoDB's item writes
/// atomic, as DynamoDB's own are.
const MOTO_SERVER_PY: &str = include_str!("../moto_server.py");

/// Starts a `moto_server` on a free port with extra environment (for
/// example `INITIAL_NO_AUTH_ACTION_COUNT`, which turns IAM enforcement on);
/// it stops once this test process is gone.
pub fn start_moto(env: &[(&str, &str)]) -> Result<String, String> {
    let port = free_port()?;
    // A watchdog shell stops moto once this test process is gone, so that
    // an aborted run leaves nothing listening.
    // moto_server with DynamoDB's conditional writes made atomic (see the
    // script); it is passed in the environment to keep it out of the quoting.
    let script = format!(
        "python3 -c \"$CLOUDSEC_MOTO_SERVER_PY\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $m",
        parent = std::process::id()
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .env("CLOUDSEC_MOTO_SERVER_PY", MOTO_SERVER_PY)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start moto_server: {e}"))?;
    if wait_for_port(port, Duration::from_secs(30)) {
        Ok(format!("http://127.0.0.1:{port}"))
    } else {
        Err("moto_server did not start within 30 s (is it installed?)".to_owned())
    }
}

/// A port that was free a moment ago, for a server that takes its port on
/// the command line.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Whether something accepts on `127.0.0.1:port` within `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        // Polling: a child process's listener has nothing to await.
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The `bao` binary: the workspace's `.venv-openbao` (what
/// `scripts/openbao` installs), else `PATH`.
pub fn openbao_binary() -> Option<PathBuf> {
    let venv = workspace_root().join(".venv-openbao/bin/bao");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("bao"))
            .find(|bin| bin.is_file())
    })
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_server_and_options() {
        assert_eq!(
            database_url_on("postgres://u:p@db.example:5433/admin?sslmode=require", "t1"),
            "postgres://u:p@db.example:5433/t1?sslmode=require"
        );
        assert_eq!(
            database_url_on("postgres://postgres@127.0.0.1:5432/postgres", "t2"),
            "postgres://postgres@127.0.0.1:5432/t2"
        );
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
    }
}
