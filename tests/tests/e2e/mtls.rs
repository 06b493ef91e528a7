//! Inside the mesh, only workloads with a certificate from the mesh CA get
//! in.

use std::time::Duration;

use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
use cloudsec_tests::Sandbox;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn check(channel: tonic::transport::Channel) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

pub(crate) async fn refuses_clients_without_mesh_certificate(sb: &Sandbox) {
    // The mesh's own workload certificate works.
    for service in ["auth", "documents"] {
        assert_eq!(check(sb.channel(service)).await.expect("mesh client"), 1);
    }

    // TLS that trusts the mesh CA but shows no client certificate.
    let anonymous = Endpoint::from_shared(format!("https://{}", sb.addrs.documents))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&sb.client_tls().ca_pem))
                .domain_name("documents.default.svc"),
        )
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    assert!(
        check(anonymous).await.is_err(),
        "a client without a certificate got in"
    );

    // A certificate for a familiar name, from another CA.
    let rogue_ca = LocalCa::generate().unwrap();
    let id = SpiffeId::new("cloudsec.local", "default", "gateway").unwrap();
    let mut rogue = rogue_ca
        .issue(&id, Duration::from_secs(3600))
        .await
        .unwrap()
        .mesh_tls();
    // It trusts the real mesh CA, so only the server's check can stop it.
    rogue.ca_pem = sb.client_tls().ca_pem.clone();
    assert!(
        check(sb.channel_with("documents", &rogue)).await.is_err(),
        "a foreign certificate got in"
    );

    // Plaintext HTTP/2 is not spoken at all.
    let plain = Endpoint::from_shared(format!("http://{}", sb.addrs.auth))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    assert!(check(plain).await.is_err(), "plaintext got in");
}
