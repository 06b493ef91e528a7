//! Cross-origin resource sharing: preflights answered by the gateway and
//! the `Access-Control-*` headers on actual responses.
//!
//! A preflight is refused (403, no CORS headers) when the origin is not
//! listed, the method has no route on the path, or a requested header is
//! not allowed; the browser then never sends the real request. Actual
//! requests from an unlisted origin are served without CORS headers, so
//! the browser keeps the response from the page.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::config::CorsConfig;
use crate::error::ApiError;

/// The compiled CORS settings.
#[derive(Debug)]
pub(crate) struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    /// Lowercase.
    allowed_headers: Vec<String>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
    credentials: bool,
}

const VARY_PREFLIGHT: &str =
    "origin, access-control-request-method, access-control-request-headers";

/// Whether the request is a CORS preflight.
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl Cors {
    pub(crate) fn new(config: &CorsConfig) -> Self {
        let expose = config.expose_headers.join(", ");
        Self {
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            origins: config.allowed_origins.clone(),
            allowed_headers: config
                .allowed_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            expose_headers: (!expose.is_empty())
                .then(|| HeaderValue::from_str(&expose).ok())
                .flatten(),
            max_age: HeaderValue::from(config.max_age.as_secs()),
            credentials: config.allow_credentials,
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o == origin)
    }

    /// `*` where any origin may read and no credentials are involved;
    /// otherwise the request's own origin.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// Answers a preflight for a path whose routes take `methods`.
    pub(crate) fn preflight(&self, headers: &HeaderMap, methods: &[Method]) -> Response {
        let refuse = |why: String| {
            let mut response = ApiError::permission_denied(why).into_response();
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static(VARY_PREFLIGHT));
            response
        };
        let Some(origin) = headers.get(header::ORIGIN) else {
            return refuse("a preflight needs an Origin header".to_owned());
        };
        let origin_text = origin.to_str().unwrap_or_default();
        if !self.allows(origin_text) {
            return refuse(format!("origin `{origin_text}` is not allowed"));
        }
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
        let Some(requested) = requested.filter(|m| methods.contains(m)) else {
            return refuse("the requested method is not allowed on this path".to_owned());
        };
        let asked: Vec<String> = headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(bad) = asked.iter().find(|h| !self.allowed_headers.contains(h)) {
            return refuse(format!("the request header `{bad}` is not allowed"));
        }

        let mut response = StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        let methods = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&methods) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
        }
        if !asked.is_empty()
            && let Ok(value) = HeaderValue::from_str(&asked.join(", "))
        {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        out.insert(header::VARY, HeaderValue::from_static(VARY_PREFLIGHT));
        tracing::trace!(%requested, "preflight allowed");
        response
    }

    /// Adds the CORS headers to an actual response when the origin is
    /// allowed. `Vary: Origin` goes on every response, so that caches keep
    /// answers for different origins apart.
    pub(crate) fn decorate(&self, origin: Option<&HeaderValue>, response: &mut Response) {
        let out = response.headers_mut();
        out.append(header::VARY, HeaderValue::from_static("origin"));
        let Some(origin) = origin.filter(|o| self.allows(o.to_str().unwrap_or_default())) else {
            return;
        };
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        if let Some(expose) = &self.expose_headers {
            out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        let mut config = CorsConfig::allowing(origins.iter().copied());
        config.allow_credentials = credentials;
        Cors::new(&config)
    }

    fn preflight(origin: &str, method: &str, headers: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).unwrap(),
        );
        if !headers.is_empty() {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(headers).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_listed_origin_gets_a_preflight_answer() {
        let c = cors(&["https://app.example.com"], true);
        let h = preflight(
            "https://app.example.com",
            "PATCH",
            "Content-Type, X-API-Key",
        );
        assert!(is_preflight(&Method::OPTIONS, &h));
        let r = c.preflight(&h, &[Method::GET, Method::PATCH]);
        assert_eq!(r.status(), 204);
        let out = r.headers();
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, PATCH");
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, x-api-key"
        );
        assert_eq!(out[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn unlisted_origins_methods_and_headers_are_refused() {
        let c = cors(&["https://app.example.com"], false);
        for h in [
            preflight("https://evil.example.com", "GET", ""),
            preflight("https://app.example.com", "DELETE", ""),
            preflight("https://app.example.com", "GET", "x-secret"),
            preflight("https://app.example.com", "not a method", ""),
        ] {
            let r = c.preflight(&h, &[Method::GET]);
            assert_eq!(r.status(), 403);
            assert!(
                !r.headers()
                    .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            );
        }
    }

    #[test]
    fn any_origin_answers_star_without_credentials() {
        let c = cors(&["*"], false);
        let r = c.preflight(&preflight("https://x.example", "GET", ""), &[Method::GET]);
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn actual_responses_get_headers_only_for_listed_origins() {
        let c = cors(&["https://app.example.com"], false);
        let mut r = StatusCode::OK.into_response();
        c.decorate(
            Some(&HeaderValue::from_static("https://app.example.com")),
            &mut r,
        );
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "x-request-id, retry-after"
        );
        let mut r = StatusCode::OK.into_response();
        c.decorate(
            Some(&HeaderValue::from_static("https://evil.example.com")),
            &mut r,
        );
        assert!(
            !r.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        assert_eq!(r.headers()[header::VARY], "origin");
    }
}
