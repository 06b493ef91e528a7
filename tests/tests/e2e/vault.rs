//! The platform on Vault (OpenBao): `vault:` references in the
//! configuration, the mesh's certificates from Vault's PKI engine, and the
//! failures an operator meets (no `[secrets]`, a missing secret, Vault
//! down at start).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cloudsec::{LoadedConfig, LocalConfigError};
use cloudsec_secrets::test_util::{TestVault, openbao};
use cloudsec_secrets::{CacheConfig, Secret, SecretRef, VaultSecrets};
use cloudsec_tests::{Backend, Extra, Sandbox, eventually};
use serde_json::json;

async fn post(vault: &TestVault, path: &str, body: serde_json::Value) -> serde_json::Value {
    vault
        .root()
        .await
        .request(reqwest::Method::POST, path, Some(&body))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// A PKI mount with a root CA and one role, `mesh`, that may issue every
/// workload of the `default` namespace (the single-process platform runs
/// them all; in a cluster each service gets a role of its own).
async fn mesh_pki(vault: &TestVault) -> (String, String) {
    let mount = vault.mount("pki").await;
    post(
        vault,
        &format!("sys/mounts/{mount}/tune"),
        json!({ "max_lease_ttl": "87600h" }),
    )
    .await;
    let root = post(
        vault,
        &format!("{mount}/root/generate/internal"),
        json!({ "common_name": "cloudsec e2e mesh root", "key_type": "ec", "key_bits": 256, "ttl": "8760h" }),
    )
    .await;
    post(
        vault,
        &format!("{mount}/roles/mesh"),
        json!({
            "allowed_domains": ["default.svc"],
            "allow_subdomains": true,
            "allowed_uri_sans": ["spiffe://cloudsec.local/ns/default/sa/*"],
            "key_type": "ec",
            "key_bits": 256,
            "max_ttl": "2h",
            "server_flag": true,
            "client_flag": true,
        }),
    )
    .await;
    let ca = root["data"]["certificate"]
        .as_str()
        .expect("root certificate")
        .trim()
        .to_owned();
    (mount, ca)
}

fn vault_section(vault: &TestVault) -> String {
    format!(
        "[secrets]\nbackend = \"vault\"\n[secrets.vault]\naddress = \"{}\"\nauth = {{ method = \"token\", token = \"{}\" }}\n",
        vault.addr, vault.token
    )
}

/// The auth service seals its signing keys and the mailer's codes with
/// Vault transit; the dev server has no transit mount, so each test gets
/// one.
async fn transit_env(vault: &TestVault) -> [(String, String); 2] {
    let mount = vault.mount("transit").await;
    [
        (
            "CLOUDSEC__AUTH__SIGNING__TRANSIT_MOUNT".to_owned(),
            mount.clone(),
        ),
        (
            "CLOUDSEC__AUTH__CONFIRMATION__TRANSIT_MOUNT".to_owned(),
            mount,
        ),
    ]
}

async fn put(vault: &TestVault, reference: &str, value: &str) {
    VaultSecrets::new(vault.root().await, CacheConfig::default())
        .put_field(&SecretRef::parse(reference).unwrap(), &Secret::new(value))
        .await
        .unwrap();
}

/// The whole platform with its mesh certificates from Vault PKI and its
/// page-token key from Vault KV: REST and mTLS gRPC work, the local CA is
/// never created, and every certificate chains to Vault's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_runs_on_vault_pki_and_kv() {
    let Some(vault) = openbao() else { return };
    let kv = vault.mount("kv-v2").await;
    let key = "p".repeat(48);
    put(
        &vault,
        &format!("vault:{kv}/documents#page_token_key"),
        &key,
    )
    .await;
    // A second field at the same path survives the first (read, then a
    // check-and-set write).
    put(&vault, &format!("vault:{kv}/documents#other"), "x").await;
    let (pki, vault_ca) = mesh_pki(&vault).await;

    let extra = Extra {
        toml: format!(
            "{}[mesh]\ncertificate_lifetime = \"1h\"\n[mesh.issuer]\nbackend = \"vault\"\nmount = \"{pki}\"\nrole = \"mesh\"\n",
            vault_section(&vault)
        ),
        env: BTreeMap::from_iter(
            [(
                "CLOUDSEC__DOCUMENTS__PAGE_TOKEN_KEY".to_owned(),
                format!("vault:{kv}/documents#page_token_key"),
            )]
            .into_iter()
            .chain(transit_env(&vault).await),
        ),
    };
    let sb = Sandbox::start_with(Backend::Sqlite, extra)
        .await
        .expect("sqlite sandbox");
    assert!(
        !sb.data_dir().join("pki").exists(),
        "the development CA is not created when Vault issues"
    );
    assert!(
        sb.client_tls().ca_pem.contains(&vault_ca),
        "the mesh trusts Vault's root"
    );
    assert_eq!(
        sb.client_tls().ca_pem.matches("BEGIN CERTIFICATE").count(),
        1,
        "and nothing else"
    );
    // Over mTLS gRPC with a Vault-issued client certificate, and over REST
    // through gateway → sidecar → sidecar → documents, all Vault-issued;
    // paging signs its tokens with the key read from KV.
    crate::grpc::document_lifecycle(&sb).await;
    crate::rest::list_pages_and_filters(&sb).await;

    // The auth service's private keys are sealed with Vault transit.
    use base64::Engine;
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(sb.auth_database_url())
        .await
        .unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT private_pem FROM signing_keys",
        ))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let stored: String = row.try_get("", "private_pem").unwrap();
        let b64 = stored.strip_prefix("sealed:v1:").expect("sealed");
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let sealed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(
            sealed["wrapped_key"]
                .as_str()
                .unwrap()
                .starts_with("vault:v1:"),
            "{sealed}"
        );
        assert_eq!(sealed["key_name"], "auth-signing-keys");
    }
    sb.stop().await;
}

