//! TLS termination on the REST listener, with a certificate from the
//! development CA and clients that trust that CA alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::{Harness, Options, mesh_cert, parts};
use cloudsec_gateway::{Gateway, GatewayConfig, GatewayError, ListenTls};
use cloudsec_identity::{Issuer, LocalCa};

fn trusting(ca: &LocalCa) -> reqwest::ClientBuilder {
    let root = reqwest::Certificate::from_pem(ca.trust_bundle().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn the_rest_listener_can_terminate_tls() {
    let ca = LocalCa::generate().unwrap();
    // Workload certificates also name `localhost`.
    let (_, public) = mesh_cert(&ca, "edge").await;
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &public.cert_pem).unwrap();
    std::fs::write(&key_file, &public.key_pem).unwrap();
    let h = Harness::with(Options {
        configure: Box::new(move |c: &mut GatewayConfig| {
            c.listen_tls = Some(ListenTls {
                cert_file,
                key_file,
            });
        }),
        ..Options::default()
    })
    .await;
    let port = h.base.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/v1/items/x");

    // HTTP/2 by ALPN...
    let client = trusting(&ca).build().unwrap();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["method"], "GetItem");
    // ... and HTTP/1.1.
    let http1 = trusting(&ca).http1_only().build().unwrap();
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);

    // A client that does not trust the CA, and plain HTTP, get nothing.
    let stranger = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(stranger.get(&url).send().await.is_err());
    assert!(h.http.get(h.url("/v1/items/x")).send().await.is_err());

    // A client that never finishes its handshake holds up no one else.
    let addr = h.base.trim_start_matches("http://").to_owned();
    let _silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let fresh = trusting(&ca).build().unwrap();
    assert_eq!(fresh.get(&url).send().await.unwrap().status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start() {
    let ca = LocalCa::generate().unwrap();
    let (_, mesh) = mesh_cert(&ca, "gateway").await;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, &mesh.cert_pem).unwrap();
    let build = |listen_tls: ListenTls| {
        let config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            listen_tls: Some(listen_tls),
            ..GatewayConfig::default()
        };
        let mesh = mesh.clone();
        async move {
            Gateway::build(&config, &[cloudsec_proto::FILE_DESCRIPTOR_SET], mesh)
                .await
                .unwrap_err()
        }
    };
    let missing = dir.path().join("missing.pem");
    let error = build(ListenTls {
        cert_file: missing.clone(),
        key_file: missing.clone(),
    })
    .await;
    assert!(matches!(error, GatewayError::ListenTls(_)), "{error}");
    assert!(error.to_string().contains("missing.pem"), "{error}");
    // A certificate where the key should be.
    let error = build(ListenTls {
        cert_file: cert.clone(),
        key_file: cert.clone(),
    })
    .await;
    assert!(error.to_string().contains("private key"), "{error}");
    // Another key than the certificate's.
    let (_, other) = mesh_cert(&ca, "other").await;
    let key = dir.path().join("other.key");
    std::fs::write(&key, &other.key_pem).unwrap();
    let error = build(ListenTls {
        cert_file: cert,
        key_file: key,
    })
    .await;
    assert!(matches!(error, GatewayError::ListenTls(_)), "{error}");
}
