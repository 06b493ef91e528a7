//! The gateway itself: building the route table from descriptors, the
//! request handler, the upstream call and the serving loop.
//!
//! A request passes, in order: CORS preflight (answered here), route
//! match (404/405), the API key (403), every applicable limit at once
//! (client IP, route, key bucket and quotas: 429), the JWT authorizer
//! (401/403), transcoding and required-field validation (400), then the
//! upstream call. Limits come before token verification so that floods
//! are refused before any RSA work is spent on them.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cloudsec_proto::google::api::{HttpRule, http_rule::Pattern};
use cloudsec_runtime::admin::{self, Readiness};
use cloudsec_runtime::grpc::{GrpcError, REQUEST_ID};
use cloudsec_runtime::metrics::Metrics;
use cloudsec_runtime::shutdown::Shutdown;
use cloudsec_runtime::telemetry;
use cloudsec_runtime::tls::MeshTls;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prost_reflect::{DescriptorPool, DynamicMessage, ExtensionDescriptor, MethodDescriptor};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::client::{ClientInfo, client_info};
use crate::codec::DynamicCodec;
use crate::config::{GatewayConfig, Throttle};
use crate::cors::{self, Cors};
use crate::error::{ApiError, GatewayError, upstream_failure};
use crate::jwt::{JwksSource, JwtAuthorizer};
use crate::limits::{Clock, Decision, Limit, LimitKind, Limiter, LimiterMetrics, SystemClock};
use crate::policy::{ApiKeys, RouteEdge, option_scopes, scopes_extension};
use crate::routes::{Match, PathTemplate, RouteTable};
use crate::stream::{self, Format};
use crate::tls::{PeerAddr, PublicListener};
use crate::transcode::Binding;
use crate::validate::{Validator, Violation, behavior_extension, rules_extension};

/// The header that carries an API key.
const API_KEY: &str = "x-api-key";

/// Where the OpenAPI document is served.
pub(crate) const OPENAPI_PATH: &str = "/openapi.json";

/// The service whose `GetJwks` feeds the JWT authorizer by default.
const AUTH_SERVICE: &str = "cloudsec.auth.v1.AuthService";

/// The route label of requests that matched no route, so that scanners
/// cannot grow the metric families with made-up paths.
const UNMATCHED: &str = "unmatched";

/// The longest client request id that is passed on as is.
const MAX_REQUEST_ID: usize = 128;

/// Where a route's requests go.
#[derive(Debug)]
struct Target {
    /// `pkg.Service/Method`, for logs and the route listing.
    full_method: String,
    grpc_path: PathAndQuery,
    binding: Arc<Binding>,
    method: MethodDescriptor,
    /// Server streaming: answered as NDJSON or Server-Sent Events.
    streaming: bool,
    channel: Channel,
    /// What the route demands at the edge.
    edge: RouteEdge,
}