/// `cloudsec secrets put` into `cloudsec up`'s keystore, then a reference
/// to it in the configuration.
#[tokio::test]
async fn up_reads_references_from_its_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let env = BTreeMap::new();
    let secrets = cloudsec::local_secrets(dir.path(), None, &env)
        .await
        .unwrap()
        .expect("up has a keystore by default");
    let reference = SecretRef::parse("vault:secret/documents#page_token_key").unwrap();
    secrets
        .put(&reference, &Secret::new("k".repeat(40)))
        .await
        .unwrap();
    drop(secrets);

    let file = "[documents]\npage_token_key = \"vault:secret/documents#page_token_key\"\n";
    let loaded: LoadedConfig = cloudsec::local_config(dir.path(), Some(file), &env)
        .await
        .unwrap();
    let documents = loaded.config.documents.expect("documents");
    assert_eq!(documents.page_token_key.expose(), "k".repeat(40));
    assert!(dir.path().join("keystore/keystore.enc").exists());
    let on_disk = std::fs::read(dir.path().join("keystore/keystore.enc")).unwrap();
    assert!(
        !String::from_utf8_lossy(&on_disk).contains(&"k".repeat(40)),
        "the keystore file is encrypted"
    );
}

fn config_key(err: LocalConfigError) -> (String, String) {
    match err {
        LocalConfigError::Config(e) => (e.key, e.message),
        other => panic!("expected a configuration error, got {other}"),
    }
}

