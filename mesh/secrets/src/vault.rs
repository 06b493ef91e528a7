//! The Vault (or OpenBao) client: log in, keep the token alive, log in
//! again when it dies.
//!
//! - **Start-up:** [`VaultClient::connect`] logs in with the configured
//!   method. While Vault is unreachable (connection refused, timeout,
//!   sealed) it retries with bounded exponential backoff, then fails with an
//!   error that names the address. A refused login fails at once: retrying
//!   cannot fix a wrong role or secret id.
//! - **Renewal:** [`VaultClient::spawn_token_renewal`] renews the token
//!   (`auth/token/renew-self`) when two thirds of its TTL have passed, so a
//!   third of the TTL is left to ride out a Vault outage. When renewal is
//!   refused, or the token reaches its max TTL, AppRole and Kubernetes log
//!   in again; a static token cannot, and its expiry is logged as an error.
//! - **Every call** checks the token's expiry first and, for methods that
//!   can, logs in again; a call answered with 403 (token revoked from
//!   outside) logs in again once and retries.
//!
//! The token lives in sessions that are swapped atomically, so requests
//! in flight keep the token they started with.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloudsec_runtime::Secret;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;
use vaultrs::client::{VaultClient as Api, VaultClientSettings, VaultClientSettingsBuilder};

use crate::config::{RetryConfig, VaultAuth, VaultConfig};
use crate::error::{Error, Result};

/// The share of a token's or lease's TTL after which it is renewed.
pub const RENEW_AT: f64 = 2.0 / 3.0;

/// Retries of a failed renewal back off from this...
const RENEW_RETRY_MIN: Duration = Duration::from_secs(1);
/// ...to at most this.
const RENEW_RETRY_MAX: Duration = Duration::from_secs(30);

/// What Vault told us about a token when it was issued or renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLease {
    pub obtained_at: Instant,
    /// `None` for tokens that never expire (e.g. a dev root token).
    pub ttl: Option<Duration>,
    pub renewable: bool,
    /// The TTL the token had when logged in; a renewal that returns much
    /// less means the token is near its max TTL.
    pub full_ttl: Option<Duration>,
}

impl TokenLease {
    fn new(ttl_secs: u64, renewable: bool, full_ttl: Option<Duration>) -> Self {
        let ttl = (ttl_secs > 0).then(|| Duration::from_secs(ttl_secs));
        Self {
            obtained_at: Instant::now(),
            ttl,
            renewable,
            full_ttl: full_ttl.or(ttl),
        }
    }

    pub fn expires_at(&self) -> Option<Instant> {
        self.ttl.map(|ttl| self.obtained_at + ttl)
    }

    pub fn renew_at(&self) -> Option<Instant> {
        self.ttl.map(|ttl| self.obtained_at + ttl.mul_f64(RENEW_AT))
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }
}

/// A logged-in token and the vaultrs client that sends it.
pub(crate) struct Session {
    pub(crate) api: Api,
    token: Secret,
    lease: TokenLease,
}

/// A cloneable handle on one Vault login.
#[derive(Clone)]
pub struct VaultClient {
    inner: Arc<Inner>,
}

struct Inner {
    address: String,
    config: VaultConfig,
    settings: VaultClientSettings,
    http: reqwest::Client,
    session: RwLock<Arc<Session>>,
    login: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.inner.address)
            .field("auth", &self.inner.config.auth.method())
            .field("namespace", &self.inner.config.namespace)
            .finish_non_exhaustive()
    }
}

