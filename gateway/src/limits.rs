//! Rate limits and quotas: token buckets (per API key, per route, per
//! client IP) and per-key quotas per UTC day and month.
//!
//! A request names every limit it must pass and they are decided together:
//! either all of them admit it and each is charged, or none is charged and
//! the answer is the longest wait among those that refused. So a request
//! refused by its route's bucket does not eat into its key's daily quota.
//!
//! State lives in Redis when configured, so several gateway replicas share
//! one limit; the check is a single Lua script, atomic on the server. When
//! Redis cannot be reached the gateway keeps serving and decides with its
//! in-process state, logs one warning, and sets `gateway_limiter_redis_up`
//! to 0; it tries Redis again after `redis_retry` and switches back (with
//! one info line) as soon as a call succeeds. Local state during an outage
//! is per replica, so limits are looser then, never stricter.
//!
//! Time comes from a [`Clock`] so that quota periods are testable without
//! waiting for midnight. Replicas sharing Redis should have synchronised
//! clocks (NTP); a skew only shifts a bucket's refill by that much.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::MultiplexedConnection;

/// The wall clock, injectable so that tests can move across days.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Which limit refused a request; a metric label and part of the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LimitKind {
    ClientIp,
    Route,
    KeyRate,
    KeyDay,
    KeyMonth,
}

impl LimitKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LimitKind::ClientIp => "client_ip",
            LimitKind::Route => "route",
            LimitKind::KeyRate => "api_key_rate",
            LimitKind::KeyDay => "api_key_daily_quota",
            LimitKind::KeyMonth => "api_key_monthly_quota",
        }
    }

    pub(crate) fn is_quota(self) -> bool {
        matches!(self, LimitKind::KeyDay | LimitKind::KeyMonth)
    }
}

/// One limit a request must pass.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Limit {
    /// A token bucket of `burst` tokens refilled at `rate` per second.
    Bucket {
        key: String,
        rate: f64,
        burst: u32,
        kind: LimitKind,
    },
    /// At most `limit` requests until `resets_at_ms`; `key` names the
    /// period, so a new period starts from zero.
    Quota {
        key: String,
        limit: u64,
        resets_at_ms: u64,
        kind: LimitKind,
    },
}

impl Limit {
    fn kind(&self) -> LimitKind {
        match self {
            Limit::Bucket { kind, .. } | Limit::Quota { kind, .. } => *kind,
        }
    }

    fn key(&self) -> &str {
        match self {
            Limit::Bucket { key, .. } | Limit::Quota { key, .. } => key,
        }
    }
}

/// The quota limits of one key at `now`: the period is part of the key
/// so that a counter left from yesterday can never apply today.
pub(crate) fn quota_limits(
    key_id: &str,
    per_day: Option<u64>,
    per_month: Option<u64>,
    now: SystemTime,
) -> Vec<Limit> {
    let now: DateTime<Utc> = now.into();
    let today = now.date_naive();
    let mut limits = Vec::new();
    if let (Some(limit), Some(next)) = (per_day, today.succ_opt()) {
        limits.push(Limit::Quota {
            key: format!("key:{key_id}:day:{}", today.format("%Y-%m-%d")),
            limit,
            resets_at_ms: midnight_ms(next),
            kind: LimitKind::KeyDay,
        });
    }
    let next_month = if today.month() == 12 {
        NaiveDate::from_ymd_opt(today.year().saturating_add(1), 1, 1)
    } else {
        NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
    };
    if let (Some(limit), Some(next)) = (per_month, next_month) {
        limits.push(Limit::Quota {
            key: format!("key:{key_id}:month:{}", today.format("%Y-%m")),
            limit,
            resets_at_ms: midnight_ms(next),
            kind: LimitKind::KeyMonth,
        });
    }
    limits
}

fn midnight_ms(day: NaiveDate) -> u64 {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .and_then(|ms| u64::try_from(ms).ok())
        .unwrap_or(u64::MAX)
}

