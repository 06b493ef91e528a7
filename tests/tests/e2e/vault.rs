//! The platform on Vault (OpenBao): `vault:` references in the
//! configuration, the mesh's certificates from Vault's PKI engine, and the
//! failures an operator meets (no `[secrets]`, a missing secret, Vault
//! down at start).
//!
//! The tests run in one of two modes:
//!
//! - **own set-up** (the default): each test makes what it needs on the
//!   shared OpenBao with its root token (KV, transit and PKI mounts at
//!   fresh paths, a PKI role, a database engine over a database of its
//!   own), so they run in parallel on a dev server;
//! - **provisioned** (`CLOUDSEC_TEST_VAULT_PROVISIONED=1`, which
//!   `scripts/check-ansible` sets after `deploy/ansible/site.yml` configured
//!   a fresh OpenBao): they use what the playbook made instead (KV
//!   `secret/cloudsec/<component>`, transit `transit/`, the intermediate
//!   `pki/` with its roles `mesh` and `mesh-<component>`, database roles
//!   `auth`, `documents`, `audit` and `events`), and the platform logs in
//!   with a token that holds only the policies of `deploy/vault/policies`
//!   (plus `cloudsec-up` for the single-process role), never root. The
//!   root token (`CLOUDSEC_TEST_VAULT_TOKEN`) is then the operator's: it
//!   writes the secrets a test reads, mints the per-component tokens that
//!   a Kubernetes login would give (no cluster here), and revokes leases
//!   to play an incident.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cloudsec::{LoadedConfig, LocalConfigError};
use cloudsec_secrets::test_util::{TestVault, openbao};
use cloudsec_secrets::{CacheConfig, Secret, SecretRef, VaultSecrets};
use cloudsec_tests::{Backend, Extra, Sandbox, eventually};
use serde_json::json;

/// What `deploy/ansible/site.yml` configured, in provisioned mode; the
/// variables come from `scripts/check-ansible` (the names default to the
/// playbook's, `roles/vault/defaults/main.yml`).
#[derive(Debug)]
struct Provisioned {
    /// Policies auth, documents, audit, gateway, mailer and cloudsec-up:
    /// everything `cloudsec up` runs in its one process.
    platform_token: String,
    kv: String,
    transit: String,
    pki: String,
    pki_root: String,
    /// The single-process PKI role (`vault_pki_single_process_role`).
    pki_role: String,
    db_mount: String,
    /// The playbook's `cloudsec_db_prefix`: databases `<prefix><component>`.
    db_prefix: String,
}

const PROVISIONED: &str = "CLOUDSEC_TEST_VAULT_PROVISIONED";

/// `Some` in provisioned mode. Asking for it without the variables it
/// needs is a failure naming them, never a quiet fall-back to own set-up.
fn provisioned() -> Option<&'static Provisioned> {
    static MODE: OnceLock<Option<Provisioned>> = OnceLock::new();
    MODE.get_or_init(|| {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match var(PROVISIONED).as_deref() {
            None | Some("0") => return None,
            Some("1") => {}
            Some(other) => panic!("{PROVISIONED}={other}: use 1 (provisioned) or leave it unset"),
        }
        let required = |name: &str| {
            var(name).unwrap_or_else(|| {
                panic!(
                    "{PROVISIONED}=1 needs {name}; scripts/check-ansible exports it after \
                     deploy/ansible/site.yml ran"
                )
            })
        };
        // openbao() reads these two; without them it would start an empty
        // dev server and the tests would find none of the playbook's work.
        required("CLOUDSEC_TEST_VAULT_ADDR");
        required("CLOUDSEC_TEST_VAULT_TOKEN");
        let named = |name: &str, default: &str| var(name).unwrap_or_else(|| default.to_owned());
        Some(Provisioned {
            platform_token: required("CLOUDSEC_TEST_VAULT_PLATFORM_TOKEN"),
            kv: named("CLOUDSEC_TEST_VAULT_KV_MOUNT", "secret"),
            transit: named("CLOUDSEC_TEST_VAULT_TRANSIT_MOUNT", "transit"),
            pki: named("CLOUDSEC_TEST_VAULT_PKI_MOUNT", "pki"),
            pki_root: named("CLOUDSEC_TEST_VAULT_PKI_ROOT_MOUNT", "pki-root"),
            pki_role: named("CLOUDSEC_TEST_VAULT_PKI_ROLE", "mesh"),
            db_mount: named("CLOUDSEC_TEST_VAULT_DB_MOUNT", "database"),
            db_prefix: std::env::var("CLOUDSEC_TEST_VAULT_DB_PREFIX").unwrap_or_default(),
        })
    })
    .as_ref()
}