#[tokio::test]
async fn references_without_a_secrets_section_are_refused() {
    let file = "[documents]\ndatabase_url = \"sqlite::memory:\"\npage_token_key = \"vault:secret/documents#page_token_key\"\n";
    let err = cloudsec::load_config(&[file], &BTreeMap::new(), None)
        .await
        .unwrap_err();
    let (key, message) = config_key(err);
    assert_eq!(key, "documents.page_token_key");
    assert!(message.contains("no [secrets] section"), "{message}");

    // A local keystore outside `cloudsec up` must say where it is.
    let file = "[secrets]\nbackend = \"local\"\n";
    let (key, _) = config_key(
        cloudsec::load_config(&[file], &BTreeMap::new(), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(key, "secrets.dir");

    // A typo in the section is named too.
    let file = "[secrets]\nbackend = \"vault\"\n[secrets.vault]\naddres = \"http://v\"\n";
    let (key, message) = config_key(
        cloudsec::load_config(&[file], &BTreeMap::new(), None)
            .await
            .unwrap_err(),
    );
    assert!(key.starts_with("secrets"), "{key}");
    assert!(message.contains("addres"), "{message}");
}

#[tokio::test]
async fn a_missing_secret_names_its_key_and_reference() {
    let Some(vault) = openbao() else { return };
    let kv = vault.mount("kv-v2").await;
    let file = format!(
        "{}[auth]\ndatabase_url = \"vault:{kv}/auth#database_url\"\n",
        vault_section(&vault)
    );
    let err = cloudsec::load_config(&[&file], &BTreeMap::new(), None)
        .await
        .unwrap_err();
    assert!(!err.is_unavailable(), "a missing secret is not an outage");
    let message = err.to_string();
    assert!(message.contains("`auth.database_url`"), "{message}");
    assert!(
        message.contains(&format!("vault:{kv}/auth#database_url")),
        "{message}"
    );
}

#[tokio::test]
async fn vault_down_at_start_fails_after_bounded_retries() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let file = format!(
        "[secrets]\nbackend = \"vault\"\n[secrets.vault]\naddress = \"http://{addr}\"\n\
         auth = {{ method = \"token\", token = \"t\" }}\n\
         retry = {{ attempts = 3, initial_backoff = \"20ms\", max_backoff = \"50ms\" }}\n"
    );
    let started = Instant::now();
    let err = cloudsec::load_config(&[&file], &BTreeMap::new(), None)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    // Bounded: three attempts and two short waits, not a hang.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_vault_issuer_needs_a_vault_connection() {
    let dir = tempfile::tempdir().unwrap();
    let file = "[mesh.issuer]\nbackend = \"vault\"\nrole = \"mesh\"\n";
    let loaded = cloudsec::local_config(dir.path(), Some(file), &BTreeMap::new())
        .await
        .unwrap();
    let err = cloudsec::LocalPlatform::build(dir.path(), &loaded)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mesh.issuer"), "{err}");
}

/// A database owned by a group role, and a Vault database mount whose
/// role `app` makes short-lived members of that group, so that every
/// generation of credentials owns (through the group) what the first
/// created, and revoking a login drops only that login.
struct DynamicDb {
    admin: sea_orm::DatabaseConnection,
    name: String,
    owner: String,
    vault_user: String,
    mount: String,
}

impl DynamicDb {
    async fn create(vault: &TestVault, ttl: &str, max_ttl: &str) -> Option<Self> {
        use sea_orm::ConnectionTrait;
        let admin = cloudsec_testkit::postgres_admin().await?;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let (name, owner, vault_user) = (
            format!("cloudsec_dyn_{tag}"),
            format!("cloudsec_owner_{tag}"),
            format!("cloudsec_vault_{tag}"),
        );
        let password = uuid::Uuid::new_v4().simple().to_string();
        for sql in [
            format!("CREATE ROLE {owner} NOLOGIN"),
            format!("CREATE DATABASE {name} OWNER {owner}"),
            format!("CREATE ROLE {vault_user} WITH LOGIN CREATEROLE PASSWORD '{password}'"),
            format!("GRANT {owner} TO {vault_user} WITH ADMIN OPTION"),
        ] {
            admin
                .execute_unprepared(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let mount = vault.mount("database").await;
        post(
            vault,
            &format!("{mount}/config/pg"),
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
                "username": vault_user,
                "password": password,
                "allowed_roles": ["app"],
            }),
        )
        .await;
        post(
            vault,
            &format!("{mount}/roles/app"),
            json!({
                "db_name": "pg",
                "creation_statements": [
                    format!("CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' IN ROLE {owner};"),
                    format!("ALTER ROLE \"{{{{name}}}}\" SET role = '{owner}';"),
                ],
                "revocation_statements": ["DROP ROLE IF EXISTS \"{{name}}\";"],
                "default_ttl": ttl,
                "max_ttl": max_ttl,
            }),
        )
        .await;
        Some(Self {
            admin,
            name,
            owner,
            vault_user,
            mount,
        })
    }

    async fn extra(&self, vault: &TestVault) -> Extra {
        let mut toml = vault_section(vault);
        for component in ["auth", "documents", "audit", "events"] {
            toml.push_str(&format!(
                "[database_credentials.{component}]\nmount = \"{}\"\nrole = \"app\"\ncheck_interval = \"500ms\"\n",
                self.mount
            ));
        }
        // The users and passwords are Vault's; only host and database count.
        let url = format!("postgres://placeholder@127.0.0.1:5432/{}", self.name);
        let mut env: BTreeMap<String, String> = ["AUTH", "DOCUMENTS", "AUDIT", "EVENTS"]
            .into_iter()
            .map(|c| (format!("CLOUDSEC__{c}__DATABASE_URL"), url.clone()))
            .collect();
        env.extend(transit_env(vault).await);
        Extra { toml, env }
    }

    /// The logins connected to the database, other than the admin's.
    async fn logins(&self) -> Vec<String> {
        use sea_orm::{ConnectionTrait, Statement};
        let rows = self
            .admin
            .query_all_raw(Statement::from_string(
                self.admin.get_database_backend(),
                format!(
                    "SELECT DISTINCT usename::text AS u FROM pg_stat_activity WHERE datname = '{}' AND usename IS NOT NULL",
                    self.name
                ),
            ))
            .await
            .unwrap();
        let mut users: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String>("", "u").unwrap())
            .collect();
        users.sort();
        users
    }

    async fn role_exists(&self, role: &str) -> bool {
        use sea_orm::{ConnectionTrait, Statement};
        self.admin
            .query_one_raw(Statement::from_string(
                self.admin.get_database_backend(),
                format!("SELECT 1 AS one FROM pg_roles WHERE rolname = '{role}'"),
            ))
            .await
            .unwrap()
            .is_some()
    }

    async fn drop_now(self, vault: &TestVault) {
        use sea_orm::ConnectionTrait;
        post(
            vault,
            &format!("sys/leases/revoke-prefix/{}/creds", self.mount),
            json!({}),
        )
        .await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS {}", self.vault_user),
            format!("DROP ROLE IF EXISTS {}", self.owner),
        ] {
            let _ = self.admin.execute_unprepared(&sql).await;
        }
    }
}

