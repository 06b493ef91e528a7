//! Edge policy: which API keys exist and what each route demands (a key,
//! a token with scopes, a shared throttle, status overrides), resolved once
//! per route at build time from the configuration's method selectors and
//! the method's `cloudsec.api.v1.required_scopes` option.

use std::collections::{BTreeMap, HashMap};

use http::StatusCode;
use prost_reflect::{DescriptorPool, ExtensionDescriptor, MethodDescriptor, Value};

use sha2::{Digest, Sha256};

use crate::config::{Concurrency, GatewayConfig, Throttle, UsagePlan};

/// A configured API key, found by the hash of what the client sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyEntry {
    /// The configuration's name for the key; safe to log.
    pub(crate) id: String,
    pub(crate) plan: UsagePlan,
}

/// Every enabled API key, by SHA-256.
///
/// Looking a key up by its hash means the table holds nothing a leak of
/// the configuration would give away, and timing differences in the map
/// lookup reveal only facts about hashes, not about keys.
#[derive(Debug, Default)]
pub(crate) struct ApiKeys {
    by_hash: HashMap<[u8; 32], KeyEntry>,
}

/// The 32 bytes of a 64-digit hex string.
fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    /// Keys from a configuration that [`GatewayConfig::validate`] passed;
    /// disabled keys are left out, so they are refused like unknown ones.
    pub(crate) fn from_config(config: &GatewayConfig) -> Self {
        let by_hash = config
            .api_keys
            .iter()
            .filter(|(_, key)| key.enabled)
            .filter_map(|(id, key)| {
                let hash = parse_sha256(&key.sha256)?;
                let plan = config.usage_plans.get(&key.plan)?.clone();
                Some((
                    hash,
                    KeyEntry {
                        id: id.clone(),
                        plan,
                    },
                ))
            })
            .collect();
        Self { by_hash }
    }

    /// The entry of the key the client presented, if it is known.
    pub(crate) fn identify(&self, presented: &[u8]) -> Option<&KeyEntry> {
        let hash: [u8; 32] = Sha256::digest(presented).into();
        self.by_hash.get(&hash)
    }
}

/// What one route demands at the edge.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RouteEdge {
    pub(crate) api_key: bool,
    /// Needs no bearer token even with the JWT authorizer on.
    pub(crate) public: bool,
    /// The method option's scopes and the configured ones, together.
    pub(crate) scopes: Vec<String>,
    pub(crate) throttle: Option<Throttle>,
    /// How many of the method's calls may be upstream at once.
    pub(crate) concurrency: Option<Concurrency>,
    /// HTTP status by gRPC code for what the service answered.
    pub(crate) status_overrides: BTreeMap<i32, StatusCode>,
}

/// The `cloudsec.api.v1.required_scopes` extension, when some descriptor
/// imports `cloudsec/api/v1/options.proto`.
pub(crate) fn scopes_extension(pool: &DescriptorPool) -> Option<ExtensionDescriptor> {
    pool.get_extension_by_name("cloudsec.api.v1.required_scopes")
}

