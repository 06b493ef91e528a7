//! The sidecars end to end: real replicas behind inbound sidecars, a client
//! behind an outbound sidecar, mTLS between them, on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
use cloudsec_proxy::authz::{AuthorizationConfig, AuthzMode};
use cloudsec_proxy::config::{BalancerConfig, DestinationConfig, InboundConfig, OutboundConfig};
use cloudsec_proxy::policy::RoutePolicies;
use cloudsec_proxy::{Proxy, ProxyConfig, TlsState};
use cloudsec_runtime::Shutdown;
use cloudsec_runtime::tls::MeshTls;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Code;

const ECHO: &str = "echo.default.svc";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    Unavailable,
    Slow(Duration),
}

/// A fake application: answers gRPC-shaped requests as its mode says.
struct App {
    addr: SocketAddr,
    mode: Mutex<Mode>,
    calls: AtomicUsize,
    identities: Mutex<Vec<String>>,
    stop: Shutdown,
}

impl App {
    async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            mode: Mutex::new(Mode::Ok),
            calls: AtomicUsize::new(0),
            identities: Mutex::new(Vec::new()),
            stop: Shutdown::new(),
        });
        let this = app.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    () = this.stop.cancelled() => return,
                    a = listener.accept() => a.unwrap(),
                };
                let this = this.clone();
                tokio::spawn(async move {
                    let stop = this.stop.clone();
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let this = this.clone();
                            async move { Ok::<_, Infallible>(this.answer(req).await) }
                        },
                    );
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service);
                    tokio::select! {
                        _ = conn => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        app
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = req.headers().get("x-cloudsec-peer-identity") {
            self.identities
                .lock()
                .unwrap()
                .push(id.to_str().unwrap().to_owned());
        }
        let mode = *self.mode.lock().unwrap();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        match mode {
            Mode::Unavailable => http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "14")
                .body(Full::new(Bytes::new()).boxed())
                .unwrap(),
            Mode::Ok | Mode::Slow(_) => {
                if let Mode::Slow(d) = mode {
                    tokio::time::sleep(d).await;
                }
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                let frames = futures::stream::iter(vec![
                    Ok::<_, Infallible>(hyper::body::Frame::data(body)),
                    Ok(hyper::body::Frame::trailers(trailers)),
                ]);
                http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(http_body_util::StreamBody::new(frames).boxed())
                    .unwrap()
            }
        }
    }
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("cloudsec.local", "default", sa).unwrap()
}

async fn tls(ca: &LocalCa, sa: &str) -> (Arc<TlsState>, MeshTls) {
    let m = ca
        .issue(&id(sa), Duration::from_secs(3600))
        .await
        .unwrap()
        .mesh_tls();
    (TlsState::new(&m).unwrap(), m)
}

/// A replica: an app behind its inbound sidecar.
struct Replica {
    app: Arc<App>,
    inbound: SocketAddr,
    stop: Shutdown,
}

async fn replica(ca: &LocalCa, authorization: AuthorizationConfig) -> Replica {
    let app = App::start().await;
    let (state, _) = tls(ca, "echo").await;
    let config = ProxyConfig {
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        inbound: Some(InboundConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            app: app.addr,
            authorization,
        }),
        outbound: None,
        shutdown_grace: Duration::from_secs(1),
        worker_threads: cloudsec_proxy::runtime::DEFAULT_WORKER_THREADS,
    };
    let proxy = Proxy::build(&config, state).await.unwrap();
    let inbound = proxy.inbound_addr().unwrap();
    let stop = Shutdown::new();
    tokio::spawn(proxy.run_until_stopped(stop.clone()));
    Replica { app, inbound, stop }
}

impl Replica {
    fn kill(&self) {
        self.stop.cancel();
        self.app.stop.cancel();
    }
}

/// The client side: an outbound sidecar towards the replicas.
struct Client {
    outbound: SocketAddr,
    admin: SocketAddr,
    state: Arc<TlsState>,
    _stop: StopOnDrop,
}

