//! Inbound: terminate mTLS, authorize the peer, hand its verified identity
//! to the application and forward on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use cloudsec_identity::SpiffeId;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Service, ServiceExt};

use crate::authz::{Authorizer, Decision};
use crate::io::Handler;
use crate::policy::{ProxyBody, grpc_error};

/// The header that carries the caller's verified SPIFFE id to the
/// application. Anything a client sends under this name is dropped first,
/// so the application can trust it.
pub const PEER_IDENTITY: &str = "x-cloudsec-peer-identity";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthzLabels {
    decision: &'static str,
}

#[derive(Clone)]
pub(crate) struct Inbound {
    pub(crate) app: SocketAddr,
    pub(crate) client: Client<HttpConnector, ProxyBody>,
    pub(crate) authz: Arc<Authorizer>,
    pub(crate) decisions: Family<AuthzLabels, Counter>,
    pub(crate) traffic: cloudsec_runtime::metrics::Traffic,
}

impl Inbound {
    pub(crate) fn new(
        app: SocketAddr,
        authz: Authorizer,
        metrics: &cloudsec_runtime::metrics::Metrics,
    ) -> Self {
        let decisions = Family::<AuthzLabels, Counter>::default();
        metrics.register(
            "inbound_authz",
            "authorization decisions: allow, deny, audit_deny",
            decisions.clone(),
        );
        // Without TCP_NODELAY, Nagle's algorithm holds small gRPC frames back
        // for up to 40 ms on this loopback hop.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_only(true)
            .build(connector);
        Self {
            app,
            client,
            authz: Arc::new(authz),
            decisions,
            traffic: metrics.traffic("inbound"),
        }
    }

    async fn forward(
        &self,
        peer: SpiffeId,
        request: http::Request<Incoming>,
    ) -> http::Response<ProxyBody> {
        let path = request.uri().path().to_owned();
        let decision = self.authz.decide(&peer, &path);
        let label = match decision {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::AuditDeny => "audit_deny",
        };
        self.decisions
            .get_or_create(&AuthzLabels { decision: label })
            .inc();
        match decision {
            Decision::Allow => {}
            Decision::AuditDeny => {
                tracing::warn!(%peer, %path, "authorization would deny (audit mode)")
            }
            Decision::Deny => {
                tracing::info!(%peer, %path, "authorization denied");
                return grpc_error(
                    tonic::Code::PermissionDenied,
                    &format!("{peer} may not call {path}"),
                );
            }
        }

        let (mut parts, body) = request.into_parts();
        parts.headers.remove(PEER_IDENTITY);
        if let Ok(value) = http::HeaderValue::from_str(&peer.to_string()) {
            parts.headers.insert(PEER_IDENTITY, value);
        }
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = match format!("http://{}{path_and_query}", self.app).parse() {
            Ok(uri) => uri,
            Err(_) => return grpc_error(tonic::Code::InvalidArgument, "bad request path"),
        };
        let request = http::Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        let mut service =
            tower::Layer::layer(&self.traffic.layer(), AppClient(self.client.clone()));
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

/// The plaintext HTTP/2 client to the application, as a tower service.
#[derive(Clone)]
struct AppClient(Client<HttpConnector, ProxyBody>);

impl Service<http::Request<ProxyBody>> for AppClient {
    type Response = http::Response<ProxyBody>;
    type Error = hyper_util::client::legacy::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<ProxyBody>) -> Self::Future {
        let fut = self.0.request(request);
        Box::pin(async move {
            let response = fut.await?;
            Ok(response.map(|b| b.map_err(Into::into).boxed_unsync()))
        })
    }
}

impl Handler for Inbound {
    type Peer = SpiffeId;

    async fn handle(
        &self,
        peer: SpiffeId,
        request: http::Request<Incoming>,
    ) -> http::Response<ProxyBody> {
        self.forward(peer, request).await
    }
}