impl Target {
    /// The HTTP status of a successful call: 200 unless overridden.
    fn ok_status(&self) -> StatusCode {
        self.edge
            .status_overrides
            .get(&(tonic::Code::Ok as i32))
            .copied()
            .unwrap_or(StatusCode::OK)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    route: String,
    method: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    route: String,
    method: String,
    reason: String,
}

#[derive(Clone, Debug)]
struct GatewayMetrics {
    requests: Family<RouteLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    throttled: Family<ThrottleLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    limiter: LimiterMetrics,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl GatewayMetrics {
    fn register(metrics: &Metrics) -> Self {
        let this = Self {
            requests: Family::default(),
            responses: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            throttled: Family::default(),
            rejected: Family::default(),
            limiter: LimiterMetrics::default(),
        };
        metrics.register(
            "gateway_request",
            "REST requests received, by route template and HTTP method",
            this.requests.clone(),
        );
        metrics.register(
            "gateway_response",
            "REST responses sent, by route template, HTTP method and HTTP status",
            this.responses.clone(),
        );
        metrics.register(
            "gateway_response_latency_seconds",
            "time from request to response, by route template and HTTP method",
            this.latency.clone(),
        );
        metrics.register(
            "gateway_throttled",
            "requests refused with 429, by route template, HTTP method and the limit reached",
            this.throttled.clone(),
        );
        metrics.register(
            "gateway_rejected",
            "requests refused at the edge, by route template, HTTP method and reason",
            this.rejected.clone(),
        );
        metrics.register(
            "gateway_limiter_redis_up",
            "1 while rate limits are kept in Redis, 0 while they are local (Redis unavailable or not configured)",
            this.limiter.redis_up.clone(),
        );
        metrics.register(
            "gateway_limiter_local_fallback",
            "requests whose limits were decided locally because Redis was unavailable",
            this.limiter.fallback.clone(),
        );
        this
    }

    fn reject(&self, labels: &RouteLabels, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                route: labels.route.clone(),
                method: labels.method.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// What every request handler shares.
#[derive(Debug)]
struct Shared {
    table: RouteTable<Target>,
    max_body_bytes: usize,
    request_timeout: Duration,
    reject_unknown_fields: bool,
    metrics: GatewayMetrics,
    keys: ApiKeys,
    limiter: Limiter,
    client_ip_throttle: Option<Throttle>,
    jwt: Option<Arc<JwtAuthorizer>>,
    cors: Option<Cors>,
    trusted_proxies: Vec<ipnet::IpNet>,
    validator: Option<Validator>,
    /// The OpenAPI document of the routes served, pre-rendered.
    openapi: Option<Bytes>,
    /// The web console, when `console_dir` is set.
    console: Option<crate::console::Console>,
    /// Whether the REST listener terminates TLS.
    tls: bool,
    /// Set at shutdown: HTTP/1.1 answers then say `Connection: close`, so
    /// keep-alive clients leave before their connection is closed under
    /// them.
    draining: std::sync::atomic::AtomicBool,
}

/// How long a draining gateway keeps its open connections serving (each
/// answer closing its HTTP/1.1 connection, HTTP/2 clients told by GOAWAY)
/// before it closes the idle ones; at most half of `shutdown_grace`.
const DRAIN_WINDOW: Duration = Duration::from_secs(1);

/// The REST gateway, built and bound but not yet serving.
pub struct Gateway {
    listener: TcpListener,
    admin_listener: TcpListener,
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    metrics: Metrics,
    readiness: Readiness,
    shutdown_grace: Duration,
    /// `listen_tls`, loaded.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.local_addr)
            .field("admin_addr", &self.admin_addr)
            .field("routes", &self.shared.table.iter().count())
            .finish_non_exhaustive()
    }
}

/// One pool from several encoded `FileDescriptorSet`s, as the gateway
/// reads them (for [`crate::openapi::openapi`] too).
pub fn descriptor_pool(descriptor_sets: &[&[u8]]) -> Result<DescriptorPool, GatewayError> {
    let mut pool = DescriptorPool::new();
    for (index, set) in descriptor_sets.iter().enumerate() {
        // Decoding from bytes (not from prost_types) keeps the extension
        // options; files already in the pool (shared imports) are skipped.
        pool.decode_file_descriptor_set(*set)
            .map_err(|source| GatewayError::Descriptors { index, source })?;
    }
    Ok(pool)
}

/// The method's `google.api.http` rule and its additional bindings (whose
/// own additional bindings are ignored, as http.proto says).
pub(crate) fn http_rules(
    method: &MethodDescriptor,
    extension: &ExtensionDescriptor,
) -> Result<Vec<HttpRule>, GatewayError> {
    let options = method.options();
    if !options.has_extension(extension) {
        return Ok(Vec::new());
    }
    let value = options.get_extension(extension);
    let rule: HttpRule = value
        .as_message()
        .map(DynamicMessage::transcode_to)
        .transpose()
        .map_err(|error| GatewayError::Template {
            method: method.full_name().to_owned(),
            template: String::new(),
            reason: format!("cannot decode google.api.http: {error}"),
        })?
        .unwrap_or_default();
    let mut rules = vec![rule.clone()];
    rules.extend(rule.additional_bindings.into_iter().map(|mut r| {
        r.additional_bindings.clear();
        r
    }));
    Ok(rules)
}

pub(crate) fn pattern(rule: &HttpRule) -> Result<(Method, &str), String> {
    Ok(match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::GET, p),
        Some(Pattern::Put(p)) => (Method::PUT, p),
        Some(Pattern::Post(p)) => (Method::POST, p),
        Some(Pattern::Delete(p)) => (Method::DELETE, p),
        Some(Pattern::Patch(p)) => (Method::PATCH, p),
        Some(Pattern::Custom(custom)) => (
            Method::from_bytes(custom.kind.as_bytes())
                .map_err(|_| format!("invalid custom method `{}`", custom.kind))?,
            &custom.path,
        ),
        None => return Err("the rule has no pattern".to_owned()),
    })
}

fn build_channels(
    pool: &DescriptorPool,
    config: &GatewayConfig,
    mesh: &MeshTls,
) -> Result<BTreeMap<String, Channel>, GatewayError> {
    let mut channels = BTreeMap::new();
    for (service, upstream) in &config.upstreams {
        if pool.get_service_by_name(service).is_none() {
            tracing::warn!(%service, "upstream configured for a service no descriptor defines");
        }
        let channel = cloudsec_runtime::grpc::channel(&upstream.uri, &upstream.server_name, mesh)
            .map_err(|source| match source {
            GrpcError::Tls(_) => GatewayError::Tls {
                service: service.clone(),
                source,
            },
            _ => GatewayError::Upstream {
                service: service.clone(),
                source,
            },
        })?;
        channels.insert(service.clone(), channel);
    }
    Ok(channels)
}

fn build_table(
    pool: &DescriptorPool,
    config: &GatewayConfig,
    channels: &BTreeMap<String, Channel>,
) -> Result<RouteTable<Target>, GatewayError> {
    let mut table = RouteTable::default();
    let Some(extension) = pool.get_extension_by_name("google.api.http") else {
        tracing::warn!("no descriptor imports google/api/annotations.proto: no routes");
        return Ok(table);
    };
    let scopes = scopes_extension(pool);
    let authentication = crate::policy::authentication_extension(pool);
    for service in pool.services() {
        let channel = channels.get(service.full_name());
        let mut unrouted = 0;
        for method in service.methods() {
            let rules = http_rules(&method, &extension)?;
            if rules.is_empty() {
                continue;
            }
            let Some(channel) = channel else {
                unrouted += 1;
                continue;
            };
            if method.is_client_streaming() {
                // HTTP/JSON has no agreed way to send a stream of requests
                // (grpc-gateway's newline-delimited bodies are not
                // supported here).
                tracing::warn!(
                    method = method.full_name(),
                    "client-streaming methods are not transcoded: no route"
                );
                continue;
            }
            let contract_scopes = option_scopes(&method, scopes.as_ref());
            let tokenless =
                crate::policy::option_authentication(&method, authentication.as_ref()).tokenless();
            let full_method = format!("{}/{}", service.full_name(), method.name());
            let grpc_path = PathAndQuery::from_maybe_shared(Bytes::from(format!("/{full_method}")))
                .map_err(|error| GatewayError::Template {
                    method: full_method.clone(),
                    template: String::new(),
                    reason: format!("method name is not a valid path: {error}"),
                })?;
            for rule in rules {
                let bad = |template: &str, reason: String| GatewayError::Template {
                    method: full_method.clone(),
                    template: template.to_owned(),
                    reason,
                };
                let (http_method, path) = pattern(&rule).map_err(|r| bad("", r))?;
                let template = PathTemplate::parse(path).map_err(|e| bad(path, e.to_string()))?;
                let binding = Binding::new(
                    &method,
                    &http_method,
                    &template,
                    &rule.body,
                    &rule.response_body,
                )
                .map_err(|r| bad(path, r))?;
                table.insert(
                    http_method,
                    template,
                    Target {
                        full_method: full_method.clone(),
                        grpc_path: grpc_path.clone(),
                        binding: Arc::new(binding),
                        method: method.clone(),
                        streaming: method.is_server_streaming(),
                        channel: channel.clone(),
                        edge: RouteEdge::resolve(
                            config,
                            service.full_name(),
                            method.name(),
                            &contract_scopes,
                            tokenless,
                        ),
                    },
                );
            }
        }
        if unrouted > 0 {
            tracing::warn!(
                service = service.full_name(),
                methods = unrouted,
                "annotated service has no upstream: no routes"
            );
        }
    }
    Ok(table)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, GatewayError> {
    listener
        .local_addr()
        .map_err(|source| GatewayError::Bind { addr, source })
}

impl Gateway {
    /// Parses the descriptor sets, builds the route table, opens mesh
    /// channels (lazily connected) and binds both listeners (port 0 is
    /// fine).
    pub async fn build(
        config: &GatewayConfig,
        descriptor_sets: &[&[u8]],
        mesh: MeshTls,
    ) -> Result<Self, GatewayError> {
        Self::build_with_clock(config, descriptor_sets, mesh, Arc::new(SystemClock)).await
    }

    /// [`Gateway::build`] with the clock that rate limits and quota periods
    /// read, so tests can cross a day without waiting.
    pub async fn build_with_clock(
        config: &GatewayConfig,
        descriptor_sets: &[&[u8]],
        mesh: MeshTls,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, GatewayError> {
        config.validate()?;
        let pool = descriptor_pool(descriptor_sets)?;
        let channels = build_channels(&pool, config, &mesh)?;
        let table = build_table(&pool, config, &channels)?;
        let metrics = Metrics::new("gateway");
        let gateway_metrics = GatewayMetrics::register(&metrics);
        crate::concurrency::register(&metrics);
        let limiter = Limiter::new(
            config.redis_url.as_ref().map(|url| url.expose()),
            &config.redis_prefix,
            config.redis_timeout,
            config.redis_retry,
            clock,
            gateway_metrics.limiter.clone(),
        )
        .map_err(|error| GatewayError::Redis(error.to_string()))?;
        let jwt = match &config.jwt {
            None => {
                // Scopes a contract requires are checked by the service that
                // declares them; only scopes configured for the edge alone
                // go unchecked without an authorizer.
                let configured = config
                    .routes
                    .iter()
                    .filter(|(_, p)| p.scopes.as_ref().is_some_and(|s| !s.is_empty()))
                    .map(|(selector, _)| selector.as_str())
                    .collect::<Vec<_>>();
                if !configured.is_empty() {
                    tracing::warn!(
                        routes = ?configured,
                        "gateway.routes list scopes but gateway.jwt is not set: those scopes are not checked at the edge"
                    );
                }
                None
            }
            Some(jwt) => {
                let source = match (&jwt.jwks_url, channels.get(AUTH_SERVICE)) {
                    (Some(url), _) => JwksSource::url(url).map_err(GatewayError::JwksUrl)?,
                    (None, Some(channel)) => JwksSource::Auth(
                        cloudsec_proto::auth::v1::auth_service_client::AuthServiceClient::new(
                            channel.clone(),
                        ),
                    ),
                    (None, None) => return Err(GatewayError::NoJwksSource(AUTH_SERVICE)),
                };
                let authorizer = JwtAuthorizer::new(
                    &jwt.issuer,
                    &jwt.audience,
                    source,
                    jwt.refresh_interval,
                    jwt.min_refresh_interval,
                );
                // Whatever signs the keys, the platform's auth service is
                // where users are disabled and signed out.
                let authorizer = match channels.get(AUTH_SERVICE) {
                    Some(channel) => {
                        authorizer.with_revocations(channel.clone(), jwt.revocation_interval)
                    }
                    None => authorizer,
                };
                let authorizer = match &jwt.cognito {
                    None => authorizer,
                    Some(pool) => authorizer.trust_cognito(pool.clone()).map_err(|e| {
                        GatewayError::Config(crate::config::ConfigError {
                            key: "gateway.jwt.cognito".into(),
                            reason: e,
                        })
                    })?,
                };
                Some(Arc::new(authorizer))
            }
        };
        let validator = if config.validate_requests {
            Some(Validator::new(
                table.iter().map(|(_, _, t)| t.method.input()),
                behavior_extension(&pool).as_ref(),
                rules_extension(&pool).as_ref(),
            )?)
        } else {
            None
        };
        let tls = config
            .listen_tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        let openapi = if config.serve_openapi {
            let services: Vec<String> = channels.keys().cloned().collect();
            let document =
                crate::openapi::openapi_for(&pool, |service| services.iter().any(|s| s == service));
            Some(Bytes::from(serde_json::to_vec(&document).map_err(
                |error| GatewayError::Template {
                    method: String::new(),
                    template: OPENAPI_PATH.to_owned(),
                    reason: format!("cannot render the OpenAPI document: {error}"),
                },
            )?))
        } else {
            None
        };
        let console = config
            .console_dir
            .as_deref()
            .map(crate::console::Console::load)
            .transpose()?;
        let listener = bind(config.listen).await?;
        let admin_listener = bind(config.admin_listen).await?;
        let shared = Shared {
            table,
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            reject_unknown_fields: config.reject_unknown_fields,
            metrics: gateway_metrics,
            keys: ApiKeys::from_config(config),
            limiter,
            client_ip_throttle: config.client_ip_throttle,
            jwt,
            cors: config.cors.as_ref().map(Cors::new),
            trusted_proxies: config.trusted_proxies.clone(),
            validator,
            openapi,
            console,
            tls: tls.is_some(),
            draining: std::sync::atomic::AtomicBool::new(false),
        };
        Ok(Self {
            local_addr: local_addr(&listener, config.listen)?,
            admin_addr: local_addr(&admin_listener, config.admin_listen)?,
            listener,
            admin_listener,
            shared: Arc::new(shared),
            metrics,
            readiness: Readiness::default(),
            shutdown_grace: config.shutdown_grace,
            tls,
        })
    }

    /// The REST listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address (`/live`, `/ready`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Every route, most specific first, as
    /// `POST /v1/documents -> cloudsec.documents.v1.DocumentService/CreateDocument`.
    pub fn routes(&self) -> Vec<String> {
        self.shared
            .table
            .iter()
            .map(|(method, template, target)| {
                format!("{method} {template} -> {}", target.full_method)
            })
            .collect()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and lets
    /// requests in flight finish for up to `shutdown_grace`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), GatewayError> {
        // The admin listener outlives the drain, so probes see "not ready"
        // rather than a refused connection while requests finish.
        let admin_stop = Shutdown::new();
        let admin = tokio::spawn(
            admin::serve(
                self.admin_listener,
                self.metrics.clone(),
                self.readiness.clone(),
                admin_stop.clone(),
            )
            .instrument(tracing::Span::current()),
        );

        if let Some(jwt) = &self.shared.jwt {
            tokio::spawn(
                Arc::clone(jwt)
                    .refresh_periodically(shutdown.clone())
                    .instrument(tracing::Span::current()),
            );
        }

        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&self.shared));
        // The drain, in steps: the port closes at once (new connections are
        // refused), open connections keep serving for the drain window with
        // every HTTP/1.1 answer closing its connection, then idle ones
        // close and calls in flight finish within the grace period.
        let closing = Shutdown::new();
        let signal = shutdown.clone();
        let readiness = self.readiness.clone();
        let shared = Arc::clone(&self.shared);
        let window = DRAIN_WINDOW.min(self.shutdown_grace / 2);
        let close_port = closing.clone();
        // The peer address is the client's unless a trusted proxy says
        // otherwise.
        let app = app.into_make_service_with_connect_info::<PeerAddr>();
        let listener =
            PublicListener::new(self.listener, self.local_addr, self.tls.clone(), closing);
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                signal.cancelled().await;
                readiness.set(false);
                shared
                    .draining
                    .store(true, std::sync::atomic::Ordering::Release);
                close_port.cancel();
                tokio::time::sleep(window).await;
            })
            .into_future();
        self.readiness.set(true);
        tracing::info!(
            addr = %self.local_addr,
            tls = self.tls.is_some(),
            admin = %self.admin_addr,
            routes = self.shared.table.iter().count(),
            "gateway serving"
        );

