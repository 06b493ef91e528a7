//! Logging in, renewing, logging in again, and start-up failures.

use std::collections::HashMap;
use std::time::Duration;

use cloudsec_secrets::{
    CacheConfig, Error, Secret, SecretRef, SecretsProvider, VaultAuth, VaultClient, VaultConfig,
    VaultSecrets,
};
use serde_json::json;

use crate::support::{CutProxy, approle, get, host_port, openbao, policy, put};

fn no_cache() -> CacheConfig {
    CacheConfig {
        refresh: Duration::ZERO,
        ttl: Duration::ZERO,
    }
}

#[tokio::test]
async fn approle_logs_in_renews_and_logs_in_again_after_revocation_and_expiry() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let kv = vault.mount("kv-v2").await;
    let reader = policy(
        &root,
        &format!("path \"{kv}/data/*\" {{ capabilities = [\"read\"] }}"),
    )
    .await;
    let (mount, role_id, secret_id) = approle(&root, &[&reader], "3s").await;
    VaultSecrets::new(root.clone(), no_cache())
        .put(
            &kv,
            "app",
            &HashMap::from([("password".into(), Secret::new("hunter2-long"))]),
        )
        .await
        .unwrap();

    let config = VaultConfig::new(
        &vault.addr,
        VaultAuth::AppRole {
            mount: mount.clone(),
            role_id,
            secret_id: Secret::new(secret_id.clone()),
        },
    );
    let client = VaultClient::connect(config).await.unwrap();
    assert!(!format!("{client:?}").contains(&secret_id));
    let lease = client.token_lease();
    assert_eq!(lease.ttl, Some(Duration::from_secs(3)));
    assert!(lease.renewable);

    let secrets = VaultSecrets::new(client.clone(), no_cache());
    let reference = SecretRef::parse(&format!("vault:{kv}/app#password")).unwrap();
    assert_eq!(
        secrets.get(&reference).await.unwrap().expose(),
        "hunter2-long"
    );

    // Renewal keeps the token and restarts its TTL.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.renew_token().await.unwrap();
    let renewed = client.token_lease();
    assert!(renewed.obtained_at > lease.obtained_at);
    assert_eq!(renewed.ttl, Some(Duration::from_secs(3)));

    // Revoked from outside: the next call is refused, logs in again and
    // succeeds.
    put(
        &root,
        &format!("sys/leases/revoke-prefix/auth/{mount}/login"),
        json!({}),
    )
    .await;
    assert_eq!(
        secrets.get(&reference).await.unwrap().expose(),
        "hunter2-long"
    );
    let relogged = client.token_lease();
    assert!(relogged.obtained_at > renewed.obtained_at);

    // Expired (nobody renewed it): the next call logs in first.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(
        secrets.get(&reference).await.unwrap().expose(),
        "hunter2-long"
    );
    assert!(client.token_lease().obtained_at > relogged.obtained_at);
}

