//! The gateway itself: building it from its configuration, the request
//! handler and the serving loop with its drain. The route table, the edge
//! checks, the body and header rules and the upstream call each have their
//! own module.
//!
//! A request passes, in order: CORS preflight (answered here), route
//! match (404/405), the API key (403), every applicable limit at once
//! (client IP, route, key bucket and quotas: 429), the JWT authorizer
//! (401/403), transcoding and required-field validation (400), then the
//! upstream call. Limits come before token verification so that floods
//! are refused before any RSA work is spent on them.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cloudsec_runtime::admin::{self, Readiness};
use cloudsec_runtime::grpc::REQUEST_ID;
use cloudsec_runtime::metrics::Metrics;
use cloudsec_runtime::shutdown::Shutdown;
use cloudsec_runtime::telemetry;
use cloudsec_runtime::tls::MeshTls;
use http::{HeaderValue, Method, Request, StatusCode, header};
use prost_reflect::DynamicMessage;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::body::{check_content_type, read_body};
use crate::client::{ClientInfo, client_info};
use crate::codec::Outgoing;
use crate::config::{GatewayConfig, Throttle};
use crate::cors::{self, Cors};
use crate::error::{ApiError, GatewayError};
use crate::headers::{request_id, sane_proxy_request_id};
use crate::jwt::{JwksSource, JwtAuthorizer};
use crate::limits::{Clock, Limiter, SystemClock};
use crate::metrics::{GatewayMetrics, Rejection, ResponseLabels, RouteLabels, ThrottleLabels};
use crate::policy::ApiKeys;
use crate::routes::{Match, PathTemplate, RouteTable};
use crate::stream::Format;
use crate::table::{Target, build_channels, build_table, descriptor_pool};
use crate::tls::{PeerAddr, PublicListener};
use crate::upstream::{append_metadata, json_response};
use crate::validate::{Validator, Violation, behavior_extension, rules_extension};

/// Where the OpenAPI document is served.
pub(crate) const OPENAPI_PATH: &str = "/openapi.json";

/// The service whose `GetJwks` feeds the JWT authorizer by default.
const AUTH_SERVICE: &str = "cloudsec.auth.v1.AuthService";

/// The route label of requests that matched no route, so that scanners
/// cannot grow the metric families with made-up paths.
const UNMATCHED: &str = "unmatched";

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) table: RouteTable<Target>,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) reject_unknown_fields: bool,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) keys: ApiKeys,
    pub(crate) limiter: Limiter,
    pub(crate) client_ip_throttle: Option<Throttle>,
    pub(crate) jwt: Option<Arc<JwtAuthorizer>>,
    pub(crate) cors: Option<Cors>,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    pub(crate) validator: Option<Validator>,
    /// The OpenAPI document of the routes served, pre-rendered.
    pub(crate) openapi: Option<Bytes>,
    /// The web console, when `console_dir` is set.
    pub(crate) console: Option<crate::console::Console>,
    /// Whether the REST listener terminates TLS.
    pub(crate) tls: bool,
    /// Set at shutdown: HTTP/1.1 answers then say `Connection: close`, so
    /// keep-alive clients leave before their connection is closed under
    /// them.
    pub(crate) draining: std::sync::atomic::AtomicBool,
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
            gateway_metrics.limiter(),
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

        let heartbeat_stop = shutdown.child_token();
        let heartbeat = tokio::spawn(cloudsec_runtime::timer::heartbeat(heartbeat_stop.clone()));
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
        heartbeat_stop.cancel();
        if let Err(error) = heartbeat.await {
            tracing::warn!(%error, "timer heartbeat task failed");
        }
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

/// Who the edge checks found the caller to be, for the access log.
#[derive(Debug, Default)]
pub(crate) struct Caller {
    pub(crate) key_id: Option<String>,
    pub(crate) subject: Option<String>,
}

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
                    shared.metrics.reject(&labels, Rejection::Cors);
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
pub(crate) struct CallContext<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) client: &'a ClientInfo,
    pub(crate) labels: &'a RouteLabels,
}