        let grace = self.shutdown_grace;
        let result = tokio::select! {
            result = server => result.map_err(GatewayError::Serve),
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "grace period over, dropping requests still in flight");
                Ok(())
            }
        };
        self.readiness.set(false);
        admin_stop.cancel();
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "admin listener failed"),
            Err(error) => tracing::warn!(%error, "admin listener task failed"),
        }
        tracing::info!("gateway stopped");
        result
    }
}

/// The client's request id when it is sane, else a fresh UUID: ids end up
/// in logs and headers, so arbitrary bytes are not passed on.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| sane_request_id(s))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

fn sane_request_id(s: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// API Gateway's HTTP API ids are base64 (`J4VkMhyRoAMEJIQ=`), so a
/// trusted proxy's id may also carry `=`, `+` and `/`, still harmless in
/// headers and logs.
fn sane_proxy_request_id(s: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:=+/".contains(&b))
}

/// Who the edge checks found the caller to be, for the access log.
#[derive(Debug, Default)]
struct Caller {
    key_id: Option<String>,
    subject: Option<String>,
}

/// 413 before reading when the client announces too much.
pub(crate) fn check_content_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    match announced {
        Some(n) if n > limit as u64 => Err(ApiError::payload_too_large(limit)),
        _ => Ok(()),
    }
}

