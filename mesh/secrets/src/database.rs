//! Dynamic database credentials from Vault's database engine.
//!
//! [`DbCredentials`] reads `<mount>/creds/<role>` once at start and then
//! keeps a background task that:
//! - renews the lease (`sys/leases/renew`) at two thirds of its TTL, and at
//!   least every `check_interval`, which is also how a lease revoked from
//!   outside is noticed (renewal answers "lease not found");
//! - fetches new credentials when renewal is refused, when the lease is
//!   not renewable, or when renewal no longer extends it (max TTL near);
//!   in that last case the old credentials are still valid for the rest of
//!   their TTL, so connections using them drain instead of failing;
//! - keeps retrying with backoff while Vault is unreachable; the current
//!   credentials stay published until they expire.
//!
//! New credentials are published on a `tokio::sync::watch` channel; a pool
//! builds new connections from the latest value (see
//! [`DbCreds::postgres_url`]). A service whose database refuses the login
//! calls [`DbCredentials::refresh_now`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Secret;
use crate::config::RetryConfig;
use crate::error::{Error, Result};
use crate::vault::{RENEW_AT, VaultClient, jitter};

const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Which role of which database mount, and how often to check the lease.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbCredentialsConfig {
    #[serde(default = "default_mount")]
    pub mount: String,
    pub role: String,
    /// The longest time between two renewals, whatever the lease's TTL.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub check_interval: Duration,
}

impl DbCredentialsConfig {
    pub fn new(mount: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            mount: mount.into(),
            role: role.into(),
            check_interval: default_check_interval(),
        }
    }
}

fn default_mount() -> String {
    "database".into()
}

fn default_check_interval() -> Duration {
    Duration::from_secs(60)
}

/// One set of database credentials and the lease behind it.
#[derive(Debug, Clone)]
pub struct DbCreds {
    pub username: String,
    pub password: Secret,
    pub lease_id: String,
    pub lease_duration: Duration,
    pub renewable: bool,
    /// 1 for the first credentials, +1 for each replacement.
    pub generation: u64,
}

impl DbCreds {
    /// `base` (e.g. `postgres://db.internal:5432/documents?sslmode=require`)
    /// with these credentials filled in, percent-encoded.
    pub fn postgres_url(&self, base: &str) -> Result<Secret> {
        let mut url = url::Url::parse(base)
            .map_err(|e| Error::Config(format!("database URL `{base}` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::Config(format!(
                "database URL `{base}` must start with postgres://"
            )));
        }
        url.set_username(&self.username)
            .and_then(|()| url.set_password(Some(self.password.expose())))
            .map_err(|()| {
                Error::Config(format!("database URL `{base}` cannot carry credentials"))
            })?;
        Ok(Secret::new(String::from(url)))
    }
}

/// A lease as the maintenance loop sees it.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) username: String,
    pub(crate) password: Secret,
    pub(crate) lease_id: String,
    pub(crate) ttl: Duration,
    pub(crate) renewable: bool,
}

/// Where leases come from; a trait so the loop's timing can be tested
/// with paused time.
pub(crate) trait LeaseSource: Send + Sync + 'static {
    /// The lease's name in metrics (`<mount>/creds/<role>`).
    fn name(&self) -> String {
        "lease".to_owned()
    }
    fn fetch(&self) -> impl Future<Output = Result<Lease>> + Send;
    /// Renews and returns the new TTL.
    fn renew(
        &self,
        lease_id: &str,
        increment: Duration,
    ) -> impl Future<Output = Result<Duration>> + Send;
}

struct VaultLeases {
    client: VaultClient,
    mount: String,
    role: String,
}

impl LeaseSource for VaultLeases {
    fn name(&self) -> String {
        format!("{}/creds/{}", self.mount, self.role)
    }

    async fn fetch(&self) -> Result<Lease> {
        // vaultrs's typed call drops the lease fields, so this reads the
        // raw answer.
        let body = self
            .client
            .request(
                reqwest::Method::GET,
                &format!("{}/creds/{}", self.mount, self.role),
                None,
            )
            .await?;
        let text = |v: &serde_json::Value, what: &str| {
            v.as_str().map(str::to_owned).ok_or_else(|| {
                Error::Malformed(format!(
                    "{}/creds/{} answered without `{what}`",
                    self.mount, self.role
                ))
            })
        };
        Ok(Lease {
            username: text(&body["data"]["username"], "username")?,
            password: Secret::new(text(&body["data"]["password"], "password")?),
            lease_id: text(&body["lease_id"], "lease_id")?,
            ttl: Duration::from_secs(body["lease_duration"].as_u64().unwrap_or(0)),
            renewable: body["renewable"].as_bool().unwrap_or(false),
        })
    }