/// The OpenBao of this run (`None` only outside CI when there is none).
/// In provisioned mode it must answer, hold the playbook's mounts, and the
/// platform's token must not be root: a clear failure otherwise.
async fn bao() -> Option<TestVault> {
    let mode = provisioned();
    let vault = openbao()?;
    let Some(p) = mode else {
        return Some(vault);
    };
    let down = |e: cloudsec_secrets::Error| {
        format!(
            "the provisioned Vault at {} does not answer: {e}; run scripts/check-ansible",
            vault.addr
        )
    };
    let admin = cloudsec_secrets::VaultClient::connect(vault.config_at(&vault.addr, &vault.token))
        .await
        .unwrap_or_else(|e| panic!("{}", down(e)));
    let mounts = admin
        .request(reqwest::Method::GET, "sys/mounts", None)
        .await
        .unwrap_or_else(|e| panic!("{}", down(e)));
    let mounts = mounts.get("data").unwrap_or(&mounts);
    for mount in [&p.kv, &p.transit, &p.pki, &p.pki_root, &p.db_mount] {
        assert!(
            mounts.get(format!("{mount}/")).is_some(),
            "the provisioned Vault at {} has no {mount}/ mount: deploy/ansible/site.yml did not \
             configure it (scripts/check-ansible runs it)",
            vault.addr
        );
    }
    let token = post(
        &vault,
        "auth/token/lookup",
        json!({ "token": p.platform_token }),
    )
    .await;
    let policies: Vec<&str> = token["data"]["policies"]
        .as_array()
        .expect("token policies")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        !policies.contains(&"root"),
        "the platform's token must hold the platform's policies, not root: {policies:?}"
    );
    Some(vault)
}

