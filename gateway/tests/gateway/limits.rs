//! API keys, usage plans and throttles through a running gateway: in
//! process, shared through Redis by two gateways, and falling back to local
//! limits when Redis goes away.
//!
//! The Redis tests need Redis on 127.0.0.1:6379 and fail, saying so, when it
//! is not there. Each test uses its own key prefix, so runs and parallel
//! tests never share state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::common::{Harness, Options, parts};
use cloudsec_gateway::{
    ApiKey, Clock, Concurrency, GatewayConfig, RoutePolicy, Throttle, UsagePlan,
};
use cloudsec_runtime::Secret;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const REDIS: &str = "redis://127.0.0.1:6379";
const KEY: &str = "k3y-for-partner-a-0123456789";

/// A clock that moves only when told to.
#[derive(Debug)]
struct TestClock(Mutex<SystemTime>);

impl TestClock {
    fn at(rfc3339: &str) -> Arc<Self> {
        let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
        Arc::new(Self(Mutex::new(t.with_timezone(&chrono::Utc).into())))
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

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One key, `partner-a`, on a plan; `selector` routes require a key.
fn with_key(config: &mut GatewayConfig, plan: UsagePlan, selector: &str) {
    config.usage_plans.insert("plan".into(), plan);
    config.api_keys.insert(
        "partner-a".into(),
        ApiKey {
            sha256: sha256_hex(KEY),
            plan: "plan".into(),
            enabled: true,
        },
    );
    config.routes.insert(
        selector.into(),
        RoutePolicy {
            api_key: Some(true),
            ..RoutePolicy::default()
        },
    );
}

fn plan(rate: f64, burst: u32, day: Option<u64>, month: Option<u64>) -> UsagePlan {
    UsagePlan {
        rate,
        burst,
        quota_per_day: day,
        quota_per_month: month,
    }
}

async fn start(
    clock: &Arc<TestClock>,
    configure: impl FnOnce(&mut GatewayConfig) + 'static,
) -> Harness {
    Harness::with(Options {
        configure: Box::new(configure),
        clock: Some(clock.clone() as Arc<dyn Clock>),
        ..Options::default()
    })
    .await
}

async fn get(h: &Harness, key: Option<&str>) -> reqwest::Response {
    let mut request = h.http.get(h.url("/v1/items/x"));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.unwrap()
}

/// The status and `Retry-After` of a keyed GET.
async fn status(h: &Harness) -> (u16, Option<String>) {
    let response = get(h, Some(KEY)).await;
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry)
}

fn unique_prefix() -> String {
    format!("cloudsec-test:{}:", uuid::Uuid::new_v4().simple())
}

/// Fails clearly when the Redis these tests need is missing.
async fn require_redis() {
    let client = redis::Client::open(REDIS).unwrap();
    let ok = match client.get_multiplexed_async_connection().await {
        Ok(mut connection) => redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(
        ok,
        "these tests need Redis on 127.0.0.1:6379 (apt-get install redis-server; redis-server --daemonize yes)"
    );
}

fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn api_keys_are_required_only_where_configured() {
    let clock = TestClock::at("2025-06-01T12:00:00Z");
    let h = start(&clock, |c| {
        with_key(
            c,
            plan(100.0, 100, None, None),
            "cloudsec.echo.v1.EchoService/GetItem",
        );
    })
    .await;

    let (status, _, body) = parts(get(&h, None).await).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], 7);
    assert!(
        body["message"].as_str().unwrap().contains("X-API-Key"),
        "{body}"
    );

    let (status, _, body) = parts(get(&h, Some("not-the-key")).await).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not valid"),
        "{body}"
    );

    let (status, _, reply) = parts(get(&h, Some(KEY)).await).await;
    assert_eq!(status, 200, "{reply}");
    // The key is the gateway's business: it is not passed on.
    assert!(reply["metadata"].get("x-api-key").is_none(), "{reply}");

    // Other routes need no key (the default).
    let response = h.http.delete(h.url("/v1/items/x")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"reason="api_key_missing""#)
            && metrics.contains(r#"reason="api_key_invalid""#),
        "{metrics}"
    );
    assert!(!metrics.contains(KEY), "the key leaked into metrics");
    h.stop().await;
}