impl VaultClient {
    /// Logs in, retrying while Vault is unreachable (see the module doc).
    pub async fn connect(config: VaultConfig) -> Result<Self> {
        let address = normalise_address(&config.address)?;
        let settings = settings(&address, &config)?;
        // vaultrs builds the HTTP client (CA file, timeout); every session
        // and the raw lease calls then share its connection pool.
        let template = Api::new(settings.clone()).map_err(|e| {
            Error::Config(format!(
                "cannot set up the vault client for {address}: {}",
                Error::from_vault(&address, "set-up", e)
            ))
        })?;
        let http = template.http.http.clone();
        let anonymous = Arc::new(Session {
            api: template,
            token: Secret::new(""),
            lease: TokenLease {
                obtained_at: Instant::now(),
                ttl: Some(Duration::ZERO),
                renewable: false,
                full_ttl: None,
            },
        });
        let client = Self {
            inner: Arc::new(Inner {
                address,
                config,
                settings,
                http,
                session: RwLock::new(anonymous),
                login: tokio::sync::Mutex::new(()),
            }),
        };
        client.first_login().await?;
        Ok(client)
    }

    async fn first_login(&self) -> Result<()> {
        let retry = &self.inner.config.retry;
        let attempts = retry.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.login().await {
                Ok(_) => {
                    tracing::info!(
                        address = %self.inner.address,
                        method = self.inner.config.auth.method(),
                        "logged in to vault"
                    );
                    return Ok(());
                }
                Err(error) if error.is_unavailable() => {
                    last = error.to_string();
                    if attempt < attempts {
                        let pause = jitter(retry.backoff(attempt));
                        tracing::warn!(
                            address = %self.inner.address,
                            attempt,
                            attempts,
                            retry_in = ?pause,
                            %error,
                            "vault unreachable at start"
                        );
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::Unreachable {
            address: self.inner.address.clone(),
            attempts,
            reason: last,
        })
    }

    /// The address this client talks to, without a trailing slash.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The auth method's name (`token`, `approle`, `kubernetes`).
    pub fn auth_method(&self) -> &'static str {
        self.inner.config.auth.method()
    }

    /// What is known about the current token.
    pub fn token_lease(&self) -> TokenLease {
        self.current().lease
    }

    fn current(&self) -> Arc<Session> {
        match self.inner.session.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn install(&self, session: Session) -> Arc<Session> {
        // The token's lease starts now: its expiry in wall-clock time is
        // what `vault_token_expiration_timestamp_seconds` reports.
        cloudsec_runtime::metrics::process::vault_token_expires(
            session
                .lease
                .ttl
                .map(|ttl| std::time::SystemTime::now() + ttl),
        );
        let session = Arc::new(session);
        match self.inner.session.write() {
            Ok(mut s) => *s = Arc::clone(&session),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&session),
        }
        session
    }

    fn api_with(&self, token: &Secret) -> Api {
        let settings = self.inner.settings.clone();
        Api {
            http: rustify::clients::reqwest::Client::new(
                settings.address.as_str(),
                self.inner.http.clone(),
            ),
            middle: vaultrs::api::EndpointMiddleware {
                token: token.expose().to_owned(),
                version: format!("v{}", settings.version),
                wrap: None,
                namespace: settings.namespace.clone(),
            },
            settings,
        }
    }

    /// Logs in with the configured method and installs the new token.
    async fn login(&self) -> Result<Arc<Session>> {
        let address = self.inner.address.clone();
        let method = self.inner.config.auth.method();
        let login_err = |e: Error| match e {
            e if e.is_unavailable() => e,
            Error::Vault {
                status, message, ..
            } => Error::Login {
                address: address.clone(),
                method,
                reason: format!("HTTP {status}: {message}"),
            },
            other => other,
        };
        let anonymous = self.api_with(&Secret::new(""));
        let (token, lease) = match &self.inner.config.auth {
            VaultAuth::Token { token } => {
                let api = self.api_with(token);
                let info = vaultrs::token::lookup_self(&api)
                    .await
                    .map_err(|e| login_err(Error::from_vault(&address, "token lookup", e)))?;
                (
                    token.clone(),
                    TokenLease::new(info.ttl, info.renewable.unwrap_or(false), None),
                )
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let auth =
                    vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id.expose())
                        .await
                        .map_err(|e| login_err(Error::from_vault(&address, "approle login", e)))?;
                (
                    Secret::new(auth.client_token),
                    TokenLease::new(auth.lease_duration, auth.renewable, None),
                )
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                // Read at every login: the kubelet rotates projected tokens.
                let jwt = tokio::fs::read_to_string(jwt_path)
                    .await
                    .map_err(|e| Error::Login {
                        address: address.clone(),
                        method,
                        reason: format!(
                            "cannot read the service-account token {}: {e}",
                            jwt_path.display()
                        ),
                    })?;
                let auth = vaultrs::auth::kubernetes::login(&anonymous, mount, role, jwt.trim())
                    .await
                    .map_err(|e| login_err(Error::from_vault(&address, "kubernetes login", e)))?;
                (
                    Secret::new(auth.client_token),
                    TokenLease::new(auth.lease_duration, auth.renewable, None),
                )
            }
        };
        let api = self.api_with(&token);
        Ok(self.install(Session { api, token, lease }))
    }