fn epoch_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What the limits say about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    Deny {
        retry_after: Duration,
        limit: LimitKind,
    },
}

/// Tokens after refilling from `ts` to `now`, capped at the burst.
fn refill(tokens: f64, ts: u64, now: u64, rate: f64, burst: u32) -> f64 {
    let elapsed_s = now.saturating_sub(ts) as f64 / 1000.0;
    (tokens + elapsed_s * rate).min(f64::from(burst))
}

/// Milliseconds until a bucket holding `tokens` has a whole one.
fn wait_ms(tokens: f64, rate: f64) -> u64 {
    let ms = ((1.0 - tokens) / rate * 1000.0).ceil();
    if ms.is_finite() && ms > 0.0 {
        ms.min(u64::MAX as f64) as u64
    } else {
        1
    }
}

#[derive(Debug, Clone, Copy)]
struct BucketState {
    tokens: f64,
    ts: u64,
    rate: f64,
    burst: u32,
}

#[derive(Debug, Default)]
struct LocalState {
    buckets: HashMap<String, BucketState>,
    counters: HashMap<String, (u64, u64)>,
    checks: u64,
}

/// How many checks between sweeps of idle local state.
const SWEEP_EVERY: u64 = 4096;

/// Limits kept in this process.
#[derive(Debug, Default)]
pub(crate) struct LocalStore {
    state: Mutex<LocalState>,
}

impl LocalStore {
    pub(crate) fn check(&self, limits: &[Limit], now: u64) -> Decision {
        // A poisoned lock only means another request panicked mid-check;
        // the counters are still numbers, so keep using them.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.checks = state.checks.wrapping_add(1);
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            state.sweep(now);
        }
        let mut denied: Option<(u64, LimitKind)> = None;
        let mut deny = |wait: u64, kind: LimitKind| {
            if denied.is_none_or(|(w, _)| wait > w) {
                denied = Some((wait, kind));
            }
        };
        for limit in limits {
            match limit {
                Limit::Bucket {
                    key,
                    rate,
                    burst,
                    kind,
                } => {
                    let tokens = state.buckets.get(key).map_or(f64::from(*burst), |b| {
                        refill(b.tokens, b.ts, now, *rate, *burst)
                    });
                    if tokens < 1.0 {
                        deny(wait_ms(tokens, *rate), *kind);
                    }
                }
                Limit::Quota {
                    key,
                    limit,
                    resets_at_ms,
                    kind,
                } => {
                    let used = state.counters.get(key).map_or(0, |(n, _)| *n);
                    if used >= *limit {
                        deny(resets_at_ms.saturating_sub(now).max(1), *kind);
                    }
                }
            }
        }
        if let Some((wait, limit)) = denied {
            return Decision::Deny {
                retry_after: Duration::from_millis(wait),
                limit,
            };
        }
        for limit in limits {
            match limit {
                Limit::Bucket {
                    key, rate, burst, ..
                } => {
                    let previous = state.buckets.get(key).copied();
                    let tokens = previous.map_or(f64::from(*burst), |b| {
                        refill(b.tokens, b.ts, now, *rate, *burst)
                    });
                    // A clock that stepped back must not refill twice.
                    let ts = now.max(previous.map_or(0, |b| b.ts));
                    state.buckets.insert(
                        key.clone(),
                        BucketState {
                            tokens: tokens - 1.0,
                            ts,
                            rate: *rate,
                            burst: *burst,
                        },
                    );
                }
                Limit::Quota {
                    key, resets_at_ms, ..
                } => {
                    let entry = state
                        .counters
                        .entry(key.clone())
                        .or_insert((0, *resets_at_ms));
                    entry.0 = entry.0.saturating_add(1);
                }
            }
        }
        Decision::Allow
    }
}

impl LocalState {
    /// Forgets full buckets and ended periods: they are the same as no
    /// entry, and per-IP keys would otherwise grow without bound.
    fn sweep(&mut self, now: u64) {
        self.buckets
            .retain(|_, b| refill(b.tokens, b.ts, now, b.rate, b.burst) < f64::from(b.burst));
        self.counters.retain(|_, (_, resets)| *resets > now);
    }
}

