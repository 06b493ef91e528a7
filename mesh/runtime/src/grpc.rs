//! gRPC server and client set-up shared by every service: mTLS, health,
//! reflection, request ids, trace context, metrics and draining shutdown.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::tls::MeshTls;

/// The metadata key that carries a request id from hop to hop.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest accepted request id; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("invalid TLS configuration: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    #[error("invalid endpoint `{0}`")]
    Endpoint(String),
    #[error("refusing plaintext on {0}: plaintext is for loopback only, behind a sidecar")]
    PlaintextNotLoopback(String),
}

/// Health for a service, to add next to its own routes; reflection comes
/// with [`reflection`] once the served services are known.
pub struct BaseServices {
    pub health: tonic_health::server::HealthReporter,
    pub routes: tonic::service::RoutesBuilder,
}

impl std::fmt::Debug for BaseServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseServices").finish_non_exhaustive()
    }
}

/// gRPC health; every service starts NOT_SERVING.
pub fn base_services() -> BaseServices {
    let (health, health_service) = tonic_health::server::health_reporter();
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(health_service);
    BaseServices { health, routes }
}

/// Adds gRPC reflection to `routes` in both its versions
/// (`grpc.reflection.v1`, and `v1alpha` for grpcio-reflection and older
/// grpcurl), listing only `services` (and health): a port lists what it
/// serves, not every contract in `descriptor_set`.
pub fn add_reflection(
    routes: &mut tonic::service::RoutesBuilder,
    descriptor_set: &[u8],
    services: &[&str],
) {
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptor_set)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for service in services {
            builder = builder.with_service_name(*service);
        }
        builder
    };
    match (builder().build_v1(), builder().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => {
            routes.add_service(v1);
            routes.add_service(v1alpha);
        }
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "reflection disabled")
        }
    }
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, then stops
/// accepting and lets calls in flight finish for up to `grace`.
///
/// With `tls`, the listener speaks mTLS itself. Without, it speaks
/// plaintext and must be on loopback: a sidecar in front terminates mTLS.
pub async fn serve(
    listener: TcpListener,
    tls: Option<&MeshTls>,
    routes: Routes,
    metrics: &Metrics,
    shutdown: Shutdown,
    grace: Duration,
) -> Result<(), GrpcError> {
    let local = listener.local_addr().ok();
    let mut builder = tonic::transport::Server::builder();
    match tls {
        Some(tls) => {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(GrpcError::Tls)?;
        }
        None if local.is_some_and(|a| a.ip().is_loopback()) => {}
        None => {
            return Err(GrpcError::PlaintextNotLoopback(
                local.map_or_else(|| "?".into(), |a| a.to_string()),
            ));
        }
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let signal = shutdown.clone();
    let server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(RequestContextLayer)
        .layer(metrics.grpc_layer())
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move { signal.cancelled().await });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.map_err(GrpcError::Serve),
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "grace period over, closing calls still in flight");
            Ok(())
        }
    }
}

/// A lazily connected channel to a mesh peer.
///
/// With an `https://` `uri`, the channel speaks mTLS straight to the peer,
/// whose certificate must name `server_name`. With an `http://` `uri`, it
/// must be the loopback address of the local outbound sidecar: the channel
/// speaks plaintext to it with `server_name` as the `:authority`, and the
/// sidecar routes, balances and originates mTLS.
pub fn channel(uri: &str, server_name: &str, tls: &MeshTls) -> Result<Channel, GrpcError> {
    let bad = || GrpcError::Endpoint(uri.to_owned());
    let mut endpoint = Endpoint::from_shared(uri.to_owned()).map_err(|_| bad())?;
    if uri.starts_with("http://") {
        let host = endpoint
            .uri()
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']']);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(GrpcError::PlaintextNotLoopback(uri.to_owned()));
        }
        let origin = format!("http://{server_name}").parse().map_err(|_| bad())?;
        endpoint = endpoint.origin(origin);
    } else {
        endpoint = endpoint
            .tls_config(tls.client_config(server_name))
            .map_err(GrpcError::Tls)?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// Adds the current trace context and request id to an outgoing call.
pub fn propagate<T>(request: &mut tonic::Request<T>) {
    let mut headers = std::mem::take(request.metadata_mut()).into_headers();
    crate::telemetry::inject(&tracing::Span::current(), &mut headers);
    if let Some(id) = current_request_id()
        && let Ok(value) = http::HeaderValue::from_str(&id)
    {
        headers.insert(REQUEST_ID, value);
    }
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
}

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// Gives every inbound call a request id (the caller's, when it sent a sane
/// one) and a span that continues the caller's trace.
#[derive(Clone, Copy, Debug)]
pub struct RequestContextLayer;

impl<S> tower::Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RequestContext<S> {
    inner: S,
}

fn sane_request_id(value: &http::HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= MAX_REQUEST_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

impl<S, B> tower::Service<http::Request<B>> for RequestContext<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(sane_request_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Ok(value) = http::HeaderValue::from_str(&id) {
            req.headers_mut().insert(REQUEST_ID, value);
        }
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %req.uri().path().trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            request_id = %id,
        );
        crate::telemetry::extract(req.headers(), &span);
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(CURRENT_REQUEST_ID.scope(id, fut.instrument(span)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert_eq!(
            sane_request_id(&http::HeaderValue::from_static("abc-123")),
            Some("abc-123".into())
        );
        assert_eq!(
            sane_request_id(&http::HeaderValue::from_static("a b")),
            None
        );
        let long = "a".repeat(200);
        assert_eq!(
            sane_request_id(&http::HeaderValue::from_str(&long).unwrap()),
            None
        );
    }
}
