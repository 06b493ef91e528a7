//! Request bodies at the edge: bounded before and while they are read,
//! JSON only.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::BodyExt;

use crate::error::ApiError;

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
pub(crate) const DISCARD_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads at most `limit` bytes, whatever Content-Length said. Past the
/// limit (or when Content-Length already announced too much) the rest, up
/// to [`DISCARD_LIMIT`], is read and dropped so the client gets the 413.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
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
pub(crate) async fn discard(mut body: Body, budget: u64) {
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

#[cfg(test)]
mod tests {
    use http::{HeaderValue, StatusCode};

    use super::*;
    use crate::test_support::headers;

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
}
