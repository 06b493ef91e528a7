//! Outbound: accept plaintext HTTP/2 from the application on loopback,
//! route by `:authority` to a destination, apply the route's timeout and
//! retry policy, balance over the destination's endpoints with P2C over
//! peak-EWMA latency (each endpoint behind its own circuit breaker), and
//! originate mTLS that checks the endpoint's SPIFFE identity.
//!
//! The stack, outermost first:
//! `metrics → rescue → timeout → retry → load shed → queue (buffer) → fail
//! fast → P2C balancer → peak EWMA → breaker → mTLS HTTP/2 client`.
//!
//! Each route's stack is built once, on its first request, and shared by
//! every later request of the route without a lock: a request resolves its
//! destination and route, clones the stack and calls it.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use cloudsec_identity::SpiffeId;
use cloudsec_runtime::metrics::{GrpcMetricsLayer, MetricsBody};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tower::discover::Change;
use tower::util::BoxCloneSyncService as BoxCloneService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::config::{DestinationConfig, OutboundConfig};
use crate::io::{Handler, Http2Connection, MeshConnector, MeshTarget, TcpMetrics};
use crate::policy::{
    BoxError, BreakerLayer, BreakerOpen, BreakerPolicy, ConnectError, Labels, PolicyMetrics,
    ProxyBody, RetryLayer, RouteKey, RoutePolicies, RoutePolicy, Shed, TimeoutLayer, grpc_error,
};
use crate::tls::TlsState;

type Req = http::Request<ProxyBody>;
type Rsp = http::Response<ProxyBody>;
/// The balancer and what is below it.
type RouteService = BoxCloneService<Req, Rsp, BoxError>;
/// A route's whole stack: its errors are answers already, but for
/// readiness failures.
type RouteStack = BoxCloneService<Req, http::Response<MetricsBody<ProxyBody>>, BoxError>;
/// What discovery tells the balancer.
type Discovered = Result<Change<SocketAddr, RouteService>, Infallible>;

/// One endpoint: one HTTP/2 connection to one peer sidecar (see
/// [`Http2Connection`] for why not hyper-util's pooled client).
type Endpoint = Http2Connection<MeshConnector>;

pin_project_lite::pin_project! {
    /// Fails fast once the balancer has had no ready endpoint for longer
    /// than `timeout`, instead of letting requests queue until their
    /// deadline; recovers as soon as an endpoint is ready again.
    struct FailFast<S> {
        inner: S,
        timeout: Duration,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        failing: bool,
    }
}

impl<S> FailFast<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            failing: false,
        }
    }
}

/// `Pin<Box<..>>` so that `FailFast` can be driven through `&mut self`.
struct FailFastService<S>(Pin<Box<FailFast<S>>>);

impl<S> Service<Req> for FailFastService<S>
where
    S: Service<Req, Response = Rsp, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Rsp;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Rsp, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut this = self.0.as_mut().project();
        match this.inner.poll_ready(cx) {
            Poll::Ready(result) => {
                this.sleep.set(None);
                if *this.failing {
                    tracing::info!("an endpoint is ready again, leaving fail-fast");
                }
                *this.failing = false;
                Poll::Ready(result)
            }
            Poll::Pending if *this.failing => Poll::Ready(Ok(())),
            Poll::Pending => {
                if this.sleep.is_none() {
                    this.sleep.set(Some(tokio::time::sleep(*this.timeout)));
                }
                if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
                    ready!(sleep.poll(cx));
                }
                tracing::warn!("no endpoint ready, failing fast");
                *this.failing = true;
                this.sleep.set(None);
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let this = self.0.as_mut().project();
        if *this.failing {
            return Box::pin(async {
                Err(Box::new(Shed::new("no endpoint is available")) as BoxError)
            });
        }
        let fut = this.inner.call(request);
        Box::pin(fut)
    }
}