    /// Logs in again unless another task already replaced `stale`.
    async fn relogin(&self, stale: &Arc<Session>) -> Result<Arc<Session>> {
        let _one_at_a_time = self.inner.login.lock().await;
        let now = self.current();
        if !Arc::ptr_eq(&now, stale) {
            return Ok(now);
        }
        tracing::info!(address = %self.inner.address, method = self.auth_method(), "logging in to vault again");
        self.login().await
    }

    /// The session to use for a request: the current one, or a new login
    /// when its token has expired.
    pub(crate) async fn session(&self) -> Result<Arc<Session>> {
        let session = self.current();
        if !session.lease.is_expired(Instant::now()) {
            return Ok(session);
        }
        if !self.inner.config.auth.can_login_again() {
            return Err(Error::TokenExpired {
                address: self.inner.address.clone(),
                method: self.auth_method(),
            });
        }
        self.relogin(&session).await
    }

    /// Runs one Vault operation; on 403 with a method that can log in
    /// again, logs in once more and retries (the token may have been
    /// revoked from outside).
    pub(crate) async fn call<T, F, Fut>(&self, operation: &str, f: F) -> Result<T>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = std::result::Result<T, vaultrs::error::ClientError>>,
    {
        self.call_mapped(|s| {
            let fut = f(s);
            async move {
                fut.await
                    .map_err(|e| Error::from_vault(self.address(), operation, e))
            }
        })
        .await
    }

    async fn call_mapped<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let session = self.session().await?;
        match f(Arc::clone(&session)).await {
            Err(e) if e.is_permission_denied() && self.inner.config.auth.can_login_again() => {
                let fresh = self.relogin(&session).await?;
                f(fresh).await
            }
            other => other,
        }
    }

    /// A Vault API call that vaultrs does not cover (or whose lease fields
    /// it drops): `path` is below `/v1/`, the answer is Vault's JSON.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let operation = format!("{method} {path}");
        self.call_mapped(|s| self.raw(s, method.clone(), path, body, &operation))
            .await
    }

    async fn raw(
        &self,
        session: Arc<Session>,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        operation: &str,
    ) -> Result<serde_json::Value> {
        let url = format!("{}/v1/{}", self.inner.address, path.trim_start_matches('/'));
        let mut req = self
            .inner
            .http
            .request(method, &url)
            .header("X-Vault-Request", "true");
        if !session.token.expose().is_empty() {
            req = req.header("X-Vault-Token", session.token.expose());
        }
        if let Some(ns) = &self.inner.config.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::from_transport(&self.inner.address, operation, &e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::from_transport(&self.inner.address, operation, &e))?;
        let json: serde_json::Value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
        };
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let errors: Vec<String> = json
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Err(Error::Vault {
            address: self.inner.address.clone(),
            operation: operation.to_owned(),
            status,
            message: crate::error::vault_message(status, &errors),
        })
    }

    /// Renews the token now, or logs in again where renewal is refused or
    /// the token is close to its max TTL.
    pub async fn renew_token(&self) -> Result<()> {
        refresh(self, &self.current().lease).await.map(|_| ())
    }

    /// Keeps the token alive in the background until `stop` is cancelled.
    pub fn spawn_token_renewal(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let span = tracing::info_span!("vault_token", address = %self.inner.address);
        tokio::spawn(tracing::Instrument::instrument(
            async move { keep_token_fresh(&this, stop).await },
            span,
        ))
    }
}

