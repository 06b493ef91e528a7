//! What an operator relies on: health, reflection, metrics, request ids,
//! and data that survives a restart.

use cloudsec_tests::Sandbox;
use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::{create, document_ids};

pub(crate) async fn health_reflection_and_metrics(sb: &Sandbox) {
    let platform = [
        ("auth", "cloudsec.auth.v1.AuthService"),
        ("documents", "cloudsec.documents.v1.DocumentService"),
        ("audit", "cloudsec.audit.v1.AuditService"),
    ];
    for (service, name) in platform {
        let status = HealthClient::new(sb.channel(service))
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(status, 1, "{name} is SERVING");

        // Both reflection versions answer, and each port lists what it
        // serves: its own service and health, not every contract.
        let v1 = reflection_v1(sb, service).await;
        let v1alpha = reflection_v1alpha(sb, service).await;
        assert_eq!(v1, v1alpha, "{service}: both versions list the same");
        assert!(v1.contains(&name.to_owned()), "{v1:?}");
        assert!(v1.contains(&"grpc.health.v1.Health".to_owned()), "{v1:?}");
        for (_, other) in platform.iter().filter(|(s, _)| *s != service) {
            assert!(
                !v1.contains(&(*other).to_owned()),
                "{service} lists {other}: {v1:?}"
            );
        }
    }

    // A request id chosen by the client comes back.
    let user = sb.user().await;
    let r = sb
        .http
        .get(sb.url("/v1/documents"))
        .bearer_auth(&user.token)
        .header("x-request-id", "req-e2e-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-e2e-42");

    for admin in [
        sb.addrs.gateway_admin,
        sb.addrs.auth_admin,
        sb.addrs.documents_admin,
    ] {
        assert_eq!(sb.admin_text(admin, "/live").await, "live\n");
        assert_eq!(sb.admin_text(admin, "/ready").await, "ready\n");
    }
    let metrics = sb.admin_text(sb.addrs.documents_admin, "/metrics").await;
    assert!(
        metrics.contains("inbound_response_total{")
            && metrics.contains("grpc_method=\"ListDocuments\"")
            && metrics.contains("grpc_status=\"Ok\""),
        "{metrics}"
    );
    // Content negotiation: a 0.0.4 scraper sees typed counters, an
    // OpenMetrics one the OpenMetrics names.
    for (accept, content_type, typed, eof) in [
        (
            "text/plain;version=0.0.4",
            "text/plain; version=0.0.4",
            "# TYPE inbound_response_total counter",
            false,
        ),
        (
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "application/openmetrics-text",
            "# TYPE inbound_response counter",
            true,
        ),
    ] {
        let r = sb
            .http
            .get(format!("http://{}/metrics", sb.addrs.documents_admin))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        let got = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(content_type), "{accept}: {got}");
        let text = r.text().await.unwrap();
        assert!(text.contains(typed), "{accept}: {text}");
        assert_eq!(text.contains("# EOF"), eof, "{accept}");
    }
    let metrics = sb.admin_text(sb.addrs.auth_admin, "/metrics").await;
    assert!(metrics.contains("grpc_method=\"Login\""), "{metrics}");
    let gateway = sb.admin_text(sb.addrs.gateway_admin, "/metrics").await;
    assert!(gateway.contains("/v1/documents"), "{gateway}");
}

async fn reflection_v1(sb: &Sandbox, service: &str) -> Vec<String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(sb.channel(service))
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("v1 answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

async fn reflection_v1alpha(sb: &Sandbox, service: &str) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(sb.channel(service))
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("v1alpha answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

pub(crate) async fn restart_reuses_data(sb: &Sandbox) {
    // `sb` belongs to the caller; restart a sandbox of our own.
    let own = Sandbox::start(sb.backend).await.expect("sandbox");
    let user = own.user().await;
    let doc = create(
        &own,
        &user.token,
        json!({"title": "durable", "classification": "PUBLIC"}),
    )
    .await;
    let own = own.restart().await;
    // The signing key survived, so the old token still verifies.
    assert_eq!(
        document_ids(&own, &user.token).await,
        vec![doc["id"].as_str().unwrap().to_owned()]
    );
    own.login(&user.email, &user.password).await;
    own.stop().await;
}

/// SIGTERM under load: every request the gateway accepted before the
/// signal is answered, and answered well; later ones are refused at
/// connect, never half-served.
pub(crate) async fn drain_finishes_what_was_accepted(sb: &Sandbox) {
    // `sb` belongs to the caller; drain a sandbox of our own.
    let own = Sandbox::start(sb.backend).await.expect("sandbox");
    let user = own.user().await;
    let doc = create(
        &own,
        &user.token,
        json!({"title": "under load", "classification": "INTERNAL", "content": "x"}),
    )
    .await;
    let path = format!("/v1/documents/{}", doc["id"].as_str().unwrap());
    let url = own.url(&path);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (url, token, stop) = (url.clone(), user.token.clone(), stop.clone());
        let answered = answered.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut ok, mut refused, mut bad) = (0u32, 0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == 200 => {
                        // The whole answer arrives, too.
                        match r.json::<serde_json::Value>().await {
                            Ok(body) if body["title"] == "under load" => {
                                ok += 1;
                                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            other => bad.push(format!("body: {other:?}")),
                        }
                    }
                    Ok(r) => bad.push(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    // Not accepted: the listener is closed.
                    Err(e) if e.is_connect() => {
                        refused += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    Err(e) => bad.push(format!("{e:?}")),
                }
            }
            (ok, refused, bad)
        }));
    }
    // Load runs, then the signal comes in the middle of it.
    let warm = cloudsec_tests::eventually(std::time::Duration::from_secs(30), || async {
        (answered.load(std::sync::atomic::Ordering::Relaxed) >= 40).then_some(())
    })
    .await;
    assert!(warm.is_some(), "the load never got going");
    own.begin_shutdown();
    let stopped = tokio::spawn(own.stop());
    // Keep sending through the drain until the gateway refuses connections.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    stopped
        .await
        .expect("the platform drains and stops cleanly");
    let (mut ok, mut refused, mut bad) = (0, 0, Vec::new());
    for client in clients {
        let (o, r, b) = client.await.unwrap();
        ok += o;
        refused += r;
        bad.extend(b);
    }
    assert!(
        refused > 0,
        "the drain ended with the listener closed ({ok} answered, bad: {bad:?})"
    );
    assert!(
        bad.is_empty(),
        "{} accepted requests were not answered well ({ok} were): {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

/// A failure inside a service (here, a table that is gone) is a 500 whose
/// message is fixed and names the request id, never the cause (SQL, a
/// table, a host), in every service.
pub(crate) async fn internal_errors_are_opaque(sb: &Sandbox) {
    use sea_orm::{ConnectionTrait, Database};
    // `sb` belongs to the caller; break a sandbox of our own.
    let own = Sandbox::start(sb.backend).await.expect("sandbox");
    let user = own.user().await;
    for (component, table, path) in [
        ("documents", "document_labels", "/v1/documents?label=team"),
        ("audit", "audit_record", "/v1/audit/records"),
        ("auth", "user_groups", "/v1/groups"),
    ] {
        let db = Database::connect(own.database_url(component))
            .await
            .unwrap();
        db.execute_unprepared(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
        let r = own
            .http
            .get(own.url(path))
            .bearer_auth(&user.token)
            .header("x-request-id", format!("opaque-{component}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{component}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body["message"],
            format!("internal error (request id opaque-{component})"),
            "{component}: {body}"
        );
        assert!(
            !body.to_string().contains(table),
            "{component} leaked its cause: {body}"
        );
    }
    own.stop().await;
}
