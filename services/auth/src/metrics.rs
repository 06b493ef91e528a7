//! The auth service's own metrics, next to the runtime's gRPC metrics on
//! the admin port's `/metrics`:
//!
//! - `auth_login_failures_total`: failed sign-in checks that count toward
//!   the lockout (wrong or unknown credentials, wrong MFA codes, a wrong
//!   current password);
//! - `auth_lockouts_total{scope}`: locks applied, to an email (`email`) or
//!   a client address (`ip`);
//! - `auth_signing_key_created_timestamp_seconds`: when the key that
//!   signs now was made (its age is `time() - ...`);
//! - `auth_signing_key_next_rotation_timestamp_seconds`: when the newest
//!   key reaches `rotation_period` and a new one is made;
//! - `auth_signing_keys_published`: keys in the JWKS.
//!
//! The password hasher's work counters are its own, registered by
//! [`crate::password::Hasher::register`].
//!
//! The lockout and the key ring record into process-wide families (they
//! are plain functions and structs that know no registry); [`register`]
//! exposes them in the service's registry. Timestamps are Unix seconds.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use cloudsec_runtime::metrics::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::keys::{KeyRecord, Plan};

type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Families {
    login_failures: Counter,
    lockouts: Family<Labels, Counter>,
    key_created: Gauge,
    next_rotation: Gauge,
    published: Gauge,
    /// Whether a key ring has reported, so that a process without one
    /// shows no key gauges at 0.
    keys_known: std::sync::atomic::AtomicBool,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        let f = Families::default();
        for scope in ["email", "ip"] {
            drop(
                f.lockouts
                    .get_or_create(&vec![("scope".to_owned(), scope.to_owned())]),
            );
        }
        f
    })
}

/// One failed check that counts toward the lockout.
pub(crate) fn login_failure() {
    families().login_failures.inc();
}

/// A lock applied to an email (`email`) or a client address (`ip`).
pub(crate) fn lockout(scope: &str) {
    families()
        .lockouts
        .get_or_create(&vec![("scope".to_owned(), scope.to_owned())])
        .inc();
}

/// The key set in force: which key signs, how many are published, and
/// when the next rotation is due.
pub(crate) fn signing_keys(records: &[KeyRecord], plan: &Plan, rotation_period: chrono::Duration) {
    let f = families();
    let seconds = |at: DateTime<Utc>| at.timestamp();
    if let Some(signing) = plan
        .signing
        .as_ref()
        .and_then(|kid| records.iter().find(|r| &r.kid == kid))
    {
        f.key_created.set(seconds(signing.created_at));
    }
    if let Some(newest) = records.iter().map(|r| r.created_at).max() {
        f.next_rotation.set(seconds(newest + rotation_period));
    }
    f.published
        .set(i64::try_from(plan.published.len()).unwrap_or(i64::MAX));
    f.keys_known
        .store(true, std::sync::atomic::Ordering::Release);
}

/// Exposes the auth families in `metrics`.
pub fn register(metrics: &Metrics) {
    metrics.register_collector(AuthCollector);
}

#[derive(Debug)]
struct AuthCollector;

impl Collector for AuthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let f = families();
        let mut list: Vec<(&str, &str, &dyn EncodeMetric)> = vec![
            (
                "auth_login_failures",
                "failed sign-in checks that count toward the lockout",
                &f.login_failures,
            ),
            (
                "auth_lockouts",
                "locks applied after repeated failures, by scope (email, ip)",
                &f.lockouts,
            ),
        ];
        if f.keys_known.load(std::sync::atomic::Ordering::Acquire) {
            list.extend([
                (
                    "auth_signing_key_created_timestamp_seconds",
                    "when the token signing key in use was made (Unix time)",
                    &f.key_created as &dyn EncodeMetric,
                ),
                (
                    "auth_signing_key_next_rotation_timestamp_seconds",
                    "when the next signing key is due (Unix time)",
                    &f.next_rotation,
                ),
                (
                    "auth_signing_keys_published",
                    "signing keys the JWKS publishes",
                    &f.published,
                ),
            ]);
        }
        for (name, help, metric) in list {
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lockouts_and_keys_are_exposed() {
        let registry = Metrics::new("auth");
        register(&registry);
        login_failure();
        lockout("email");
        let now = Utc::now();
        let record = KeyRecord {
            kid: "k1".into(),
            private_pem: String::new(),
            created_at: now,
            activates_at: now,
        };
        let plan = Plan {
            signing: Some("k1".into()),
            published: vec!["k1".into()],
            expired: vec![],
            rotate: false,
            next_change: None,
        };
        signing_keys(&[record], &plan, chrono::Duration::days(30));
        let text = registry.encode();
        for series in [
            "auth_login_failures_total{component=\"auth\"}",
            "auth_lockouts_total{component=\"auth\",scope=\"email\"}",
            "auth_lockouts_total{component=\"auth\",scope=\"ip\"}",
            "auth_signing_keys_published{component=\"auth\"} 1",
        ] {
            assert!(text.contains(series), "{series} in\n{text}");
        }
        let next = format!(
            "auth_signing_key_next_rotation_timestamp_seconds{{component=\"auth\"}} {}",
            (now + chrono::Duration::days(30)).timestamp()
        );
        assert!(text.contains(&next), "{text}");
    }
}