/// The token operations the renewal loop needs; a trait so that the loop's
/// timing can be tested with paused time and no server.
pub(crate) trait TokenAuthority: Send + Sync {
    fn lease(&self) -> TokenLease;
    fn can_login_again(&self) -> bool;
    fn renew(&self) -> impl Future<Output = Result<TokenLease>> + Send;
    fn login(&self) -> impl Future<Output = Result<TokenLease>> + Send;
}

impl TokenAuthority for VaultClient {
    fn lease(&self) -> TokenLease {
        self.current().lease
    }

    fn can_login_again(&self) -> bool {
        self.inner.config.auth.can_login_again()
    }

    async fn renew(&self) -> Result<TokenLease> {
        let session = self.current();
        let auth = vaultrs::token::renew_self(&session.api, None)
            .await
            .map_err(|e| Error::from_vault(&self.inner.address, "token renewal", e))?;
        let lease = TokenLease::new(auth.lease_duration, auth.renewable, session.lease.full_ttl);
        let api = self.api_with(&session.token);
        self.install(Session {
            api,
            token: session.token.clone(),
            lease,
        });
        Ok(lease)
    }

    async fn login(&self) -> Result<TokenLease> {
        let stale = self.current();
        self.relogin(&stale).await.map(|s| s.lease)
    }
}

/// What one renewal attempt achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refreshed {
    Renewed,
    LoggedIn,
    /// A static token that cannot be renewed: nothing to do until it dies.
    CannotRenew,
}

pub(crate) async fn refresh<A: TokenAuthority>(auth: &A, lease: &TokenLease) -> Result<Refreshed> {
    if lease.renewable {
        match auth.renew().await {
            Ok(renewed) => {
                // Vault caps renewals at the token's max TTL; once the cap
                // bites, a new login gives a full TTL again.
                let capped = match (renewed.ttl, lease.full_ttl) {
                    (Some(now), Some(full)) => now < full / 2,
                    _ => false,
                };
                if capped && auth.can_login_again() {
                    auth.login().await?;
                    return Ok(Refreshed::LoggedIn);
                }
                return Ok(Refreshed::Renewed);
            }
            Err(e) if e.is_unavailable() || !auth.can_login_again() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "vault token renewal refused; logging in again");
            }
        }
    }
    if auth.can_login_again() {
        auth.login().await?;
        Ok(Refreshed::LoggedIn)
    } else {
        Ok(Refreshed::CannotRenew)
    }
}