/// The scopes the contract demands for `method`.
pub(crate) fn option_scopes(
    method: &MethodDescriptor,
    extension: Option<&ExtensionDescriptor>,
) -> Vec<String> {
    match extension.and_then(|e| method.options().take_extension(e)) {
        Some(Value::List(values)) => values
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// How a method's caller authenticates, as its contract says
/// (`cloudsec.api.v1.authentication`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Authentication {
    /// An access token is required.
    #[default]
    Bearer,
    /// No access token: the method authenticates its caller otherwise.
    None,
    /// A token when the caller has one, else a login session in the body.
    BearerOrSession,
}

impl Authentication {
    /// Whether the gateway lets a call without a token through.
    pub(crate) fn tokenless(self) -> bool {
        self != Self::Bearer
    }
}

/// The `cloudsec.api.v1.authentication` extension, when the descriptors
/// know it.
pub(crate) fn authentication_extension(pool: &DescriptorPool) -> Option<ExtensionDescriptor> {
    pool.get_extension_by_name("cloudsec.api.v1.authentication")
}

/// The authentication the contract demands for `method`.
pub(crate) fn option_authentication(
    method: &MethodDescriptor,
    extension: Option<&ExtensionDescriptor>,
) -> Authentication {
    match extension
        .and_then(|e| method.options().take_extension(e))
        .and_then(|value| value.as_enum_number())
    {
        Some(1) => Authentication::None,
        Some(2) => Authentication::BearerOrSession,
        _ => Authentication::Bearer,
    }
}

/// How well `selector` names `service/method`: `None` when it does not,
/// higher is more specific.
fn specificity(selector: &str, service: &str, method: &str) -> Option<u8> {
    if selector == "*" {
        return Some(0);
    }
    let (s, m) = selector.split_once('/')?;
    if s != service {
        return None;
    }
    if m == "*" {
        Some(1)
    } else if m == method {
        Some(2)
    } else {
        None
    }
}

/// Whether any selector names the method.
pub(crate) fn selected(selectors: &[String], service: &str, method: &str) -> bool {
    selectors
        .iter()
        .any(|s| specificity(s, service, method).is_some())
}

impl RouteEdge {
    /// The settings of `service/method`: per setting, the most specific
    /// selector that sets it. Scopes are the contract's (`contract_scopes`)
    /// plus the configured ones: configuration can add scopes, not drop
    /// what the contract demands. A method needs no token when its contract
    /// says so (`contract_tokenless`) or `jwt.public` selects it.
    pub(crate) fn resolve(
        config: &GatewayConfig,
        service: &str,
        method: &str,
        contract_scopes: &[String],
        contract_tokenless: bool,
    ) -> Self {
        let mut matching: Vec<(u8, &crate::config::RoutePolicy)> = config
            .routes
            .iter()
            .filter_map(|(selector, policy)| {
                specificity(selector, service, method).map(|rank| (rank, policy))
            })
            .collect();
        // Most specific first, so the first `Some` of each setting wins.
        matching.sort_by_key(|m| std::cmp::Reverse(m.0));
        let api_key = matching.iter().find_map(|(_, p)| p.api_key);
        let scopes = matching.iter().find_map(|(_, p)| p.scopes.clone());
        let throttle = matching.iter().find_map(|(_, p)| p.throttle);
        let concurrency = matching.iter().find_map(|(_, p)| p.concurrency);
        let overrides = matching
            .iter()
            .find_map(|(_, p)| p.status_overrides.as_ref());
        let public = contract_tokenless
            || config
                .jwt
                .as_ref()
                .is_some_and(|jwt| selected(&jwt.public, service, method));
        let mut all_scopes: Vec<String> = contract_scopes.to_vec();
        for scope in scopes.unwrap_or_default() {
            if !all_scopes.contains(&scope) {
                all_scopes.push(scope);
            }
        }
        // Validated at start: names are codes and numbers statuses, so
        // anything left out here was never accepted.
        let status_overrides = overrides
            .into_iter()
            .flatten()
            .filter_map(|(name, status)| {
                let code = crate::config::grpc_code(name)?;
                let status = StatusCode::from_u16(*status).ok()?;
                Some((code as i32, status))
            })
            .collect();
        Self {
            api_key: api_key.unwrap_or(false),
            public,
            scopes: all_scopes,
            throttle,
            concurrency,
            status_overrides,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKey, JwtConfig, RoutePolicy};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn config() -> GatewayConfig {
        let mut config = GatewayConfig::default();
        config.usage_plans.insert(
            "basic".into(),
            UsagePlan {
                rate: 1.0,
                burst: 2,
                quota_per_day: Some(10),
                quota_per_month: None,
            },
        );
        for (id, secret, enabled) in [("a", "key-a", true), ("off", "key-off", false)] {
            config.api_keys.insert(
                id.into(),
                ApiKey {
                    sha256: hex(&Sha256::digest(secret.as_bytes())).to_uppercase(),
                    plan: "basic".into(),
                    enabled,
                },
            );
        }
        config
    }

    #[test]
    fn keys_are_found_by_hash_and_disabled_ones_are_not() {
        let config = config();
        config.validate().unwrap();
        let keys = ApiKeys::from_config(&config);
        let found = keys.identify(b"key-a").unwrap();
        assert_eq!(found.id, "a");
        assert_eq!(found.plan.burst, 2);
        assert!(keys.identify(b"key-off").is_none());
        assert!(keys.identify(b"key-b").is_none());
        assert!(keys.identify(b"").is_none());
    }

    #[test]
    fn the_most_specific_selector_wins_per_setting() {
        let mut config = config();
        let throttle = Throttle {
            rate: 5.0,
            burst: 5,
        };
        config.routes.insert(
            "*".into(),
            RoutePolicy {
                api_key: Some(true),
                scopes: Some(vec!["base".into()]),
                ..RoutePolicy::default()
            },
        );
        config.routes.insert(
            "a.v1.S/*".into(),
            RoutePolicy {
                scopes: Some(vec!["s".into()]),
                throttle: Some(throttle),
                ..RoutePolicy::default()
            },
        );
        config.routes.insert(
            "a.v1.S/Open".into(),
            RoutePolicy {
                api_key: Some(false),
                ..RoutePolicy::default()
            },
        );
        config.jwt = Some(JwtConfig {
            public: vec!["a.v1.S/Open".into()],
            ..JwtConfig::default()
        });
        config.validate().unwrap();

        let open = RouteEdge::resolve(&config, "a.v1.S", "Open", &[], false);
        assert!(!open.api_key);
        assert!(open.public);
        assert_eq!(open.scopes, ["s"]);
        assert_eq!(open.throttle, Some(throttle));

        let other = RouteEdge::resolve(&config, "a.v1.S", "Other", &[], false);
        assert!(other.api_key && !other.public);

        let elsewhere = RouteEdge::resolve(&config, "b.v1.T", "Open", &[], false);
        assert!(elsewhere.api_key);
        assert_eq!(elsewhere.scopes, ["base"]);
        assert_eq!(elsewhere.throttle, None);

        // No routes table: nothing is demanded.
        assert_eq!(
            RouteEdge::resolve(&GatewayConfig::default(), "a.v1.S", "Open", &[], false),
            RouteEdge::default()
        );
    }

    #[test]
    fn contract_scopes_are_kept_and_configured_ones_added() {
        let mut config = config();
        config.routes.insert(
            "a.v1.S/*".into(),
            RoutePolicy {
                scopes: Some(vec!["extra".into(), "items:write".into()]),
                ..RoutePolicy::default()
            },
        );
        let contract = ["items:write".to_owned()];
        let edge = RouteEdge::resolve(&config, "a.v1.S", "M", &contract, false);
        assert_eq!(edge.scopes, ["items:write", "extra"]);
        let edge = RouteEdge::resolve(&config, "b.v1.T", "M", &contract, false);
        assert_eq!(edge.scopes, ["items:write"]);
    }

    #[test]
    fn status_overrides_resolve_by_code() {
        let mut config = config();
        config.routes.insert(
            "a.v1.S/Delete".into(),
            RoutePolicy {
                status_overrides: Some(
                    [("NOT_FOUND".to_owned(), 200), ("ABORTED".to_owned(), 412)]
                        .into_iter()
                        .collect(),
                ),
                ..RoutePolicy::default()
            },
        );
        config.validate().unwrap();
        let edge = RouteEdge::resolve(&config, "a.v1.S", "Delete", &[], false);
        assert_eq!(
            edge.status_overrides.get(&(tonic::Code::NotFound as i32)),
            Some(&StatusCode::OK)
        );
        assert_eq!(
            edge.status_overrides.get(&(tonic::Code::Aborted as i32)),
            Some(&StatusCode::PRECONDITION_FAILED)
        );
        assert!(
            RouteEdge::resolve(&config, "a.v1.S", "Get", &[], false)
                .status_overrides
                .is_empty()
        );
    }

    #[test]
    fn the_contract_says_which_routes_need_no_token() {
        let pool = DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET).unwrap();
        let extension = authentication_extension(&pool);
        let auth = pool
            .get_service_by_name("cloudsec.auth.v1.AuthService")
            .unwrap();
        let of = |name: &str| {
            option_authentication(
                &auth.methods().find(|m| m.name() == name).unwrap(),
                extension.as_ref(),
            )
        };
        for method in [
            "SignUp",
            "Login",
            "Refresh",
            "Logout",
            "GetJwks",
            "GetOpenIdConfiguration",
        ] {
            assert_eq!(of(method), Authentication::None, "{method}");
        }
        assert_eq!(of("VerifySoftwareToken"), Authentication::BearerOrSession);
        assert_eq!(of("GlobalSignOut"), Authentication::Bearer);
        assert_eq!(of("AdminCreateUser"), Authentication::Bearer);
        let config = GatewayConfig {
            jwt: Some(JwtConfig::default()),
            ..GatewayConfig::default()
        };
        assert!(
            RouteEdge::resolve(&config, "cloudsec.auth.v1.AuthService", "Login", &[], true).public
        );
        assert!(
            !RouteEdge::resolve(
                &config,
                "cloudsec.documents.v1.DocumentService",
                "GetDocument",
                &[],
                false
            )
            .public
        );
    }
}