/// A destination: its endpoints, and its route stacks, each built on first
/// use.
struct Destination {
    name: String,
    identity: Arc<SpiffeId>,
    /// The current endpoint addresses, fed by discovery.
    endpoints: watch::Receiver<Vec<SocketAddr>>,
    /// The balancer of every route without a breaker of its own, with the
    /// default route's breakers; a route with its own breaker has its own
    /// balancer over the same endpoints.
    shared_balancer: OnceLock<RouteService>,
    default_route: OnceLock<RouteStack>,
    /// One slot per configured route (`routes.routes`), so the set of
    /// stacks, and of metric labels, cannot grow with arbitrary paths.
    named_routes: BTreeMap<String, OnceLock<RouteStack>>,
}

/// What building a balancer needs besides the breaker policy.
#[derive(Clone)]
struct BalancerContext {
    tls: Arc<TlsState>,
    tcp: TcpMetrics,
    queue_capacity: usize,
    failfast_timeout: Duration,
    balancer: crate::config::BalancerConfig,
    shutdown: CancellationToken,
}

#[derive(Clone)]
pub(crate) struct Outbound {
    destinations: Arc<BTreeMap<String, Arc<Destination>>>,
    policies: Arc<RoutePolicies>,
    /// Made once: making it looks up the in-flight gauge.
    traffic: GrpcMetricsLayer,
    policy_metrics: PolicyMetrics,
    context: BalancerContext,
}

fn endpoint_service(
    addr: SocketAddr,
    identity: &SpiffeId,
    tls: &Arc<TlsState>,
    tcp: &TcpMetrics,
    breaker: &BreakerLayer,
) -> RouteService {
    let connector = MeshConnector::new(MeshTarget {
        addr,
        identity: identity.clone(),
        tls: Arc::clone(tls),
        tcp: tcp.clone(),
    });
    BoxCloneService::new(breaker.layer(Endpoint::new(connector)))
}

/// A P2C peak-EWMA balancer over the destination's endpoints, each behind
/// a breaker of `breaker`, with a bounded queue, load shedding and fail-fast.
fn balancer(
    destination: &Destination,
    breaker: BreakerLayer,
    cx: &BalancerContext,
) -> RouteService {
    let (tx, rx) = mpsc::channel::<Discovered>(64);
    let mut endpoints = destination.endpoints.clone();
    let identity = destination.identity.clone();
    let cx2 = cx.clone();
    tokio::spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        loop {
            let now: HashSet<SocketAddr> = endpoints.borrow_and_update().iter().copied().collect();
            for addr in now.difference(&known) {
                let svc = endpoint_service(*addr, &identity, &cx2.tls, &cx2.tcp, &breaker);
                if tx.send(Ok(Change::Insert(*addr, svc))).await.is_err() {
                    return;
                }
            }
            for addr in known.difference(&now) {
                if tx.send(Ok(Change::Remove(*addr))).await.is_err() {
                    return;
                }
            }
            known = now;
            // Holding the sender keeps the balancer's discovery open.
            tokio::select! {
                () = cx2.shutdown.cancelled() => return,
                changed = endpoints.changed() => if changed.is_err() {
                    cx2.shutdown.cancelled().await;
                    return;
                },
            }
        }
    });
    let discover = tokio_stream::wrappers::ReceiverStream::new(rx);
    let ewma = tower::load::PeakEwmaDiscover::new(
        discover,
        cx.balancer.default_rtt,
        cx.balancer.decay,
        tower::load::CompleteOnResponse::default(),
    );
    let balance = tower::balance::p2c::Balance::new(ewma).map_err(|e: BoxError| e);
    let failfast = FailFastService(Box::pin(FailFast::new(balance, cx.failfast_timeout)));
    let (buffer, worker) = tower::buffer::Buffer::pair(failfast, cx.queue_capacity);
    tokio::spawn(worker);
    let shed = tower::load_shed::LoadShed::new(buffer).map_err(|e: BoxError| {
        if e.is::<tower::load_shed::error::Overloaded>() {
            Box::new(Shed::new("queue full")) as BoxError
        } else {
            e
        }
    });
    BoxCloneService::new(shed)
}