/// Checks every bucket and quota, then charges all of them or none.
/// `ARGV[1]` is now in ms; then per key three values: `b`, rate per
/// second, burst; or `q`, limit, reset time in ms. Returns
/// `{index of the refusing limit or 0, wait in ms}`.
const SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local wait = 0
local denied = 0
local tokens = {}
for i = 1, #KEYS do
  local kind = ARGV[i * 3 - 1]
  local a = tonumber(ARGV[i * 3])
  local b = tonumber(ARGV[i * 3 + 1])
  -- How long this limit refuses the request for, if it does.
  local w = nil
  if kind == 'b' then
    local state = redis.call('HMGET', KEYS[i], 't', 'ts')
    local t = tonumber(state[1])
    local ts = tonumber(state[2])
    if t == nil or ts == nil then
      t = b
      ts = now
    end
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end
    t = math.min(b, t + elapsed / 1000 * a)
    tokens[i] = t
    if t < 1 then
      w = math.ceil((1 - t) / a * 1000)
    end
  else
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used >= a then
      w = b - now
    end
  end
  if w ~= nil then
    if w < 1 then w = 1 end
    if denied == 0 or w > wait then
      wait = w
      denied = i
    end
  end
end
if denied > 0 then
  return {denied, wait}
end
for i = 1, #KEYS do
  local kind = ARGV[i * 3 - 1]
  local a = tonumber(ARGV[i * 3])
  local b = tonumber(ARGV[i * 3 + 1])
  if kind == 'b' then
    redis.call('HSET', KEYS[i], 't', tostring(tokens[i] - 1), 'ts', now)
    -- A full bucket is the same as none, so the key may go once it has
    -- refilled; capped at a year, as Lua prints larger numbers with an
    -- exponent that PEXPIRE refuses.
    redis.call('PEXPIRE', KEYS[i], math.min(math.ceil(b / a * 1000) + 1000, 31536000000))
  else
    redis.call('INCR', KEYS[i])
    redis.call('PEXPIRE', KEYS[i], math.max(b - now, 0) + 60000)
  end
end
return {0, 0}
";

#[derive(Debug, thiserror::Error)]
enum RedisFailure {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis answered {0:?}")]
    Reply(Vec<i64>),
}

/// Limits kept in Redis.
struct RedisStore {
    client: redis::Client,
    /// Starts every key, so the gateway's keys are easy to find and do not
    /// collide with another application's or deployment's.
    prefix: String,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    script: redis::Script,
    timeout: Duration,
    retry: Duration,
    /// Until when Redis is not tried, after a failure.
    skip_until: Mutex<Option<tokio::time::Instant>>,
    up: AtomicBool,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds the URL, which may carry a password.
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    fn should_try(&self) -> bool {
        let guard = self
            .skip_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        guard.is_none_or(|until| tokio::time::Instant::now() >= until)
    }

    fn back_off(&self) {
        let mut guard = self
            .skip_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *guard = Some(tokio::time::Instant::now() + self.retry);
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisFailure> {
        // One connect at a time: the others wait for it rather than all
        // dialling a Redis that may be down.
        let mut guard = self.connection.lock().await;
        if let Some(connection) = guard.as_ref() {
            return Ok(connection.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let connection = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| RedisFailure::Timeout(self.timeout))??;
        *guard = Some(connection.clone());
        Ok(connection)
    }

    async fn forget_connection(&self) {
        *self.connection.lock().await = None;
    }

    async fn check(&self, limits: &[Limit], now: u64) -> Result<Decision, RedisFailure> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(now);
        for limit in limits {
            invocation.key(format!("{}{}", self.prefix, limit.key()));
            match limit {
                Limit::Bucket { rate, burst, .. } => {
                    invocation.arg("b").arg(*rate).arg(*burst);
                }
                Limit::Quota {
                    limit,
                    resets_at_ms,
                    ..
                } => {
                    invocation.arg("q").arg(*limit).arg(*resets_at_ms);
                }
            }
        }
        let reply: Vec<i64> =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| RedisFailure::Timeout(self.timeout))??;
        match reply.as_slice() {
            [0, _] => Ok(Decision::Allow),
            [index, wait] => {
                let limit = usize::try_from(*index)
                    .ok()
                    .and_then(|i| limits.get(i.checked_sub(1)?))
                    .ok_or_else(|| RedisFailure::Reply(reply.clone()))?;
                Ok(Decision::Deny {
                    retry_after: Duration::from_millis(u64::try_from(*wait).unwrap_or(1).max(1)),
                    limit: limit.kind(),
                })
            }
            _ => Err(RedisFailure::Reply(reply)),
        }
    }
}