struct StopOnDrop(Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn client(ca: &LocalCa, endpoints: Vec<SocketAddr>, expect: &str, routes: &str) -> Client {
    client_with(ca, endpoints, expect, routes, Default::default()).await
}

async fn client_with(
    ca: &LocalCa,
    endpoints: Vec<SocketAddr>,
    expect: &str,
    routes: &str,
    balancer: BalancerConfig,
) -> Client {
    let (state, _) = tls(ca, "client").await;
    let mut destinations = BTreeMap::new();
    destinations.insert(
        ECHO.to_owned(),
        DestinationConfig {
            endpoints,
            dns: None,
            dns_refresh: Duration::from_secs(10),
            identity: id(expect).to_string(),
        },
    );
    let routes: RoutePolicies = toml::from_str(routes).unwrap();
    let config = ProxyConfig {
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        inbound: None,
        outbound: Some(OutboundConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            destinations,
            routes,
            queue_capacity: 100,
            failfast_timeout: Duration::from_millis(500),
            balancer,
        }),
        shutdown_grace: Duration::from_secs(1),
        worker_threads: cloudsec_proxy::runtime::DEFAULT_WORKER_THREADS,
    };
    let proxy = Proxy::build(&config, state.clone()).await.unwrap();
    let outbound = proxy.outbound_addr().unwrap();
    let admin = proxy.admin_addr();
    let stop = Shutdown::new();
    tokio::spawn(proxy.run_until_stopped(stop.clone()));
    Client {
        outbound,
        admin,
        state,
        _stop: StopOnDrop(stop),
    }
}

