//! Dynamic PostgreSQL credentials from OpenBao's database engine, used
//! against the PostgreSQL on 127.0.0.1:5432.

use std::time::Duration;

use cloudsec_secrets::VaultClient;
use cloudsec_secrets::database::{DbCredentials, DbCredentialsConfig, DbCreds};
use cloudsec_secrets::test_util::TestVault;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::json;

use crate::support::{openbao, put, unique};

const PG_BASE: &str = "postgres://127.0.0.1:5432/postgres";

/// The server's superuser connection, or `None` (SKIPPED) outside CI.
async fn postgres() -> Option<DatabaseConnection> {
    cloudsec_testkit::postgres_admin().await
}

/// A database mount whose connection logs in as a dedicated role that may
/// create roles (not a superuser), and a role `app` with the given TTLs.
async fn database_mount(
    vault: &TestVault,
    root: &VaultClient,
    admin: &DatabaseConnection,
    ttl: &str,
    max_ttl: &str,
) -> (String, String) {
    let vault_user = unique("vault_admin").replace('-', "_");
    let password = unique("pw");
    admin
        .execute_unprepared(&format!(
            "CREATE ROLE {vault_user} WITH LOGIN CREATEROLE PASSWORD '{password}'"
        ))
        .await
        .unwrap();
    let mount = vault.mount("database").await;
    put(
        root,
        &format!("{mount}/config/pg"),
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
            "username": vault_user,
            "password": password,
            "allowed_roles": ["app"],
            "verify_connection": true,
        }),
    )
    .await;
    put(
        root,
        &format!("{mount}/roles/app"),
        json!({
            "db_name": "pg",
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
            "revocation_statements": ["DROP ROLE IF EXISTS \"{{name}}\";"],
            "default_ttl": ttl,
            "max_ttl": max_ttl,
        }),
    )
    .await;
    (mount, vault_user)
}

/// Revokes every lease of the mount (dropping its users) and the role
/// Vault logged in with, so the shared server keeps no test users.
async fn clean_up(root: &VaultClient, admin: &DatabaseConnection, mount: &str, vault_user: &str) {
    put(
        root,
        &format!("sys/leases/revoke-prefix/{mount}/creds"),
        json!({}),
    )
    .await;
    admin
        .execute_unprepared(&format!("DROP ROLE IF EXISTS {vault_user}"))
        .await
        .unwrap();
}

/// Who the database says we are, connecting with `creds`.
async fn whoami(creds: &DbCreds) -> Result<String, String> {
    let url = creds.postgres_url(PG_BASE).map_err(|e| e.to_string())?;
    let db = Database::connect(url.expose())
        .await
        .map_err(|e| e.to_string())?;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT current_user::text AS u",
        ))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no row")?;
    let user: String = row.try_get("", "u").map_err(|e| e.to_string())?;
    db.close().await.map_err(|e| e.to_string())?;
    Ok(user)
}

#[tokio::test]
async fn credentials_work_and_are_replaced_when_the_lease_is_revoked_from_outside() {
    let Some(vault) = openbao() else { return };
    let Some(admin) = postgres().await else {
        return;
    };
    let root = vault.root().await;
    let (mount, vault_user) = database_mount(&vault, &root, &admin, "1h", "24h").await;

    let mut config = DbCredentialsConfig::new(&mount, "app");
    config.check_interval = Duration::from_millis(500);
    let creds = DbCredentials::start(vault.root().await, config)
        .await
        .unwrap();
    let first = creds.current();
    assert_eq!(first.generation, 1);
    assert!(first.renewable);
    assert_eq!(first.lease_duration, Duration::from_secs(3600));
    assert_eq!(whoami(&first).await.unwrap(), first.username);
    assert!(!format!("{first:?}").contains(first.password.expose()));

    let mut changes = creds.subscribe();
    put(
        &root,
        "sys/leases/revoke",
        json!({ "lease_id": first.lease_id }),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(15), changes.changed())
        .await
        .expect("no new credentials within 15 s of the revocation")
        .unwrap();
    let second = creds.current();
    assert_eq!(second.generation, 2);
    assert_ne!(second.username, first.username);
    assert_eq!(whoami(&second).await.unwrap(), second.username);
    // The revoked user is gone.
    assert!(whoami(&first).await.is_err());
    drop(creds);
    clean_up(&root, &admin, &mount, &vault_user).await;
}

#[tokio::test]
async fn renews_the_lease_and_swaps_before_max_ttl() {
    let Some(vault) = openbao() else { return };
    let Some(admin) = postgres().await else {
        return;
    };
    let root = vault.root().await;
    let (mount, vault_user) = database_mount(&vault, &root, &admin, "4s", "9s").await;
    let started = tokio::time::Instant::now();
    let creds = DbCredentials::start(vault.root().await, DbCredentialsConfig::new(&mount, "app"))
        .await
        .unwrap();
    let first = creds.current();
    let mut changes = creds.subscribe();

    // Renewed at about 2.7 s and 5.3 s (the lease would otherwise have
    // expired at 4 s)...
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        !changes.has_changed().unwrap(),
        "replaced instead of renewed"
    );
    let lookup = put(
        &root,
        "sys/leases/lookup",
        json!({ "lease_id": first.lease_id }),
    )
    .await;
    assert!(lookup["data"]["ttl"].as_u64().unwrap() > 0, "{lookup}");

    // ...and replaced once renewal stops extending it (about 7.3 s),
    // before it expires at 9 s; the old user still works at that moment.
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("not replaced before max TTL")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    let second = creds.current();
    assert_ne!(second.username, first.username);
    assert_eq!(whoami(&first).await.unwrap(), first.username);
    assert_eq!(whoami(&second).await.unwrap(), second.username);
    drop(creds);
    clean_up(&root, &admin, &mount, &vault_user).await;
}
