//! Trace context across the bus: the `traceparent` of the request that
//! caused an event rides in the envelope, and the subscriber's handling
//! span continues that trace, so one trace runs from the request to every
//! handler.

use crate::envelope::Envelope;

/// The W3C `traceparent` of `span`, if it is part of a sampled trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut headers = http::HeaderMap::new();
    cloudsec_runtime::telemetry::inject(span, &mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Makes `span` a child of the trace that `traceparent` names.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", value);
        cloudsec_runtime::telemetry::extract(&headers, span);
    }
}

impl Envelope {
    /// Sets `traceparent` from the current span, when there is a trace.
    pub fn with_current_trace(self) -> Self {
        match traceparent_of(&tracing::Span::current()) {
            Some(traceparent) => self.with_traceparent(traceparent),
            None => self,
        }
    }
}
