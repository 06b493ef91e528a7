//! Prometheus metrics: one registry per component, and a tower layer that
//! counts gRPC requests and responses, times them and gauges how many are
//! in flight.
//!
//! Names follow Linkerd's where they exist (`request_total`,
//! `response_total`, `response_latency_seconds`), labelled by gRPC service,
//! method and status. Every registry also carries `cloudsec_build_info`
//! (version and commit), the [`process`]-wide families and, once
//! [`Metrics::watch_pool`] is called, its database pools.
//! `docs/observability.md` lists every metric of the platform.

mod pool;
pub mod process;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Declares a component's metric families as a struct whose `register`
/// puts each one in a [`Metrics`] registry, with each family's name and
/// help written once, next to its field (as linkerd2-proxy's `metrics!`
/// does). A field takes its type's `Default` unless a constructor follows
/// the help (histograms with their buckets, families with series made to
/// exist at 0).
///
/// ```
/// use prometheus_client::metrics::counter::Counter;
///
/// cloudsec_runtime::metric_families! {
///     /// Records appended.
///     pub struct AppendMetrics {
///         appended: Counter = "records_appended", "records appended";
///     }
/// }
///
/// let metrics = cloudsec_runtime::metrics::Metrics::new("example");
/// let families = AppendMetrics::register(&metrics);
/// families.appended.inc();
/// assert!(metrics.encode().contains("records_appended_total{component=\"example\"} 1"));
/// ```
#[macro_export]
macro_rules! metric_families {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $field_vis:vis $field:ident : $ty:ty = $metric:literal, $help:literal $(, $new:expr)? ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field: $ty, )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                Self { $( $field: $crate::metric_families!(@new $($new)?), )* }
            }
        }

        impl $name {
            /// Every family of this set, registered in `metrics` under its
            /// name and help.
            $vis fn register(metrics: &$crate::metrics::Metrics) -> Self {
                let this = <Self as ::core::default::Default>::default();
                $( metrics.register($metric, $help, ::core::clone::Clone::clone(&this.$field)); )*
                this
            }
        }
    };
    (@new) => { ::core::default::Default::default() };
    (@new $new:expr) => { $new };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    grpc_service: String,
    grpc_method: String,
    status_code: u16,
    grpc_status: &'static str,
}

/// A component's metric registry; cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    inbound: Traffic,
    pools: Arc<pool::PoolCollector>,
}

/// The version this binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from: `CLOUDSEC_COMMIT` at build time
/// (the image build sets it), `unknown` otherwise. An environment variable
/// rather than a build script that asks git, so that a commit does not
/// rebuild every crate above this one.
pub const COMMIT: &str = match option_env!("CLOUDSEC_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// Request, response and latency families for one direction of gRPC
/// traffic (`inbound_*` in services; sidecars add `outbound_*`).
#[derive(Clone, Debug)]
pub struct Traffic {
    requests: Family<RouteLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Requests whose response has not ended yet; one gauge, not one per
    /// route, so that it costs one atomic add per request. A family with
    /// one child made by [`Traffic::layer`], so that a direction nobody
    /// records (the default `inbound` of a sidecar's registry, which
    /// registers its own) stays out of the exposition like the others.
    in_flight: Family<Vec<(String, String)>, Gauge>,
    /// Each path's series, found with one lookup per request instead of a
    /// lookup per family, each with its label strings built anew. Holds as
    /// many entries as the families hold series.
    routes: Arc<RwLock<HashMap<Box<str>, Arc<RouteSeries>>>>,
}

/// The series of one request path.
#[derive(Debug)]
struct RouteSeries {
    labels: RouteLabels,
    requests: Counter,
    latency: Histogram,
    /// `status_code="200"`, `grpc_status="Ok"`: what most calls end with;
    /// made on the first such answer, so a route that never succeeds shows
    /// no such series, as before.
    ok: OnceLock<Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Metrics {
    /// A registry whose metrics all carry `component="<component>"`.
    pub fn new(component: &str) -> Self {
        let mut registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("component"),
                std::borrow::Cow::Owned(component.to_owned()),
            )]
            .into_iter(),
        );
        let inbound = Traffic::register(&mut registry, "inbound");
        registry.register(
            "cloudsec_build",
            "the version and commit of the running binary",
            Info::new(vec![
                ("version".to_owned(), VERSION.to_owned()),
                ("commit".to_owned(), COMMIT.to_owned()),
            ]),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        let pools = Arc::new(pool::PoolCollector::default());
        registry.register_collector(Box::new(pools.clone()));
        Self {
            registry: Arc::new(Mutex::new(registry)),
            inbound,
            pools,
        }
    }

    /// Exposes the size, use and checkout wait of `db`'s connection pool
    /// as `db_pool_*{pool="<name>"}` for as long as this registry lives.
    pub fn watch_pool(&self, name: &str, db: &sea_orm::DatabaseConnection) {
        if !self.pools.watch(name, db) {
            tracing::debug!(pool = name, "no connection pool to watch");
        }
    }

    /// The families of `direction` traffic (`inbound`, `outbound`).
    pub fn traffic(&self, direction: &str) -> Traffic {
        match self.registry.lock() {
            Ok(mut registry) => Traffic::register(&mut registry, direction),
            // A poisoned registry only loses exposition, not counting.
            Err(_) => Traffic::register(&mut Registry::default(), direction),
        }
    }

    /// Registers a component's own metric.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    /// Registers a collector, for values read at scrape time.
    pub fn register_collector(&self, collector: impl prometheus_client::collector::Collector) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register_collector(Box::new(collector));
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock()
            && let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry)
        {
            tracing::warn!(%error, "metrics encoding failed");
        }
        out
    }

    /// The tower layer that records inbound gRPC traffic.
    pub fn grpc_layer(&self) -> GrpcMetricsLayer {
        self.inbound.layer()
    }
}

