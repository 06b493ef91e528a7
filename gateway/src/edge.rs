//! The edge checks of a routed request, in order: the API key (403), every
//! applicable limit at once (client IP, route, key bucket and quotas: 429),
//! then the JWT authorizer (401/403). Limits come before token
//! verification so that floods are refused before any RSA work is spent
//! on them.

use http::{HeaderMap, StatusCode};

use crate::error::ApiError;
use crate::limits::{Decision, Limit, LimitKind};
use crate::metrics::{Rejection, ThrottleLabels};
use crate::routes::PathTemplate;
use crate::server::{CallContext, Caller, Shared};
use crate::table::Target;

/// The header that carries an API key.
const API_KEY: &str = "x-api-key";

impl Shared {
    /// The API key, the limits and the JWT authorizer, in that order.
    pub(crate) async fn edge(
        &self,
        target: &Target,
        template: &PathTemplate,
        headers: &HeaderMap,
        context: &CallContext<'_>,
        caller: &mut Caller,
    ) -> Result<(), ApiError> {
        let labels = context.labels;
        let key = if target.edge.api_key {
            let Some(presented) = headers.get(API_KEY) else {
                self.metrics.reject(labels, Rejection::ApiKeyMissing);
                return Err(ApiError::permission_denied(
                    "this route requires an API key in the X-API-Key header",
                ));
            };
            let Some(key) = self.keys.identify(presented.as_bytes()) else {
                self.metrics.reject(labels, Rejection::ApiKeyInvalid);
                return Err(ApiError::permission_denied("the API key is not valid"));
            };
            caller.key_id = Some(key.id.clone());
            Some(key)
        } else {
            None
        };

        let mut limits = Vec::new();
        if let (Some(throttle), Some(ip)) = (&self.client_ip_throttle, context.client.ip) {
            limits.push(Limit::Bucket {
                key: format!("ip:{ip}"),
                rate: throttle.rate,
                burst: throttle.burst,
                kind: LimitKind::ClientIp,
            });
        }
        if let Some(throttle) = &target.edge.throttle {
            limits.push(Limit::Bucket {
                key: format!("route:{} {template}", labels.method),
                rate: throttle.rate,
                burst: throttle.burst,
                kind: LimitKind::Route,
            });
        }
        if let Some(key) = key {
            limits.push(Limit::Bucket {
                key: format!("key:{}", key.id),
                rate: key.plan.rate,
                burst: key.plan.burst,
                kind: LimitKind::KeyRate,
            });
            limits.extend(crate::limits::quota_limits(
                &key.id,
                key.plan.quota_per_day,
                key.plan.quota_per_month,
                self.limiter.now(),
            ));
        }
        if let Decision::Deny { retry_after, limit } = self.limiter.check(&limits).await {
            self.metrics
                .throttled
                .get_or_create(&ThrottleLabels {
                    route: labels.route.clone(),
                    method: labels.method.clone(),
                    limit: limit.as_str().to_owned(),
                })
                .inc();
            self.metrics.reject(labels, Rejection::Throttled);
            let mut error = ApiError::too_many_requests(limit.as_str(), retry_after);
            if limit.is_quota() {
                let period = if limit == LimitKind::KeyDay {
                    "day"
                } else {
                    "month"
                };
                error.details.push(serde_json::json!({
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "subject": format!("api_key:{}", caller.key_id.as_deref().unwrap_or_default()),
                        "description": format!("the API key's quota for this {period} is used up"),
                    }],
                }));
            }
            return Err(error);
        }

        if let Some(jwt) = &self.jwt
            && !target.edge.public
        {
            match jwt.authorize(headers, &target.edge.scopes).await {
                Ok(claims) => caller.subject = Some(claims.sub),
                Err(error) => {
                    let reason = match error.status {
                        StatusCode::UNAUTHORIZED => Rejection::Unauthenticated,
                        StatusCode::FORBIDDEN => Rejection::Forbidden,
                        _ => Rejection::JwksUnavailable,
                    };
                    self.metrics.reject(labels, reason);
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}
