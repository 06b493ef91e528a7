//! The call behind a route: the gRPC request built from an allowlist of
//! headers, unary and server-streaming calls bounded by `request_timeout`,
//! and the service's answer (or failure) back as HTTP.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cloudsec_runtime::grpc::REQUEST_ID;
use cloudsec_runtime::telemetry;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use tokio::sync::OwnedSemaphorePermit;

use crate::codec::{ClientCodec, Outgoing};
use crate::error::{ApiError, upstream_failure};
use crate::headers::{CLIENT_IP, MAX_AUTHORIZATION_BYTES, forward_grpc_metadata, metadata_headers};
use crate::server::Shared;
use crate::stream::{self, Format};
use crate::table::Target;

/// A client on `target`'s channel once the channel can take a call.
async fn ready(target: &Target) -> Result<tonic::client::Grpc<OneFrame>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(OneFrame(target.channel.clone()));
    grpc.ready().await.map_err(tonic::Status::from_error)?;
    Ok(grpc)
}

/// The channel, sending each request's body as one DATA frame that ends
/// the stream. The gateway's calls carry exactly one message, but tonic's
/// encoder reports its end only when polled again, so hyper would send
/// HEADERS, DATA and then an empty DATA with END_STREAM: a third frame,
/// often its own write, that the service waits for before it answers.
/// Collected first, the body is one buffer whose end is known, and hyper
/// sends HEADERS and DATA(END_STREAM).
#[derive(Debug, Clone)]
pub(crate) struct OneFrame(tonic::transport::Channel);

type ChannelResponse =
    <tonic::transport::Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;

impl tower::Service<http::Request<tonic::body::Body>> for OneFrame {
    type Response = ChannelResponse;
    type Error = tower::BoxError;
    type Future = futures::future::BoxFuture<'static, Result<ChannelResponse, tower::BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone is not ready; the one `poll_ready` readied is (tower's
        // rule for services that are cloned into their futures).
        let ready = self.0.clone();
        let mut channel = std::mem::replace(&mut self.0, ready);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // The message is already in memory: this completes at once.
            let bytes = http_body_util::BodyExt::collect(body).await?.to_bytes();
            let body = tonic::body::Body::new(http_body_util::Full::new(bytes));
            Ok(channel.call(http::Request::from_parts(parts, body)).await?)
        })
    }
}

impl Shared {
    /// The upstream request: the message with the metadata the service
    /// may see and the deadline.
    pub(crate) fn grpc_request(
        &self,
        message: Outgoing,
        headers: &HeaderMap,
        request_id: &str,
        client_ip: Option<std::net::IpAddr>,
        span: &tracing::Span,
    ) -> Result<tonic::Request<Outgoing>, ApiError> {
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
    pub(crate) async fn unary(
        &self,
        target: &Target,
        request: tonic::Request<Outgoing>,
    ) -> Result<Result<tonic::Response<Bytes>, tonic::Status>, ApiError> {
        let call = async {
            ready(target)
                .await?
                .unary(request, target.grpc_path.clone(), ClientCodec)
                .await
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
    pub(crate) async fn server_streaming(
        &self,
        target: &Target,
        request: tonic::Request<Outgoing>,
        format: Format,
        turn: Option<OwnedSemaphorePermit>,
    ) -> Result<Response, ApiError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let call = async {
            ready(target)
                .await?
                .server_streaming(request, target.grpc_path.clone(), ClientCodec)
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
            _turn: turn,
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
    pub(crate) fn failure(
        &self,
        target: &Target,
        status: tonic::Status,
    ) -> Result<Response, ApiError> {
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

    pub(crate) fn classify(&self, target: &Target, status: tonic::Status) -> ApiError {
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
pub(crate) fn json_response(status: StatusCode, json: Vec<u8>) -> Response {
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

pub(crate) fn append_metadata(response: &mut Response, metadata: &tonic::metadata::MetadataMap) {
    for (name, value) in metadata_headers(metadata) {
        response.headers_mut().append(name, value);
    }
}
