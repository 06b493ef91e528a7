//! `Audit::build` and `run_until_stopped`: configuration, migrations,
//! listeners, health, metrics and a clean stop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cloudsec_audit::{Audit, AuditConfig, AuditError, queue_spec};
use cloudsec_bus::{EmbeddedBus, Provisioning};
use cloudsec_runtime::token::TokenVerifier;
use cloudsec_runtime::{Secret, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(database_url: &str) -> AuditConfig {
    AuditConfig {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(Secret::new(database_url).into()),
        tls: None,
        shutdown_grace: Duration::from_secs(1),
        queue: "audit".into(),
        store: Default::default(),
        signing: None,
    }
}

fn verifier() -> Arc<TokenVerifier> {
    Arc::new(TokenVerifier::fixed("iss", "aud"))
}

async fn queue(url: &str) -> Arc<dyn cloudsec_bus::Queue> {
    let db = cloudsec_audit::connect(&url.into()).await.unwrap();
    let queue = EmbeddedBus::new(db)
        .provision(&queue_spec(&config(url)), Provisioning::Create)
        .await
        .unwrap();
    Arc::new(queue)
}

/// A plain HTTP/1.1 GET on the admin port.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn bad_database_urls_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let error = Audit::build(&config("mysql://x"), verifier(), queue(&url).await)
        .await
        .unwrap_err();
    assert!(matches!(error, AuditError::Connect(_)), "{error:?}");
}

#[test]
fn the_queue_takes_every_event_type_unordered() {
    let spec = queue_spec(&config("x"));
    assert_eq!(spec.name, "audit");
    assert!(spec.event_types.is_empty());
    assert!(!spec.fifo);
    assert!(spec.wants("com.example.Anything"));
    assert_eq!(spec.max_receives, cloudsec_audit::subscriber::MAX_RECEIVES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_serves_and_stops_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let audit = Audit::build(&config(&url), verifier(), queue(&url).await)
        .await
        .unwrap();
    assert_ne!(audit.grpc_addr().port(), 0);
    assert_ne!(audit.admin_addr().port(), 0);
    assert_ne!(audit.grpc_addr(), audit.admin_addr());
    assert!(format!("{audit:?}").contains("Audit"));
    let admin = audit.admin_addr();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(audit.run_until_stopped(None, shutdown.clone()));

    // Ready once it serves; the counters are on /metrics.
    let mut ready = String::new();
    for _ in 0..200 {
        ready = get(admin, "/ready").await;
        if ready.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = get(admin, "/metrics").await;
    assert!(
        metrics.contains("audit_records_appended_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("audit_chain_verify_failures_total"),
        "{metrics}"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops within the grace")
        .unwrap()
        .unwrap();

    // Migrations are idempotent: a second start on the same file works.
    Audit::build(&config(&url), verifier(), queue(&url).await)
        .await
        .unwrap();
}

/// The annotations reach the descriptor set the gateway reads: both RPCs
/// are GET routes and demand the admin scope before the call leaves the
/// gateway.
#[test]
fn the_contract_routes_both_rpcs_for_tenant_admins() {
    let pool = prost_reflect::DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET).unwrap();
    let service = pool
        .get_service_by_name("cloudsec.audit.v1.AuditService")
        .unwrap();
    let http = pool.get_extension_by_name("google.api.http").unwrap();
    let scopes = pool
        .get_extension_by_name("cloudsec.api.v1.required_scopes")
        .unwrap();
    for (name, path) in [
        ("ListAuditRecords", "/v1/audit/records"),
        ("VerifyAuditChain", "/v1/audit/chain:verify"),
    ] {
        let method = service.methods().find(|m| m.name() == name).unwrap();
        let options = method.options();
        let rule = options.get_extension(&http);
        let rule = rule.as_message().unwrap();
        assert_eq!(
            rule.get_field_by_name("get").unwrap().as_str(),
            Some(path),
            "{name}"
        );
        let required = options.get_extension(&scopes);
        let required: Vec<&str> = required
            .as_list()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(required, [cloudsec_audit::ADMIN_SCOPE], "{name}");
    }
}