    async fn renew(&self, lease_id: &str, increment: Duration) -> Result<Duration> {
        let body = self
            .client
            .request(
                reqwest::Method::PUT,
                "sys/leases/renew",
                Some(
                    &serde_json::json!({ "lease_id": lease_id, "increment": increment.as_secs() }),
                ),
            )
            .await?;
        Ok(Duration::from_secs(
            body["lease_duration"].as_u64().unwrap_or(0),
        ))
    }
}

/// Database credentials kept current in the background (see the module
/// doc). Dropping it stops the background task.
#[derive(Debug)]
pub struct DbCredentials {
    current: watch::Receiver<Arc<DbCreds>>,
    refresh: Arc<Notify>,
    stop: CancellationToken,
}

impl Drop for DbCredentials {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl DbCredentials {
    /// Reads the first credentials (an error if that fails) and starts the
    /// background task.
    pub async fn start(client: VaultClient, config: DbCredentialsConfig) -> Result<Self> {
        let source = VaultLeases {
            client,
            mount: config.mount.clone(),
            role: config.role.clone(),
        };
        let span =
            tracing::info_span!("db_credentials", mount = %config.mount, role = %config.role);
        Self::start_with(source, config.check_interval, span).await
    }

    pub(crate) async fn start_with(
        source: impl LeaseSource,
        check_interval: Duration,
        span: tracing::Span,
    ) -> Result<Self> {
        let first = source.fetch().await?;
        lease_metrics(&source.name(), first.ttl, None);
        let (tx, rx) = watch::channel(Arc::new(to_creds(&first, 1)));
        let refresh = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let state = State {
            lease: first,
            obtained_at: Instant::now(),
            generation: 1,
        };
        tokio::spawn(tracing::Instrument::instrument(
            maintain(
                source,
                state,
                tx,
                Arc::clone(&refresh),
                check_interval,
                stop.clone(),
            ),
            span,
        ));
        Ok(Self {
            current: rx,
            refresh,
            stop,
        })
    }

    /// The credentials to use for new connections now.
    pub fn current(&self) -> Arc<DbCreds> {
        self.current.borrow().clone()
    }

    /// Changes whenever new credentials are published.
    pub fn subscribe(&self) -> watch::Receiver<Arc<DbCreds>> {
        self.current.clone()
    }

    /// Fetches new credentials now, e.g. after the database refused them.
    pub fn refresh_now(&self) {
        self.refresh.notify_one();
    }

    /// Stops the background task (also done on drop).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Records that lease `name` now expires in `ttl`, and the outcome of the
/// attempt that made it so (none for the first lease).
fn lease_metrics(name: &str, ttl: Duration, outcome: Option<&str>) {
    use cloudsec_runtime::metrics::process;
    process::vault_lease_expires(name, std::time::SystemTime::now() + ttl);
    if let Some(outcome) = outcome {
        process::vault_lease_renewal(name, outcome);
    }
}

fn to_creds(lease: &Lease, generation: u64) -> DbCreds {
    DbCreds {
        username: lease.username.clone(),
        password: lease.password.clone(),
        lease_id: lease.lease_id.clone(),
        lease_duration: lease.ttl,
        renewable: lease.renewable,
        generation,
    }
}

struct State {
    lease: Lease,
    obtained_at: Instant,
    generation: u64,
}

impl State {
    fn expires_at(&self) -> Instant {
        self.obtained_at + self.lease.ttl
    }