#[tokio::test]
async fn background_renewal_keeps_an_approle_token_alive() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let (mount, role_id, secret_id) = approle(&root, &["default"], "3s").await;
    let client = VaultClient::connect(VaultConfig::new(
        &vault.addr,
        VaultAuth::AppRole {
            mount,
            role_id,
            secret_id: Secret::new(secret_id),
        },
    ))
    .await
    .unwrap();
    let first = client.token_lease();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = client.spawn_token_renewal(stop.clone());
    // Renewed at 2 s (two thirds of 3 s) and again at about 4 s: at 4.6 s
    // the token is still valid by its own lease, not by a new login.
    tokio::time::sleep(Duration::from_millis(4600)).await;
    let now = client.token_lease();
    assert!(
        now.obtained_at >= first.obtained_at + Duration::from_millis(1900),
        "{now:?} vs {first:?}"
    );
    assert!(
        now.expires_at().unwrap() > tokio::time::Instant::now(),
        "{now:?}"
    );
    // The token still works: lookup-self through the same login.
    let me = client
        .request(reqwest::Method::GET, "auth/token/lookup-self", None)
        .await
        .unwrap();
    assert!(me["data"]["ttl"].as_u64().unwrap() > 0);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_expired_static_token_is_a_clear_error() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let created = put(
        &root,
        "auth/token/create",
        json!({ "ttl": "2s", "renewable": false, "policies": ["default"] }),
    )
    .await;
    let token = created["auth"]["client_token"].as_str().unwrap();
    let client = VaultClient::connect(vault.config_at(&vault.addr, token))
        .await
        .unwrap();
    assert!(!client.token_lease().renewable);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = client
        .request(reqwest::Method::GET, "auth/token/lookup-self", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenExpired { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&vault.addr) && msg.contains("expired"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_wrong_secret_id_fails_at_once_with_the_reason() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let (mount, role_id, _) = approle(&root, &["default"], "1m").await;
    let mut config = VaultConfig::new(
        &vault.addr,
        VaultAuth::AppRole {
            mount,
            role_id,
            secret_id: Secret::new("not-the-secret-id"),
        },
    );
    // A retry would wait ten minutes: the bound below is only a hang guard
    // with a wide margin, so a slow machine cannot fail the test.
    config.retry.initial_backoff = Duration::from_secs(600);
    config.retry.max_backoff = Duration::from_secs(600);
    let err = tokio::time::timeout(Duration::from_secs(120), VaultClient::connect(config))
        .await
        .expect("a refused login was retried")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Login {
                method: "approle",
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-secret-id"));
}

#[tokio::test]
async fn unreachable_vault_at_start_is_a_bounded_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    let mut config = VaultConfig::new(
        &addr,
        VaultAuth::Token {
            token: Secret::new("t"),
        },
    );
    config.retry.attempts = 3;
    config.retry.initial_backoff = Duration::from_millis(50);
    // The attempts are counted in the error; the bound is a hang guard.
    let err = tokio::time::timeout(Duration::from_secs(120), VaultClient::connect(config))
        .await
        .expect("bounded retries")
        .unwrap_err();
    match &err {
        Error::Unreachable {
            address, attempts, ..
        } => {
            assert_eq!(address, &addr);
            assert_eq!(*attempts, 3);
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&addr) && msg.contains("3 attempts") && msg.contains("connection"),
        "{msg}"
    );
}

#[tokio::test]
async fn start_up_retries_until_vault_answers() {
    let Some(vault) = openbao() else { return };
    let proxy = CutProxy::start(&host_port(&vault.addr)).await;
    proxy.cut();
    let mut config = vault.config_at(&proxy.url(), &vault.token);
    config.retry.attempts = 20;
    config.retry.initial_backoff = Duration::from_millis(100);
    config.retry.max_backoff = Duration::from_millis(200);
    let restore = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            proxy.restore();
        })
    };
    let client = VaultClient::connect(config).await.unwrap();
    restore.await.unwrap();
    assert_eq!(client.address(), proxy.url());
}

#[tokio::test]
async fn vault_down_while_running_serves_cached_values_until_they_expire() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let kv = vault.mount("kv-v2").await;
    VaultSecrets::new(root.clone(), no_cache())
        .put(
            &kv,
            "db",
            &HashMap::from([("password".into(), Secret::new("s3cret-value"))]),
        )
        .await
        .unwrap();
    let proxy = CutProxy::start(&host_port(&vault.addr)).await;
    let client = vault.client_at(&proxy.url()).await;
    let secrets = VaultSecrets::new(
        client,
        CacheConfig {
            refresh: Duration::from_millis(200),
            ttl: Duration::from_millis(1500),
        },
    );
    let reference = SecretRef::parse(&format!("vault:{kv}/db#password")).unwrap();
    assert_eq!(
        secrets.get(&reference).await.unwrap().expose(),
        "s3cret-value"
    );

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Past `refresh`, Vault unreachable: the cached copy serves.
    assert_eq!(
        secrets.get(&reference).await.unwrap().expose(),
        "s3cret-value"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = secrets.get(&reference).await.unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&reference.to_string()) && msg.contains("unavailable"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret-value"));

    proxy.restore();
    assert_eq!(
        secrets.get(&reference).await.unwrap().expose(),
        "s3cret-value"
    );
}

#[tokio::test]
async fn the_audit_device_is_on() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let devices = get(&root, "sys/audit").await;
    let data = devices.get("data").unwrap_or(&devices);
    let kinds: Vec<&str> = data
        .as_object()
        .unwrap()
        .values()
        .filter_map(|d| d["type"].as_str())
        .collect();
    assert!(kinds.contains(&"file"), "audit devices: {devices}");
}