impl Traffic {
    fn register(registry: &mut Registry, direction: &str) -> Self {
        let requests = Family::<RouteLabels, Counter>::default();
        let responses = Family::<ResponseLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let in_flight = Family::<Vec<(String, String)>, Gauge>::default();
        let sub = registry.sub_registry_with_prefix(direction);
        sub.register("request", "gRPC requests", requests.clone());
        sub.register(
            "requests_in_flight",
            "gRPC requests whose response has not ended",
            in_flight.clone(),
        );
        sub.register(
            "response",
            "gRPC responses, by HTTP status and grpc status",
            responses.clone(),
        );
        sub.register(
            "response_latency_seconds",
            "time from request to the end of the response",
            latency.clone(),
        );
        Self {
            requests,
            responses,
            latency,
            in_flight,
            routes: Arc::default(),
        }
    }

    /// The series of `path`, made on its first request.
    fn series(&self, path: &str) -> Arc<RouteSeries> {
        if let Ok(routes) = self.routes.read()
            && let Some(series) = routes.get(path)
        {
            return Arc::clone(series);
        }
        let labels = route_labels(path);
        let series = Arc::new(RouteSeries {
            requests: self.requests.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
            ok: OnceLock::new(),
            labels,
        });
        match self.routes.write() {
            Ok(mut routes) => Arc::clone(routes.entry(path.into()).or_insert(series)),
            // A poisoned cache only costs the lookups it saves.
            Err(_) => series,
        }
    }

    /// The tower layer that records this traffic.
    pub fn layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            in_flight: self.in_flight.get_or_create_owned(&Vec::new()),
            metrics: self.clone(),
        }
    }
}

/// Splits `/pkg.Service/Method` into its two labels.
fn route_labels(path: &str) -> RouteLabels {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    RouteLabels {
        grpc_service: parts.next().unwrap_or_default().to_owned(),
        grpc_method: parts.next().unwrap_or_default().to_owned(),
    }
}

/// The name of a gRPC status (`NotFound`), as `{code:?}` prints it, without
/// formatting a string on every response.
fn code_name(status: Option<&http::HeaderValue>) -> &'static str {
    const NAMES: [&str; 17] = [
        "Ok",
        "Cancelled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    status
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<usize>().ok())
        .and_then(|n| NAMES.get(n).copied())
        .unwrap_or("Unknown")
}

#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Traffic,
    in_flight: Gauge,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Traffic,
    in_flight: Gauge,
}

/// Counts a request in flight until dropped, whichever way it ends.
#[derive(Debug)]
struct InFlight(Gauge);

