//! Handling an event continues the trace of the request that caused it:
//! the `audit.handle` span belongs to the cause's trace, as seen by an OTLP
//! receiver run inside the test.
//!
//! Its own test binary, because the trace exporter is process-global.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudsec_audit::subscriber::handle;
use cloudsec_audit::{AuditLog, metrics::AuditMetrics};
use cloudsec_bus::{Envelope, Outcome};
use cloudsec_proto::events::v1::DocumentCreated;
use cloudsec_runtime::telemetry::{self, LogFormat};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handling_continues_the_causes_trace() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let _guard = telemetry::init(
        "cloudsec-audit-tests",
        LogFormat::Test,
        Some(format!("http://{addr}")),
    );

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let db = cloudsec_audit::connect(&url.as_str().into()).await.unwrap();
    let log = AuditLog::open(db, "audit", AuditMetrics::default())
        .await
        .unwrap();

    // The request that caused the event, in some other service.
    let cause = tracing::info_span!("documents.create");
    let traceparent =
        cloudsec_bus::trace::traceparent_of(&cause).expect("the cause is part of a trace");
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    let cause_span_id = traceparent.split('-').nth(2).unwrap().to_owned();
    drop(cause);
    let event = Envelope::new(
        "/cloudsec/documents",
        &DocumentCreated {
            document_id: "d1".into(),
            tenant: "acme".into(),
            actor: "alice".into(),
            ..Default::default()
        },
    )
    .with_traceparent(traceparent);

    assert_eq!(handle(&log, event).await, Outcome::Ack);

    let mut found = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while found.is_none() && tokio::time::Instant::now() < deadline {
        telemetry::flush();
        found = receiver
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == "audit.handle")
            .cloned();
        if found.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let span = found.expect("the audit.handle span reached the receiver");
    assert_eq!(
        hex(&span.trace_id),
        trace_id,
        "one trace from cause to audit"
    );
    assert_eq!(hex(&span.parent_span_id), cause_span_id);
}
