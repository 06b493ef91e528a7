//! Process-wide metrics: what belongs to the process rather than to one
//! component's traffic (the Vault login, JWKS fetches, certificate
//! renewals).
//!
//! Their owners (the Vault client, a token verifier, a workload identity)
//! are made before any component's registry exists and are shared by
//! several components in `cloudsec up`, so they record here, and every
//! [`Metrics`](super::Metrics) registry exposes these families through
//! one collector. On Kubernetes a process is one component and the series
//! appear once; in `cloudsec up` every admin port of the process shows the
//! same values (with its own `component` label), which is why the alert
//! rules aggregate them by their identifying label.
//!
//! Expiries are Unix timestamps, as Prometheus recommends for the time of
//! an event: the value does not go stale between updates, and the rules
//! compute the seconds left as `... - time()`.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// A label set as name/value pairs.
pub(crate) type Labels = Vec<(String, String)>;

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Seconds since the Unix epoch of `at` (0 before the epoch).
pub fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[derive(Debug, Default)]
struct Families {
    identity_renewals: Family<Labels, Counter>,
    vault_token_expiration: Family<Labels, Gauge>,
    vault_token_renewals: Family<Labels, Counter>,
    vault_lease_expiration: Family<Labels, Gauge>,
    vault_lease_renewals: Family<Labels, Counter>,
    jwks_refreshes: Family<Labels, Counter>,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(Families::default)
}

/// A workload certificate renewal: `ok` false for a failed attempt (it is
/// retried with backoff while the current certificate is valid).
pub fn identity_renewal(identity: &str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    let f = &families().identity_renewals;
    // Both outcomes exist from the first renewal on, so that a rate of
    // failures is 0 rather than absent.
    for o in ["ok", "error"] {
        drop(f.get_or_create(&labels([("identity", identity), ("outcome", o)])));
    }
    f.get_or_create(&labels([("identity", identity), ("outcome", outcome)]))
        .inc();
}

/// The Vault token of this process now expires at `at` (`None`: it has no
/// TTL, e.g. a development root token).
pub fn vault_token_expires(at: Option<SystemTime>) {
    let f = &families().vault_token_expiration;
    match at {
        Some(at) => {
            f.get_or_create(&Labels::new()).set(unix_seconds(at));
        }
        None => {
            f.remove(&Labels::new());
        }
    }
    // The renewal counters exist as soon as there is a token.
    for o in ["renewed", "logged_in", "error"] {
        drop(
            families()
                .vault_token_renewals
                .get_or_create(&labels([("outcome", o)])),
        );
    }
}

/// One attempt to keep the Vault token alive: `renewed`, `logged_in`
/// (a new login) or `error`.
pub fn vault_token_renewal(outcome: &str) {
    families()
        .vault_token_renewals
        .get_or_create(&labels([("outcome", outcome)]))
        .inc();
}

/// The Vault lease `lease` (e.g. `database/creds/documents`) now expires
/// at `at`.
pub fn vault_lease_expires(lease: &str, at: SystemTime) {
    families()
        .vault_lease_expiration
        .get_or_create(&labels([("lease", lease)]))
        .set(unix_seconds(at));
    for o in ["renewed", "replaced", "error"] {
        drop(
            families()
                .vault_lease_renewals
                .get_or_create(&labels([("lease", lease), ("outcome", o)])),
        );
    }
}

/// One attempt to keep a Vault lease alive: `renewed`, `replaced` (new
/// credentials under a new lease) or `error`.
pub fn vault_lease_renewal(lease: &str, outcome: &str) {
    families()
        .vault_lease_renewals
        .get_or_create(&labels([("lease", lease), ("outcome", outcome)]))
        .inc();
}

/// One fetch of a JSON Web Key Set by a token verifier; `source` is
/// `auth` (the auth service over the mesh), `url` (an HTTPS JWKS) or
/// `cognito`.
pub fn jwks_refresh(source: &str, ok: bool) {
    let f = &families().jwks_refreshes;
    for o in ["ok", "error"] {
        drop(f.get_or_create(&labels([("source", source), ("outcome", o)])));
    }
    let outcome = if ok { "ok" } else { "error" };
    f.get_or_create(&labels([("source", source), ("outcome", outcome)]))
        .inc();
}

/// Encodes the process-wide families into whichever registry it is
/// registered in.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

fn encode_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &dyn EncodeMetric,
) -> Result<(), std::fmt::Error> {
    if metric.is_empty() {
        return Ok(());
    }
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let f = families();
        encode_family(
            &mut encoder,
            "identity_cert_renewals",
            "workload certificate renewals, by SPIFFE id and outcome (ok, error)",
            &f.identity_renewals,
        )?;
        encode_family(
            &mut encoder,
            "vault_token_expiration_timestamp_seconds",
            "when the process's Vault token expires (Unix time)",
            &f.vault_token_expiration,
        )?;
        encode_family(
            &mut encoder,
            "vault_token_renewals",
            "attempts to keep the Vault token alive, by outcome (renewed, logged_in, error)",
            &f.vault_token_renewals,
        )?;
        encode_family(
            &mut encoder,
            "vault_lease_expiration_timestamp_seconds",
            "when each Vault lease (dynamic database credentials) expires (Unix time)",
            &f.vault_lease_expiration,
        )?;
        encode_family(
            &mut encoder,
            "vault_lease_renewals",
            "attempts to keep a Vault lease alive, by lease and outcome (renewed, replaced, error)",
            &f.vault_lease_renewals,
        )?;
        encode_family(
            &mut encoder,
            "jwks_refreshes",
            "JWKS fetches by token verifiers, by key source and outcome (ok, error)",
            &f.jwks_refreshes,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_shows_the_process_families() {
        jwks_refresh("auth", false);
        vault_lease_expires(
            "database/creds/test",
            UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        );
        let a = super::super::Metrics::new("a").encode();
        let b = super::super::Metrics::new("b").encode();
        for (text, component) in [(&a, "a"), (&b, "b")] {
            assert!(
                text.contains(&format!(
                    "jwks_refreshes_total{{component=\"{component}\",source=\"auth\",outcome=\"error\"}}"
                )),
                "{text}"
            );
            assert!(
                text.contains(&format!(
                    "vault_lease_expiration_timestamp_seconds{{component=\"{component}\",lease=\"database/creds/test\"}} 1700000000"
                )),
                "{text}"
            );
        }
    }
}