/// A body must be JSON (`application/json` or a `+json` type).
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::unsupported_media_type(None));
    };
    let text = value.to_str().unwrap_or_default();
    let media = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(Some(text)))
    }
}

/// How much of an oversized body the gateway reads and throws away before
/// answering 413. An HTTP/1.1 client that writes its whole body before it
/// reads (most do) would otherwise see a broken pipe instead of the 413;
/// beyond this the connection is closed, so a hostile upload costs at most
/// this much bandwidth and no memory.
const DISCARD_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads at most `limit` bytes, whatever Content-Length said. Past the
/// limit (or when Content-Length already announced too much) the rest, up
/// to [`DISCARD_LIMIT`], is read and dropped so the client gets the 413.
async fn read_body(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if check_content_length(headers, limit).is_err() {
        if announced.is_some_and(|n| n <= DISCARD_LIMIT) {
            discard(body, DISCARD_LIMIT).await;
        }
        return Err(ApiError::payload_too_large(limit));
    }
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            tracing::debug!(%error, "cannot read request body");
            ApiError::invalid_argument("cannot read the request body")
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buffer.len() + data.len() > limit {
            discard(
                body,
                DISCARD_LIMIT.saturating_sub((buffer.len() + data.len()) as u64),
            )
            .await;
            return Err(ApiError::payload_too_large(limit));
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// Reads and drops up to `budget` bytes of `body`.
async fn discard(mut body: Body, budget: u64) {
    let mut seen = 0u64;
    while seen <= budget {
        match body.frame().await {
            Some(Ok(frame)) => {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

/// The largest `authorization` header forwarded; access tokens are ~1 KiB.
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let _in_flight = crate::concurrency::enter();
    let started = Instant::now();
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|info| info.0.0);
    let client = client_info(
        peer,
        request.headers(),
        &shared.trusted_proxies,
        sane_proxy_request_id,
    );
    let request_id = client
        .proxy_request_id
        .clone()
        .unwrap_or_else(|| request_id(request.headers()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let origin = request.headers().get(header::ORIGIN).cloned();
    let presented_credentials = request.headers().contains_key(header::AUTHORIZATION);
    let http1 = request.version() < http::Version::HTTP_2;
    let preflight = shared.cors.is_some() && cors::is_preflight(&method, request.headers());
    let mut caller = Caller::default();

    let matched = shared.table.find(&method, &path);
    let labels = match &matched {
        Match::Found { template, .. } => RouteLabels {
            route: template.as_str().to_owned(),
            method: method.as_str().to_owned(),
        },
        // Clients choose any method token; only the usual ones get their
        // own label.
        _ => RouteLabels {
            route: UNMATCHED.to_owned(),
            method: match method {
                Method::GET
                | Method::POST
                | Method::PUT
                | Method::PATCH
                | Method::DELETE
                | Method::HEAD
                | Method::OPTIONS => method.as_str().to_owned(),
                _ => "OTHER".to_owned(),
            },
        },
    };
    shared.metrics.requests.get_or_create(&labels).inc();

    let mut response = match (matched, &shared.cors) {
        (_, Some(cors)) if preflight => {
            let methods = shared.table.methods(&path);
            if methods.is_empty() {
                ApiError::not_found(&path).into_response()
            } else {
                let response = cors.preflight(request.headers(), &methods);
                if response.status() == StatusCode::FORBIDDEN {
                    shared.metrics.reject(&labels, "cors");
                }
                response
            }
        }
        (Match::NotFound, _) if path == OPENAPI_PATH && method == Method::GET => {
            match &shared.openapi {
                Some(document) => (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    document.clone(),
                )
                    .into_response(),
                None => ApiError::not_found(&path).into_response(),
            }
        }
        (Match::NotFound, _) => shared
            .console
            .as_ref()
            .and_then(|console| console.serve(&method, &path))
            .unwrap_or_else(|| ApiError::not_found(&path).into_response()),
        (Match::MethodNotAllowed { allowed }, _) => {
            ApiError::method_not_allowed(&method, allowed).into_response()
        }
        (
            Match::Found {
                template,
                target,
                captures,
            },
            _,
        ) => {
            let context = CallContext {
                request_id: &request_id,
                client: &client,
                labels: &labels,
            };
            shared
                .call(target, template, &captures, request, &context, &mut caller)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
    };
    crate::error::challenge(&mut response, presented_credentials);
    if http1 && shared.draining.load(std::sync::atomic::Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(cors) = &shared.cors
        && !preflight
    {
        cors.decorate(origin.as_ref(), &mut response);
    }

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status();
    let elapsed = started.elapsed();
    shared
        .metrics
        .responses
        .get_or_create(&ResponseLabels {
            route: labels.route.clone(),
            method: labels.method.clone(),
            status: status.as_str().to_owned(),
        })
        .inc();
    shared
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "cloudsec_gateway::access",
        request_id = %request_id,
        method = %method,
        route = %labels.route,
        status = status.as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        client_ip = %client.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        scheme = client
            .scheme
            .or(shared.tls.then_some("https"))
            .unwrap_or_default(),
        key_id = caller.key_id.as_deref().unwrap_or_default(),
        subject = caller.subject.as_deref().unwrap_or_default(),
        "request"
    );
    response
}

/// What a routed request carries into [`Shared::call`].
struct CallContext<'a> {
    request_id: &'a str,
    client: &'a ClientInfo,
    labels: &'a RouteLabels,
}

impl Shared {
    /// The API key, the limits and the JWT authorizer, in that order.
    async fn edge(
        &self,
        target: &Target,
        template: &PathTemplate,
        headers: &HeaderMap,
        context: &CallContext<'_>,
        caller: &mut Caller,
    ) -> Result<(), ApiError> {
        let labels = context.labels;
        let key = if target.edge.api_key {
            let Some(presented) = headers.get(API_KEY) else {
                self.metrics.reject(labels, "api_key_missing");
                return Err(ApiError::permission_denied(
                    "this route requires an API key in the X-API-Key header",
                ));
            };
            let Some(key) = self.keys.identify(presented.as_bytes()) else {
                self.metrics.reject(labels, "api_key_invalid");
                return Err(ApiError::permission_denied("the API key is not valid"));
            };
            caller.key_id = Some(key.id.clone());
            Some(key)
        } else {
            None
        };

        let mut limits = Vec::new();
        if let (Some(throttle), Some(ip)) = (&self.client_ip_throttle, context.client.ip) {
            limits.push(Limit::Bucket {
                key: format!("ip:{ip}"),
                rate: throttle.rate,
                burst: throttle.burst,
                kind: LimitKind::ClientIp,
            });
        }
        if let Some(throttle) = &target.edge.throttle {
            limits.push(Limit::Bucket {
                key: format!("route:{} {template}", labels.method),
                rate: throttle.rate,
                burst: throttle.burst,
                kind: LimitKind::Route,
            });
        }
        if let Some(key) = key {
            limits.push(Limit::Bucket {
                key: format!("key:{}", key.id),
                rate: key.plan.rate,
                burst: key.plan.burst,
                kind: LimitKind::KeyRate,
            });
            limits.extend(crate::limits::quota_limits(
                &key.id,
                key.plan.quota_per_day,
                key.plan.quota_per_month,
                self.limiter.now(),
            ));
        }
        if let Decision::Deny { retry_after, limit } = self.limiter.check(&limits).await {
            self.metrics
                .throttled
                .get_or_create(&ThrottleLabels {
                    route: labels.route.clone(),
                    method: labels.method.clone(),
                    limit: limit.as_str().to_owned(),
                })
                .inc();
            self.metrics.reject(labels, "throttled");
            let mut error = ApiError::too_many_requests(limit.as_str(), retry_after);
            if limit.is_quota() {
                let period = if limit == LimitKind::KeyDay {
                    "day"
                } else {
                    "month"
                };
                error.details.push(serde_json::json!({
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "subject": format!("api_key:{}", caller.key_id.as_deref().unwrap_or_default()),
                        "description": format!("the API key's quota for this {period} is used up"),
                    }],
                }));
            }
            return Err(error);
        }

        if let Some(jwt) = &self.jwt
            && !target.edge.public
        {
            match jwt.authorize(headers, &target.edge.scopes).await {
                Ok(claims) => caller.subject = Some(claims.sub),
                Err(error) => {
                    let reason = match error.status {
                        StatusCode::UNAUTHORIZED => "unauthenticated",
                        StatusCode::FORBIDDEN => "forbidden",
                        _ => "jwks_unavailable",
                    };
                    self.metrics.reject(labels, reason);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    async fn call(
        &self,
        target: &Target,
        template: &PathTemplate,
        captures: &[String],
        request: Request<Body>,
        context: &CallContext<'_>,
        caller: &mut Caller,
    ) -> Result<Response, ApiError> {
        let request_id = context.request_id;
        let (parts, body) = request.into_parts();
        self.edge(target, template, &parts.headers, context, caller)
            .await?;
        let rejected = |reason: &str, error: ApiError| {
            self.metrics.reject(context.labels, reason);
            error
        };
        let body = read_body(&parts.headers, body, self.max_body_bytes)
            .await
            .map_err(|e| rejected("body_too_large", e))?;
        if !body.is_empty() {
            if !target.binding.has_body() {
                return Err(rejected(
                    "invalid_request",
                    ApiError::invalid_argument(format!(
                        "{} {template} takes no request body",
                        parts.method
                    )),
                ));
            }
            check_content_type(&parts.headers)
                .map_err(|e| rejected("unsupported_media_type", e))?;
        }
        let message = target
            .binding
            .request(
                captures,
                parts.uri.query(),
                &body,
                self.reject_unknown_fields,
            )
            .map_err(|e| rejected("invalid_request", ApiError::invalid_argument(e)))?;
        if let Some(validator) = &self.validator {
            let violations = validator.violations(&message);
            if !violations.is_empty() {
                let reason = if violations.iter().any(|v| v.missing) {
                    "missing_required"
                } else {
                    "invalid_field"
                };
                return Err(rejected(reason, invalid_fields(&violations)));
            }
        }

        let span = tracing::info_span!(
            "gateway.request",
            otel.name = %target.full_method,
            otel.kind = "client",
            rpc.system = "grpc",
            http.route = %template,
            http.request.method = %parts.method,
            request_id = %request_id,
        );
        telemetry::extract(&parts.headers, &span);
        let request = self.grpc_request(
            message,
            &parts.headers,
            request_id,
            context.client.ip,
            &span,
        )?;
        if target.streaming {
            let format = Format::from_accept(&parts.headers);
            return self
                .server_streaming(target, request, format)
                .instrument(span)
                .await;
        }
        match self.unary(target, request).instrument(span).await? {
            Ok(response) => {
                let (metadata, reply, _) = response.into_parts();
                let json = target.binding.response(&reply).map_err(|error| {
                    tracing::error!(%error, method = %target.full_method, "cannot render response");
                    ApiError::internal()
                })?;
                let status = target.ok_status();
                let mut response = json_response(status, json);
                append_metadata(&mut response, &metadata);
                Ok(response)
            }
            Err(status) => self.failure(target, status),
        }
    }

    /// The upstream request: the message with the metadata the service
    /// may see and the deadline.
    fn grpc_request(
        &self,
        message: DynamicMessage,
        headers: &HeaderMap,
        request_id: &str,
        client_ip: Option<std::net::IpAddr>,
        span: &tracing::Span,
    ) -> Result<tonic::Request<DynamicMessage>, ApiError> {
        // Metadata is built from an allowlist, so hop-by-hop headers
        // (connection, te, upgrade, ...) and anything else the client sent
        // never reach the service.
        let mut metadata = HeaderMap::new();
        if let Some(authorization) = headers.get(header::AUTHORIZATION) {
            // Services refuse large header blocks at the HTTP/2 layer, which
            // would surface as an opaque upstream failure; answer here.
            if authorization.len() > MAX_AUTHORIZATION_BYTES {
                return Err(ApiError::header_too_large(
                    "authorization",
                    MAX_AUTHORIZATION_BYTES,
                ));
            }
            metadata.insert(header::AUTHORIZATION, authorization.clone());
        }
        forward_grpc_metadata(headers, &mut metadata)?;
        if let Ok(value) = HeaderValue::from_str(request_id) {
            metadata.insert(REQUEST_ID, value);
        }
        // The address the gateway believes (see `client`), for limits the
        // services keep per client, such as failed logins per IP.
        if let Some(value) = client_ip.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
            metadata.insert(CLIENT_IP, value);
        }
        telemetry::inject(span, &mut metadata);
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(metadata);
        request.set_timeout(self.request_timeout);
        Ok(request)
    }

    /// A unary call: the outer error is the gateway's own (the call took
    /// longer than `request_timeout`), the inner one what the call
    /// returned.
    async fn unary(
        &self,
        target: &Target,
        request: tonic::Request<DynamicMessage>,
    ) -> Result<Result<tonic::Response<DynamicMessage>, tonic::Status>, ApiError> {
        let mut grpc = tonic::client::Grpc::new(target.channel.clone());
        let codec = DynamicCodec::new(target.method.output());
        let call = async {
            grpc.ready()
                .await
                .map_err(|error| tonic::Status::from_error(Box::new(error)))?;
            grpc.unary(request, target.grpc_path.clone(), codec).await
        };
        tokio::time::timeout(self.request_timeout, call)
            .await
            .map_err(|_| {
                tracing::warn!(method = %target.full_method, "upstream timed out");
                ApiError::deadline_exceeded(self.request_timeout)
            })
    }

    /// A server-streaming call: the status and headers once the service
    /// has answered, then the messages as they come.
    async fn server_streaming(
        &self,
        target: &Target,
        request: tonic::Request<DynamicMessage>,
        format: Format,
    ) -> Result<Response, ApiError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut grpc = tonic::client::Grpc::new(target.channel.clone());
        let codec = DynamicCodec::new(target.method.output());
        let call = async {
            grpc.ready()
                .await
                .map_err(|error| tonic::Status::from_error(Box::new(error)))?;
            grpc.server_streaming(request, target.grpc_path.clone(), codec)
                .await
        };
        let started = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(started)) => started,
            Ok(Err(status)) => return self.failure(target, status),
            Err(_) => {
                tracing::warn!(method = %target.full_method, "upstream timed out");
                return Err(ApiError::deadline_exceeded(self.request_timeout));
            }
        };
        let (metadata, messages, _) = started.into_parts();
        let body = stream::body(stream::Upstream {
            messages,
            binding: Arc::clone(&target.binding),
            format,
            deadline,
            timeout: self.request_timeout,
            method: target.full_method.clone(),
        });
        let mut response = Response::new(body);
        // A stream always has a body, which 204 and 205 forbid.
        *response.status_mut() = match target.ok_status() {
            StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT => StatusCode::OK,
            status => status,
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        if format == Format::Sse {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        append_metadata(&mut response, &metadata);
        Ok(response)
    }

    /// The answer to a failed call: the route's status override for what
    /// the service said, else the status table. A 2xx override turns the
    /// failure into an empty success (`{}`, or nothing for 204).
    fn failure(&self, target: &Target, status: tonic::Status) -> Result<Response, ApiError> {
        use std::error::Error as _;
        let from_service = status.source().is_none();
        let overridden = target
            .edge
            .status_overrides
            .get(&(status.code() as i32))
            .filter(|_| from_service);
        match overridden {
            Some(http) if http.is_success() => {
                let mut response = json_response(*http, b"{}".to_vec());
                append_metadata(&mut response, status.metadata());
                Ok(response)
            }
            Some(http) => {
                let mut error = self.classify(target, status);
                error.status = *http;
                Err(error)
            }
            None => Err(self.classify(target, status)),
        }
    }

    fn classify(&self, target: &Target, status: tonic::Status) -> ApiError {
        use std::error::Error as _;
        let mut error = upstream_failure(&target.full_method, self.request_timeout, &status);
        if status.source().is_none() {
            error.headers.extend(metadata_headers(status.metadata()));
        }
        error
    }
}

/// A JSON response; 204 and 205 carry no body (nor a content type), as
/// HTTP requires.
fn json_response(status: StatusCode, json: Vec<u8>) -> Response {
    if status == StatusCode::NO_CONTENT || status == StatusCode::RESET_CONTENT {
        return status.into_response();
    }
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response()
}

fn append_metadata(response: &mut Response, metadata: &tonic::metadata::MetadataMap) {
    for (name, value) in metadata_headers(metadata) {
        response.headers_mut().append(name, value);
    }
}

/// The 400 for fields that break the contract: one message naming them,
/// and every violation as `BadRequest` details.
fn invalid_fields(violations: &[Violation]) -> ApiError {
    let names = |missing: bool| -> Vec<&str> {
        violations
            .iter()
            .filter(|v| v.missing == missing)
            .map(|v| v.field.as_str())
            .collect()
    };
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut parts = Vec::new();
    let missing = names(true);
    if !missing.is_empty() {
        parts.push(format!(
            "missing required field{}: {}",
            plural(missing.len()),
            missing.join(", ")
        ));
    }
    let invalid = names(false);
    if !invalid.is_empty() {
        parts.push(format!(
            "invalid field{}: {}",
            plural(invalid.len()),
            invalid.join(", ")
        ));
    }
    let pairs: Vec<(String, String)> = violations
        .iter()
        .map(|v| (v.field.clone(), v.description.clone()))
        .collect();
    ApiError::bad_request(parts.join("; "), &pairs)
}

/// The most client metadata (`Grpc-Metadata-*`, names and values) sent
/// upstream: services refuse large header blocks at the HTTP/2 layer.
const MAX_FORWARDED_METADATA_BYTES: usize = 8 * 1024;

const GRPC_METADATA: &str = "grpc-metadata-";

/// Metadata the gateway sets itself or that belongs to the transport;
/// a client cannot set it through `Grpc-Metadata-*`, and a service's is
/// not echoed back as `Grpc-Metadata-*`.
/// The client's address, as the gateway believes it, for the services.
const CLIENT_IP: &str = "x-cloudsec-client-ip";

fn reserved_metadata(key: &str) -> bool {
    key.starts_with("grpc-")
        || key.ends_with("-bin")
        || matches!(
            key,
            "authorization"
                | "x-request-id"
                | "x-cloudsec-client-ip"
                | "traceparent"
                | "tracestate"
                | "content-type"
                | "te"
                | "user-agent"
                | "host"
                | "connection"
                | "upgrade"
                | "keep-alive"
                | "proxy-authorization"
                | "transfer-encoding"
                | "date"
                | "server"
        )
}

/// `Grpc-Metadata-Foo: bar` becomes the metadata `foo: bar`, as in
/// grpc-gateway; reserved keys are skipped.
fn forward_grpc_metadata(headers: &HeaderMap, metadata: &mut HeaderMap) -> Result<(), ApiError> {
    let mut total = 0usize;
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(GRPC_METADATA) else {
            continue;
        };
        if key.is_empty() || reserved_metadata(key) {
            continue;
        }
        total = total.saturating_add(key.len() + value.len());
        if total > MAX_FORWARDED_METADATA_BYTES {
            return Err(ApiError::header_too_large(
                "grpc-metadata-*",
                MAX_FORWARDED_METADATA_BYTES,
            ));
        }
        if let Ok(name) = http::HeaderName::from_bytes(key.as_bytes()) {
            metadata.append(name, value.clone());
        }
    }
    Ok(())
}

/// A service's response metadata as `Grpc-Metadata-<key>` headers.
fn metadata_headers(
    metadata: &tonic::metadata::MetadataMap,
) -> Vec<(http::HeaderName, HeaderValue)> {
    metadata
        .clone()
        .into_headers()
        .iter()
        .filter(|(name, _)| !reserved_metadata(name.as_str()))
        .filter_map(|(name, value)| {
            let name =
                http::HeaderName::from_bytes(format!("{GRPC_METADATA}{name}").as_bytes()).ok()?;
            Some((name, value.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn grpc_metadata_headers_go_both_ways_except_reserved_ones() {
        let h = headers(&[
            ("grpc-metadata-tenant-hint", "acme"),
            ("grpc-metadata-authorization", "Bearer forged"),
            ("grpc-metadata-grpc-timeout", "1S"),
            ("grpc-metadata-x-request-id", "forged"),
            ("grpc-metadata-", "empty"),
            ("x-other", "dropped"),
        ]);
        let mut out = HeaderMap::new();
        forward_grpc_metadata(&h, &mut out).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["tenant-hint"], "acme");

        let big = HeaderValue::from_str(&"x".repeat(9000)).unwrap();
        let h: HeaderMap = [(http::HeaderName::from_static("grpc-metadata-big"), big)]
            .into_iter()
            .collect();
        let error = forward_grpc_metadata(&h, &mut HeaderMap::new()).unwrap_err();
        assert_eq!(error.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

        let md = tonic::metadata::MetadataMap::from_headers(headers(&[
            ("x-served-by", "echo-1"),
            ("content-type", "application/grpc"),
            ("grpc-status", "0"),
        ]));
        let out = metadata_headers(&md);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "grpc-metadata-x-served-by");
    }

    #[test]
    fn content_length_over_the_limit_is_413() {
        assert!(check_content_length(&headers(&[]), 10).is_ok());
        assert!(check_content_length(&headers(&[("content-length", "10")]), 10).is_ok());
        let error = check_content_length(&headers(&[("content-length", "11")]), 10).unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn bodies_are_cut_off_at_the_limit_whatever_the_headers_say() {
        let error = read_body(&HeaderMap::new(), Body::from(vec![b'x'; 11]), 10)
            .await
            .unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            read_body(&HeaderMap::new(), Body::from("{}"), 10)
                .await
                .unwrap(),
            "{}"
        );
    }

    #[test]
    fn only_json_bodies_are_accepted() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            let h: HeaderMap = [(header::CONTENT_TYPE, HeaderValue::from_static(ok))]
                .into_iter()
                .collect();
            assert!(check_content_type(&h).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/xml",
        ] {
            let h: HeaderMap = [(header::CONTENT_TYPE, HeaderValue::from_static(bad))]
                .into_iter()
                .collect();
            let error = check_content_type(&h).unwrap_err();
            assert_eq!(error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert!(error.message.contains(bad));
        }
        assert_eq!(
            check_content_type(&HeaderMap::new()).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert_eq!(
            request_id(&headers(&[("x-request-id", "abc-1.2:3_4")])),
            "abc-1.2:3_4"
        );
        for bad in ["", "has space", "semi;colon"] {
            let h: HeaderMap = [(
                http::HeaderName::from_static(REQUEST_ID),
                HeaderValue::from_static(bad),
            )]
            .into_iter()
            .collect();
            let id = request_id(&h);
            assert_ne!(id, bad);
            assert!(uuid::Uuid::parse_str(&id).is_ok());
        }
        let long = "a".repeat(129);
        let h: HeaderMap = [(
            http::HeaderName::from_static(REQUEST_ID),
            HeaderValue::from_str(&long).unwrap(),
        )]
        .into_iter()
        .collect();
        assert_eq!(request_id(&h).len(), 36);
        assert!(uuid::Uuid::parse_str(&request_id(&HeaderMap::new())).is_ok());
    }

    #[tokio::test]
    async fn platform_contracts_route_only_where_an_upstream_is_configured() {
        let mut config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ..GatewayConfig::default()
        };
        config.upstreams.insert(
            "cloudsec.documents.v1.DocumentService".into(),
            crate::Upstream {
                uri: "https://127.0.0.1:1".into(),
                server_name: "documents.default.svc".into(),
            },
        );
        use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
        let ca = LocalCa::generate().unwrap();
        let id = SpiffeId::new("cloudsec.local", "default", "gateway").unwrap();
        let mesh = ca
            .issue(&id, Duration::from_secs(600))
            .await
            .unwrap()
            .mesh_tls();
        let gateway = Gateway::build(&config, &[cloudsec_proto::FILE_DESCRIPTOR_SET], mesh)
            .await
            .unwrap();
        let routes = gateway.routes();
        for expected in [
            "POST /v1/documents -> cloudsec.documents.v1.DocumentService/CreateDocument",
            "GET /v1/documents/{id} -> cloudsec.documents.v1.DocumentService/GetDocument",
            "PATCH /v1/documents/{document.id} -> cloudsec.documents.v1.DocumentService/UpdateDocument",
        ] {
            assert!(routes.contains(&expected.to_owned()), "{routes:#?}");
        }
        assert!(
            !routes.iter().any(|r| r.contains("AuthService")),
            "{routes:#?}"
        );
        assert_ne!(gateway.local_addr().port(), 0);
        assert_ne!(gateway.admin_addr().port(), 0);
    }
}