async fn post(vault: &TestVault, path: &str, body: serde_json::Value) -> serde_json::Value {
    vault
        .root()
        .await
        .request(reqwest::Method::POST, path, Some(&body))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

async fn get(vault: &TestVault, path: &str) -> serde_json::Value {
    vault
        .root()
        .await
        .request(reqwest::Method::GET, path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A token with `policies` only (not Vault's `default`), as the playbook's
/// Kubernetes role of a component would give its pods: there is no
/// cluster to log in through, so the operator mints it.
async fn policy_token(vault: &TestVault, policies: &[&str]) -> String {
    let created = post(
        vault,
        "auth/token/create",
        json!({ "policies": policies, "no_default_policy": true, "ttl": "1h" }),
    )
    .await;
    created["auth"]["client_token"]
        .as_str()
        .expect("client token")
        .to_owned()
}

/// The token the platform logs in with: the shared server's root token in
/// own set-up mode, the platform's policies in provisioned mode.
fn platform_token(vault: &TestVault) -> String {
    provisioned().map_or_else(|| vault.token.clone(), |p| p.platform_token.clone())
}

/// Where the mesh's certificates come from, and what the trust bundle
/// that every workload receives must hold.
struct MeshPki {
    mount: String,
    role: String,
    /// The CA certificates of the bundle, all and only them.
    anchors: Vec<String>,
    /// The root of the chain.
    root: String,
}

fn pem_of(body: &serde_json::Value) -> String {
    body["data"]["certificate"]
        .as_str()
        .expect("CA certificate")
        .trim()
        .to_owned()
}

/// The mesh's PKI for the single-process platform: a role that may issue
/// every workload of the `default` namespace (in a cluster each service
/// gets a role of its own).
///
/// Own set-up: a mount with a root CA and the role `mesh`. Provisioned:
/// the playbook's intermediate `pki/` (signed by `pki-root/`) and its
/// single-process role, so the bundle is the intermediate and the root.
async fn mesh_pki(vault: &TestVault) -> MeshPki {
    if let Some(p) = provisioned() {
        let intermediate = pem_of(&get(vault, &format!("{}/cert/ca", p.pki)).await);
        let root = pem_of(&get(vault, &format!("{}/cert/ca", p.pki_root)).await);
        return MeshPki {
            mount: p.pki.clone(),
            role: p.pki_role.clone(),
            anchors: vec![intermediate, root.clone()],
            root,
        };
    }
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
    let root = pem_of(&root);
    MeshPki {
        mount,
        role: "mesh".into(),
        anchors: vec![root.clone()],
        root,
    }
}

fn vault_section(vault: &TestVault) -> String {
    format!(
        "[secrets]\nbackend = \"vault\"\n[secrets.vault]\naddress = \"{}\"\nauth = {{ method = \"token\", token = \"{}\" }}\n",
        vault.addr,
        platform_token(vault)
    )
}

/// The auth service seals its signing keys and the mailer's codes with
/// Vault transit. The dev server has no transit mount, so in own set-up
/// each test gets one (the service makes its keys); provisioned, the
/// playbook's mount already holds `auth-signing-keys` and
/// `cloudsec-mailer`, which the platform's token may use but not create.
async fn transit_env(vault: &TestVault) -> [(String, String); 2] {
    let mount = match provisioned() {
        Some(p) => p.transit.clone(),
        None => vault.mount("transit").await,
    };
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

/// The KV v2 mount and path of `component`'s secrets: a fresh mount in own
/// set-up; provisioned, `secret/cloudsec/<component>`, the path its policy
/// lets it read.
async fn kv_of(vault: &TestVault, component: &str) -> (String, String) {
    match provisioned() {
        Some(p) => (p.kv.clone(), format!("cloudsec/{component}")),
        None => (vault.mount("kv-v2").await, component.to_owned()),
    }
}

/// Writes a secret with the root token: the operator's job (the platform's
/// policies only read).
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
    let Some(vault) = bao().await else { return };
    let (kv, path) = kv_of(&vault, "documents").await;
    let key = "p".repeat(48);
    let reference = format!("vault:{kv}/{path}#page_token_key");
    put(&vault, &reference, &key).await;
    // A second field at the same path survives the first (read, then a
    // check-and-set write).
    put(&vault, &format!("vault:{kv}/{path}#other"), "x").await;
    let pki = mesh_pki(&vault).await;

    let extra = Extra {
        toml: format!(
            "{}[mesh]\ncertificate_lifetime = \"1h\"\n[mesh.issuer]\nbackend = \"vault\"\nmount = \"{}\"\nrole = \"{}\"\n",
            vault_section(&vault),
            pki.mount,
            pki.role
        ),
        env: BTreeMap::from_iter(
            [("CLOUDSEC__DOCUMENTS__PAGE_TOKEN_KEY".to_owned(), reference)]
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
    let bundle = &sb.client_tls().ca_pem;
    assert!(bundle.contains(&pki.root), "the mesh trusts Vault's root");
    for anchor in &pki.anchors {
        assert!(bundle.contains(anchor), "the bundle holds {anchor}");
    }
    assert_eq!(
        bundle.matches("BEGIN CERTIFICATE").count(),
        pki.anchors.len(),
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
    let Some(vault) = bao().await else { return };
    // Provisioned: a path the auth policy may read, with no such field, so
    // the answer is "missing" and not "permission denied".
    let (kv, path) = kv_of(&vault, "auth").await;
    let reference = format!("vault:{kv}/{path}#database_url");
    let file = format!(
        "{}[auth]\ndatabase_url = \"{reference}\"\n",
        vault_section(&vault)
    );
    let err = cloudsec::load_config(&[&file], &BTreeMap::new(), None)
        .await
        .unwrap_err();
    assert!(!err.is_unavailable(), "a missing secret is not an outage");
    let message = err.to_string();
    assert!(message.contains("`auth.database_url`"), "{message}");
    assert!(message.contains(&reference), "{message}");
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
    // Bounded: three attempts and two short waits, counted in the error;
    // the timeout is only a hang guard with a wide margin.
    let err = tokio::time::timeout(
        Duration::from_secs(120),
        cloudsec::load_config(&[&file], &BTreeMap::new(), None),
    )
    .await
    .expect("bounded retries")
    .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(err.to_string().contains("3 attempts"), "{err}");
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

/// The components whose database login comes from Vault
/// (`[database_credentials.<component>]`); `events` is the embedded bus's
/// database.
const DB_COMPONENTS: [&str; 4] = ["auth", "documents", "audit", "events"];

/// Databases whose logins Vault's database engine makes: each owned by a
/// group role that every login joins and becomes, so that every
/// generation of credentials owns (through the group) what the first
/// created, and revoking a login drops only that login.
///
/// Own set-up: one database, owner and Vault login of this test's own, and
/// a mount whose role `app` serves every component. Provisioned: the
/// playbook's database `<prefix><component>` and role `<component>` per
/// component, as the chart configures a cluster.
struct DynamicDb {
    admin: sea_orm::DatabaseConnection,
    mount: String,
    /// (component, database, Vault role)
    components: Vec<(&'static str, String, String)>,
    /// What [`DynamicDb::drop_now`] drops (own set-up only): the
    /// database, its owner role and Vault's login.
    own: Option<[String; 3]>,
}

impl DynamicDb {
    async fn create(vault: &TestVault, ttl: &str, max_ttl: &str) -> Option<Self> {
        use sea_orm::ConnectionTrait;
        let admin = cloudsec_testkit::postgres_admin().await?;
        if let Some(p) = provisioned() {
            let components = DB_COMPONENTS
                .iter()
                .map(|&c| (c, format!("{}{c}", p.db_prefix), c.to_owned()))
                .collect();
            return Some(Self {
                admin,
                mount: p.db_mount.clone(),
                components,
                own: None,
            });
        }
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
        let components = DB_COMPONENTS
            .iter()
            .map(|&c| (c, name.clone(), "app".to_owned()))
            .collect();
        Some(Self {
            admin,
            mount,
            components,
            own: Some([name, owner, vault_user]),
        })
    }

    async fn extra(&self, vault: &TestVault) -> Extra {
        let mut toml = vault_section(vault);
        let mut env = BTreeMap::new();
        for (component, database, role) in &self.components {
            toml.push_str(&format!(
                "[database_credentials.{component}]\nmount = \"{}\"\nrole = \"{role}\"\ncheck_interval = \"500ms\"\n",
                self.mount
            ));
            // The users and passwords are Vault's; only host and database
            // count.
            env.insert(
                format!("CLOUDSEC__{}__DATABASE_URL", component.to_uppercase()),
                format!("postgres://placeholder@127.0.0.1:5432/{database}"),
            );
        }
        env.extend(transit_env(vault).await);
        Extra { toml, env }
    }

    /// The logins connected to the databases, other than the admin's.
    async fn logins(&self) -> Vec<String> {
        use sea_orm::{ConnectionTrait, Statement};
        let names: std::collections::BTreeSet<String> = self
            .components
            .iter()
            .map(|(_, database, _)| format!("'{database}'"))
            .collect();
        let rows = self
            .admin
            .query_all_raw(Statement::from_string(
                self.admin.get_database_backend(),
                format!(
                    "SELECT DISTINCT usename::text AS u FROM pg_stat_activity WHERE datname IN ({}) AND usename IS NOT NULL",
                    names.into_iter().collect::<Vec<_>>().join(", ")
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

    /// Revokes every lease of the mount (root: `revoke-prefix` needs sudo,
    /// which no platform policy has); in own set-up also drops what
    /// [`DynamicDb::create`] made. The playbook's databases stay:
    /// `scripts/check-ansible` drops them at the end.
    async fn drop_now(self, vault: &TestVault) {
        use sea_orm::ConnectionTrait;
        post(
            vault,
            &format!("sys/leases/revoke-prefix/{}/creds", self.mount),
            json!({}),
        )
        .await;
        let Some([name, owner, vault_user]) = self.own else {
            return;
        };
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {vault_user}"),
            format!("DROP ROLE IF EXISTS {owner}"),
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
    let Some(vault) = bao().await else { return };
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

    // The incident: an operator revokes every lease of the mount. This
    // takes the root token in both modes (`revoke-prefix` needs sudo),
    // never the platform's.
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
    // Leases of seconds are the point, and the playbook's roles give 1 h
    // (24 h at most), as production should: this test makes its own
    // database engine. It must not pass quietly on the playbook's.
    assert!(
        provisioned().is_none(),
        "this test needs database roles with 4 s leases, which the playbook does not make: \
         run it in its own set-up mode (scripts/check-ansible passes \
         --skip credentials_are_swapped_before_expiry)"
    );
    let Some(vault) = bao().await else { return };
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
    let Some(vault) = bao().await else { return };
    // Provisioned: the store's defaults, `secret/cloudsec/auth/signing-keys`,
    // which the auth policy may read and write new versions of.
    let (kv, auth) = kv_of(&vault, "auth").await;
    let path = format!("{auth}/signing-keys");
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
            path.clone(),
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

    // Another auth replica: provisioned, with the auth policy alone.
    let replica = match provisioned() {
        Some(_) => policy_token(&vault, &["auth"]).await,
        None => vault.token.clone(),
    };
    let operator = KeyRing::open(
        KeyStore::Vault {
            client: cloudsec_secrets::VaultClient::connect(vault.config_at(&vault.addr, &replica))
                .await
                .unwrap(),
            mount: kv.clone(),
            path,
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
    let Some(vault) = bao().await else { return };
    let pki = mesh_pki(&vault).await;
    // Provisioned, the cluster's layout: the sidecar of documents holds the
    // documents policy alone and asks the role `mesh-documents`, which
    // issues that one identity.
    let (role, token) = match provisioned() {
        Some(_) => (
            "mesh-documents".to_owned(),
            policy_token(&vault, &["documents"]).await,
        ),
        None => (pki.role.clone(), vault.token.clone()),
    };
    let dir = tempfile::tempdir().unwrap();
    let secrets = cloudsec_secrets::Secrets::from_config(
        &cloudsec_secrets::SecretsConfig::Vault {
            vault: Box::new(vault.config_at(&vault.addr, &token)),
            cache: CacheConfig::default(),
        },
        dir.path(),
    )
    .await
    .unwrap();
    let mut mesh = cloudsec::MeshConfig {
        issuer: cloudsec::IssuerConfig::Vault {
            mount: pki.mount.clone(),
            role,
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
    assert!(first.ca_pem.contains(&pki.root));
    if provisioned().is_some() {
        // Neither the documents policy nor the role `mesh-documents` lets
        // this sidecar be anyone else.
        let mut other = mesh.clone();
        other.service_account = Some("auth".into());
        let refused = cloudsec::mesh_identity(&other, Some(&secrets)).await;
        assert!(
            refused.is_err(),
            "the documents sidecar was issued auth's identity"
        );
    }
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