/// A stand-in for the Kubernetes API's TokenReview: it accepts any token
/// as the service account `default/documents` and counts the reviews.
async fn fake_token_review() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reviews = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reviews.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then the body by its Content-Length.
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "status": {
                        "authenticated": true,
                        "user": {
                            "username": "system:serviceaccount:default:documents",
                            "uid": "uid-documents",
                            "groups": ["system:serviceaccounts"],
                        },
                    },
                })
                .to_string();
                let resp = format!(
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, reviews)
}

fn service_account_jwt() -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let header = b64(json!({ "alg": "RS256", "kid": "test", "typ": "JWT" }));
    let claims = b64(json!({
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:default:documents",
        "kubernetes.io/serviceaccount/namespace": "default",
        "kubernetes.io/serviceaccount/secret.name": "documents-token",
        "kubernetes.io/serviceaccount/service-account.name": "documents",
        "kubernetes.io/serviceaccount/service-account.uid": "uid-documents",
    }));
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 256]);
    format!("{header}.{claims}.{signature}")
}

#[tokio::test]
async fn kubernetes_login_reads_the_projected_token_at_every_login() {
    let Some(vault) = openbao() else { return };
    let root = vault.root().await;
    let (k8s_api, reviews) = fake_token_review().await;
    let mount = crate::support::unique("kubernetes");
    put(
        &root,
        &format!("sys/auth/{mount}"),
        json!({ "type": "kubernetes" }),
    )
    .await;
    // The plugin insists on a CA certificate even for a plain-HTTP host;
    // any certificate will do, so OpenBao's PKI makes one.
    let pki = vault.mount("pki").await;
    let ca = put(
        &root,
        &format!("{pki}/root/generate/internal"),
        json!({ "common_name": "fake kubernetes ca", "key_type": "ec", "ttl": "1h" }),
    )
    .await["data"]["certificate"]
        .as_str()
        .unwrap()
        .to_owned();
    put(
        &root,
        &format!("auth/{mount}/config"),
        json!({ "kubernetes_host": k8s_api, "disable_local_ca_jwt": true, "kubernetes_ca_cert": ca }),
    )
    .await;
    put(
        &root,
        &format!("auth/{mount}/role/documents"),
        json!({
            "bound_service_account_names": ["documents"],
            "bound_service_account_namespaces": ["default"],
            "token_policies": ["default"],
            "token_ttl": "1m",
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let jwt_path = dir.path().join("token");
    std::fs::write(&jwt_path, service_account_jwt()).unwrap();

    let client = VaultClient::connect(VaultConfig::new(
        &vault.addr,
        VaultAuth::Kubernetes {
            mount: mount.clone(),
            role: "documents".into(),
            jwt_path: jwt_path.clone(),
        },
    ))
    .await
    .unwrap();
    assert_eq!(client.token_lease().ttl, Some(Duration::from_secs(60)));
    let me = client
        .request(reqwest::Method::GET, "auth/token/lookup-self", None)
        .await
        .unwrap();
    assert_eq!(
        me["data"]["meta"]["service_account_name"].as_str(),
        Some("documents"),
        "{me}"
    );
    let first = reviews.load(std::sync::atomic::Ordering::SeqCst);
    assert!(first >= 1);

    // Revoked: the next call logs in again, reading the (rotated) file.
    std::fs::write(&jwt_path, service_account_jwt()).unwrap();
    put(
        &root,
        &format!("sys/leases/revoke-prefix/auth/{mount}/login"),
        json!({}),
    )
    .await;
    client
        .request(reqwest::Method::GET, "auth/token/lookup-self", None)
        .await
        .unwrap();
    assert!(reviews.load(std::sync::atomic::Ordering::SeqCst) > first);

    // A missing token file is a clear login error.
    std::fs::remove_file(&jwt_path).unwrap();
    let err = VaultClient::connect(VaultConfig::new(
        &vault.addr,
        VaultAuth::Kubernetes {
            mount,
            role: "documents".into(),
            jwt_path: jwt_path.clone(),
        },
    ))
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("kubernetes") && msg.contains(&jwt_path.display().to_string()),
        "{msg}"
    );
}
