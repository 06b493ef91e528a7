//! What crosses the edge in headers: the request id, the `authorization`
//! bound, and `Grpc-Metadata-*` in both directions, from an allowlist so
//! that a client cannot set what the gateway or the transport owns.

use http::{HeaderMap, HeaderValue};

use cloudsec_runtime::grpc::REQUEST_ID;

use crate::error::ApiError;

/// The longest client request id that is passed on as is.
pub(crate) const MAX_REQUEST_ID: usize = 128;

/// The client's request id when it is sane, else a fresh UUID: ids end up
/// in logs and headers, so arbitrary bytes are not passed on.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| sane_request_id(s))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

pub(crate) fn sane_request_id(s: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// API Gateway's HTTP API ids are base64 (`J4VkMhyRoAMEJIQ=`), so a
/// trusted proxy's id may also carry `=`, `+` and `/`, still harmless in
/// headers and logs.
pub(crate) fn sane_proxy_request_id(s: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:=+/".contains(&b))
}

/// The largest `authorization` header forwarded; access tokens are ~1 KiB.
pub(crate) const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// The most client metadata (`Grpc-Metadata-*`, names and values) sent
/// upstream: services refuse large header blocks at the HTTP/2 layer.
pub(crate) const MAX_FORWARDED_METADATA_BYTES: usize = 8 * 1024;

pub(crate) const GRPC_METADATA: &str = "grpc-metadata-";

/// Metadata the gateway sets itself or that belongs to the transport;
/// a client cannot set it through `Grpc-Metadata-*`, and a service's is
/// not echoed back as `Grpc-Metadata-*`.
/// The client's address, as the gateway believes it, for the services.
pub(crate) const CLIENT_IP: &str = "x-cloudsec-client-ip";

pub(crate) fn reserved_metadata(key: &str) -> bool {
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
pub(crate) fn forward_grpc_metadata(
    headers: &HeaderMap,
    metadata: &mut HeaderMap,
) -> Result<(), ApiError> {
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
pub(crate) fn metadata_headers(
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
    use http::StatusCode;

    use super::*;
    use crate::test_support::headers;

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
}