/// The limiter's own metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimiterMetrics {
    /// 1 while Redis answers, 0 while limits are local.
    pub(crate) redis_up: Gauge,
    /// Requests decided locally because Redis was unavailable.
    pub(crate) fallback: Counter,
}

/// The one limiter of a gateway.
#[derive(Debug)]
pub(crate) struct Limiter {
    local: LocalStore,
    redis: Option<RedisStore>,
    clock: Arc<dyn Clock>,
    metrics: LimiterMetrics,
}

/// The Redis URL did not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid redis_url: {0}")]
pub(crate) struct RedisUrlError(#[source] redis::RedisError);

impl Limiter {
    /// A limiter that uses Redis at `redis_url` when given. Nothing is
    /// dialled here: the first request connects, so a gateway starts even
    /// while Redis is down.
    pub(crate) fn new(
        redis_url: Option<&str>,
        prefix: &str,
        timeout: Duration,
        retry: Duration,
        clock: Arc<dyn Clock>,
        metrics: LimiterMetrics,
    ) -> Result<Self, RedisUrlError> {
        let redis = redis_url
            .map(|url| {
                redis::Client::open(url).map(|client| RedisStore {
                    client,
                    prefix: prefix.to_owned(),
                    connection: tokio::sync::Mutex::new(None),
                    script: redis::Script::new(SCRIPT),
                    timeout,
                    retry,
                    skip_until: Mutex::new(None),
                    up: AtomicBool::new(true),
                })
            })
            .transpose()
            .map_err(RedisUrlError)?;
        metrics.redis_up.set(i64::from(redis.is_some()));
        Ok(Self {
            local: LocalStore::default(),
            redis,
            clock,
            metrics,
        })
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Decides a request against all of `limits` at once.
    pub(crate) async fn check(&self, limits: &[Limit]) -> Decision {
        if limits.is_empty() {
            return Decision::Allow;
        }
        let now = epoch_ms(self.clock.now());
        if let Some(redis) = &self.redis {
            if redis.should_try() {
                match redis.check(limits, now).await {
                    Ok(decision) => {
                        if !redis.up.swap(true, Ordering::AcqRel) {
                            tracing::info!("redis is back: rate limits are shared again");
                            self.metrics.redis_up.set(1);
                        }
                        return decision;
                    }
                    Err(error) => {
                        redis.back_off();
                        redis.forget_connection().await;
                        if redis.up.swap(false, Ordering::AcqRel) {
                            tracing::warn!(
                                %error,
                                retry = ?redis.retry,
                                "redis unavailable: enforcing rate limits locally"
                            );
                        }
                        self.metrics.redis_up.set(0);
                    }
                }
            }
            self.metrics.fallback.inc();
        }
        self.local.check(limits, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct TestClock(Mutex<SystemTime>);

    impl TestClock {
        fn at(rfc3339: &str) -> Arc<Self> {
            let t = DateTime::parse_from_rfc3339(rfc3339).unwrap();
            Arc::new(Self(Mutex::new(t.with_timezone(&Utc).into())))
        }
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    fn bucket(key: &str, rate: f64, burst: u32) -> Limit {
        Limit::Bucket {
            key: key.into(),
            rate,
            burst,
            kind: LimitKind::KeyRate,
        }
    }

    fn local(clock: Arc<TestClock>) -> Limiter {
        Limiter::new(
            None,
            "test:",
            Duration::from_millis(100),
            Duration::from_secs(1),
            clock,
            LimiterMetrics::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn bucket_allows_the_burst_then_refills_at_the_rate() {
        let clock = TestClock::at("2025-03-10T12:00:00Z");
        let limiter = local(clock.clone());
        let limits = [bucket("k", 2.0, 3)];
        for _ in 0..3 {
            assert_eq!(limiter.check(&limits).await, Decision::Allow);
        }
        match limiter.check(&limits).await {
            Decision::Deny { retry_after, limit } => {
                assert_eq!(limit, LimitKind::KeyRate);
                assert_eq!(retry_after, Duration::from_millis(500));
            }
            other => panic!("{other:?}"),
        }
        clock.advance(Duration::from_millis(499));
        assert!(matches!(
            limiter.check(&limits).await,
            Decision::Deny { .. }
        ));
        clock.advance(Duration::from_millis(1));
        assert_eq!(limiter.check(&limits).await, Decision::Allow);
        // Never more than the burst, however long the wait.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(limiter.check(&limits).await, Decision::Allow);
        }
        assert!(matches!(
            limiter.check(&limits).await,
            Decision::Deny { .. }
        ));
    }

    #[tokio::test]
    async fn a_refusal_charges_no_limit() {
        let clock = TestClock::at("2025-03-10T12:00:00Z");
        let limiter = local(clock.clone());
        let quota = quota_limits("k", Some(5), None, clock.now());
        let mut limits = vec![bucket("route", 1.0, 1)];
        limits.extend(quota.clone());
        assert_eq!(limiter.check(&limits).await, Decision::Allow);
        for _ in 0..10 {
            assert!(matches!(
                limiter.check(&limits).await,
                Decision::Deny {
                    limit: LimitKind::KeyRate,
                    ..
                }
            ));
        }
        // Only the first request counted against the quota.
        for _ in 0..4 {
            assert_eq!(limiter.check(&quota).await, Decision::Allow);
        }
        assert!(matches!(limiter.check(&quota).await, Decision::Deny { .. }));
    }

    #[tokio::test]
    async fn daily_and_monthly_quotas_roll_over() {
        let clock = TestClock::at("2025-12-31T23:59:00Z");
        let limiter = local(clock.clone());
        let limits = |clock: &TestClock| quota_limits("k1", Some(2), Some(3), clock.now());
        assert_eq!(limiter.check(&limits(&clock)).await, Decision::Allow);
        assert_eq!(limiter.check(&limits(&clock)).await, Decision::Allow);
        match limiter.check(&limits(&clock)).await {
            Decision::Deny { retry_after, limit } => {
                assert_eq!(limit, LimitKind::KeyDay);
                // Until midnight UTC.
                assert_eq!(retry_after, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
        // A new day and a new month (and year): both counters start over.
        clock.advance(Duration::from_secs(60));
        for _ in 0..2 {
            assert_eq!(limiter.check(&limits(&clock)).await, Decision::Allow);
        }
        // The month allows 3: one left after the day's 2.
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(limiter.check(&limits(&clock)).await, Decision::Allow);
        match limiter.check(&limits(&clock)).await {
            Decision::Deny { retry_after, limit } => {
                assert_eq!(limit, LimitKind::KeyMonth);
                // From 2026-01-02T00:00 to 2026-02-01T00:00.
                assert_eq!(retry_after, Duration::from_secs(30 * 86_400));
            }
            other => panic!("{other:?}"),
        }
        clock.advance(Duration::from_secs(30 * 86_400));
        assert_eq!(limiter.check(&limits(&clock)).await, Decision::Allow);
    }

    #[test]
    fn quota_keys_name_their_period() {
        let t: SystemTime = DateTime::parse_from_rfc3339("2024-02-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            .into();
        let limits = quota_limits("abc", Some(1), Some(1), t);
        let keys: Vec<&str> = limits.iter().map(Limit::key).collect();
        assert_eq!(keys, ["key:abc:day:2024-02-29", "key:abc:month:2024-02"]);
        assert!(quota_limits("abc", None, None, t).is_empty());
    }

    #[test]
    fn sweeping_forgets_only_idle_state() {
        let store = LocalStore::default();
        store.check(&[bucket("busy", 1.0, 10), bucket("idle", 1000.0, 1)], 0);
        let quota = Limit::Quota {
            key: "q".into(),
            limit: 10,
            resets_at_ms: 100,
            kind: LimitKind::KeyDay,
        };
        store.check(&[quota], 0);
        let mut state = store.state.lock().unwrap();
        state.sweep(200);
        assert!(state.buckets.contains_key("busy"));
        assert!(!state.buckets.contains_key("idle"));
        assert!(state.counters.is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_local_limits() {
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let clock = TestClock::at("2025-03-10T12:00:00Z");
        let metrics = LimiterMetrics::default();
        let limiter = Limiter::new(
            Some(&format!("redis://127.0.0.1:{port}")),
            "test:",
            Duration::from_millis(200),
            Duration::from_secs(60),
            clock,
            metrics.clone(),
        )
        .unwrap();
        assert_eq!(metrics.redis_up.get(), 1);
        let limits = [bucket("k", 1.0, 2)];
        assert_eq!(limiter.check(&limits).await, Decision::Allow);
        assert_eq!(metrics.redis_up.get(), 0);
        assert_eq!(limiter.check(&limits).await, Decision::Allow);
        assert!(matches!(
            limiter.check(&limits).await,
            Decision::Deny { .. }
        ));
        assert_eq!(metrics.fallback.get(), 3);
    }

    /// The Lua script against a real Redis (which these tests require).
    #[tokio::test]
    async fn the_redis_script_charges_all_limits_or_none() {
        let clock = TestClock::at("2025-03-10T12:00:00Z");
        let metrics = LimiterMetrics::default();
        let prefix = format!("cloudsec-test:{}:", uuid::Uuid::new_v4().simple());
        let limiter = Limiter::new(
            Some("redis://127.0.0.1:6379"),
            &prefix,
            Duration::from_secs(2),
            Duration::from_secs(60),
            clock.clone(),
            metrics.clone(),
        )
        .unwrap();
        // A rate so small that the key's lifetime needs the cap.
        let slow = bucket("slow", 1e-9, 2);
        let mut limits = vec![slow.clone(), bucket("fast", 1000.0, 100)];
        limits.extend(quota_limits("k", Some(3), Some(10), clock.now()));
        assert_eq!(limiter.check(&limits).await, Decision::Allow);
        assert_eq!(limiter.check(&limits).await, Decision::Allow);
        match limiter.check(&limits).await {
            Decision::Deny { limit, .. } => assert_eq!(limit, LimitKind::KeyRate),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            metrics.redis_up.get(),
            1,
            "these tests need Redis on 127.0.0.1:6379"
        );
        assert_eq!(metrics.fallback.get(), 0);
        // The refused request charged nothing: the daily quota has one left.
        let quota = quota_limits("k", Some(3), Some(10), clock.now());
        assert_eq!(limiter.check(&quota).await, Decision::Allow);
        match limiter.check(&quota).await {
            Decision::Deny { limit, retry_after } => {
                assert_eq!(limit, LimitKind::KeyDay);
                assert_eq!(retry_after, Duration::from_secs(12 * 3600));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_redis_url_is_refused() {
        let error = Limiter::new(
            Some("not a url"),
            "test:",
            Duration::from_millis(1),
            Duration::from_millis(1),
            Arc::new(SystemClock),
            LimiterMetrics::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("redis_url"), "{error}");
    }
}