    fn next_check(&self, check_interval: Duration) -> Instant {
        self.obtained_at + self.lease.ttl.mul_f64(RENEW_AT).min(check_interval)
    }
}

enum Step {
    Renewed(Duration),
    Replace(&'static str),
}

async fn maintain(
    source: impl LeaseSource,
    mut state: State,
    tx: watch::Sender<Arc<DbCreds>>,
    refresh: Arc<Notify>,
    check_interval: Duration,
    stop: CancellationToken,
) {
    // The TTL a fresh lease gets; a renewal that returns much less means
    // the lease is near its max TTL.
    let mut full_ttl = state.lease.ttl;
    loop {
        let step = tokio::select! {
            () = stop.cancelled() => return,
            () = refresh.notified() => Step::Replace("refresh requested"),
            () = tokio::time::sleep_until(state.next_check(check_interval)) => {
                if state.lease.renewable && !state.lease.lease_id.is_empty() {
                    match renew_with_retry(&source, &state, full_ttl, &stop).await {
                        Some(Ok(ttl)) => Step::Renewed(ttl),
                        Some(Err(e)) => {
                            cloudsec_runtime::metrics::process::vault_lease_renewal(&source.name(), "error");
                            tracing::warn!(error = %e, lease_id = %state.lease.lease_id, "lease renewal refused (revoked or expired); fetching new credentials");
                            Step::Replace("renewal refused")
                        }
                        None => return,
                    }
                } else {
                    Step::Replace("lease not renewable")
                }
            }
        };
        match step {
            Step::Renewed(ttl) if ttl >= full_ttl / 2 && !ttl.is_zero() => {
                state.lease.ttl = ttl;
                state.obtained_at = Instant::now();
                lease_metrics(&source.name(), ttl, Some("renewed"));
                tracing::debug!(ttl = ?ttl, "database lease renewed");
            }
            step => {
                let reason = match step {
                    Step::Replace(reason) => reason,
                    Step::Renewed(ttl) => {
                        // The old credentials stay valid for `ttl` more:
                        // time for connections using them to drain.
                        state.lease.ttl = ttl;
                        state.obtained_at = Instant::now();
                        "lease near its max TTL"
                    }
                };
                let Some(lease) = fetch_with_retry(&source, &state, &stop).await else {
                    return;
                };
                state.generation += 1;
                full_ttl = lease.ttl;
                tracing::info!(
                    reason,
                    generation = state.generation,
                    username = %lease.username,
                    ttl = ?lease.ttl,
                    "new database credentials"
                );
                tx.send_replace(Arc::new(to_creds(&lease, state.generation)));
                lease_metrics(&source.name(), lease.ttl, Some("replaced"));
                state.lease = lease;
                state.obtained_at = Instant::now();
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    jitter(
        RetryConfig {
            attempts: u32::MAX,
            initial_backoff: RETRY_MIN,
            max_backoff: RETRY_MAX,
        }
        .backoff(attempt),
    )
}

/// Renews, retrying while Vault is unreachable. `None` when stopped;
/// `Some(Err)` when Vault refused.
async fn renew_with_retry(
    source: &impl LeaseSource,
    state: &State,
    full_ttl: Duration,
    stop: &CancellationToken,
) -> Option<Result<Duration>> {
    let mut attempt = 0;
    loop {
        match source.renew(&state.lease.lease_id, full_ttl).await {
            Err(e) if e.is_unavailable() => {
                attempt += 1;
                if !back_off(source, &e, attempt, state, stop).await {
                    return None;
                }
            }
            other => return Some(other),
        }
    }
}

/// Fetches new credentials until it works or `stop`.
async fn fetch_with_retry(
    source: &impl LeaseSource,
    state: &State,
    stop: &CancellationToken,
) -> Option<Lease> {
    let mut attempt = 0;
    loop {
        match source.fetch().await {
            Ok(lease) => return Some(lease),
            Err(e) => {
                attempt += 1;
                if !back_off(source, &e, attempt, state, stop).await {
                    return None;
                }
            }
        }
    }
}

/// Counts and logs failed attempt number `attempt`, then waits out its
/// backoff; `false` when `stop` came first.
async fn back_off(
    source: &impl LeaseSource,
    error: &Error,
    attempt: u32,
    state: &State,
    stop: &CancellationToken,
) -> bool {
    cloudsec_runtime::metrics::process::vault_lease_renewal(&source.name(), "error");
    let pause = backoff(attempt);
    log_outage(error, attempt, pause, state);
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(pause) => true,
    }
}

fn log_outage(error: &Error, attempt: u32, pause: Duration, state: &State) {
    let now = Instant::now();
    if now >= state.expires_at() {
        tracing::error!(
            %error,
            attempt,
            retry_in = ?pause,
            "database credentials expired and cannot be replaced; connections will fail until vault answers"
        );
    } else {
        tracing::warn!(
            %error,
            attempt,
            retry_in = ?pause,
            expires_in = ?state.expires_at().saturating_duration_since(now),
            "cannot reach vault for database credentials; the current ones stay in use"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Scripted leases: `renew_answers` are popped in order, then renewals
    /// succeed with the full TTL.
    struct Fake {
        ttl: Duration,
        fetches: AtomicUsize,
        renewals: AtomicUsize,
        renew_answers: Mutex<Vec<Result<Duration>>>,
        fetch_fails: AtomicUsize,
    }

    impl Fake {
        fn new(ttl: u64, renew_answers: Vec<Result<Duration>>) -> Arc<Self> {
            Arc::new(Self {
                ttl: Duration::from_secs(ttl),
                fetches: AtomicUsize::new(0),
                renewals: AtomicUsize::new(0),
                renew_answers: Mutex::new(renew_answers),
                fetch_fails: AtomicUsize::new(0),
            })
        }
    }

    fn down() -> Error {
        Error::Unavailable {
            address: "http://v".into(),
            operation: "renew".into(),
            reason: "connection refused".into(),
        }
    }

    fn revoked() -> Error {
        Error::Vault {
            address: "http://v".into(),
            operation: "renew".into(),
            status: 400,
            message: "lease not found".into(),
        }
    }

    impl LeaseSource for Arc<Fake> {
        async fn fetch(&self) -> Result<Lease> {
            if self.fetch_fails.load(Ordering::SeqCst) > 0 {
                self.fetch_fails.fetch_sub(1, Ordering::SeqCst);
                return Err(down());
            }
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Lease {
                username: format!("user-{n}"),
                password: Secret::new(format!("pw-{n}")),
                lease_id: format!("database/creds/app/{n}"),
                ttl: self.ttl,
                renewable: true,
            })
        }

        async fn renew(&self, _lease_id: &str, _increment: Duration) -> Result<Duration> {
            self.renewals.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.renew_answers.lock().unwrap();
            if answers.is_empty() {
                Ok(self.ttl)
            } else {
                answers.remove(0)
            }
        }
    }

    async fn start(fake: &Arc<Fake>, check: u64) -> DbCredentials {
        DbCredentials::start_with(
            fake.clone(),
            Duration::from_secs(check),
            tracing::Span::none(),
        )
        .await
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_two_thirds_without_publishing() {
        let fake = Fake::new(90, vec![]);
        let creds = start(&fake, 3600).await;
        let changes = creds.subscribe();
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 2);
        assert!(!changes.has_changed().unwrap());
        assert_eq!(creds.current().username, "user-1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_check_interval_bounds_the_time_between_renewals() {
        let fake = Fake::new(3600, vec![]);
        let _creds = start(&fake, 30).await;
        tokio::time::sleep(Duration::from_secs(91)).await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_lease_is_replaced_at_the_next_check() {
        let fake = Fake::new(90, vec![Err(revoked())]);
        let creds = start(&fake, 10).await;
        let mut changes = creds.subscribe();
        tokio::time::sleep(Duration::from_secs(11)).await;
        changes.changed().await.unwrap();
        let now = creds.current();
        assert_eq!((now.username.as_str(), now.generation), ("user-2", 2));
        assert_eq!(now.password.expose(), "pw-2");
    }

    #[tokio::test(start_paused = true)]
    async fn near_max_ttl_new_credentials_come_before_the_old_expire() {
        // Renewal capped at 20 s of a 90 s TTL: swap, with 20 s to drain.
        let fake = Fake::new(90, vec![Ok(Duration::from_secs(20))]);
        let creds = start(&fake, 3600).await;
        let mut changes = creds.subscribe();
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert_eq!(creds.current().generation, 2);
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn vault_down_keeps_the_current_credentials_and_retries() {
        let fake = Fake::new(90, vec![Err(down()), Err(down()), Err(down())]);
        let creds = start(&fake, 3600).await;
        let changes = creds.subscribe();
        // 60 s, then three failures backing off at most 0.5 + 1 + 2 s.
        tokio::time::sleep(Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(3600)).await;
        assert_eq!(fake.renewals.load(Ordering::SeqCst), 4);
        assert!(!changes.has_changed().unwrap());
        assert_eq!(creds.current().generation, 1);
        // The failing renewals show where an alert can see them.
        assert!(
            exposed(
                "vault_lease_renewals_total{component=\"t\",lease=\"lease\",outcome=\"error\"}"
            )
            .is_some_and(|n| n >= 3.0)
        );
        assert!(
            exposed("vault_lease_expiration_timestamp_seconds{component=\"t\",lease=\"lease\"}")
                .is_some()
        );
    }

    /// A sample of the process-wide metrics, as any registry exposes it.
    fn exposed(series: &str) -> Option<f64> {
        cloudsec_runtime::metrics::Metrics::new("t")
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_now_replaces_and_retries_through_an_outage() {
        let fake = Fake::new(90, vec![]);
        let creds = start(&fake, 3600).await;
        let mut changes = creds.subscribe();
        fake.fetch_fails.store(2, Ordering::SeqCst);
        creds.refresh_now();
        changes.changed().await.unwrap();
        assert_eq!(creds.current().username, "user-2");
    }

    #[test]
    fn builds_postgres_urls_with_encoded_credentials() {
        let creds = DbCreds {
            username: "v-token-app-x".into(),
            password: Secret::new("p@ss/w:rd"),
            lease_id: "l".into(),
            lease_duration: Duration::from_secs(1),
            renewable: true,
            generation: 1,
        };
        let url = creds
            .postgres_url("postgres://db.internal:5432/documents?sslmode=require")
            .unwrap();
        assert_eq!(
            url.expose(),
            "postgres://v-token-app-x:p%40ss%2Fw%3Ard@db.internal:5432/documents?sslmode=require"
        );
        assert!(!format!("{creds:?}").contains("p@ss"));
        assert!(creds.postgres_url("mysql://x/y").is_err());
        assert!(creds.postgres_url("not a url").is_err());
    }
}
