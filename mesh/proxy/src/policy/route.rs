//! Route policies: which timeout, retries and breaker apply to a request.
//!
//! Routes are keyed `pkg.Service` or `pkg.Service/Method`; a request's path
//! (`/pkg.Service/Method`) picks the method's entry, else its service's, else
//! the default. Each entry is a whole policy: a field it leaves out takes the
//! built-in default, not the `default` entry's value, so what an entry says
//! is all there is to read.
//!
//! ```toml
//! [default]
//! timeout = "5s"
//!
//! [routes."cloudsec.documents.v1.DocumentService/GetDocument"]
//! timeout = "2s"
//! retry = { retryable = true, max_attempts = 3 }
//!
//! [routes."cloudsec.documents.v1.DocumentService/StreamContent"]
//! timeout = "none"
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::breaker::BreakerPolicy;
use super::retry::RetryPolicy;

/// Which configured entry a request resolved to: requests with the same
/// key share one stack, so one retry budget, and one set of metric series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKey<'a> {
    /// No route names the path: the `default` policy.
    Default,
    /// The `routes` entry `pkg.Service` or `pkg.Service/Method`.
    Named(&'a str),
}

impl RouteKey<'_> {
    /// The `route` label value of the default policy's series. Dashboards
    /// and alert tests select on it, so it stays `*` (no route can be
    /// named `*`).
    pub const DEFAULT_LABEL: &'static str = "*";

    /// The value of the `route` metric label.
    pub fn label(&self) -> &str {
        match self {
            Self::Default => Self::DEFAULT_LABEL,
            Self::Named(name) => name,
        }
    }
}

/// What applies to one route.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutePolicy {
    /// The route timeout, or `"none"` to leave only the caller's
    /// `grpc-timeout`.
    #[serde(deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    /// The breaker of the route's endpoints; none by default.
    pub breaker: Option<BreakerPolicy>,
}

impl Default for RoutePolicy {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(10)),
            retry: RetryPolicy::default(),
            breaker: None,
        }
    }
}

/// All routes of a destination.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutePolicies {
    /// For paths no route names.
    pub default: RoutePolicy,
    /// By `pkg.Service` or `pkg.Service/Method`.
    #[serde(deserialize_with = "route_keys")]
    pub routes: BTreeMap<String, RoutePolicy>,
}

impl RoutePolicies {
    /// The policy of a request path `/pkg.Service/Method`: the method's,
    /// else the service's, else the default.
    pub fn for_path(&self, path: &str) -> &RoutePolicy {
        self.resolve(path).1
    }

    /// Like [`for_path`](Self::for_path), with the key of the entry that
    /// matched.
    pub fn resolve(&self, path: &str) -> (RouteKey<'_>, &RoutePolicy) {
        let route = path.strip_prefix('/').unwrap_or(path);
        if let Some((service, method)) = route.split_once('/')
            && !service.is_empty()
            && !method.is_empty()
            && let Some((key, policy)) = self
                .routes
                .get_key_value(route)
                .or_else(|| self.routes.get_key_value(service))
        {
            return (RouteKey::Named(key), policy);
        }
        (RouteKey::Default, &self.default)
    }
}

/// `"none"` or `"off"` for no timeout, else a humantime duration.
fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "none" | "off" => Ok(None),
        other => humantime_serde::re::humantime::parse_duration(other)
            .map(Some)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid timeout {text:?} ({e}); use a duration such as \"5s\", or \"none\""
                ))
            }),
    }
}

fn route_keys<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, RoutePolicy>, D::Error> {
    let routes = BTreeMap::<String, RoutePolicy>::deserialize(d)?;
    if let Some(bad) = routes.keys().find(|key| !valid_route_key(key)) {
        return Err(serde::de::Error::custom(format!(
            "route {bad:?} is not \"pkg.Service\" or \"pkg.Service/Method\""
        )));
    }
    Ok(routes)
}

