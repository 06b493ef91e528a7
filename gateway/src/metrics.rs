//! The gateway's own metric families (requests, responses, latency,
//! throttling and edge rejections, by route template) and the reasons a
//! request is refused at the edge.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::limits::LimiterMetrics;

/// Why the edge refused a request: the `reason` label of
/// `gateway_rejected`, so dashboards and alerts name a fixed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// A CORS preflight from an origin or for a method not allowed.
    Cors,
    ApiKeyMissing,
    ApiKeyInvalid,
    /// A rate limit or quota (429).
    Throttled,
    /// No, or a bad, bearer token (401).
    Unauthenticated,
    /// A good token without the route's scopes (403).
    Forbidden,
    /// The keys to check the token could not be had (503).
    JwksUnavailable,
    BodyTooLarge,
    UnsupportedMediaType,
    /// A body, path or query that does not transcode into the request.
    InvalidRequest,
    /// A field the contract requires is absent.
    MissingRequired,
    /// A field breaks its contract rule.
    InvalidField,
}

impl Rejection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejection::Cors => "cors",
            Rejection::ApiKeyMissing => "api_key_missing",
            Rejection::ApiKeyInvalid => "api_key_invalid",
            Rejection::Throttled => "throttled",
            Rejection::Unauthenticated => "unauthenticated",
            Rejection::Forbidden => "forbidden",
            Rejection::JwksUnavailable => "jwks_unavailable",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::InvalidRequest => "invalid_request",
            Rejection::MissingRequired => "missing_required",
            Rejection::InvalidField => "invalid_field",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: String,
    pub(crate) method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResponseLabels {
    pub(crate) route: String,
    pub(crate) method: String,
    pub(crate) status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ThrottleLabels {
    pub(crate) route: String,
    pub(crate) method: String,
    pub(crate) limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectLabels {
    pub(crate) route: String,
    pub(crate) method: String,
    pub(crate) reason: String,
}

cloudsec_runtime::metric_families! {
    pub(crate) struct GatewayMetrics {
        pub(crate) requests: Family<RouteLabels, Counter> = "gateway_request",
            "REST requests received, by route template and HTTP method";
        pub(crate) responses: Family<ResponseLabels, Counter> = "gateway_response",
            "REST responses sent, by route template, HTTP method and HTTP status";
        pub(crate) latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            "gateway_response_latency_seconds",
            "time from request to response, by route template and HTTP method",
            Family::new_with_constructor(latency_histogram);
        pub(crate) throttled: Family<ThrottleLabels, Counter> = "gateway_throttled",
            "requests refused with 429, by route template, HTTP method and the limit reached";
        pub(crate) rejected: Family<RejectLabels, Counter> = "gateway_rejected",
            "requests refused at the edge, by route template, HTTP method and reason";
        limiter_redis_up: Gauge = "gateway_limiter_redis_up",
            "1 while rate limits are kept in Redis, 0 while they are local (Redis unavailable or not configured)";
        limiter_fallback: Counter = "gateway_limiter_local_fallback",
            "requests whose limits were decided locally because Redis was unavailable";
    }
}

pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl GatewayMetrics {
    /// The limiter's two families, for the one limiter of the gateway.
    pub(crate) fn limiter(&self) -> LimiterMetrics {
        LimiterMetrics {
            redis_up: self.limiter_redis_up.clone(),
            fallback: self.limiter_fallback.clone(),
        }
    }

    pub(crate) fn reject(&self, labels: &RouteLabels, reason: Rejection) {
        self.rejected
            .get_or_create(&RejectLabels {
                route: labels.route.clone(),
                method: labels.method.clone(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }
}