/// An HTTP/2 connection from the "application" to its outbound sidecar.
async fn connect(outbound: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(outbound).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// One unary call; the gRPC status from headers or trailers.
async fn call(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    path: &str,
    extra: &[(&str, &str)],
) -> Code {
    let mut payload = vec![0u8];
    payload.extend_from_slice(&1024u32.to_be_bytes());
    payload.extend(std::iter::repeat_n(7u8, 1024));
    let mut req = http::Request::post(format!("http://{ECHO}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(payload))).unwrap();
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    if let Some(code) = resp.headers().get("grpc-status") {
        return Code::from_i32(code.to_str().unwrap().parse().unwrap());
    }
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Code::from_i32(
        trailers
            .get("grpc-status")
            .map_or(2, |v| v.to_str().unwrap().parse().unwrap()),
    )
}

async fn metrics(admin: SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn open() -> AuthorizationConfig {
    AuthorizationConfig::default()
}

const RETRYABLE: &str = r#"
[default]
timeout = "5s"
[default.retry]
retryable = true
max_attempts = 4
[default.breaker]
consecutive_failures = 3
[default.breaker.probation]
base = "200ms"
max = "1s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cross_mtls_and_carry_the_verified_identity() {
    let ca = LocalCa::generate().unwrap();
    let r = replica(&ca, open()).await;
    let c = client(&ca, vec![r.inbound], "echo", "").await;
    let mut s = connect(c.outbound).await;
    // A forged identity header from the application is replaced.
    let code = call(
        &mut s,
        "/test.Echo/Call",
        &[("x-cloudsec-peer-identity", "spiffe://evil/ns/x/sa/admin")],
    )
    .await;
    assert_eq!(code, Code::Ok);
    assert_eq!(
        *r.app.identities.lock().unwrap(),
        vec![id("client").to_string()]
    );
    let m = metrics(c.admin).await;
    assert!(m.contains("outbound_response_total{"), "{m}");
    assert!(m.contains("tcp_open_total"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_fails_no_retryable_call() {
    let ca = LocalCa::generate().unwrap();
    let replicas = [
        replica(&ca, open()).await,
        replica(&ca, open()).await,
        replica(&ca, open()).await,
    ];
    let c = client(
        &ca,
        replicas.iter().map(|r| r.inbound).collect(),
        "echo",
        RETRYABLE,
    )
    .await;
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let outbound = c.outbound;
        tasks.push(tokio::spawn(async move {
            let mut s = connect(outbound).await;
            let mut failed = 0;
            for _ in 0..50 {
                if call(&mut s, "/test.Echo/Call", &[]).await != Code::Ok {
                    failed += 1;
                }
            }
            (worker, failed)
        }));
    }
    // Kill one replica while the load runs.
    tokio::time::sleep(Duration::from_millis(30)).await;
    replicas[0].kill();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap().1;
    }
    assert_eq!(failed, 0, "calls failed although two replicas stayed up");
    assert!(replicas[1].app.calls() + replicas[2].app.calls() >= 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_gets_less_traffic() {
    let ca = LocalCa::generate().unwrap();
    let fast = replica(&ca, open()).await;
    let slow = replica(&ca, open()).await;
    slow.app.set(Mode::Slow(Duration::from_millis(150)));
    // A short decay so the estimates settle within the test; production
    // keeps Linkerd's 10 s.
    let balancer = BalancerConfig {
        default_rtt: Duration::from_millis(30),
        decay: Duration::from_millis(200),
    };
    let c = client_with(&ca, vec![fast.inbound, slow.inbound], "echo", "", balancer).await;
    let load = |calls: usize| async move {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let outbound = c.outbound;
            tasks.push(tokio::spawn(async move {
                let mut s = connect(outbound).await;
                for _ in 0..calls {
                    assert_eq!(call(&mut s, "/test.Echo/Call", &[]).await, Code::Ok);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    };
    // Warm up: connection set-up makes every endpoint's first latency
    // samples slow; the balancer needs a little history.
    load(50).await;
    let (f0, s0) = (fast.app.calls(), slow.app.calls());
    load(100).await;
    let (f, s) = (fast.app.calls() - f0, slow.app.calls() - s0);
    assert_eq!(f + s, 400);
    assert!(s * 4 < f, "slow replica got {s} of 400 calls, fast got {f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_sheds_probes_and_closes() {
    let ca = LocalCa::generate().unwrap();
    let r = replica(&ca, open()).await;
    r.app.set(Mode::Unavailable);
    let routes = r#"
[default]
timeout = "2s"
[default.breaker]
consecutive_failures = 3
[default.breaker.probation]
base = "2s"
max = "4s"
"#;
    // Probation outlasts the 500 ms fail-fast wait, so queued calls are
    // shed instead of becoming the probe.
    let c = client(&ca, vec![r.inbound], "echo", routes).await;
    let mut s = connect(c.outbound).await;
    for _ in 0..3 {
        assert_eq!(
            call(&mut s, "/test.Echo/Call", &[]).await,
            Code::Unavailable
        );
    }
    assert_eq!(r.app.calls(), 3);
    // Open: the only endpoint is out, calls fail fast without reaching it.
    for _ in 0..3 {
        assert_eq!(
            call(&mut s, "/test.Echo/Call", &[]).await,
            Code::Unavailable
        );
    }
    assert_eq!(r.app.calls(), 3, "an open breaker let calls through");
    let m = metrics(c.admin).await;
    assert!(
        m.contains("breaker_transitions_total{") && m.contains("to=\"open\""),
        "{m}"
    );
    // The replica recovers; after probation one probe succeeds and the
    // breaker closes.
    r.app.set(Mode::Ok);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if call(&mut s, "/test.Echo/Call", &[]).await == Code::Ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "breaker never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        assert_eq!(call(&mut s, "/test.Echo/Call", &[]).await, Code::Ok);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_answer_deadline_exceeded() {
    let ca = LocalCa::generate().unwrap();
    let r = replica(&ca, open()).await;
    r.app.set(Mode::Slow(Duration::from_millis(800)));
    let c = client(
        &ca,
        vec![r.inbound],
        "echo",
        "[default]\ntimeout = \"5s\"\n",
    )
    .await;
    let mut s = connect(c.outbound).await;
    // The caller's own grpc-timeout is honoured under the route's.
    assert_eq!(
        call(&mut s, "/test.Echo/Call", &[("grpc-timeout", "100m")]).await,
        Code::DeadlineExceeded
    );
    let c = client(
        &ca,
        vec![r.inbound],
        "echo",
        "[default]\ntimeout = \"100ms\"\n",
    )
    .await;
    let mut s = connect(c.outbound).await;
    assert_eq!(
        call(&mut s, "/test.Echo/Call", &[]).await,
        Code::DeadlineExceeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_and_non_retryable_routes() {
    let ca = LocalCa::generate().unwrap();
    let r = replica(&ca, open()).await;
    r.app.set(Mode::Unavailable);
    let routes = r#"
[default]
timeout = "5s"
[default.retry]
retryable = true
max_attempts = 3
[default.retry.budget]
ratio = 0.2
min_per_second = 0
ttl = "10s"
[default.retry.backoff]
base = "1ms"
max = "2ms"
[default.breaker]
consecutive_failures = 0
[routes."test.Echo/Write"]
timeout = "5s"
"#;
    let c = client(&ca, vec![r.inbound], "echo", routes).await;
    let mut s = connect(c.outbound).await;
    for _ in 0..100 {
        assert_eq!(
            call(&mut s, "/test.Echo/Call", &[]).await,
            Code::Unavailable
        );
    }
    let calls = r.app.calls();
    assert!(
        (100..=125).contains(&calls),
        "budget let {} retries through for 100 calls",
        calls - 100
    );
    let before = r.app.calls();
    for _ in 0..20 {
        assert_eq!(
            call(&mut s, "/test.Echo/Write", &[]).await,
            Code::Unavailable
        );
    }
    assert_eq!(
        r.app.calls() - before,
        20,
        "a non-retryable route was retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_the_wrong_identity_and_foreign_certificates() {
    let ca = LocalCa::generate().unwrap();
    let r = replica(&ca, open()).await;
    // The client expects `documents` but the endpoint proves `echo`.
    let c = client(
        &ca,
        vec![r.inbound],
        "documents",
        "[default]\ntimeout = \"2s\"\n",
    )
    .await;
    let mut s = connect(c.outbound).await;
    assert_eq!(
        call(&mut s, "/test.Echo/Call", &[]).await,
        Code::Unavailable
    );
    // A client of another CA is refused by the inbound sidecar.
    let rogue = LocalCa::generate().unwrap();
    let c = client(
        &rogue,
        vec![r.inbound],
        "echo",
        "[default]\ntimeout = \"2s\"\n",
    )
    .await;
    let mut s = connect(c.outbound).await;
    assert_eq!(
        call(&mut s, "/test.Echo/Call", &[]).await,
        Code::Unavailable
    );
    // An expired certificate from the right CA is refused too.
    let expired = ca
        .issue_between(
            &id("client"),
            std::time::SystemTime::now() - Duration::from_secs(7200),
            std::time::SystemTime::now() - Duration::from_secs(3600),
        )
        .unwrap()
        .mesh_tls();
    let c = client(
        &ca,
        vec![r.inbound],
        "echo",
        "[default]\ntimeout = \"2s\"\n",
    )
    .await;
    c.state.update(&expired).unwrap();
    let mut s = connect(c.outbound).await;
    assert_eq!(
        call(&mut s, "/test.Echo/Call", &[]).await,
        Code::Unavailable
    );
    assert_eq!(r.app.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_denies_unlisted_identities_and_audit_only_logs() {
    let ca = LocalCa::generate().unwrap();
    let mut allow = BTreeMap::new();
    allow.insert("test.Echo/Call".to_owned(), vec![id("gateway").to_string()]);
    let deny = replica(
        &ca,
        AuthorizationConfig {
            mode: AuthzMode::Authenticated,
            allow: allow.clone(),
        },
    )
    .await;
    let c = client(&ca, vec![deny.inbound], "echo", "").await;
    let mut s = connect(c.outbound).await;
    assert_eq!(
        call(&mut s, "/test.Echo/Call", &[]).await,
        Code::PermissionDenied
    );
    // Unlisted methods are open to any mesh identity in this mode.
    assert_eq!(call(&mut s, "/test.Echo/Other", &[]).await, Code::Ok);
    assert_eq!(deny.app.calls(), 1);

    let audit = replica(
        &ca,
        AuthorizationConfig {
            mode: AuthzMode::Audit,
            allow,
        },
    )
    .await;
    let c = client(&ca, vec![audit.inbound], "echo", "").await;
    let mut s = connect(c.outbound).await;
    assert_eq!(call(&mut s, "/test.Echo/Call", &[]).await, Code::Ok);
    assert_eq!(audit.app.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_drops_no_request() {
    let ca = LocalCa::generate().unwrap();
    let r = replica(&ca, open()).await;
    let c = client(&ca, vec![r.inbound], "echo", "").await;
    let outbound = c.outbound;
    let load = tokio::spawn(async move {
        let mut s = connect(outbound).await;
        let mut failed = 0;
        for _ in 0..200 {
            if call(&mut s, "/test.Echo/Call", &[]).await != Code::Ok {
                failed += 1;
            }
        }
        failed
    });
    for _ in 0..5 {
        let next = ca
            .issue(&id("client"), Duration::from_secs(3600))
            .await
            .unwrap()
            .mesh_tls();
        c.state.update(&next).unwrap();
        // New connections use the new certificate.
        let mut s = connect(c.outbound).await;
        assert_eq!(call(&mut s, "/test.Echo/Call", &[]).await, Code::Ok);
    }
    assert_eq!(load.await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_destinations_resolve_and_balance() {
    let ca = LocalCa::generate().unwrap();
    let r = replica(&ca, open()).await;
    let (state, _) = tls(&ca, "client").await;
    let mut destinations = BTreeMap::new();
    destinations.insert(
        ECHO.to_owned(),
        DestinationConfig {
            endpoints: Vec::new(),
            dns: Some(format!("localhost:{}", r.inbound.port())),
            dns_refresh: Duration::from_millis(200),
            identity: id("echo").to_string(),
        },
    );
    let config = ProxyConfig {
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        inbound: None,
        outbound: Some(OutboundConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            destinations,
            // `localhost` may also answer ::1, where nothing listens: the
            // retry and the breaker route around it.
            routes: toml::from_str(RETRYABLE).unwrap(),
            queue_capacity: 100,
            failfast_timeout: Duration::from_secs(2),
            balancer: Default::default(),
        }),
        shutdown_grace: Duration::from_secs(1),
        worker_threads: cloudsec_proxy::runtime::DEFAULT_WORKER_THREADS,
    };
    let proxy = Proxy::build(&config, state).await.unwrap();
    let outbound = proxy.outbound_addr().unwrap();
    let stop = StopOnDrop(Shutdown::new());
    tokio::spawn(proxy.run_until_stopped(stop.0.clone()));
    let mut s = connect(outbound).await;
    for _ in 0..20 {
        assert_eq!(call(&mut s, "/test.Echo/Call", &[]).await, Code::Ok);
    }
    assert_eq!(r.app.calls(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_may_have_its_own_breaker() {
    let ca = LocalCa::generate().unwrap();
    let r = replica(&ca, open()).await;
    r.app.set(Mode::Unavailable);
    let routes = r#"
[default]
timeout = "5s"
[default.breaker]
consecutive_failures = 0
[routes."test.Echo/Fragile"]
timeout = "5s"
[routes."test.Echo/Fragile".breaker]
consecutive_failures = 2
[routes."test.Echo/Fragile".breaker.probation]
base = "10s"
max = "20s"
"#;
    let c = client(&ca, vec![r.inbound], "echo", routes).await;
    let mut s = connect(c.outbound).await;
    for _ in 0..2 {
        assert_eq!(
            call(&mut s, "/test.Echo/Fragile", &[]).await,
            Code::Unavailable
        );
    }
    assert_eq!(r.app.calls(), 2);
    // The fragile route's breaker is open: it sheds without reaching the app.
    assert_eq!(
        call(&mut s, "/test.Echo/Fragile", &[]).await,
        Code::Unavailable
    );
    assert_eq!(r.app.calls(), 2);
    // Other routes have their own (here: no) breaker and still get through.
    for _ in 0..3 {
        assert_eq!(
            call(&mut s, "/test.Echo/Call", &[]).await,
            Code::Unavailable
        );
    }
    assert_eq!(r.app.calls(), 5);
}