impl Outbound {
    pub(crate) fn new(
        config: &OutboundConfig,
        tls: &Arc<TlsState>,
        metrics: &cloudsec_runtime::metrics::Metrics,
        tcp: &TcpMetrics,
        shutdown: &CancellationToken,
    ) -> Result<Self, String> {
        let policy_metrics = PolicyMetrics::register(metrics);
        let mut destinations = BTreeMap::new();
        for (name, d) in &config.destinations {
            let identity = SpiffeId::parse(&d.identity).map_err(|e| e.to_string())?;
            let (tx, rx) = watch::channel(Vec::new());
            spawn_discovery(d, tx, shutdown.clone());
            let named_routes = config
                .routes
                .routes
                .keys()
                .map(|route| (route.clone(), OnceLock::new()))
                .collect();
            destinations.insert(
                name.clone(),
                Arc::new(Destination {
                    name: name.clone(),
                    identity: Arc::new(identity),
                    endpoints: rx,
                    shared_balancer: OnceLock::new(),
                    default_route: OnceLock::new(),
                    named_routes,
                }),
            );
        }
        Ok(Self {
            destinations: Arc::new(destinations),
            policies: Arc::new(config.routes.clone()),
            traffic: metrics.traffic("outbound").layer(),
            policy_metrics,
            context: BalancerContext {
                tls: Arc::clone(tls),
                tcp: tcp.clone(),
                queue_capacity: config.queue_capacity,
                failfast_timeout: config.failfast_timeout,
                balancer: config.balancer,
                shutdown: shutdown.clone(),
            },
        })
    }

    /// The balancer under `key`'s stack: the destination's shared one, or
    /// for a route with a breaker policy of its own, a balancer of its own
    /// (built once, as the route's stack is).
    fn balanced(
        &self,
        destination: &Destination,
        key: RouteKey<'_>,
        policy: &RoutePolicy,
    ) -> RouteService {
        let new_balancer = |key: RouteKey<'_>, breaker: BreakerPolicy| {
            let labels = self.labels(destination, key);
            let breaker = BreakerLayer::new(breaker, &self.policy_metrics.breaker, labels);
            balancer(destination, breaker, &self.context)
        };
        match (key, &policy.breaker) {
            (RouteKey::Named(_), Some(own)) => new_balancer(key, own.clone()),
            // The default route's breaker applies to every route without
            // one of its own, so their series carry the default's label.
            _ => destination
                .shared_balancer
                .get_or_init(|| {
                    let breaker = self.policies.default.breaker.clone().unwrap_or_default();
                    new_balancer(RouteKey::Default, breaker)
                })
                .clone(),
        }
    }

    /// The `dst` and `route` labels of a route's series.
    fn labels(&self, destination: &Destination, key: RouteKey<'_>) -> Labels {
        vec![
            ("dst".to_owned(), destination.name.clone()),
            ("route".to_owned(), key.label().to_owned()),
        ]
    }

    /// The stack of the route `key` on `destination`, read from the
    /// outside in.
    fn build_route(
        &self,
        destination: &Destination,
        key: RouteKey<'_>,
        policy: &RoutePolicy,
    ) -> RouteStack {
        let labels = self.labels(destination, key);
        let identity = Arc::clone(&destination.identity);
        let stack = ServiceBuilder::new()
            // Outermost, so that synthetic answers are counted like any
            // other response.
            .layer(self.traffic.clone())
            // Proxy-side failures become gRPC answers the client understands.
            .map_result(move |result: Result<Rsp, BoxError>| {
                Ok::<_, BoxError>(match result {
                    Ok(response) => response,
                    Err(error) => rescue(&identity, &error),
                })
            })
            // One deadline for all attempts: retries sit inside it.
            .layer(
                TimeoutLayer::new(policy.timeout)
                    .with_metrics(&self.policy_metrics.timeout, labels.clone()),
            )
            .layer(RetryLayer::new(
                policy.retry.clone(),
                &self.policy_metrics.retry,
                labels,
            ))
            .service(self.balanced(destination, key, policy));
        BoxCloneService::new(stack)
    }

    /// The stack of the route of `path` on `destination`, built on first
    /// use and shared afterwards, so that its retry budget is shared too.
    fn route(&self, destination: &Destination, path: &str) -> RouteStack {
        let (key, policy) = self.policies.resolve(path);
        let slot = match key {
            RouteKey::Default => Some(&destination.default_route),
            RouteKey::Named(name) => destination.named_routes.get(name),
        };
        match slot {
            Some(slot) => slot
                .get_or_init(|| self.build_route(destination, key, policy))
                .clone(),
            // Cannot happen: every configured route has a slot. A stack
            // of its own is still the right answer, only not shared.
            None => self.build_route(destination, key, policy),
        }
    }

    async fn forward(&self, request: http::Request<Incoming>) -> Rsp {
        let authority = authority(&request);
        let Some(destination) = self.destinations.get(authority) else {
            return grpc_error(
                tonic::Code::Unavailable,
                &format!("no destination `{authority}` is configured"),
            );
        };
        let mut route = self.route(destination, request.uri().path());
        let request = request.map(|b| b.map_err(Into::into).boxed_unsync());
        let result = match route.ready().await {
            Ok(route) => route.call(request).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(response) => response.map(|b| b.boxed_unsync()),
            // Only readiness can still fail here; the stack's own errors
            // were answered inside it.
            Err(error) => rescue(&destination.identity, &error),
        }
    }
}

