//! Server-streaming methods: each message the service sends becomes one
//! line of newline-delimited JSON (grpc-gateway's `{"result": ...}`), or
//! one Server-Sent Event when the client accepts `text/event-stream`.
//!
//! The HTTP status goes out before the first message, so a failure after
//! it can only be told in the stream itself: a last line
//! `{"error": {"code", "message", "details"}}`, or an `error` event with the
//! same body. A failure before the first message (the service refused the
//! call) is an ordinary error response with its HTTP status.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, header};
use tonic::Streaming;

use crate::error::{ApiError, upstream_failure};
use crate::transcode::Binding;

/// How the messages of a stream are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/x-ndjson`: one JSON object per line.
    Ndjson,
    /// `text/event-stream`: one `data:` event per message.
    Sse,
}

/// Whether one `Accept` media range asks for `text/event-stream` (and does
/// not refuse it with `q=0`).
fn accepts_sse(range: &str) -> bool {
    let mut parts = range.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("text/event-stream") {
        return false;
    }
    !parts.any(|param| {
        let Some((name, value)) = param.split_once('=') else {
            return false;
        };
        name.trim().eq_ignore_ascii_case("q") && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
    })
}

impl Format {
    /// Server-Sent Events when the client accepts `text/event-stream`,
    /// otherwise newline-delimited JSON.
    pub(crate) fn from_accept(headers: &HeaderMap) -> Self {
        let sse = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(accepts_sse);
        if sse { Self::Sse } else { Self::Ndjson }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Sse => "text/event-stream",
        }
    }

    /// One message, already rendered as JSON. serde_json's compact output
    /// escapes every newline, so one JSON text is always one line.
    pub(crate) fn message(self, json: &[u8]) -> Bytes {
        let (head, tail): (&[u8], &[u8]) = match self {
            Self::Ndjson => (b"{\"result\":", b"}\n"),
            Self::Sse => (b"data: ", b"\n\n"),
        };
        frame(head, json, tail)
    }

    /// The error that ends a stream.
    pub(crate) fn error(self, error: &ApiError) -> Bytes {
        let (head, tail): (&[u8], &[u8]) = match self {
            Self::Ndjson => (b"{\"error\":", b"}\n"),
            Self::Sse => (b"event: error\ndata: ", b"\n\n"),
        };
        frame(head, &error.to_json(), tail)
    }
}

fn frame(head: &[u8], json: &[u8], tail: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(head.len() + json.len() + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(json);
    out.extend_from_slice(tail);
    out.into()
}

/// What the response body reads from.
pub(crate) struct Upstream {
    pub(crate) messages: Streaming<Bytes>,
    pub(crate) binding: Arc<Binding>,
    pub(crate) format: Format,
    /// The whole stream must end by then (`request_timeout`, which the
    /// service also got as `grpc-timeout`).
    pub(crate) deadline: tokio::time::Instant,
    pub(crate) timeout: Duration,
    /// `pkg.Service/Method`, for logs.
    pub(crate) method: String,
    /// The method's admission turn, given back when the stream ends.
    pub(crate) _turn: Option<tokio::sync::OwnedSemaphorePermit>,
}

struct State {
    upstream: Upstream,
    done: bool,
}

impl State {
    /// The next chunk of the body, or `None` at the end.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let up = &mut self.upstream;
        let next = tokio::time::timeout_at(up.deadline, up.messages.message()).await;
        let chunk = match next {
            Ok(Ok(Some(message))) => match up.binding.render(&message) {
                Ok(json) => return Some(up.format.message(&json)),
                Err(error) => {
                    tracing::error!(%error, method = %up.method, "cannot render a streamed message");
                    up.format.error(&ApiError::internal())
                }
            },
            Ok(Ok(None)) => return None,
            Ok(Err(status)) => up
                .format
                .error(&upstream_failure(&up.method, up.timeout, &status)),
            Err(_) => {
                tracing::warn!(method = %up.method, "upstream stream timed out");
                up.format.error(&ApiError::deadline_exceeded(up.timeout))
            }
        };
        self.done = true;
        Some(chunk)
    }
}

/// The response body: messages as they arrive, nothing buffered. When the
/// client goes away the body is dropped, and with it the upstream call.
pub(crate) fn body(upstream: Upstream) -> Body {
    let state = State {
        upstream,
        done: false,
    };
    let chunks = futures::stream::unfold(state, |mut state| async move {
        let chunk = state.next().await?;
        Some((Ok::<Bytes, Infallible>(chunk), state))
    });
    Body::from_stream(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn event_streams_are_chosen_by_accept() {
        assert_eq!(Format::from_accept(&HeaderMap::new()), Format::Ndjson);
        assert_eq!(
            Format::from_accept(&accept(&["application/json"])),
            Format::Ndjson
        );
        assert_eq!(
            Format::from_accept(&accept(&["Text/Event-Stream"])),
            Format::Sse
        );
        assert_eq!(
            Format::from_accept(&accept(&["application/json, text/event-stream;q=0.5"])),
            Format::Sse
        );
        assert_eq!(
            Format::from_accept(&accept(&["*/*", "text/event-stream"])),
            Format::Sse
        );
        assert_eq!(
            Format::from_accept(&accept(&["text/event-stream; q=0"])),
            Format::Ndjson
        );
    }

    #[test]
    fn frames_messages_and_errors() {
        assert_eq!(
            Format::Ndjson.message(br#"{"a":1}"#),
            Bytes::from_static(b"{\"result\":{\"a\":1}}\n")
        );
        assert_eq!(
            Format::Sse.message(br#"{"a":1}"#),
            Bytes::from_static(b"data: {\"a\":1}\n\n")
        );
        let error = ApiError::internal();
        let line = Format::Ndjson.error(&error);
        let parsed: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["error"]["code"], 13);
        assert!(line.ends_with(b"\n") && line.iter().filter(|b| **b == b'\n').count() == 1);
        let event = Format::Sse.error(&error);
        assert!(event.starts_with(b"event: error\ndata: {"));
        assert!(event.ends_with(b"}\n\n"));
    }
}