/// Every service logs in with Vault-issued credentials; a lease revoked
/// from outside (its login dropped) is noticed and replaced, and the
/// platform serves again with the new login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_use_vault_database_credentials_and_survive_a_revocation() {
    let Some(vault) = openbao() else { return };
    let Some(db) = DynamicDb::create(&vault, "1h", "24h").await else {
        return;
    };
    let sb = Sandbox::start_with(Backend::Postgres, db.extra(&vault).await)
        .await
        .expect("postgres sandbox");
    // Sign-up, create, update, delete, each event through the outbox to
    // the audit log: all four databases at work.
    crate::events::changes_reach_the_audit_log(&sb).await;
    let before = db.logins().await;
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|u| u.starts_with("v-")),
        "only Vault-issued logins connect: {before:?}"
    );
    let user = sb.user().await;

    post(
        &vault,
        &format!("sys/leases/revoke-prefix/{}/creds", db.mount),
        json!({}),
    )
    .await;
    for old in &before {
        assert!(
            !db.role_exists(old).await,
            "{old} was dropped by the revocation"
        );
    }
    // Until each service has its new credentials a call may be refused
    // with 503 (the database is unreachable to it for that moment); then
    // documents and auth both serve again, on new logins only.
    let login = json!({"email": user.email, "password": user.password});
    let served = eventually(Duration::from_secs(30), || async {
        let r = sb.get("/v1/documents", &user.token).await;
        let logged_in = sb.post_public("/v1/auth:login", &login).await.status() == 200;
        let now = db.logins().await;
        (r.status() == 200
            && logged_in
            && !now.is_empty()
            && now.iter().all(|u| !before.contains(u)))
        .then_some(now)
    })
    .await;
    let after = served.expect("the platform serves with new logins after the revocation");
    assert!(after.iter().all(|u| u.starts_with("v-")), "{after:?}");
    crate::create(
        &sb,
        &user.token,
        json!({"title": "after", "classification": "INTERNAL", "content": "x"}),
    )
    .await;
    sb.stop().await;
    db.drop_now(&vault).await;
}

