//! The gateway itself: building the route table from descriptors, the
//! request handler, the upstream call and the serving loop.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
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
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prost_reflect::{DescriptorPool, DynamicMessage, ExtensionDescriptor, MethodDescriptor};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::codec::DynamicCodec;
use crate::config::GatewayConfig;
use crate::error::{ApiError, GatewayError};
use crate::routes::{Match, PathTemplate, RouteTable};
use crate::transcode::Binding;

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
    binding: Binding,
    method: MethodDescriptor,
    channel: Channel,
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

#[derive(Clone, Debug)]
struct GatewayMetrics {
    requests: Family<RouteLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
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
        this
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
}

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

fn merge_pools(descriptor_sets: &[&[u8]]) -> Result<DescriptorPool, GatewayError> {
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
fn http_rules(
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

fn pattern(rule: &HttpRule) -> Result<(Method, &str), String> {
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

fn build_table(
    pool: &DescriptorPool,
    config: &GatewayConfig,
    mesh: &MeshTls,
) -> Result<RouteTable<Target>, GatewayError> {
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
        channels.insert(service.as_str(), channel);
    }

    let mut table = RouteTable::default();
    let Some(extension) = pool.get_extension_by_name("google.api.http") else {
        tracing::warn!("no descriptor imports google/api/annotations.proto: no routes");
        return Ok(table);
    };
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
            if method.is_client_streaming() || method.is_server_streaming() {
                tracing::warn!(
                    method = method.full_name(),
                    "streaming methods are not transcoded: no route"
                );
                continue;
            }
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
                let binding = Binding::new(&method, &template, &rule.body, &rule.response_body)
                    .map_err(|r| bad(path, r))?;
                table.insert(
                    http_method,
                    template,
                    Target {
                        full_method: full_method.clone(),
                        grpc_path: grpc_path.clone(),
                        binding,
                        method: method.clone(),
                        channel: channel.clone(),
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
        let pool = merge_pools(descriptor_sets)?;
        let table = build_table(&pool, config, &mesh)?;
        let listener = bind(config.listen).await?;
        let admin_listener = bind(config.admin_listen).await?;
        let metrics = Metrics::new("gateway");
        let shared = Shared {
            table,
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            reject_unknown_fields: config.reject_unknown_fields,
            metrics: GatewayMetrics::register(&metrics),
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

        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&self.shared));
        let signal = shutdown.clone();
        let readiness = self.readiness.clone();
        let server = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                signal.cancelled().await;
                readiness.set(false);
            })
            .into_future();
        self.readiness.set(true);
        tracing::info!(
            addr = %self.local_addr,
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
        .filter(|s| {
            (1..=MAX_REQUEST_ID).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
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

/// Reads at most `limit` bytes, whatever Content-Length said.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(error) => {
            tracing::debug!(%error, "cannot read request body");
            Err(ApiError::invalid_argument("cannot read the request body"))
        }
    }
}

/// The largest `authorization` header forwarded; access tokens are ~1 KiB.
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();

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

    let mut response = match matched {
        Match::NotFound => ApiError::not_found(&path).into_response(),
        Match::MethodNotAllowed { allowed } => {
            ApiError::method_not_allowed(&method, allowed).into_response()
        }
        Match::Found {
            template,
            target,
            captures,
        } => shared
            .call(target, template, &captures, request, &request_id)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    };

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
        "request"
    );
    response
}

impl Shared {
    async fn call(
        &self,
        target: &Target,
        template: &PathTemplate,
        captures: &[String],
        request: Request<Body>,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        let (parts, body) = request.into_parts();
        check_content_length(&parts.headers, self.max_body_bytes)?;
        let body = read_body(body, self.max_body_bytes).await?;
        if !body.is_empty() {
            if !target.binding.has_body() {
                return Err(ApiError::invalid_argument(format!(
                    "{} {template} takes no request body",
                    parts.method
                )));
            }
            check_content_type(&parts.headers)?;
        }
        let message = target
            .binding
            .request(
                captures,
                parts.uri.query(),
                &body,
                self.reject_unknown_fields,
            )
            .map_err(ApiError::invalid_argument)?;

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
        let reply = self
            .upstream(target, message, &parts.headers, request_id, &span)
            .instrument(span.clone())
            .await?;
        let json = target.binding.response(&reply).map_err(|error| {
            tracing::error!(%error, method = %target.full_method, "cannot render response");
            ApiError::internal()
        })?;
        Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response())
    }

    async fn upstream(
        &self,
        target: &Target,
        message: DynamicMessage,
        headers: &HeaderMap,
        request_id: &str,
        span: &tracing::Span,
    ) -> Result<DynamicMessage, ApiError> {
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
        if let Ok(value) = HeaderValue::from_str(request_id) {
            metadata.insert(REQUEST_ID, value);
        }
        telemetry::inject(span, &mut metadata);
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(metadata);
        request.set_timeout(self.request_timeout);

        let mut grpc = tonic::client::Grpc::new(target.channel.clone());
        let codec = DynamicCodec::new(target.method.output());
        let call = async {
            grpc.ready()
                .await
                .map_err(|error| tonic::Status::from_error(Box::new(error)))?;
            grpc.unary(request, target.grpc_path.clone(), codec).await
        };
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.classify(target, status)),
            Err(_) => {
                tracing::warn!(method = %target.full_method, "upstream timed out");
                Err(ApiError::deadline_exceeded(self.request_timeout))
            }
        }
    }

    /// A status with a source was made here (connect, TLS or h2 failure),
    /// not sent by the service: its text is for the log, not the client.
    fn classify(&self, target: &Target, status: tonic::Status) -> ApiError {
        use std::error::Error as _;
        if let Some(cause) = status.source() {
            tracing::warn!(
                method = %target.full_method,
                code = ?status.code(),
                error = %status.message(),
                %cause,
                "upstream call failed"
            );
            return match status.code() {
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                    ApiError::deadline_exceeded(self.request_timeout)
                }
                _ => ApiError::unavailable(),
            };
        }
        ApiError::from_upstream(&status)
    }
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
    fn content_length_over_the_limit_is_413() {
        assert!(check_content_length(&headers(&[]), 10).is_ok());
        assert!(check_content_length(&headers(&[("content-length", "10")]), 10).is_ok());
        let error = check_content_length(&headers(&[("content-length", "11")]), 10).unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn bodies_are_cut_off_at_the_limit_whatever_the_headers_say() {
        let error = read_body(Body::from(vec![b'x'; 11]), 10).await.unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(read_body(Body::from("{}"), 10).await.unwrap(), "{}");
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