/// The host the application called: the URI's, else the `Host` header's
/// without its port.
fn authority<B>(request: &http::Request<B>) -> &str {
    if let Some(host) = request.uri().host() {
        return host;
    }
    request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h))
        .unwrap_or_default()
}

/// Turns a proxy-side failure into a gRPC answer the client understands.
fn rescue(identity: &SpiffeId, error: &BoxError) -> Rsp {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(e) = source {
        if e.is::<Shed>() {
            return grpc_error(tonic::Code::Unavailable, &format!("load shed: {e}"));
        }
        if e.is::<BreakerOpen>() {
            return grpc_error(
                tonic::Code::Unavailable,
                "every endpoint's circuit breaker is open",
            );
        }
        if e.is::<ConnectError>() {
            return grpc_error(
                tonic::Code::Unavailable,
                &format!("cannot reach {identity}: {e}"),
            );
        }
        source = e.source();
    }
    tracing::warn!(%error, %identity, "outbound call failed");
    grpc_error(tonic::Code::Unavailable, "upstream failed")
}

impl Handler for Outbound {
    type Peer = ();

    async fn handle(&self, _peer: (), request: http::Request<Incoming>) -> Rsp {
        self.forward(request).await
    }
}

/// Publishes the destination's endpoints: static ones once, or DNS answers
/// on every refresh. A failed lookup keeps the last answer: a resolver
/// hiccup must not empty the balancers.
fn spawn_discovery(
    config: &DestinationConfig,
    tx: watch::Sender<Vec<SocketAddr>>,
    shutdown: CancellationToken,
) {
    let fixed = config.endpoints.clone();
    let dns = config.dns.clone();
    let refresh = config.dns_refresh;
    tokio::spawn(async move {
        let Some(host) = dns else {
            tx.send_replace(fixed);
            // Holding the sender keeps the endpoint set open.
            shutdown.cancelled().await;
            return;
        };
        loop {
            match tokio::net::lookup_host(host.as_str()).await {
                Ok(addrs) => {
                    let mut now: Vec<SocketAddr> = addrs.collect();
                    now.sort();
                    now.dedup();
                    tx.send_if_modified(|current| {
                        let changed = *current != now;
                        if changed {
                            *current = now;
                        }
                        changed
                    });
                }
                Err(error) => tracing::warn!(%host, %error, "dns resolution failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(refresh) => {}
            }
        }
    });
}
