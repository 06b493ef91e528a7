//! The per-service policies in deploy/vault/policies parse and grant
//! exactly what each service needs.

use serde_json::json;

use crate::support::{openbao, put, unique};

fn policy_file(service: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/vault/policies")
        .join(format!("{service}.hcl"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn service_policies_are_least_privilege() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    // (service, path, expected capabilities; empty = denied)
    let table: &[(&str, &str, &[&str])] = &[
        ("documents", "secret/data/cloudsec/documents", &["read"]),
        (
            "documents",
            "transit/datakey/plaintext/docs-restricted",
            &["update"],
        ),
        ("documents", "transit/decrypt/docs-public", &["update"]),
        ("documents", "transit/rewrap/docs-internal", &["update"]),
        ("documents", "transit/keys/docs-confidential", &["read"]),
        ("documents", "transit/keys/docs-confidential/rotate", &[]),
        ("documents", "transit/keys/docs-confidential/config", &[]),
        (
            "documents",
            "transit/export/encryption-key/docs-restricted",
            &[],
        ),
        ("documents", "transit/datakey/plaintext/auth-signing", &[]),
        ("documents", "database/creds/documents", &["read"]),
        ("documents", "database/creds/auth", &[]),
        ("documents", "pki/issue/mesh-documents", &["update"]),
        ("documents", "pki/issue/mesh-auth", &[]),
        ("documents", "secret/data/cloudsec/auth", &[]),
        ("documents", "secret/data/cloudsec/auth/signing-keys", &[]),
        ("documents", "sys/leases/renew", &["update"]),
        ("auth", "secret/data/cloudsec/auth", &["read"]),
        (
            "auth",
            "secret/data/cloudsec/auth/signing-keys",
            &["create", "read", "update"],
        ),
        (
            "auth",
            "secret/metadata/cloudsec/auth/signing-keys",
            &["read"],
        ),
        ("auth", "secret/destroy/cloudsec/auth/signing-keys", &[]),
        ("auth", "database/creds/auth", &["read"]),
        ("auth", "transit/decrypt/docs-public", &[]),
        (
            "auth",
            "transit/datakey/plaintext/auth-signing-keys",
            &["update"],
        ),
        ("auth", "transit/decrypt/auth-signing-keys", &["update"]),
        ("auth", "transit/keys/auth-signing-keys/rotate", &[]),
        ("documents", "transit/decrypt/auth-signing-keys", &[]),
        ("auth", "secret/data/cloudsec/documents", &[]),
        ("auth", "pki/issue/mesh-auth", &["update"]),
        ("gateway", "secret/data/cloudsec/gateway", &["read"]),
        ("gateway", "pki/issue/mesh-gateway", &["update"]),
        ("gateway", "database/creds/documents", &[]),
        ("gateway", "transit/datakey/plaintext/docs-public", &[]),
        ("audit", "database/creds/audit", &["read"]),
        ("audit", "secret/data/cloudsec/audit", &["read"]),
        ("audit", "secret/data/cloudsec/auth/signing-keys", &[]),
        ("audit", "transit/decrypt/docs-restricted", &[]),
        // Signed audit chain heads (`[audit.signing] backend = "transit"`):
        // sign, verify and read that key, nothing else.
        ("audit", "transit/sign/cloudsec-audit-signing", &["update"]),
        (
            "audit",
            "transit/verify/cloudsec-audit-signing",
            &["update"],
        ),
        ("audit", "transit/keys/cloudsec-audit-signing", &["read"]),
        ("audit", "transit/keys/cloudsec-audit-signing/rotate", &[]),
        ("audit", "transit/sign/auth-signing-keys", &[]),
        ("documents", "transit/sign/cloudsec-audit-signing", &[]),
        // Codes: auth seals for the mailer, which alone opens them.
        (
            "auth",
            "transit/datakey/plaintext/cloudsec-mailer",
            &["update"],
        ),
        ("auth", "transit/decrypt/cloudsec-mailer", &[]),
        ("auth", "transit/keys/cloudsec-mailer", &["read"]),
        ("documents", "transit/decrypt/cloudsec-mailer", &[]),
        ("audit", "transit/decrypt/cloudsec-mailer", &[]),
        ("mailer", "transit/decrypt/cloudsec-mailer", &["update"]),
        ("mailer", "transit/datakey/plaintext/cloudsec-mailer", &[]),
        ("mailer", "transit/keys/cloudsec-mailer/rotate", &[]),
        ("mailer", "transit/decrypt/auth-signing-keys", &[]),
        ("mailer", "secret/data/cloudsec/auth", &[]),
    ];
    let mut failures = Vec::new();
    for service in ["auth", "documents", "gateway", "audit", "mailer"] {
        let name = unique(service);
        root.request(
            reqwest::Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(&json!({ "policy": policy_file(service) })),
        )
        .await
        .unwrap_or_else(|e| panic!("{service}.hcl does not load: {e}"));
        let token = put(
            &root,
            "auth/token/create",
            json!({ "policies": [name], "no_default_policy": true, "ttl": "5m" }),
        )
        .await["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_owned();
        for (_, path, expected) in table.iter().filter(|(s, ..)| *s == service) {
            let answer = put(
                &root,
                "sys/capabilities",
                json!({ "token": token, "paths": [path] }),
            )
            .await;
            let mut got: Vec<String> = answer["data"][*path]
                .as_array()
                .or_else(|| answer[*path].as_array())
                .unwrap()
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .filter(|c| c != "deny")
                .collect();
            got.sort();
            let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            want.sort();
            if got != want {
                failures.push(format!("{service}: {path}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
