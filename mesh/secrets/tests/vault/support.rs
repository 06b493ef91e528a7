use cloudsec_secrets::VaultClient;
pub(crate) use cloudsec_secrets::test_util::{CutProxy, host_port, openbao, unique};
use serde_json::{Value, json};

pub(crate) async fn put(root: &VaultClient, path: &str, body: Value) -> Value {
    root.request(reqwest::Method::POST, path, Some(&body))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

pub(crate) async fn get(root: &VaultClient, path: &str) -> Value {
    root.request(reqwest::Method::GET, path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Writes an ACL policy and returns its name.
pub(crate) async fn policy(root: &VaultClient, hcl: &str) -> String {
    let name = unique("policy");
    root.request(
        reqwest::Method::PUT,
        &format!("sys/policies/acl/{name}"),
        Some(&json!({ "policy": hcl })),
    )
    .await
    .unwrap();
    name
}

/// An AppRole mount with one role; returns (mount, role_id, secret_id).
pub(crate) async fn approle(
    root: &VaultClient,
    policies: &[&str],
    ttl: &str,
) -> (String, String, String) {
    let mount = unique("approle");
    put(
        root,
        &format!("sys/auth/{mount}"),
        json!({ "type": "approle" }),
    )
    .await;
    put(
        root,
        &format!("auth/{mount}/role/svc"),
        json!({ "token_policies": policies, "token_ttl": ttl, "token_max_ttl": "10m" }),
    )
    .await;
    let role_id = get(root, &format!("auth/{mount}/role/svc/role-id")).await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = put(root, &format!("auth/{mount}/role/svc/secret-id"), json!({})).await["data"]
        ["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (mount, role_id, secret_id)
}
