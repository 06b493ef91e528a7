//! Inbound: terminate mTLS, authorize the peer, hand its verified identity
//! to the application and forward on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use cloudsec_identity::SpiffeId;
use cloudsec_runtime::metrics::GrpcMetricsService;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service, ServiceExt};

use crate::authz::{Authorizer, Decision};
use crate::io::{AppConnector, Handler, Http2Connection};
use crate::policy::{ProxyBody, grpc_error};

/// The header that carries the caller's verified SPIFFE id to the
/// application. Anything a client sends under this name is dropped first,
/// so the application can trust it.
pub const PEER_IDENTITY: &str = "x-cloudsec-peer-identity";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthzLabels {
    decision: &'static str,
}

/// A connected peer: its verified identity, and the header value that
/// carries it, rendered once per connection rather than per request.
#[derive(Debug)]
pub(crate) struct Peer {
    id: SpiffeId,
    header: Option<http::HeaderValue>,
}

impl Peer {
    pub(crate) fn new(id: SpiffeId) -> Arc<Self> {
        // A SPIFFE id is visible ASCII, which a header value accepts.
        let header = http::HeaderValue::from_str(&id.to_string()).ok();
        Arc::new(Self { id, header })
    }
}

/// The authorization counters, one per decision, looked up once.
#[derive(Clone)]
struct Decisions {
    allow: Counter,
    deny: Counter,
    audit_deny: Counter,
}

#[derive(Clone)]
pub(crate) struct Inbound {
    app: SocketAddr,
    /// `app` as a URI authority, parsed once.
    authority: http::uri::Authority,
    authz: Arc<Authorizer>,
    decisions: Decisions,
    /// The metrics layer over the application client, made once: making
    /// the layer looks up the in-flight gauge.
    service: GrpcMetricsService<Http2Connection<AppConnector>>,
}

impl Inbound {
    pub(crate) fn new(
        app: SocketAddr,
        authz: Authorizer,
        metrics: &cloudsec_runtime::metrics::Metrics,
    ) -> Result<Self, http::uri::InvalidUri> {
        let family = Family::<AuthzLabels, Counter>::default();
        metrics.register(
            "inbound_authz",
            "authorization decisions: allow, deny, audit_deny",
            family.clone(),
        );
        let decision = |decision| family.get_or_create(&AuthzLabels { decision }).clone();
        let decisions = Decisions {
            allow: decision("allow"),
            deny: decision("deny"),
            audit_deny: decision("audit_deny"),
        };
        Ok(Self {
            app,
            authority: app.to_string().parse()?,
            authz: Arc::new(authz),
            decisions,
            // The connector sets TCP_NODELAY on this loopback hop.
            service: metrics
                .traffic("inbound")
                .layer()
                .layer(Http2Connection::new(AppConnector(app))),
        })
    }

    async fn forward(
        &self,
        peer: &Peer,
        request: http::Request<Incoming>,
    ) -> http::Response<ProxyBody> {
        let path = request.uri().path();
        match self.authz.decide(&peer.id, path) {
            Decision::Allow => {
                self.decisions.allow.inc();
            }
            Decision::AuditDeny => {
                self.decisions.audit_deny.inc();
                tracing::warn!(peer = %peer.id, %path, "authorization would deny (audit mode)");
            }
            Decision::Deny => {
                self.decisions.deny.inc();
                tracing::info!(peer = %peer.id, %path, "authorization denied");
                return grpc_error(
                    tonic::Code::PermissionDenied,
                    &format!("{} may not call {path}", peer.id),
                );
            }
        };

        let (mut parts, body) = request.into_parts();
        parts.headers.remove(PEER_IDENTITY);
        if let Some(value) = &peer.header {
            parts.headers.insert(PEER_IDENTITY, value.clone());
        }
        // The application's address with the request's own path: built from
        // parts, so nothing is formatted or parsed again.
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = match http::Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(_) => return grpc_error(tonic::Code::InvalidArgument, "bad request path"),
        };
        let request = http::Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        let mut service = self.service.clone();
        match service.ready().await {
            Ok(s) => match s.call(request).await {
                Ok(response) => response.map(|b| b.boxed_unsync()),
                Err(error) => {
                    tracing::warn!(%error, app = %self.app, "application unreachable");
                    grpc_error(tonic::Code::Unavailable, "application unavailable")
                }
            },
            Err(error) => {
                tracing::warn!(%error, "inbound stack not ready");
                grpc_error(tonic::Code::Unavailable, "application unavailable")
            }
        }
    }
}

impl Handler for Inbound {
    /// Shared by the connection's requests: cloning it costs one count.
    type Peer = Arc<Peer>;

    async fn handle(
        &self,
        peer: Arc<Peer>,
        request: http::Request<Incoming>,
    ) -> http::Response<ProxyBody> {
        self.forward(&peer, request).await
    }
}
