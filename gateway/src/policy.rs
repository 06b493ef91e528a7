//! Edge policy: which API keys exist and what each route demands (a key,
//! a token with scopes, a shared throttle), resolved once per route at
//! build time from the configuration's method selectors.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::{GatewayConfig, Throttle, UsagePlan};

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
    pub(crate) scopes: Vec<String>,
    pub(crate) throttle: Option<Throttle>,
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
    /// selector that sets it.
    pub(crate) fn resolve(config: &GatewayConfig, service: &str, method: &str) -> Self {
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
        let public = config
            .jwt
            .as_ref()
            .is_some_and(|jwt| selected(&jwt.public, service, method));
        Self {
            api_key: api_key.unwrap_or(false),
            public,
            scopes: scopes.unwrap_or_default(),
            throttle,
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
                throttle: None,
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

        let open = RouteEdge::resolve(&config, "a.v1.S", "Open");
        assert!(!open.api_key);
        assert!(open.public);
        assert_eq!(open.scopes, ["s"]);
        assert_eq!(open.throttle, Some(throttle));

        let other = RouteEdge::resolve(&config, "a.v1.S", "Other");
        assert!(other.api_key && !other.public);

        let elsewhere = RouteEdge::resolve(&config, "b.v1.T", "Open");
        assert!(elsewhere.api_key);
        assert_eq!(elsewhere.scopes, ["base"]);
        assert_eq!(elsewhere.throttle, None);

        // No routes table: nothing is demanded.
        assert_eq!(
            RouteEdge::resolve(&GatewayConfig::default(), "a.v1.S", "Open"),
            RouteEdge::default()
        );
    }

    #[test]
    fn auth_routes_are_public_by_default() {
        let config = GatewayConfig {
            jwt: Some(JwtConfig::default()),
            ..GatewayConfig::default()
        };
        for method in ["SignUp", "Login", "GetJwks"] {
            assert!(RouteEdge::resolve(&config, "cloudsec.auth.v1.AuthService", method).public);
        }
        assert!(
            !RouteEdge::resolve(
                &config,
                "cloudsec.documents.v1.DocumentService",
                "GetDocument"
            )
            .public
        );
    }
}
