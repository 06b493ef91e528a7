//! The audit service's own counters, next to the runtime's gRPC metrics on
//! the admin port's `/metrics`.

use prometheus_client::metrics::counter::Counter;

cloudsec_runtime::metric_families! {
    /// Records appended and verifications that found a broken chain
    /// (`audit_records_appended_total`, `audit_chain_verify_failures_total`).
    pub struct AuditMetrics {
        appended: Counter = "audit_records_appended", "audit records appended";
        verify_failures: Counter = "audit_chain_verify_failures",
            "chain verifications that found a missing or altered record";
    }
}

impl AuditMetrics {
    pub(crate) fn record_appended(&self) {
        self.appended.inc();
    }

    pub(crate) fn record_verify_failure(&self) {
        self.verify_failures.inc();
    }

    pub fn appended(&self) -> u64 {
        self.appended.get()
    }

    pub fn verify_failures(&self) -> u64 {
        self.verify_failures.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudsec_runtime::metrics::Metrics;

    #[test]
    fn counters_are_exposed() {
        let registry = Metrics::new("audit");
        let metrics = AuditMetrics::register(&registry);
        metrics.record_appended();
        metrics.record_appended();
        metrics.record_verify_failure();
        let text = registry.encode();
        assert!(
            text.contains("audit_records_appended_total{component=\"audit\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("audit_chain_verify_failures_total{component=\"audit\"} 1"),
            "{text}"
        );
        assert_eq!(metrics.appended(), 2);
    }
}
