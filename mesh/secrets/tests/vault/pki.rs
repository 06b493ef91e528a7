//! Workload certificates from OpenBao's PKI engine.

use std::sync::Arc;
use std::time::Duration;

use cloudsec_identity::{Issuer, SpiffeId, WorkloadIdentity, spiffe_id_of};
use cloudsec_secrets::VaultClient;
use cloudsec_secrets::pki::{VaultPki, VaultPkiConfig};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;

use crate::support::{openbao, put};

/// A PKI mount with an ECDSA root and the roles `mesh-documents` and
/// `mesh-auth`.
async fn pki_mount(root: &VaultClient, vault: &cloudsec_secrets::test_util::TestVault) -> String {
    let mount = vault.mount("pki").await;
    put(
        root,
        &format!("sys/mounts/{mount}/tune"),
        json!({ "max_lease_ttl": "87600h" }),
    )
    .await;
    put(
        root,
        &format!("{mount}/root/generate/internal"),
        json!({ "common_name": "cloudsec test mesh root", "key_type": "ec", "key_bits": 256, "ttl": "8760h" }),
    )
    .await;
    // One role per service, as docs/security.md sets them up: each may
    // only get its own DNS name and SPIFFE id.
    for sa in ["documents", "auth"] {
        put(
            root,
            &format!("{mount}/roles/mesh-{sa}"),
            json!({
                "allowed_domains": [format!("{sa}.default.svc")],
                "allow_bare_domains": true,
                "allowed_uri_sans": [format!("spiffe://cloudsec.local/ns/*/sa/{sa}")],
                "key_type": "ec",
                "key_bits": 256,
                "max_ttl": "1h",
                "server_flag": true,
                "client_flag": true,
            }),
        )
        .await;
    }
    mount
}

fn ders(pem: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = pem.as_bytes();
    while let Ok((r, p)) = x509_parser::pem::parse_x509_pem(rest) {
        out.push(p.contents);
        rest = r;
        if rest.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    out
}

#[tokio::test]
async fn issues_spiffe_certificates_that_the_trust_bundle_verifies() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let mount = pki_mount(&root, &vault).await;
    let pki = VaultPki::new(
        root.clone(),
        &VaultPkiConfig {
            mount,
            role: "mesh-documents".into(),
        },
    )
    .await
    .unwrap();
    let id = SpiffeId::new("cloudsec.local", "default", "documents").unwrap();
    let cert = pki.issue(&id, Duration::from_secs(600)).await.unwrap();

    let chain = ders(&cert.cert_pem);
    let leaf = &chain[0];
    assert_eq!(spiffe_id_of(leaf), Some(id.clone()));
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let validity = parsed.validity();
    let span = validity.not_after.timestamp() - validity.not_before.timestamp();
    // 10 minutes, plus Vault's default 30 s of back-dating.
    assert!((600..=660).contains(&span), "lifetime {span} s");
    assert!(cert.lifetime <= Duration::from_secs(600) && cert.lifetime >= Duration::from_secs(590));
    assert!(cert.key_pem.contains("BEGIN PRIVATE KEY"));
    assert_eq!(cert.ca_pem, pki.trust_bundle());
    assert!(!format!("{cert:?}").contains("PRIVATE"));

    // The bundle verifies the certificate both as a server (for its mesh
    // DNS name) and as a client.
    let mut roots = rustls::RootCertStore::empty();
    for der in ders(&pki.trust_bundle()) {
        roots.add(CertificateDer::from(der)).unwrap();
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let leaf = CertificateDer::from(leaf.clone());
    let intermediates: Vec<CertificateDer<'static>> = chain[1..]
        .iter()
        .cloned()
        .map(CertificateDer::from)
        .collect();
    rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .unwrap()
        .verify_server_cert(
            &leaf,
            &intermediates,
            &ServerName::try_from("documents.default.svc").unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap();
    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .unwrap()
        .verify_client_cert(&leaf, &intermediates, UnixTime::now())
        .unwrap();
}

#[tokio::test]
async fn rotation_through_workload_identity_gets_a_new_certificate() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let mount = pki_mount(&root, &vault).await;
    let pki: Arc<dyn Issuer> = Arc::new(
        VaultPki::new(
            root,
            &VaultPkiConfig {
                mount,
                role: "mesh-auth".into(),
            },
        )
        .await
        .unwrap(),
    );
    let id = SpiffeId::new("cloudsec.local", "default", "auth").unwrap();
    let identity = WorkloadIdentity::new(pki, id.clone(), Duration::from_secs(300))
        .await
        .unwrap();
    let first = identity.current();
    let changes = identity.subscribe();
    identity.renew().await.unwrap();
    assert!(changes.has_changed().unwrap());
    let second = identity.current();
    assert_ne!(first.cert_pem, second.cert_pem);
    assert_ne!(
        first.key_pem, second.key_pem,
        "a new key with every certificate"
    );
    assert_eq!(spiffe_id_of(&ders(&second.cert_pem)[0]), Some(id));
}

#[tokio::test]
async fn ids_outside_the_role_are_refused_with_the_reason() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let mount = pki_mount(&root, &vault).await;
    let pki = VaultPki::new(
        root,
        &VaultPkiConfig {
            mount: mount.clone(),
            role: "mesh-documents".into(),
        },
    )
    .await
    .unwrap();
    // Another service's identity: documents may not pose as auth.
    let auth = SpiffeId::new("cloudsec.local", "default", "auth").unwrap();
    let err = pki.issue(&auth, Duration::from_secs(60)).await.unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    let foreign = SpiffeId::new("evil.example", "default", "documents").unwrap();
    let err = pki
        .issue(&foreign, Duration::from_secs(60))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&mount) && msg.contains("spiffe://evil.example"),
        "{msg}"
    );

    let missing = VaultPki::new(
        vault.root().await,
        &VaultPkiConfig {
            mount: "no-such-pki".into(),
            role: "mesh-documents".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(missing.to_string().contains("no-such-pki"), "{missing}");
}
