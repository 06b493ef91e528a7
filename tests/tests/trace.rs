//! One trace spans the gateway, the service and the event's subscriber: the
//! gateway's span is the parent of the service's, across the mTLS gRPC hop,
//! and the audit service's handling of the event the request caused
//! continues the same trace, as seen by an OTLP receiver run inside the
//! test.
//!
//! Its own test binary, because the trace exporter is process-global.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudsec_runtime::telemetry::{self, LogFormat};
use cloudsec_tests::{Backend, Sandbox, eventually};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_gateway_and_service() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let _guard = telemetry::init(
        "cloudsec-tests",
        LogFormat::Test,
        Some(format!("http://{addr}")),
    );

    let sb = Sandbox::start(Backend::Sqlite).await.unwrap();
    let user = sb.user().await;
    let r = sb
        .http
        .post(sb.url("/v1/documents"))
        .bearer_auth(&user.token)
        .json(&json!({"title": "traced", "classification": "PUBLIC"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Server spans are kind 2, client spans kind 3 (OTLP's SpanKind).
    let found = eventually(Duration::from_secs(20), || async {
        telemetry::flush();
        let spans = receiver.spans.lock().unwrap().clone();
        let server = spans
            .iter()
            .find(|s| s.kind == 2 && s.name.contains("DocumentService/CreateDocument"))?;
        let gateway = spans.iter().find(|s| s.span_id == server.parent_span_id)?;
        // The first documents call fetches the JWKS from auth, in the same trace.
        let jwks = spans
            .iter()
            .find(|s| s.name.contains("AuthService/GetJwks") && s.kind == 2)?;
        Some((server.clone(), gateway.clone(), jwks.clone()))
    })
    .await;
    let (server, gateway, jwks) =
        found.expect("the service span and its parent reached the receiver");
    assert_eq!(
        server.trace_id, gateway.trace_id,
        "one trace from gateway to service"
    );
    assert_eq!(gateway.kind, 3, "the parent is the gateway's client span");
    assert!(
        gateway.parent_span_id.is_empty(),
        "the trace starts at the gateway"
    );
    assert_eq!(
        jwks.trace_id, server.trace_id,
        "the JWKS fetch joins the trace"
    );
    assert_eq!(jwks.parent_span_id, server.span_id);

    // The event the create wrote to the outbox carries the trace through
    // the relay and the bus: the audit service's handling of it is part of
    // the same trace, below the service span that caused it.
    // `audit.handle`'s parent is the bus's `bus.handle`, which ends (and is
    // exported) after it: walk the chain on every poll until it reaches the
    // service span, since one flush may hold the child without its parent.
    let reached = eventually(Duration::from_secs(20), || async {
        telemetry::flush();
        let spans = receiver.spans.lock().unwrap().clone();
        let handled = spans
            .iter()
            .find(|s| s.name == "audit.handle" && s.trace_id == server.trace_id)?;
        let mut ancestor = handled.parent_span_id.clone();
        while let Some(parent) = spans.iter().find(|s| s.span_id == ancestor) {
            if parent.span_id == server.span_id {
                return Some(());
            }
            ancestor = parent.parent_span_id.clone();
        }
        None
    })
    .await;
    let seen: Vec<String> = receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace_id == server.trace_id)
        .map(|s| s.name.clone())
        .collect();
    assert!(
        reached.is_some(),
        "audit.handle joins the request's trace below the service span; spans of the trace seen: {seen:?}"
    );
    sb.stop().await;
}