/// `pkg.Service` or `pkg.Service/Method`, without a leading slash.
fn valid_route_key(key: &str) -> bool {
    let ident = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    };
    match key.split_once('/') {
        Some((service, method)) => {
            ident(service) && !method.is_empty() && !method.contains(['/', '.']) && ident(method)
        }
        None => ident(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const CONFIG: &str = r#"
        [default]
        timeout = "5s"

        [routes."pkg.Svc"]
        timeout = "1s"
        breaker = { consecutive_failures = 3 }

        [routes."pkg.Svc/Get"]
        timeout = "200ms"
        retry = { retryable = true, codes = ["UNAVAILABLE", "ABORTED"] }

        [routes."pkg.Svc/Watch"]
        timeout = "none"
    "#;

    #[test]
    fn picks_method_over_service_over_default() {
        let p: RoutePolicies = toml::from_str(CONFIG).unwrap();
        let get = p.for_path("/pkg.Svc/Get");
        assert_eq!(get.timeout, Some(Duration::from_millis(200)));
        assert!(get.retry.retryable);
        assert_eq!(get.retry.codes, vec![Code::Unavailable, Code::Aborted]);
        // A method entry is whole: no breaker unless it says so.
        assert_eq!(get.breaker, None);

        let list = p.for_path("/pkg.Svc/List");
        assert_eq!(list.timeout, Some(Duration::from_secs(1)));
        assert_eq!(list.breaker.as_ref().unwrap().consecutive_failures, 3);
        assert!(!list.retry.retryable);

        assert_eq!(p.for_path("/pkg.Svc/Watch").timeout, None);
        assert_eq!(
            p.for_path("/pkg.Other/Get").timeout,
            Some(Duration::from_secs(5))
        );
        // Malformed paths fall to the default.
        for path in ["", "/", "/pkg.Svc", "/pkg.Svc/", "//Get", "pkg.Svc"] {
            assert_eq!(p.for_path(path), &p.default, "{path:?}");
        }
        // Without its leading slash a full path still matches.
        assert_eq!(p.for_path("pkg.Svc/Get"), get);

        assert_eq!(p.resolve("/pkg.Svc/Get").0, RouteKey::Named("pkg.Svc/Get"));
        assert_eq!(p.resolve("/pkg.Svc/List").0, RouteKey::Named("pkg.Svc"));
        assert_eq!(p.resolve("/pkg.Other/Get").0, RouteKey::Default);
        assert_eq!(RouteKey::Default.label(), "*");
        assert_eq!(RouteKey::Named("pkg.Svc").label(), "pkg.Svc");
    }

    #[test]
    fn defaults_when_empty() {
        let p: RoutePolicies = toml::from_str("").unwrap();
        assert_eq!(p, RoutePolicies::default());
        let route = p.for_path("/pkg.Svc/Get");
        assert_eq!(route.timeout, Some(Duration::from_secs(10)));
        assert!(!route.retry.retryable);
        assert_eq!(route.retry.max_attempts, 3);
        assert!(route.breaker.is_none());
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        for (text, wanted) in [
            ("[default]\ntimeouts = \"1s\"", "unknown field `timeouts`"),
            ("[defaults]\ntimeout = \"1s\"", "unknown field `defaults`"),
            ("[default]\ntimeout = \"soon\"", "invalid timeout"),
            (
                "[routes.\"/pkg.Svc/Get\"]\ntimeout = \"1s\"",
                "is not \"pkg.Service\"",
            ),
            (
                "[routes.\"pkg.Svc/Get/More\"]\ntimeout = \"1s\"",
                "is not \"pkg.Service\"",
            ),
            (
                "[routes.\"pkg.Svc/\"]\ntimeout = \"1s\"",
                "is not \"pkg.Service\"",
            ),
            (
                "[routes.\"pkg.Svc\"]\nretry = { retryable = true, tries = 2 }",
                "unknown field `tries`",
            ),
        ] {
            let err = toml::from_str::<RoutePolicies>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn validates_route_keys() {
        for good in ["pkg.Svc", "Svc", "a.b.c.Svc/Method", "pkg_v1.Svc/Do_It"] {
            assert!(valid_route_key(good), "{good}");
        }
        for bad in [
            "",
            "/pkg.Svc",
            "pkg..Svc",
            "pkg.Svc/",
            "pkg.Svc/a.b",
            "pkg Svc",
        ] {
            assert!(!valid_route_key(bad), "{bad}");
        }
    }
}