pub(crate) async fn keep_token_fresh<A: TokenAuthority>(auth: &A, stop: CancellationToken) {
    loop {
        let lease = auth.lease();
        let (Some(renew_at), Some(expires_at)) = (lease.renew_at(), lease.expires_at()) else {
            // A token without a TTL never needs renewing.
            stop.cancelled().await;
            return;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(renew_at) => {}
        }
        let mut attempt = 0u32;
        loop {
            let refreshed = refresh(auth, &lease).await;
            cloudsec_runtime::metrics::process::vault_token_renewal(match &refreshed {
                Ok(Refreshed::Renewed) => "renewed",
                Ok(Refreshed::LoggedIn) => "logged_in",
                Ok(Refreshed::CannotRenew) => "cannot_renew",
                Err(_) => "error",
            });
            match refreshed {
                Ok(Refreshed::Renewed | Refreshed::LoggedIn) => break,
                Ok(Refreshed::CannotRenew) => {
                    tracing::warn!(
                        expires_in = ?expires_at.saturating_duration_since(Instant::now()),
                        "the vault token cannot be renewed; give the service a new one before it expires"
                    );
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep_until(expires_at) => {}
                    }
                    tracing::error!("the vault token expired; vault calls now fail");
                    stop.cancelled().await;
                    return;
                }
                Err(error) => {
                    attempt += 1;
                    let now = Instant::now();
                    if lease.is_expired(now) && !auth.can_login_again() {
                        tracing::error!(%error, "the vault token expired; vault calls now fail");
                        stop.cancelled().await;
                        return;
                    }
                    let pause = jitter(
                        RetryConfig {
                            attempts: u32::MAX,
                            initial_backoff: RENEW_RETRY_MIN,
                            max_backoff: RENEW_RETRY_MAX,
                        }
                        .backoff(attempt),
                    );
                    tracing::warn!(
                        attempt,
                        %error,
                        retry_in = ?pause,
                        expires_in = ?expires_at.saturating_duration_since(now),
                        "vault token renewal failed"
                    );
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

/// Spreads retries of many replicas over time: 50% to 100% of `d`.
pub(crate) fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

fn normalise_address(raw: &str) -> Result<String> {
    let url = Url::parse(raw.trim())
        .map_err(|e| Error::Config(format!("vault address `{raw}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Config(format!(
            "vault address `{raw}` must be http(s)://host[:port]"
        )));
    }
    if url.scheme() == "http"
        && !url
            .host_str()
            .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]")
    {
        tracing::warn!(address = %url, "vault address is plain http on a non-loopback host");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn settings(address: &str, config: &VaultConfig) -> Result<VaultClientSettings> {
    let mut b = VaultClientSettingsBuilder::default();
    // Every field is set explicitly: the builder's defaults read VAULT_*
    // environment variables, which would silently override configuration.
    b.address(address)
        .token("")
        .ca_certs(
            config
                .ca_cert
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        )
        .identity(None)
        .verify(true)
        .timeout(Some(config.request_timeout))
        .namespace(config.namespace.clone());
    b.build()
        .map_err(|e| Error::Config(format!("vault client settings: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn addresses_are_checked() {
        assert_eq!(
            normalise_address("http://127.0.0.1:8200/").unwrap(),
            "http://127.0.0.1:8200"
        );
        assert!(matches!(
            normalise_address("vault:8200"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            normalise_address("not a url"),
            Err(Error::Config(_))
        ));
    }

    /// A token authority whose answers the test scripts.
    struct Fake {
        lease: Mutex<TokenLease>,
        can_login: bool,
        renew_answers: Mutex<Vec<Result<u64>>>,
        renewals: AtomicUsize,
        logins: AtomicUsize,
        login_ttl: u64,
    }

    impl Fake {
        fn new(ttl: u64, can_login: bool, renew_answers: Vec<Result<u64>>) -> Self {
            Self {
                lease: Mutex::new(TokenLease::new(ttl, true, None)),
                can_login,
                renew_answers: Mutex::new(renew_answers),
                renewals: AtomicUsize::new(0),
                logins: AtomicUsize::new(0),
                login_ttl: ttl,
            }
        }
    }

    fn down() -> Error {
        Error::Unavailable {
            address: "http://v".into(),
            operation: "token renewal".into(),
            reason: "connection refused".into(),
        }
    }

    fn denied() -> Error {
        Error::Vault {
            address: "http://v".into(),
            operation: "token renewal".into(),
            status: 403,
            message: "permission denied".into(),
        }
    }

    impl TokenAuthority for Fake {
        fn lease(&self) -> TokenLease {
            *self.lease.lock().unwrap()
        }
        fn can_login_again(&self) -> bool {
            self.can_login
        }
        async fn renew(&self) -> Result<TokenLease> {
            self.renewals.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.renew_answers.lock().unwrap();
            let answer = if answers.is_empty() {
                Ok(self.login_ttl)
            } else {
                answers.remove(0)
            };
            let full = self.lease().full_ttl;
            let lease = TokenLease::new(answer?, true, full);
            *self.lease.lock().unwrap() = lease;
            Ok(lease)
        }
        async fn login(&self) -> Result<TokenLease> {
            self.logins.fetch_add(1, Ordering::SeqCst);
            let lease = TokenLease::new(self.login_ttl, true, None);
            *self.lease.lock().unwrap() = lease;
            Ok(lease)
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_two_thirds_of_the_ttl() {
        let fake = Arc::new(Fake::new(90, true, vec![]));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (fake, stop) = (fake.clone(), stop.clone());
            async move { keep_token_fresh(&*fake, stop).await }
        });
        tokio::time::sleep(Duration::from_secs(59)).await;
        settle().await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 0, "renewed too early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 1);
        // The renewed lease is renewed again 60 s after the renewal.
        tokio::time::sleep(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 2);
        assert_eq!(fake.logins.load(Ordering::SeqCst), 0);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn retries_renewal_while_vault_is_down() {
        let fake = Arc::new(Fake::new(90, true, vec![Err(down()), Err(down()), Ok(90)]));
        let stop = CancellationToken::new();
        let _task = tokio::spawn({
            let (fake, stop) = (fake.clone(), stop.clone());
            async move { keep_token_fresh(&*fake, stop).await }
        });
        // 60 s, then two failures backing off at most 1 s and 2 s.
        tokio::time::sleep(Duration::from_secs(60 + 3) + Duration::from_millis(100)).await;
        settle().await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 3);
        assert_eq!(fake.logins.load(Ordering::SeqCst), 0);
        assert!(
            exposed("vault_token_renewals_total{component=\"t\",outcome=\"error\"}")
                .is_some_and(|n| n >= 2.0)
        );
        stop.cancel();
    }

    /// A sample of the process-wide metrics, as any registry exposes it.
    fn exposed(series: &str) -> Option<f64> {
        cloudsec_runtime::metrics::Metrics::new("t")
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[tokio::test(start_paused = true)]
    async fn logs_in_again_when_renewal_is_refused_or_capped() {
        // Refused (token revoked): log in.
        let fake = Fake::new(90, true, vec![Err(denied())]);
        let lease = fake.lease();
        assert_eq!(refresh(&fake, &lease).await.unwrap(), Refreshed::LoggedIn);
        assert_eq!(fake.logins.load(Ordering::SeqCst), 1);

        // Renewed to less than half the login TTL: near max TTL, log in.
        let fake = Fake::new(90, true, vec![Ok(20)]);
        let lease = fake.lease();
        assert_eq!(refresh(&fake, &lease).await.unwrap(), Refreshed::LoggedIn);
        assert_eq!(fake.lease().ttl, Some(Duration::from_secs(90)));

        // A static token cannot log in: the refusal is the answer.
        let fake = Fake::new(90, false, vec![Err(denied())]);
        let lease = fake.lease();
        assert!(
            refresh(&fake, &lease)
                .await
                .unwrap_err()
                .is_permission_denied()
        );
        assert_eq!(fake.logins.load(Ordering::SeqCst), 0);

        // Vault down: no login attempt, the caller retries.
        let fake = Fake::new(90, true, vec![Err(down())]);
        let lease = fake.lease();
        assert!(refresh(&fake, &lease).await.unwrap_err().is_unavailable());
        assert_eq!(fake.logins.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_without_ttl_is_left_alone() {
        let fake = Arc::new(Fake::new(0, false, vec![]));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (fake, stop) = (fake.clone(), stop.clone());
            async move { keep_token_fresh(&*fake, stop).await }
        });
        tokio::time::sleep(Duration::from_secs(100_000)).await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 0);
        stop.cancel();
        task.await.unwrap();
    }
}