impl Shared {
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
        let rejected = |reason: Rejection, error: ApiError| {
            self.metrics.reject(context.labels, reason);
            error
        };
        let body = read_body(&parts.headers, body, self.max_body_bytes)
            .await
            .map_err(|e| rejected(Rejection::BodyTooLarge, e))?;
        if !body.is_empty() {
            if !target.binding.has_body() {
                return Err(rejected(
                    Rejection::InvalidRequest,
                    ApiError::invalid_argument(format!(
                        "{} {template} takes no request body",
                        parts.method
                    )),
                ));
            }
            check_content_type(&parts.headers)
                .map_err(|e| rejected(Rejection::UnsupportedMediaType, e))?;
        }
        let message = self
            .transcode(target, captures, parts.uri.query(), &body)
            .map_err(|(reason, error)| rejected(reason, error))?;

        // A turn upstream, for a method with a concurrency limit: held until
        // the answer is rendered or, for a stream, until it ends.
        let turn = match &target.admission {
            None => None,
            Some(admission) => Some(admission.enter().await.map_err(|why| {
                self.metrics
                    .throttled
                    .get_or_create(&ThrottleLabels {
                        route: context.labels.route.clone(),
                        method: context.labels.method.clone(),
                        limit: "route_concurrency".to_owned(),
                    })
                    .inc();
                tracing::debug!(method = %target.full_method, ?why, "not admitted");
                rejected(
                    Rejection::Throttled,
                    ApiError::too_many_requests("route concurrency", admission.retry_after()),
                )
            })?),
        };

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
                .server_streaming(target, request, format, turn)
                .instrument(span)
                .await;
        }
        match self.unary(target, request).instrument(span).await? {
            Ok(response) => {
                let (metadata, reply, _) = response.into_parts();
                let json = target.binding.render(&reply).map_err(|error| {
                    tracing::error!(%error, method = %target.full_method, "cannot render response");
                    ApiError::internal()
                })?;
                drop(turn);
                let status = target.ok_status();
                let mut response = json_response(status, json);
                append_metadata(&mut response, &metadata);
                Ok(response)
            }
            Err(status) => self.failure(target, status),
        }
    }

    /// The request for `target`: the streaming transcoder's wire bytes
    /// where the route allows it, else the reference transcoder's message;
    /// then the contract's checks. A refusal carries its metrics reason.
    fn transcode(
        &self,
        target: &Target,
        captures: &[String],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Outgoing, (Rejection, ApiError)> {
        let invalid = |e: String| (Rejection::InvalidRequest, ApiError::invalid_argument(e));
        let check = |message: &DynamicMessage| match &self.validator {
            Some(validator) => {
                let violations = validator.violations(message);
                if violations.is_empty() {
                    return Ok(());
                }
                let reason = if violations.iter().any(|v| v.missing) {
                    Rejection::MissingRequired
                } else {
                    Rejection::InvalidField
                };
                Err((reason, invalid_fields(&violations)))
            }
            None => Ok(()),
        };
        let binding = &target.binding;
        let deny = self.reject_unknown_fields;
        if let Some(bytes) = binding.request_wire(captures, query, body, deny) {
            let bytes = bytes.map_err(invalid)?;
            let input = binding.input();
            if !self.validator.as_ref().is_some_and(|v| v.checks(&input)) {
                return Ok(Outgoing::Encoded(bytes));
            }
            // The checks read a message: decoding the bytes just written
            // costs far less than parsing the JSON into one.
            match DynamicMessage::decode(input, bytes.as_slice()) {
                Ok(message) => {
                    check(&message)?;
                    return Ok(Outgoing::Encoded(bytes));
                }
                Err(error) => tracing::error!(
                    %error,
                    method = %target.full_method,
                    "the streaming transcoder wrote bytes that do not decode; using the reference transcoder"
                ),
            }
        }
        let message = binding
            .request(captures, query, body, deny)
            .map_err(invalid)?;
        check(&message)?;
        Ok(Outgoing::Message(message))
    }
}

/// The 400 for fields that break the contract: one message naming them,
/// and every violation as `BadRequest` details.
fn invalid_fields(violations: &[Violation]) -> ApiError {
    let clause = |missing: bool, what: &str| -> Option<String> {
        let names: Vec<&str> = violations
            .iter()
            .filter(|v| v.missing == missing)
            .map(|v| v.field.as_str())
            .collect();
        let plural = if names.len() == 1 { "" } else { "s" };
        (!names.is_empty()).then(|| format!("{what}{plural}: {}", names.join(", ")))
    };
    let parts: Vec<String> = [
        clause(true, "missing required field"),
        clause(false, "invalid field"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let pairs: Vec<(String, String)> = violations
        .iter()
        .map(|v| (v.field.clone(), v.description.clone()))
        .collect();
    ApiError::bad_request(parts.join("; "), &pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

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
