//! The admin HTTP listener every component runs: `/live`, `/ready` and
//! `/metrics`. It is plaintext and belongs on a port that only the cluster
//! (Prometheus, the kubelet) reaches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Whether the component should receive traffic; false while starting and
/// once draining.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    ready: Readiness,
}

pub fn router(metrics: Metrics, ready: Readiness) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(AdminState { metrics, ready })
}

async fn ready_handler(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/metrics` in the format the scraper asks for: OpenMetrics when its
/// `Accept` prefers it (Prometheus itself does), the classic Prometheus
/// text format 0.0.4 otherwise (curl, older scrapers), as client_golang
/// negotiates.
async fn metrics_handler(
    State(state): State<AdminState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let text = state.metrics.encode();
    if prefers_openmetrics(&accept) {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text)
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            openmetrics_to_prometheus(&text),
        )
    }
}

/// Whether an `Accept` header ranks OpenMetrics above the 0.0.4 text
/// format (by q-value; a tie goes to OpenMetrics, as it was named).
fn prefers_openmetrics(accept: &str) -> bool {
    let mut openmetrics = 0.0f32;
    let mut text = 0.0f32;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: a counter family
/// `foo` becomes `foo_total` in its `# TYPE` and `# HELP` lines, `info`
/// families become gauges, and `# UNIT`, `# EOF` and exemplars go, so a
/// 0.0.4 parser sees typed series.
fn openmetrics_to_prometheus(text: &str) -> String {
    let kinds: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .collect();
    // The name a family has in 0.0.4, and its type there.
    let renamed = |name: &str| match kinds.get(name).copied() {
        Some("counter") => (format!("{name}_total"), "counter"),
        Some("info") => (format!("{name}_info"), "gauge"),
        Some("gaugehistogram" | "stateset" | "unknown") => (name.to_owned(), "untyped"),
        Some(kind) => (name.to_owned(), kind),
        None => (name.to_owned(), "untyped"),
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_once(' ').map_or(rest, |(name, _)| name);
            let (name, kind) = renamed(name);
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name).0));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            // Exemplars follow ` # ` after the value; 0.0.4 has none.
            let sample = line.split_once(" # ").map_or(line, |(sample, _)| sample);
            let series = sample.split(['{', ' ']).next().unwrap_or_default();
            if series.ends_with("_created") {
                continue;
            }
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

/// Serves the admin endpoints until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    ready: Readiness,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, ready))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_client_golang() {
        // What Prometheus 2.x sends.
        assert!(prefers_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!prefers_openmetrics("text/plain;version=0.0.4"));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics(""));
        assert!(!prefers_openmetrics(
            "application/openmetrics-text;q=0.2,text/plain;q=0.9"
        ));
    }

    #[test]
    fn rewrites_counters_and_drops_openmetrics_only_lines() {
        let text = "# HELP req Requests.\n# TYPE req counter\nreq_total{a=\"b\"} 3 # {trace_id=\"x\"} 1.0\n\
                    # HELP build Build.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n\
                    # HELP lat Latency.\n# TYPE lat histogram\n# UNIT lat seconds\nlat_bucket{le=\"+Inf\"} 1\nlat_sum 0.1\nlat_count 1\n# EOF\n";
        let out = openmetrics_to_prometheus(text);
        assert_eq!(
            out,
            "# HELP req_total Requests.\n# TYPE req_total counter\nreq_total{a=\"b\"} 3\n\
             # HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n\
             # HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_sum 0.1\nlat_count 1\n"
        );
    }
}
