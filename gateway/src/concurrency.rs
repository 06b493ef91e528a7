//! `gateway_requests_in_flight`: REST requests received and not yet
//! answered, the gateway's concurrency (saturation) signal.
//!
//! One process-wide gauge, since a process runs one gateway; a request
//! holds an [`InFlight`] guard for as long as its handler runs, so every
//! way out (an answer, an error, a client that went away) takes it back.

use std::sync::OnceLock;

use cloudsec_runtime::metrics::Metrics;
use prometheus_client::metrics::gauge::Gauge;

fn gauge() -> &'static Gauge {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE.get_or_init(Gauge::default)
}

/// Exposes the gauge in the gateway's registry.
pub(crate) fn register(metrics: &Metrics) {
    metrics.register(
        "gateway_requests_in_flight",
        "REST requests received and not yet answered",
        gauge().clone(),
    );
}

/// Counts one request until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(());

/// A request begins.
pub(crate) fn enter() -> InFlight {
    gauge().inc();
    InFlight(())
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge().dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_until_dropped() {
        let metrics = Metrics::new("gateway");
        register(&metrics);
        let before = gauge().get();
        let a = enter();
        let b = enter();
        assert_eq!(gauge().get(), before + 2);
        drop(a);
        drop(b);
        assert_eq!(gauge().get(), before);
        assert!(
            metrics
                .encode()
                .contains("gateway_requests_in_flight{component=\"gateway\"}")
        );
    }
}
