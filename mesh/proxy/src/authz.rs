//! Inbound authorization: which peer identities may call which gRPC
//! services and methods.

use std::collections::{BTreeMap, BTreeSet};

use cloudsec_identity::SpiffeId;
use serde::Deserialize;

/// What happens to a call that no allow-list covers, or that an allow-list
/// does not admit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthzMode {
    /// Only listed identities get in; unlisted routes are closed.
    Deny,
    /// Any workload with a mesh certificate may call unlisted routes;
    /// listed routes admit only their identities.
    #[default]
    Authenticated,
    /// Everything is let through; what `deny` would refuse is logged and
    /// counted, to try a policy out before enforcing it.
    Audit,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    #[serde(default)]
    pub mode: AuthzMode,
    /// `pkg.Service` or `pkg.Service/Method` to the SPIFFE ids allowed.
    #[serde(default)]
    pub allow: BTreeMap<String, Vec<String>>,
}

/// The outcome for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Would be denied, but audit mode lets it through.
    AuditDeny,
}

#[derive(Debug, Clone)]
pub struct Authorizer {
    mode: AuthzMode,
    allow: BTreeMap<String, BTreeSet<SpiffeId>>,
}

impl Authorizer {
    /// Checks every listed identity; `Err` names the bad entry.
    pub fn new(config: &AuthorizationConfig) -> Result<Self, String> {
        let mut allow = BTreeMap::new();
        for (route, ids) in &config.allow {
            if route.is_empty() || route.starts_with('/') || route.matches('/').count() > 1 {
                return Err(format!(
                    "`{route}` is not `pkg.Service` or `pkg.Service/Method`"
                ));
            }
            let parsed = ids
                .iter()
                .map(|id| SpiffeId::parse(id).map_err(|e| format!("{route}: {e}")))
                .collect::<Result<BTreeSet<_>, _>>()?;
            allow.insert(route.clone(), parsed);
        }
        Ok(Self {
            mode: config.mode,
            allow,
        })
    }

    /// Decides for `peer` calling the gRPC `path` (`/pkg.Service/Method`).
    pub fn decide(&self, peer: &SpiffeId, path: &str) -> Decision {
        let route = path.trim_start_matches('/');
        let service = route.split('/').next().unwrap_or_default();
        let listed = self.allow.get(route).or_else(|| self.allow.get(service));
        let admitted = match listed {
            Some(ids) => ids.contains(peer),
            None => self.mode != AuthzMode::Deny,
        };
        match (admitted, self.mode) {
            (true, _) => Decision::Allow,
            (false, AuthzMode::Audit) => Decision::AuditDeny,
            (false, _) => Decision::Deny,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sa: &str) -> SpiffeId {
        SpiffeId::new("cloudsec.local", "default", sa).unwrap()
    }

    fn authorizer(mode: AuthzMode) -> Authorizer {
        let mut allow = BTreeMap::new();
        allow.insert(
            "cloudsec.documents.v1.DocumentService".to_owned(),
            vec![id("gateway").to_string()],
        );
        allow.insert(
            "cloudsec.documents.v1.DocumentService/GetDocument".to_owned(),
            vec![id("gateway").to_string(), id("audit").to_string()],
        );
        Authorizer::new(&AuthorizationConfig { mode, allow }).unwrap()
    }

    #[test]
    fn allow_lists_by_service_and_method() {
        let a = authorizer(AuthzMode::Authenticated);
        let list = "/cloudsec.documents.v1.DocumentService/ListDocuments";
        let get = "/cloudsec.documents.v1.DocumentService/GetDocument";
        assert_eq!(a.decide(&id("gateway"), list), Decision::Allow);
        assert_eq!(a.decide(&id("audit"), list), Decision::Deny);
        assert_eq!(a.decide(&id("audit"), get), Decision::Allow);
        // Unlisted services: any mesh identity.
        assert_eq!(
            a.decide(&id("x"), "/grpc.health.v1.Health/Check"),
            Decision::Allow
        );
    }

    #[test]
    fn deny_mode_closes_unlisted_routes() {
        let a = authorizer(AuthzMode::Deny);
        assert_eq!(
            a.decide(&id("x"), "/grpc.health.v1.Health/Check"),
            Decision::Deny
        );
        assert_eq!(
            a.decide(
                &id("gateway"),
                "/cloudsec.documents.v1.DocumentService/ListDocuments"
            ),
            Decision::Allow
        );
    }

    #[test]
    fn audit_mode_only_reports() {
        let a = authorizer(AuthzMode::Audit);
        assert_eq!(
            a.decide(
                &id("audit"),
                "/cloudsec.documents.v1.DocumentService/ListDocuments"
            ),
            Decision::AuditDeny
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let mut allow = BTreeMap::new();
        allow.insert("a.B".to_owned(), vec!["not-a-spiffe-id".to_owned()]);
        let err = Authorizer::new(&AuthorizationConfig {
            mode: AuthzMode::Deny,
            allow,
        })
        .unwrap_err();
        assert!(err.contains("a.B"), "{err}");
    }
}