#[tokio::test]
async fn a_burst_beyond_the_bucket_gets_429_with_retry_after() {
    let clock = TestClock::at("2025-06-01T12:00:00Z");
    let h = start(&clock, |c| with_key(c, plan(0.5, 3, None, None), "*")).await;

    for _ in 0..3 {
        assert_eq!(status(&h).await, (200, None));
    }
    let response = get(&h, Some(KEY)).await;
    assert_eq!(response.headers()["retry-after"], "2");
    let (status_code, request_id, body) = parts(response).await;
    assert_eq!(status_code, 429, "{body}");
    assert!(request_id.is_some());
    assert_eq!(body["code"], 8);
    assert!(
        body["message"].as_str().unwrap().contains("api_key_rate"),
        "{body}"
    );
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    assert_eq!(body["details"][0]["retryDelay"], "2s");

    // One token back after 2 s at 0.5 per second, and only one.
    clock.advance(Duration::from_secs(2));
    assert_eq!(status(&h).await, (200, None));
    assert_eq!(status(&h).await.0, 429);

    let metrics = h.metrics().await;
    assert!(
        metrics.contains("gateway_throttled_total") && metrics.contains(r#"limit="api_key_rate""#),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn quotas_roll_over_with_the_utc_calendar() {
    let clock = TestClock::at("2025-01-31T23:59:30Z");
    let h = start(&clock, |c| {
        with_key(c, plan(1000.0, 1000, Some(2), Some(3)), "*")
    })
    .await;

    assert_eq!(status(&h).await.0, 200);
    assert_eq!(status(&h).await.0, 200);
    let response = get(&h, Some(KEY)).await;
    // Until midnight UTC.
    assert_eq!(response.headers()["retry-after"], "30");
    let (code, _, body) = parts(response).await;
    assert_eq!(code, 429);
    assert!(
        body["message"].as_str().unwrap().contains("daily"),
        "{body}"
    );
    let details = body["details"].to_string();
    assert!(
        details.contains("QuotaFailure") && details.contains("api_key:partner-a"),
        "{details}"
    );

    // February: a new day and a new month.
    clock.advance(Duration::from_secs(30));
    assert_eq!(status(&h).await.0, 200);
    assert_eq!(status(&h).await.0, 200);
    assert_eq!(status(&h).await.0, 429);

    // The next day: one left in February's 3.
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(status(&h).await.0, 200);
    let response = get(&h, Some(KEY)).await;
    // From 2025-02-02T00:00:00 to 2025-03-01T00:00:00.
    assert_eq!(response.headers()["retry-after"], (27 * 86_400).to_string());
    let (_, _, body) = parts(response).await;
    assert!(
        body["message"].as_str().unwrap().contains("monthly"),
        "{body}"
    );

    clock.advance(Duration::from_secs(27 * 86_400));
    assert_eq!(status(&h).await.0, 200);
    h.stop().await;
}

#[tokio::test]
async fn route_and_client_ip_throttles() {
    let clock = TestClock::at("2025-06-01T12:00:00Z");
    let h = start(&clock, |c| {
        c.routes.insert(
            "cloudsec.echo.v1.EchoService/DeleteItem".into(),
            RoutePolicy {
                throttle: Some(Throttle {
                    rate: 0.001,
                    burst: 2,
                }),
                ..RoutePolicy::default()
            },
        );
        c.client_ip_throttle = Some(Throttle {
            rate: 0.001,
            burst: 5,
        });
    })
    .await;

    let delete = || h.http.delete(h.url("/v1/items/x")).send();
    assert_eq!(delete().await.unwrap().status(), 200);
    assert_eq!(delete().await.unwrap().status(), 200);
    let (code, _, body) = parts(delete().await.unwrap()).await;
    assert_eq!(code, 429);
    assert!(
        body["message"].as_str().unwrap().contains("route"),
        "{body}"
    );

    // The refused DELETE cost the client nothing: 3 more requests pass.
    for _ in 0..3 {
        assert_eq!(get(&h, None).await.status(), 200);
    }
    let (code, _, body) = parts(get(&h, None).await).await;
    assert_eq!(code, 429);
    assert!(
        body["message"].as_str().unwrap().contains("client_ip"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_limit() {
    require_redis().await;
    let clock = TestClock::at("2025-06-01T12:00:00Z");
    let prefix = unique_prefix();
    let configure = |prefix: String| {
        move |c: &mut GatewayConfig| {
            with_key(c, plan(0.001, 4, Some(100), None), "*");
            c.redis_url = Some(Secret::new(REDIS));
            c.redis_prefix = prefix;
        }
    };
    let a = start(&clock, configure(prefix.clone())).await;
    let b = start(&clock, configure(prefix.clone())).await;

    let mut allowed = 0;
    for i in 0..10 {
        let h = if i % 2 == 0 { &a } else { &b };
        match status(h).await.0 {
            200 => allowed += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(allowed, 4, "the two gateways together allow one burst");
    for h in [&a, &b] {
        let metrics = h.metrics().await;
        assert_eq!(
            metric_value(&metrics, "gateway_limiter_redis_up"),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            metric_value(&metrics, "gateway_limiter_local_fallback_total"),
            Some(0.0)
        );
    }

    // The state is in Redis under the prefix, never under the key itself.
    let client = redis::Client::open(REDIS).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(keys.contains(&format!("{prefix}key:partner-a")), "{keys:?}");
    assert!(
        keys.contains(&format!("{prefix}key:partner-a:day:2025-06-01")),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains(KEY)));
    a.stop().await;
    b.stop().await;
}

/// A TCP relay to Redis that can be cut and restored, to play an outage.
struct FlakyRelay {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl FlakyRelay {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let up = up.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        // Down: hang up at once, like a dead peer.
                        drop(inbound);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:6379").await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            })
        };
        Self {
            addr,
            up,
            connections,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn without_redis_limits_stay_local_and_return_to_redis() {
    require_redis().await;
    let relay = FlakyRelay::start().await;
    let clock = TestClock::at("2025-06-01T12:00:00Z");
    let url = format!("redis://{}", relay.addr);
    let h = start(&clock, move |c| {
        with_key(c, plan(0.001, 3, None, None), "*");
        c.redis_url = Some(Secret::new(url));
        c.redis_prefix = unique_prefix();
        // Try Redis on every request, so the test needs no waiting.
        c.redis_retry = Duration::ZERO;
        c.redis_timeout = Duration::from_secs(2);
    })
    .await;

    // Redis decides: 2 of its 3 tokens are left after this.
    assert_eq!(status(&h).await.0, 200);
    assert_eq!(
        metric_value(&h.metrics().await, "gateway_limiter_redis_up"),
        Some(1.0)
    );

    // Redis goes away: requests are still served, against local buckets.
    relay.cut();
    for _ in 0..3 {
        assert_eq!(status(&h).await.0, 200);
    }
    assert_eq!(status(&h).await.0, 429, "local limits are enforced too");
    let metrics = h.metrics().await;
    assert_eq!(
        metric_value(&metrics, "gateway_limiter_redis_up"),
        Some(0.0),
        "{metrics}"
    );
    assert!(metric_value(&metrics, "gateway_limiter_local_fallback_total").unwrap() >= 4.0);

    // Redis is back: its bucket, with 2 tokens, decides again.
    relay.restore();
    assert_eq!(status(&h).await.0, 200);
    assert_eq!(
        metric_value(&h.metrics().await, "gateway_limiter_redis_up"),
        Some(1.0)
    );
    assert_eq!(status(&h).await.0, 200);
    assert_eq!(status(&h).await.0, 429);

    relay.accept.abort();
    h.stop().await;
}

#[tokio::test]
async fn a_gateway_whose_redis_never_answers_still_serves() {
    // A port just released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clock = TestClock::at("2025-06-01T12:00:00Z");
    let h = start(&clock, move |c| {
        with_key(c, plan(0.001, 2, None, None), "*");
        c.redis_url = Some(Secret::new(format!("redis://127.0.0.1:{port}")));
    })
    .await;
    assert_eq!(status(&h).await.0, 200);
    assert_eq!(status(&h).await.0, 200);
    assert_eq!(status(&h).await.0, 429);
    let metrics = h.metrics().await;
    assert_eq!(
        metric_value(&metrics, "gateway_limiter_redis_up"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "gateway_limiter_local_fallback_total"),
        Some(3.0)
    );
    h.stop().await;
}

#[tokio::test]
async fn a_method_s_concurrency_limit_queues_refuses_and_frees_its_turn() {
    let clock = TestClock::at("2025-06-01T12:00:00Z");
    let h = start(&clock, |c| {
        c.routes.insert(
            "cloudsec.echo.v1.EchoService/WatchItems".into(),
            RoutePolicy {
                concurrency: Some(Concurrency {
                    limit: 1,
                    queue: 1,
                    queue_timeout: Duration::from_millis(300),
                }),
                ..RoutePolicy::default()
            },
        );
    })
    .await;
    let watch = |query: &str| {
        h.http
            .get(h.url(&format!("/v1/items:watch?{query}")))
            .send()
    };

    // The first watch takes the method's one turn and keeps it: its stream
    // pauses after the first item.
    let mut holder = watch("count=2&pauseMs=600000").await.unwrap();
    assert_eq!(holder.status(), 200);
    assert!(
        holder.chunk().await.unwrap().is_some(),
        "the first item came"
    );

    // Other methods are not held up.
    assert_eq!(get(&h, None).await.status(), 200);

    // The next watch waits its queue_timeout for a turn, then gets a 429
    // that says why and when to come back.
    let refused = watch("count=1").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let (_, _, body) = parts(refused).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("route concurrency"),
        "{body}"
    );
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"limit="route_concurrency""#),
        "the refusal is counted"
    );

    // The holder goes away: its stream ends upstream, and the turn goes
    // back (the gateway notices the reset connection promptly, but not
    // synchronously).
    drop(holder);
    let mut admitted = false;
    for _ in 0..50 {
        let response = watch("count=1").await.unwrap();
        if response.status() == 200 {
            admitted = true;
            break;
        }
        assert_eq!(response.status(), 429);
    }
    assert!(admitted, "the turn came back once the stream ended");
    h.stop().await;
}
