//! Errors: [`GatewayError`] for start-up and serving, and [`ApiError`], the
//! JSON body every failed request gets.
//!
//! The body has grpc-gateway's shape, `{"code", "message", "details"}`, so
//! clients written against grpc-gateway read it unchanged. The HTTP status
//! comes from the one table in `cloudsec_runtime::status`, except where HTTP
//! has a more precise answer than any gRPC code (404, 405, 413, 415).

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::{ErrorDetail, StatusExt};

/// Why the gateway could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid descriptor set #{index}: {source}")]
    Descriptors {
        index: usize,
        #[source]
        source: prost_reflect::DescriptorError,
    },
    #[error("invalid http rule `{template}` on {method}: {reason}")]
    Template {
        method: String,
        template: String,
        reason: String,
    },
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS set-up for upstream {service}: {source}")]
    Tls {
        service: String,
        #[source]
        source: cloudsec_runtime::grpc::GrpcError,
    },
    #[error("invalid upstream for {service}: {source}")]
    Upstream {
        service: String,
        #[source]
        source: cloudsec_runtime::grpc::GrpcError,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Redis(String),
    #[error("the JWT authorizer needs `gateway.jwt.jwks_url` or an upstream for {0}")]
    NoJwksSource(&'static str),
    #[error("invalid gateway.jwt.jwks_url: {0}")]
    JwksUrl(#[source] reqwest::Error),
    #[error(transparent)]
    FieldRules(#[from] crate::validate::RuleError),
    #[error("cannot use gateway.listen_tls: {0}")]
    ListenTls(#[from] crate::tls::ListenTlsError),
}

/// A failed request as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: Code,
    pub(crate) message: String,
    pub(crate) details: Vec<Value>,
    /// For 405, the methods the path does take.
    pub(crate) allow: Vec<http::Method>,
    /// Extra response headers such as `Retry-After` and
    /// `WWW-Authenticate`.
    pub(crate) headers: Vec<(http::HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: i32,
    message: &'a str,
    details: &'a [Value],
}

impl ApiError {
    fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            allow: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A missing or bad bearer token at the edge; the `WWW-Authenticate`
    /// challenge is added by [`challenge`] for every 401.
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, Code::Unauthenticated, message)
    }

    /// A missing or unknown API key, a missing scope, a refused origin.
    pub(crate) fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, Code::PermissionDenied, message)
    }

    /// Over a rate limit or quota: `Retry-After` in whole seconds (at
    /// least 1, as HTTP has no finer unit) and the exact delay as
    /// `RetryInfo`.
    pub(crate) fn too_many_requests(limit: &str, retry_after_delay: Duration) -> Self {
        let seconds = retry_after_delay.as_millis().div_ceil(1000).max(1);
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::ResourceExhausted,
            format!("too many requests: the {limit} limit is reached; retry after {seconds}s"),
        );
        error.details.push(json!({
            "@type": format!("{TYPE_PREFIX}RetryInfo"),
            "retryDelay": proto_duration(retry_after_delay),
        }));
        error
            .headers
            .push((header::RETRY_AFTER, retry_after(retry_after_delay)));
        error
    }

    /// Request fields that break the contract, found before the call.
    pub(crate) fn bad_request(message: impl Into<String>, violations: &[(String, String)]) -> Self {
        let mut error = Self::invalid_argument(message);
        error.details.push(json!({
            "@type": format!("{TYPE_PREFIX}BadRequest"),
            "fieldViolations": violations.iter().map(|(field, description)| json!({
                "field": field, "description": description,
            })).collect::<Vec<_>>(),
        }));
        error
    }

    /// A client mistake found while transcoding.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
    }

    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::InvalidArgument,
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// A header the gateway would forward is larger than a service accepts.
    pub(crate) fn header_too_large(name: &str, limit: usize) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::InvalidArgument,
            format!("header `{name}` is larger than {limit} bytes"),
        )
    }

    pub(crate) fn unsupported_media_type(content_type: Option<&str>) -> Self {
        let message = match content_type {
            Some(ct) => format!("content-type `{ct}` is not supported; send application/json"),
            None => "a request body needs content-type application/json".to_owned(),
        };
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidArgument,
            message,
        )
    }

    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("no route for path `{path}`"),
        )
    }

    pub(crate) fn method_not_allowed(method: &http::Method, allow: Vec<http::Method>) -> Self {
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unimplemented,
            format!("method {method} is not allowed on this path"),
        );
        error.allow = allow;
        error
    }

    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            "the service is unavailable, try again later",
        )
    }

    pub(crate) fn deadline_exceeded(timeout: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            Code::DeadlineExceeded,
            format!("the service did not answer within {timeout:?}"),
        )
    }

    /// A fault of the gateway itself; the cause is logged, not shown.
    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "internal error",
        )
    }

    /// A status the upstream sent back, with its rich details. A 429 or
    /// 503 whose `RetryInfo` says when to come back carries that as
    /// `Retry-After` too, for clients that read only HTTP.
    pub(crate) fn from_upstream(status: &tonic::Status) -> Self {
        let code = status.code();
        let mut error = Self::new(
            cloudsec_runtime::status::http_status(code),
            code,
            status.message(),
        );
        let details = status.get_error_details_vec();
        let retry = details.iter().find_map(|d| match d {
            ErrorDetail::RetryInfo(r) => r.retry_delay,
            _ => None,
        });
        if let Some(delay) = retry
            && matches!(
                error.status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
        {
            error
                .headers
                .push((header::RETRY_AFTER, retry_after(delay)));
        }
        error.details = render_details(details);
        error
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        let body = ErrorBody {
            code: self.code as i32,
            message: &self.message,
            details: &self.details,
        };
        serde_json::to_vec(&body)
            .unwrap_or_else(|_| br#"{"code":13,"message":"internal error","details":[]}"#.to_vec())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.to_json(),
        )
            .into_response();
        if !self.allow.is_empty() {
            let allow = self
                .allow
                .iter()
                .map(http::Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// A failed upstream call as the client sees it. A status with a source
/// was made here (connect, TLS or h2 failure), not sent by the service: its
/// text is for the log, not the client.
pub(crate) fn upstream_failure(
    method: &str,
    timeout: Duration,
    status: &tonic::Status,
) -> ApiError {
    use std::error::Error as _;
    if let Some(cause) = status.source() {
        tracing::warn!(
            %method,
            code = ?status.code(),
            error = %status.message(),
            %cause,
            "upstream call failed"
        );
        // Only the deadline is a timeout. A stream the transport cancelled
        // (a connection reset while a peer drains) is a 503 the client may
        // retry; the table's 499 is for a client that went away, who would
        // not read an answer anyway.
        return match status.code() {
            Code::DeadlineExceeded => ApiError::deadline_exceeded(timeout),
            _ => ApiError::unavailable(),
        };
    }
    ApiError::from_upstream(status)
}

/// `Retry-After` in whole seconds, at least 1 (HTTP has no finer unit).
fn retry_after(delay: Duration) -> HeaderValue {
    HeaderValue::from(delay.as_millis().div_ceil(1000).max(1) as u64)
}

/// The headers RFC 6750 and RFC 9110 ask of some statuses, whoever made
/// the answer (the edge, a service, a status override): every 401 carries
/// a `Bearer` challenge, with `error="invalid_token"` when the request
/// presented credentials (without any, RFC 6750 says to name no error);
/// every 429 carries `Retry-After` (1 s when nothing more precise is
/// known).
pub(crate) fn challenge(response: &mut Response, presented_credentials: bool) {
    let status = response.status();
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(if presented_credentials {
                "Bearer realm=\"cloudsec\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"cloudsec\""
            }),
        );
    }
    if status == StatusCode::TOO_MANY_REQUESTS && !headers.contains_key(header::RETRY_AFTER) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
}

const TYPE_PREFIX: &str = "type.googleapis.com/google.rpc.";

/// Renders `google.rpc` details as proto3 JSON with an `@type`, as
/// grpc-gateway does. `DebugInfo` is dropped: stack traces and internal
/// detail are for logs, not for clients.
pub(crate) fn render_details(details: Vec<ErrorDetail>) -> Vec<Value> {
    details
        .into_iter()
        .filter_map(|detail| {
            let (name, mut body) = match detail {
                ErrorDetail::BadRequest(b) => (
                    "BadRequest",
                    json!({"fieldViolations": b.field_violations.iter().map(|v| {
                        let mut out = json!({"field": v.field, "description": v.description});
                        if !v.reason.is_empty() {
                            out["reason"] = json!(v.reason);
                        }
                        out
                    }).collect::<Vec<_>>()}),
                ),
                ErrorDetail::ErrorInfo(e) => (
                    "ErrorInfo",
                    json!({"reason": e.reason, "domain": e.domain, "metadata": e.metadata}),
                ),
                ErrorDetail::RetryInfo(r) => (
                    "RetryInfo",
                    match r.retry_delay {
                        Some(delay) => json!({"retryDelay": proto_duration(delay)}),
                        None => json!({}),
                    },
                ),
                ErrorDetail::QuotaFailure(q) => (
                    "QuotaFailure",
                    json!({"violations": q.violations.iter().map(|v| json!({
                        "subject": v.subject, "description": v.description,
                    })).collect::<Vec<_>>()}),
                ),
                ErrorDetail::PreconditionFailure(p) => (
                    "PreconditionFailure",
                    json!({"violations": p.violations.iter().map(|v| json!({
                        "type": v.r#type, "subject": v.subject, "description": v.description,
                    })).collect::<Vec<_>>()}),
                ),
                ErrorDetail::RequestInfo(r) => (
                    "RequestInfo",
                    json!({"requestId": r.request_id, "servingData": r.serving_data}),
                ),
                ErrorDetail::ResourceInfo(r) => (
                    "ResourceInfo",
                    json!({
                        "resourceType": r.resource_type, "resourceName": r.resource_name,
                        "owner": r.owner, "description": r.description,
                    }),
                ),
                ErrorDetail::Help(h) => (
                    "Help",
                    json!({"links": h.links.iter().map(|l| json!({
                        "description": l.description, "url": l.url,
                    })).collect::<Vec<_>>()}),
                ),
                ErrorDetail::LocalizedMessage(l) => (
                    "LocalizedMessage",
                    json!({"locale": l.locale, "message": l.message}),
                ),
                ErrorDetail::DebugInfo(d) => {
                    tracing::debug!(detail = %d.detail, "upstream debug info withheld from client");
                    return None;
                }
                other => {
                    tracing::debug!(detail = ?other, "unrenderable upstream error detail dropped");
                    return None;
                }
            };
            body["@type"] = json!(format!("{TYPE_PREFIX}{name}"));
            Some(body)
        })
        .collect()
}

/// `google.protobuf.Duration` in JSON: seconds with a fraction and `s`.
fn proto_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{}s", d.as_secs())
    } else {
        let fraction = format!("{nanos:09}");
        format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn body(error: &ApiError) -> Value {
        serde_json::from_slice(&error.to_json()).unwrap()
    }

    #[test]
    fn renders_the_grpc_gateway_shape() {
        let error = ApiError::invalid_argument("bad `x`");
        assert_eq!(error.status, 400);
        assert_eq!(
            body(&error),
            json!({"code": 3, "message": "bad `x`", "details": []})
        );
        assert_eq!(body(&ApiError::not_found("/x"))["code"], 5);
        assert_eq!(ApiError::not_found("/x").status, 404);
        assert_eq!(ApiError::payload_too_large(10).status, 413);
        assert_eq!(body(&ApiError::payload_too_large(10))["code"], 3);
        assert_eq!(ApiError::unsupported_media_type(None).status, 415);
        assert_eq!(ApiError::unavailable().status, 503);
        assert_eq!(body(&ApiError::unavailable())["code"], 14);
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let error = ApiError::method_not_allowed(
            &http::Method::DELETE,
            vec![http::Method::GET, http::Method::PATCH],
        );
        assert_eq!(body(&error)["code"], 12);
        let response = error.into_response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "GET, PATCH");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn renders_rich_upstream_details() {
        let mut details = ErrorDetails::new();
        details
            .add_bad_request_violation("item.title", "must not be empty")
            .set_error_info(
                "EMPTY_TITLE",
                "cloudsec",
                [("k".to_owned(), "v".to_owned())],
            )
            .set_retry_info(Some(Duration::from_millis(1500)))
            .set_debug_info(vec!["secret stack".to_owned()], "internal detail");
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "bad item", details);
        let error = ApiError::from_upstream(&status);
        assert_eq!(error.status, 400);
        let rendered = body(&error);
        assert_eq!(rendered["code"], 3);
        assert_eq!(rendered["message"], "bad item");
        let details = rendered["details"].as_array().unwrap();
        let find = |t: &str| {
            details
                .iter()
                .find(|d| d["@type"] == format!("{TYPE_PREFIX}{t}"))
                .cloned()
        };
        let bad = find("BadRequest").unwrap();
        assert_eq!(bad["fieldViolations"][0]["field"], "item.title");
        assert_eq!(
            bad["fieldViolations"][0]["description"],
            "must not be empty"
        );
        let info = find("ErrorInfo").unwrap();
        assert_eq!(info["reason"], "EMPTY_TITLE");
        assert_eq!(info["metadata"]["k"], "v");
        assert_eq!(find("RetryInfo").unwrap()["retryDelay"], "1.5s");
        assert!(find("DebugInfo").is_none());
        assert!(!rendered.to_string().contains("secret stack"));
    }

    #[test]
    fn an_upstream_lockout_says_when_to_retry_in_http_too() {
        let mut details = ErrorDetails::new();
        details.set_retry_info(Some(Duration::from_millis(29_200)));
        let status = tonic::Status::with_error_details(Code::ResourceExhausted, "locked", details);
        let response = ApiError::from_upstream(&status).into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        // Unavailable with a known time too; without one, no guess.
        let mut details = ErrorDetails::new();
        details.set_retry_info(Some(Duration::from_secs(5)));
        let status = tonic::Status::with_error_details(Code::Unavailable, "later", details);
        let response = ApiError::from_upstream(&status).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let response = ApiError::from_upstream(&tonic::Status::unavailable("down")).into_response();
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
        // A 429 without RetryInfo still gets a Retry-After at the end.
        let mut response =
            ApiError::from_upstream(&tonic::Status::resource_exhausted("busy")).into_response();
        challenge(&mut response, false);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_transport_cancel_is_unavailable_not_a_timeout() {
        let made_here = |code| {
            let mut status = tonic::Status::new(code, "transport");
            status.set_source(std::sync::Arc::new(std::io::Error::other("h2 reset")));
            status
        };
        let error = upstream_failure("m", Duration::from_secs(1), &made_here(Code::Cancelled));
        assert_eq!(error.status, 503);
        let error = upstream_failure(
            "m",
            Duration::from_secs(1),
            &made_here(Code::DeadlineExceeded),
        );
        assert_eq!(error.status, 504);
    }

    #[test]
    fn upstream_codes_use_the_shared_table() {
        for (code, http) in [
            (Code::NotFound, 404),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::AlreadyExists, 409),
            (Code::ResourceExhausted, 429),
        ] {
            let error = ApiError::from_upstream(&tonic::Status::new(code, "x"));
            assert_eq!(error.status, http);
            assert_eq!(body(&error)["code"], code as i32);
        }
    }

    #[test]
    fn edge_rejections_carry_their_headers() {
        let error = ApiError::too_many_requests("route", Duration::from_millis(1500));
        assert_eq!(error.status, 429);
        let rendered = body(&error);
        assert_eq!(rendered["code"], 8);
        assert_eq!(rendered["details"][0]["retryDelay"], "1.5s");
        let response = error.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response =
            ApiError::too_many_requests("route", Duration::from_millis(1)).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");

        let error = ApiError::unauthenticated("token expired");
        assert_eq!(body(&error)["code"], 16);
        let mut response = error.clone().into_response();
        assert_eq!(response.status(), 401);
        challenge(&mut response, true);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"cloudsec\", error=\"invalid_token\""
        );
        let mut response = error.into_response();
        challenge(&mut response, false);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"cloudsec\""
        );

        let error = ApiError::bad_request(
            "missing",
            &[("document.title".to_owned(), "is required".to_owned())],
        );
        let rendered = body(&error);
        assert_eq!(
            rendered["details"][0]["fieldViolations"][0]["field"],
            "document.title"
        );
        assert_eq!(ApiError::permission_denied("x").status, 403);
    }

    #[test]
    fn formats_proto_durations() {
        assert_eq!(proto_duration(Duration::from_secs(3)), "3s");
        assert_eq!(proto_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(proto_duration(Duration::from_nanos(1)), "0.000000001s");
    }
}