/// Leases that cannot be renewed past their max TTL are replaced before
/// they expire, while requests keep flowing: none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_swapped_before_expiry_without_failing_a_request() {
    let Some(vault) = openbao() else { return };
    let Some(db) = DynamicDb::create(&vault, "4s", "8s").await else {
        return;
    };
    let sb = Sandbox::start_with(Backend::Postgres, db.extra(&vault).await)
        .await
        .expect("postgres sandbox");
    let user = sb.user().await;
    let first = db.logins().await;
    let mut requests = 0;
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Until every first-generation login has left the database (Vault
    // drops them at max TTL, 8 s), with reads and writes all along.
    loop {
        let r = sb.get("/v1/documents", &user.token).await;
        requests += 1;
        if r.status() != 200 {
            failures.push(format!(
                "GET {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        let r = sb
            .post(
                "/v1/documents",
                &user.token,
                &json!({"title": "t", "classification": "INTERNAL", "content": "c"}),
            )
            .await;
        requests += 1;
        if r.status() != 200 {
            failures.push(format!(
                "POST {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        let now = db.logins().await;
        let mut gone = true;
        for old in &first {
            gone &= !now.contains(old) && !db.role_exists(old).await;
        }
        if gone {
            assert!(
                !now.is_empty() && now.iter().all(|u| u.starts_with("v-")),
                "new logins serve: {now:?}"
            );
            eprintln!("swapped after {requests} requests: {first:?} -> {now:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first logins still present: {now:?} (first {first:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed, the first: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(requests > 10, "{requests}");
    sb.stop().await;
    db.drop_now(&vault).await;
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("jwt header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url header");
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json header");
    json["kid"].as_str().expect("kid").to_owned()
}

/// The auth service keeps its signing keys in Vault KV; a rotation written
/// there by another replica (here: `cloudsec keys rotate --now`'s code) is
/// picked up by the running service, the gateway and documents accept the
/// new tokens at once, and tokens of the previous key keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_in_vault_rotate_under_a_running_platform() {
    use cloudsec_auth::keys::{KeyRing, KeyStore, Policy, SigningConfig};
    let Some(vault) = openbao() else { return };
    let kv = vault.mount("kv-v2").await;
    let env = BTreeMap::from([
        (
            "CLOUDSEC__AUTH__SIGNING__STORE__BACKEND".to_owned(),
            "vault".to_owned(),
        ),
        (
            "CLOUDSEC__AUTH__SIGNING__STORE__MOUNT".to_owned(),
            kv.clone(),
        ),
        (
            "CLOUDSEC__AUTH__SIGNING__STORE__PATH".to_owned(),
            "auth/keys".to_owned(),
        ),
        (
            "CLOUDSEC__AUTH__SIGNING__CHECK_INTERVAL".to_owned(),
            "500ms".to_owned(),
        ),
    ])
    .into_iter()
    .chain(transit_env(&vault).await)
    .collect();
    let sb = Sandbox::start_with(
        Backend::Sqlite,
        Extra {
            toml: vault_section(&vault),
            env,
        },
    )
    .await
    .expect("sqlite sandbox");
    let user = sb.user().await;
    let first = kid_of(&user.token);

    let operator = KeyRing::open(
        KeyStore::Vault {
            client: vault.root().await,
            mount: kv.clone(),
            path: "auth/keys".into(),
        },
        Policy::new(&SigningConfig::default(), Duration::from_secs(900)),
        Duration::from_secs(60),
        std::sync::Arc::new(cloudsec_runtime::token::TokenVerifier::fixed("i", "a")),
    )
    .await
    .unwrap();
    assert_eq!(operator.plan().signing.as_deref(), Some(first.as_str()));
    let second = operator.rotate(true).await.unwrap();
    assert_ne!(second, first);

    let token = eventually(Duration::from_secs(20), || async {
        let token = sb.login(&user.email, &user.password).await;
        (kid_of(&token) == second).then_some(token)
    })
    .await
    .expect("the running auth service signs with the new key");
    let r = sb.get("/v1/documents", &token).await;
    assert_eq!(
        r.status(),
        200,
        "new key accepted: {}",
        r.text().await.unwrap_or_default()
    );
    let r = sb.get("/v1/documents", &user.token).await;
    assert_eq!(r.status(), 200, "old key still accepted during the overlap");

    // The private keys are in Vault only.
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(sb.auth_database_url())
        .await
        .unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM signing_keys",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
    sb.stop().await;
}

/// `cloudsec proxy` without certificate files: the sidecar's identity comes
/// from Vault PKI for its service account, and is renewed before it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_takes_its_identity_from_vault_and_renews_it() {
    let Some(vault) = openbao() else { return };
    let (pki, vault_ca) = mesh_pki(&vault).await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = cloudsec_secrets::Secrets::from_config(
        &cloudsec_secrets::SecretsConfig::Vault {
            vault: Box::new(vault.config_at(&vault.addr, &vault.token)),
            cache: CacheConfig::default(),
        },
        dir.path(),
    )
    .await
    .unwrap();
    let mut mesh = cloudsec::MeshConfig {
        issuer: cloudsec::IssuerConfig::Vault {
            mount: pki,
            role: "mesh".into(),
        },
        certificate_lifetime: Duration::from_secs(6),
        ..Default::default()
    };
    let err = cloudsec::mesh_identity(&mesh, Some(&secrets))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mesh.service_account"), "{err}");
    mesh.service_account = Some("documents".into());

    let (identity, _tls) = cloudsec::mesh_identity(&mesh, Some(&secrets))
        .await
        .unwrap();
    let first = identity.current();
    assert_eq!(
        first.id.to_string(),
        "spiffe://cloudsec.local/ns/default/sa/documents"
    );
    assert!(first.ca_pem.contains(&vault_ca));
    let mut changes = identity.subscribe();
    let stop = tokio_util::sync::CancellationToken::new();
    let _rotation = identity.spawn_rotation(stop.clone());
    tokio::time::timeout(Duration::from_secs(30), changes.changed())
        .await
        .expect("renewed before expiry")
        .unwrap();
    assert_ne!(identity.current().cert_pem, first.cert_pem);
    stop.cancel();

    // Without Vault as the issuer the sidecar needs its files.
    let local = cloudsec::MeshConfig::default();
    let err = cloudsec::mesh_identity(&local, Some(&secrets))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("proxy.tls"), "{err}");
}