impl InFlight {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What is needed to record a response once its status is known.
#[derive(Debug)]
struct Pending {
    series: Arc<RouteSeries>,
    responses: Family<ResponseLabels, Counter>,
    status_code: u16,
    start: Instant,
    _in_flight: InFlight,
}

impl Pending {
    fn record(self, status: Option<&http::HeaderValue>) {
        let elapsed = self.start.elapsed().as_secs_f64();
        self.series.latency.observe(elapsed);
        let grpc_status = code_name(status);
        let labels = || ResponseLabels {
            grpc_service: self.series.labels.grpc_service.clone(),
            grpc_method: self.series.labels.grpc_method.clone(),
            status_code: self.status_code,
            grpc_status,
        };
        if self.status_code == 200 && grpc_status == "Ok" {
            self.series
                .ok
                .get_or_init(|| self.responses.get_or_create(&labels()).clone())
                .inc();
        } else {
            self.responses.get_or_create(&labels()).inc();
        }
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MetricsBody<RB>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let series = self.metrics.series(req.uri().path());
        series.requests.inc();
        let pending = Pending {
            _in_flight: InFlight::new(&self.in_flight),
            series,
            responses: self.metrics.responses.clone(),
            status_code: 0,
            start: Instant::now(),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            let mut pending = pending;
            pending.status_code = response.status().as_u16();
            // A trailers-only response carries its status in the headers.
            let pending = match response.headers().get("grpc-status") {
                Some(status) => {
                    pending.record(Some(status));
                    None
                }
                None => Some(pending),
            };
            Ok(response.map(|inner| MetricsBody { inner, pending }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the gRPC status found in its trailers.
    #[derive(Debug)]
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }

    impl<B> PinnedDrop for MetricsBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // A body dropped before its trailers: the client went away.
            if let Some(pending) = this.project().pending.take() {
                pending.record(Some(&http::HeaderValue::from_static("1")));
            }
        }
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref()
                    && let Some(pending) = this.pending.take()
                {
                    pending.record(trailers.get("grpc-status"));
                }
            }
            Some(Err(_)) | None => {
                if let Some(pending) = this.pending.take() {
                    pending.record(None);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        let l = route_labels("/cloudsec.documents.v1.DocumentService/GetDocument");
        assert_eq!(l.grpc_service, "cloudsec.documents.v1.DocumentService");
        assert_eq!(l.grpc_method, "GetDocument");
    }

    #[test]
    fn names_codes_as_tonic_prints_them() {
        for n in 0..17 {
            let value = http::HeaderValue::from(n);
            assert_eq!(
                code_name(Some(&value)),
                format!("{:?}", tonic::Code::from_i32(n))
            );
        }
        for bad in ["17", "-1", "x", ""] {
            let value = http::HeaderValue::from_static(bad);
            assert_eq!(code_name(Some(&value)), "Unknown", "{bad:?}");
        }
    }

    #[test]
    fn names_codes() {
        assert_eq!(
            code_name(Some(&http::HeaderValue::from_static("5"))),
            "NotFound"
        );
        assert_eq!(code_name(None), "Unknown");
    }

    fn sample(metrics: &Metrics, series: &str) -> Option<String> {
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series).map(|v| v.trim().to_owned()))
    }

    #[tokio::test]
    async fn counts_each_route_and_answer_through_the_series_cache() {
        use tower::{Layer, Service};
        let metrics = Metrics::new("test");
        let mut svc =
            metrics
                .grpc_layer()
                .layer(tower::service_fn(|req: http::Request<()>| async move {
                    let mut res = http::Response::new(tonic::body::Body::empty());
                    let code = if req.uri().path().ends_with("/Fail") {
                        "5"
                    } else {
                        "0"
                    };
                    res.headers_mut()
                        .insert("grpc-status", http::HeaderValue::from_static(code));
                    Ok::<_, std::convert::Infallible>(res)
                }));
        for path in [
            "/pkg.Svc/Get",
            "/pkg.Svc/Get",
            "/pkg.Svc/Fail",
            "/pkg.Svc/Get",
        ] {
            let req = http::Request::builder().uri(path).body(()).unwrap();
            drop(svc.call(req).await.unwrap());
        }
        let value = |series: &str| sample(&metrics, series);
        let get = "grpc_service=\"pkg.Svc\",grpc_method=\"Get\"";
        let fail = "grpc_service=\"pkg.Svc\",grpc_method=\"Fail\"";
        assert_eq!(
            value(&format!(
                "inbound_request_total{{component=\"test\",{get}}}"
            ))
            .as_deref(),
            Some("3")
        );
        assert_eq!(
            value(&format!(
                "inbound_response_total{{component=\"test\",{get},status_code=\"200\",grpc_status=\"Ok\"}}"
            ))
            .as_deref(),
            Some("3")
        );
        assert_eq!(
            value(&format!(
                "inbound_response_total{{component=\"test\",{fail},status_code=\"200\",grpc_status=\"NotFound\"}}"
            ))
            .as_deref(),
            Some("1")
        );
        // A route that never succeeded has no Ok series.
        assert!(
            !metrics
                .encode()
                .contains(&format!("{fail},status_code=\"200\",grpc_status=\"Ok\"")),
            "{}",
            metrics.encode()
        );
        assert_eq!(
            value(&format!(
                "inbound_response_latency_seconds_count{{component=\"test\",{get}}}"
            ))
            .as_deref(),
            Some("3")
        );
    }

    #[tokio::test]
    async fn counts_a_request_in_flight_until_its_body_ends() {
        use tower::{Layer, Service};
        let metrics = Metrics::new("test");
        let mut svc =
            metrics
                .grpc_layer()
                .layer(tower::service_fn(|_req: http::Request<()>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        tonic::body::Body::empty(),
                    ))
                }));
        let gauge = "inbound_requests_in_flight{component=\"test\"}";
        assert_eq!(sample(&metrics, gauge).as_deref(), Some("0"));
        let response = svc
            .call(http::Request::builder().uri("/pkg.Svc/M").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            sample(&metrics, gauge).as_deref(),
            Some("1"),
            "answered, body not ended"
        );
        drop(response);
        assert_eq!(sample(&metrics, gauge).as_deref(), Some("0"));
        assert!(
            metrics
                .encode()
                .contains("cloudsec_build_info{component=\"test\",version=\""),
            "every registry says what it runs"
        );
    }
}
