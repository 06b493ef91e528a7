//! The `cloudsec` command: parse, wire, run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use cloudsec::{LoadedConfig, LocalConfigError, LocalPlatform, LogFormatName, PlatformConfig};
use cloudsec_runtime::config::{self, ConfigError, EXIT_CONFIG};
use cloudsec_runtime::telemetry::{self, LogFormat};
use cloudsec_runtime::tls::{MeshTls, TlsFiles};
use cloudsec_runtime::token::TokenVerifier;
use cloudsec_runtime::{Shutdown, shutdown};

#[derive(Debug, Parser)]
#[command(
    name = "cloudsec",
    version,
    about = "A secure platform of Rust microservices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start auth, documents and the gateway in one process, on SQLite and
    /// a local CA under the data directory.
    Up {
        /// Where databases, the development CA and keys are kept.
        #[arg(long, default_value = ".cloudsec")]
        data_dir: PathBuf,
        /// A configuration file layered under `CLOUDSEC__...` variables.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run one component as it runs in Kubernetes, configured by file and
    /// `CLOUDSEC__...` environment variables.
    Serve {
        component: Component,
        #[arg(long, env = "CLOUDSEC_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Call a service of the local platform over mTLS gRPC with a JSON
    /// request, e.g. `call cloudsec.documents.v1.DocumentService/ListDocuments '{}' --token $TOKEN`.
    Call {
        /// `package.Service/Method`.
        method: String,
        /// The request in proto3 JSON.
        #[arg(default_value = "{}")]
        request: String,
        /// An access token, sent as `authorization: Bearer ...`.
        #[arg(long, env = "CLOUDSEC_TOKEN")]
        token: Option<String>,
        /// The running platform's data directory; by default `.cloudsec`
        /// here or in the nearest parent directory that has one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write a workload certificate from the local CA (with the CA and key)
    /// into a directory, for tools such as grpcurl.
    Cert {
        /// The service account, e.g. `tools`.
        name: String,
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// How long the certificate is valid, e.g. `1h`.
        #[arg(long, default_value = "1h", value_parser = humantime_serde::re::humantime::parse_duration)]
        lifetime: std::time::Duration,
        /// The platform's data directory; by default `.cloudsec` here or in
        /// the nearest parent directory that has one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Create the development CA in `--data-dir` when there is none
        /// (for `serve` without `up`); without it a missing CA is an error.
        #[arg(long, requires = "data_dir")]
        init_ca: bool,
        /// `[mesh]` settings (trust domain, namespace) when the platform is
        /// not running.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the sidecar proxy beside a service, configured by the `[proxy]`
    /// section and `CLOUDSEC__PROXY__...` variables.
    Proxy {
        #[arg(long, env = "CLOUDSEC_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document of every annotated RPC.
    Openapi,
    /// Manage the secrets that `vault:` references in the configuration
    /// read: the local keystore of `cloudsec up`, or Vault KV v2.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Manage the auth service's token-signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Run a component's maintenance once: for documents, re-wrap data
    /// keys under their key's latest version and delete orphan content
    /// generations (the service also does it every
    /// `documents.content.maintenance_interval`).
    Maintain {
        component: MaintainComponent,
        /// Only orphans older than this are deleted (writes in flight).
        #[arg(long, default_value = "1h", value_parser = humantime_serde::re::humantime::parse_duration)]
        grace: std::time::Duration,
        #[arg(long, default_value = ".cloudsec")]
        data_dir: PathBuf,
        #[arg(long, env = "CLOUDSEC_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Apply a component's database migrations and exit.
    Migrate {
        component: DbComponent,
        #[arg(long, env = "CLOUDSEC_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsAction {
    /// Set one field from standard input (one trailing newline is
    /// dropped), e.g. `printf %s "$KEY" | cloudsec secrets put vault:secret/documents#page_token_key`.
    Put {
        /// `vault:<mount>/<path>#<field>`.
        reference: String,
        /// The keystore of this data directory, unless the configuration
        /// names another back end.
        #[arg(long, default_value = ".cloudsec")]
        data_dir: PathBuf,
        #[arg(long, env = "CLOUDSEC_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Add a new signing key. It is published at once and signs after
    /// `auth.signing.publish_ahead`, so verifiers have it first; with
    /// `--now` it signs at once (after a compromise).
    Rotate {
        #[arg(long)]
        now: bool,
        #[arg(long, default_value = ".cloudsec")]
        data_dir: PathBuf,
        #[arg(long, env = "CLOUDSEC_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Component {
    Auth,
    Documents,
    Audit,
    Gateway,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MaintainComponent {
    Documents,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DbComponent {
    Auth,
    Documents,
    Audit,
}

/// A failure that ends the process, with its exit code.
struct Fatal {
    code: u8,
    message: String,
}

impl From<ConfigError> for Fatal {
    fn from(e: ConfigError) -> Self {
        Fatal {
            code: EXIT_CONFIG as u8,
            message: e.to_string(),
        }
    }
}

fn serde_json_pretty(value: &serde_json::Value) -> Result<String, Fatal> {
    serde_json::to_string_pretty(value).map_err(fatal)
}

/// Start-up failures; bad gateway settings found while building count as
/// configuration errors (exit 64).
fn startup(e: cloudsec::PlatformError) -> Fatal {
    match e {
        cloudsec::PlatformError::Gateway(cloudsec_gateway::GatewayError::Config(c)) => {
            ConfigError {
                key: format!("gateway.{}", c.key.trim_start_matches("gateway.")),
                message: c.reason,
            }
            .into()
        }
        other => fatal(other),
    }
}

fn fatal(e: impl std::fmt::Display) -> Fatal {
    Fatal {
        code: 1,
        message: e.to_string(),
    }
}

fn missing(key: &str, why: &str) -> Fatal {
    ConfigError {
        key: key.to_owned(),
        message: why.to_owned(),
    }
    .into()
}

fn main() -> ExitCode {
    // Databases, keys, the CA and certificates this process writes are
    // for its own user alone, whatever the shell's umask.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal { code, message }) => {
            telemetry::flush();
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

fn read_file(path: Option<&Path>) -> Result<Option<String>, Fatal> {
    path.map(|p| {
        std::fs::read_to_string(p).map_err(|e| Fatal {
            code: EXIT_CONFIG as u8,
            message: format!("cannot read configuration file {}: {e}", p.display()),
        })
    })
    .transpose()
}

/// The exit code when a back end the configuration needs is down
/// (`EX_UNAVAILABLE` from sysexits.h).
const EXIT_UNAVAILABLE: u8 = 69;

fn config_failure(e: LocalConfigError) -> Fatal {
    match e {
        LocalConfigError::Config(e) => e.into(),
        e if e.is_unavailable() => Fatal {
            code: EXIT_UNAVAILABLE,
            message: format!(
                "{e}; start-up retries are set by secrets.vault.retry (attempts, initial_backoff, max_backoff)"
            ),
        },
        LocalConfigError::Secrets(e) => Fatal {
            code: EXIT_CONFIG as u8,
            message: format!("secrets: {e}"),
        },
        LocalConfigError::Platform(e) => fatal(e),
    }
}

/// The configuration `cloudsec up` runs with under `data_dir`.
async fn up_config(data_dir: &Path, path: Option<&Path>) -> Result<LoadedConfig, Fatal> {
    let text = read_file(path)?;
    cloudsec::local_config(data_dir, text.as_deref(), &config::process_env())
        .await
        .map_err(config_failure)
}

async fn load_config(path: Option<&Path>) -> Result<LoadedConfig, Fatal> {
    let text = read_file(path)?;
    let layers: Vec<&str> = text.as_deref().into_iter().collect();
    cloudsec::load_config(&layers, &config::process_env(), None)
        .await
        .map_err(config_failure)
}

fn log_format(cfg: &PlatformConfig, default: LogFormat) -> LogFormat {
    match cfg.telemetry.log_format {
        Some(LogFormatName::Json) => LogFormat::Json,
        Some(LogFormatName::Pretty) => LogFormat::Pretty,
        None => default,
    }
}

fn tls(files: Option<&TlsFiles>, key: &str) -> Result<MeshTls, Fatal> {
    let files =
        files.ok_or_else(|| missing(key, "required: the workload certificate, key and mesh CA"))?;
    files.load().map_err(|e| missing(key, &e.to_string()))
}

async fn run(cli: Cli) -> Result<(), Fatal> {
    match cli.command {
        Command::Up { data_dir, config } => {
            let loaded = up_config(&data_dir, config.as_deref()).await?;
            let _guard = telemetry::init(
                "cloudsec",
                log_format(&loaded.config, LogFormat::Pretty),
                loaded.config.telemetry.otlp_endpoint.clone(),
            );
            up(data_dir, loaded).await
        }
        Command::Serve { component, config } => {
            let loaded = load_config(config.as_deref()).await?;
            let cfg = &loaded.config;
            let name = match component {
                Component::Auth => "cloudsec-auth",
                Component::Documents => "cloudsec-documents",
                Component::Audit => "cloudsec-audit",
                Component::Gateway => "cloudsec-gateway",
            };
            let _guard = telemetry::init(
                name,
                log_format(cfg, LogFormat::Json),
                cfg.telemetry.otlp_endpoint.clone(),
            );
            serve(component, loaded).await
        }
        Command::Call {
            method,
            request,
            token,
            data_dir,
        } => {
            let data_dir = cloudsec::call::find_data_dir(data_dir.as_deref()).map_err(fatal)?;
            let out = cloudsec::call::call(&data_dir, &method, &request, token.as_deref())
                .await
                .map_err(fatal)?;
            println!("{out}");
            Ok(())
        }
        Command::Cert {
            name,
            out,
            lifetime,
            data_dir,
            init_ca,
            config,
        } => {
            #[derive(serde::Deserialize)]
            struct MeshOnly {
                #[serde(default)]
                mesh: cloudsec::MeshConfig,
            }
            let text = read_file(config.as_deref())?;
            let mesh = config::load::<MeshOnly>(text.as_deref(), &config::process_env())?.mesh;
            if let (true, Some(dir)) = (init_ca, &data_dir) {
                cloudsec::private_dir(dir).map_err(fatal)?;
                cloudsec_identity::LocalCa::load_or_create(&dir.join("pki")).map_err(fatal)?;
            }
            let data_dir = cloudsec::call::find_data_dir(data_dir.as_deref()).map_err(fatal)?;
            cloudsec::call::export_cert(&data_dir, &mesh, &name, lifetime, &out)
                .await
                .map_err(fatal)?;
            println!(
                "wrote {0}/ca.pem, {0}/cert.pem and {0}/key.pem",
                out.display()
            );
            Ok(())
        }
        Command::Openapi => {
            let pool = cloudsec_gateway::descriptor_pool(&[cloudsec_proto::FILE_DESCRIPTOR_SET])
                .map_err(fatal)?;
            let doc = cloudsec_gateway::openapi(&pool);
            println!("{}", serde_json_pretty(&doc)?);
            Ok(())
        }
        Command::Proxy { config } => {
            let loaded = load_config(config.as_deref()).await?;
            let _guard = telemetry::init(
                "cloudsec-proxy",
                log_format(&loaded.config, LogFormat::Json),
                loaded.config.telemetry.otlp_endpoint.clone(),
            );
            proxy(loaded).await
        }
        Command::Secrets {
            action:
                SecretsAction::Put {
                    reference,
                    data_dir,
                    config,
                },
        } => {
            let reference = cloudsec_secrets::SecretRef::parse(&reference).map_err(|e| Fatal {
                code: EXIT_CONFIG as u8,
                message: e.to_string(),
            })?;
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .map_err(|e| fatal(format!("cannot read the value from standard input: {e}")))?;
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(fatal(
                    "the value on standard input is empty; nothing was written",
                ));
            }
            let text = read_file(config.as_deref())?;
            let secrets =
                cloudsec::local_secrets(&data_dir, text.as_deref(), &config::process_env())
                    .await
                    .map_err(config_failure)?
                    .ok_or_else(|| missing("secrets", "no secrets back end is configured"))?;
            secrets
                .put(&reference, &cloudsec_runtime::Secret::new(value))
                .await
                .map_err(fatal)?;
            println!("wrote {reference}");
            Ok(())
        }
        Command::Keys {
            action:
                KeysAction::Rotate {
                    now,
                    data_dir,
                    config,
                },
        } => {
            let loaded = up_config(&data_dir, config.as_deref()).await?;
            let mut cfg = loaded.config.clone();
            let _db_credentials =
                cloudsec::start_database_credentials(&mut cfg, loaded.secrets.as_ref())
                    .await
                    .map_err(fatal)?;
            let auth = cfg
                .auth
                .ok_or_else(|| missing("auth", "section required"))?;
            let db = cloudsec_runtime::db::connect_to::<cloudsec_auth::migration::Migrator>(
                &auth.database_url,
            )
            .await
            .map_err(fatal)?;
            use cloudsec_auth::keys::{KeyRing, KeyStore, Policy};
            let store = KeyStore::from_config(&auth.signing, &db, loaded.secrets.as_ref())
                .await
                .map_err(fatal)?;
            let verifier = Arc::new(TokenVerifier::fixed(
                &cfg.tokens.issuer,
                &cfg.tokens.audience,
            ));
            let ring = KeyRing::open(
                store,
                Policy::new(&auth.signing, cfg.tokens.access_ttl),
                auth.signing.check_interval,
                verifier,
            )
            .await
            .map_err(fatal)?;
            let kid = ring.rotate(now).await.map_err(fatal)?;
            let plan = ring.plan();
            println!(
                "new signing key {kid}; signing now: {}; published: {}",
                plan.signing.as_deref().unwrap_or("-"),
                plan.published.join(", ")
            );
            if !now {
                println!(
                    "it signs after {} (auth.signing.publish_ahead); running auth replicas pick it up within {}",
                    humantime_serde::re::humantime::format_duration(auth.signing.publish_ahead),
                    humantime_serde::re::humantime::format_duration(auth.signing.check_interval)
                );
            }
            Ok(())
        }
        Command::Maintain {
            component: MaintainComponent::Documents,
            grace,
            data_dir,
            config,
        } => {
            let loaded = up_config(&data_dir, config.as_deref()).await?;
            let mut cfg = loaded.config.clone();
            let _db_credentials =
                cloudsec::start_database_credentials(&mut cfg, loaded.secrets.as_ref())
                    .await
                    .map_err(fatal)?;
            let c = cfg
                .documents
                .ok_or_else(|| missing("documents", "section required"))?;
            let store = cloudsec_documents::open_store(&c).await.map_err(fatal)?;
            let report = cloudsec_documents::maintain(&store, grace)
                .await
                .map_err(fatal)?;
            println!(
                "rewrap: {} re-wrapped, {} already current, {} failed",
                report.rewrap.rewrapped,
                report.rewrap.unchanged,
                report.rewrap.failed.len()
            );
            for (id, error) in &report.rewrap.failed {
                println!("  document {id}: {error}");
            }
            println!(
                "orphans: {} generations examined, {} deleted, {} younger than {} kept, {} failed",
                report.garbage.examined,
                report.garbage.deleted,
                report.garbage.recent,
                humantime_serde::re::humantime::format_duration(grace),
                report.garbage.failed.len()
            );
            for (objects, error) in &report.garbage.failed {
                println!("  {}: {error}", objects.join(", "));
            }
            if report.rewrap.failed.is_empty() && report.garbage.failed.is_empty() {
                Ok(())
            } else {
                Err(fatal(
                    "some documents could not be maintained (listed above)",
                ))
            }
        }
        Command::Migrate { component, config } => {
            let loaded = load_config(config.as_deref()).await?;
            let mut cfg = loaded.config;
            let _db_credentials =
                cloudsec::start_database_credentials(&mut cfg, loaded.secrets.as_ref())
                    .await
                    .map_err(fatal)?;
            let _guard = telemetry::init("cloudsec", log_format(&cfg, LogFormat::Json), None);
            match component {
                DbComponent::Auth => {
                    let c = cfg
                        .auth
                        .ok_or_else(|| missing("auth", "section required"))?;
                    cloudsec_runtime::db::connect_to::<cloudsec_auth::migration::Migrator>(
                        &c.database_url,
                    )
                    .await
                    .map_err(fatal)?;
                }
                DbComponent::Documents => {
                    let c = cfg
                        .documents
                        .ok_or_else(|| missing("documents", "section required"))?;
                    let db = cloudsec_runtime::db::connect_to::<
                        cloudsec_documents::migration::Migrator,
                    >(&c.database_url)
                    .await
                    .map_err(fatal)?;
                    cloudsec_bus::migration::migrate(&db).await.map_err(fatal)?;
                }
                DbComponent::Audit => {
                    let c = cfg
                        .audit
                        .ok_or_else(|| missing("audit", "section required"))?;
                    cloudsec_audit::connect(&c.database_url)
                        .await
                        .map_err(fatal)?;
                }
            }
            println!("migrations applied");
            Ok(())
        }
    }
}

async fn up(data_dir: PathBuf, cfg: LoadedConfig) -> Result<(), Fatal> {
    // Before anything is printed: a SIGTERM right after the banner must
    // drain, not kill.
    let shutdown = Shutdown::new();
    shutdown::cancel_on_signal(shutdown.clone());
    let platform = LocalPlatform::build(&data_dir, &cfg)
        .await
        .map_err(startup)?;
    let a = platform.addresses();
    let base = format!("http://{}", a.gateway);
    println!(
        "\ncloudsec is up (data in {dir})\n\
         \n  REST gateway   {base}\
         \n  admin          http://{ga}/metrics (gateway)  http://{aa}/metrics (auth)  http://{da}/metrics (documents)  http://{ua}/metrics (audit)\
         \n  sidecar admin  http://{gsa}/metrics (gateway)  http://{asa}/metrics (auth)  http://{dsa}/metrics (documents)  http://{usa}/metrics (audit)\
         \n  gRPC (mTLS)    auth {auth}  documents {docs}  audit {audit}\
         \n\nTry it:\n\
         \n  curl -s {base}/v1/auth:signUp -H 'content-type: application/json' \\\
         \n    -d '{{\"email\":\"ada@example.com\",\"password\":\"correct horse battery\",\"tenant\":\"acme\"}}'\
         \n  # the code is in the log below: \"confirmation code ... code=NNNNNN\"\
         \n  curl -s {base}/v1/auth:confirmSignUp -H 'content-type: application/json' \\\
         \n    -d '{{\"email\":\"ada@example.com\",\"code\":\"NNNNNN\"}}'\
         \n  TOKEN=$(curl -s {base}/v1/auth:login -H 'content-type: application/json' \\\
         \n    -d '{{\"email\":\"ada@example.com\",\"password\":\"correct horse battery\"}}' | sed 's/.*\"accessToken\":\"\\([^\"]*\\)\".*/\\1/')\
         \n  curl -s {base}/v1/documents -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\
         \n    -d '{{\"title\":\"Hello\",\"classification\":\"INTERNAL\",\"content\":\"first document\"}}'\
         \n  curl -s {base}/v1/documents -H \"authorization: Bearer $TOKEN\"\
         \n  curl -s {base}/v1/audit/records -H \"authorization: Bearer $TOKEN\"\
         \n  curl -s {base}/v1/audit/chain:verify -H \"authorization: Bearer $TOKEN\"\
         \n\nPress ctrl-c to stop.\n",
        dir = data_dir.display(),
        ga = a.gateway_admin,
        aa = a.auth_admin,
        da = a.documents_admin,
        ua = a.audit_admin,
        gsa = a.gateway_sidecar_admin,
        asa = a.auth_sidecar_admin,
        dsa = a.documents_sidecar_admin,
        usa = a.audit_sidecar_admin,
        audit = a.audit,
        auth = a.auth,
        docs = a.documents,
    );
    let running = cloudsec::call::RunningPlatform {
        pid: std::process::id(),
        trust_domain: cfg.config.mesh.trust_domain.clone(),
        namespace: cfg.config.mesh.namespace.clone(),
        gateway: a.gateway,
        services: [
            ("cloudsec.auth.v1.AuthService", "auth", a.auth),
            (
                "cloudsec.documents.v1.DocumentService",
                "documents",
                a.documents,
            ),
            ("cloudsec.audit.v1.AuditService", "audit", a.audit),
        ]
        .into_iter()
        .map(|(service, account, addr)| (service.to_owned(), (account.to_owned(), addr)))
        .collect(),
        admin: [
            ("gateway", a.gateway_admin),
            ("auth", a.auth_admin),
            ("documents", a.documents_admin),
            ("audit", a.audit_admin),
            ("gateway-sidecar", a.gateway_sidecar_admin),
            ("auth-sidecar", a.auth_sidecar_admin),
            ("documents-sidecar", a.documents_sidecar_admin),
            ("audit-sidecar", a.audit_sidecar_admin),
        ]
        .into_iter()
        .map(|(name, addr)| (name.to_owned(), addr))
        .collect(),
    };
    if let Err(error) = running.publish(&data_dir) {
        tracing::warn!(%error, "cannot publish the running platform for `cloudsec call`");
    }
    let result = platform.run_until_stopped(shutdown).await.map_err(fatal);
    cloudsec::call::RunningPlatform::withdraw(&data_dir);
    result
}

/// A token verifier that fetches the JWKS from the auth service named in
/// `[tokens]`, over mTLS with `tls`.
fn verifier(cfg: &PlatformConfig, tls: &MeshTls) -> Result<Arc<TokenVerifier>, Fatal> {
    let uri = cfg
        .tokens
        .auth_uri
        .as_deref()
        .ok_or_else(|| missing("tokens.auth_uri", "required: where to fetch the JWKS"))?;
    let name = cfg.tokens.auth_server_name.as_deref().ok_or_else(|| {
        missing(
            "tokens.auth_server_name",
            "required: the auth service's certificate name",
        )
    })?;
    let channel = cloudsec_runtime::grpc::channel(uri, name, tls)
        .map_err(|e| missing("tokens.auth_uri", &e.to_string()))?;
    let verifier = cfg
        .tokens
        .trusting(TokenVerifier::from_auth(
            &cfg.tokens.issuer,
            &cfg.tokens.audience,
            channel,
        ))
        .map_err(|e| missing("tokens.cognito", &e.to_string()))?;
    Ok(Arc::new(verifier))
}

async fn proxy(loaded: LoadedConfig) -> Result<(), Fatal> {
    let cfg = &loaded.config;
    let c = cfg
        .proxy
        .clone()
        .ok_or_else(|| missing("proxy", "section required to run the sidecar"))?;
    let shutdown = Shutdown::new();
    shutdown::cancel_on_signal(shutdown.clone());
    let proxy_error = |e| match e {
        cloudsec_proxy::ProxyError::Config(c) => c.into(),
        other => fatal(other),
    };
    if c.tls.is_some() || matches!(cfg.mesh.issuer, cloudsec::IssuerConfig::Local) {
        return cloudsec_proxy::Proxy::run_from_files(&c, Some(&cfg.mesh.trust_domain), shutdown)
            .await
            .map_err(proxy_error);
    }
    // No certificate files: the sidecar asks the mesh issuer (Vault PKI)
    // for its identity and rotates it itself.
    c.validate()?;
    if let Some(vault) = loaded
        .secrets
        .as_ref()
        .and_then(cloudsec_secrets::Secrets::vault)
    {
        let _renewal = vault.spawn_token_renewal(shutdown.clone());
    }
    let (identity, tls) = cloudsec::mesh_identity(&cfg.mesh, loaded.secrets.as_ref())
        .await
        .map_err(startup)?;
    let _rotation = identity.spawn_rotation(shutdown.clone());
    tracing::info!(id = %identity.current().id, "workload certificate from the mesh issuer");
    let sidecar = cloudsec_proxy::Proxy::build(&c, tls)
        .await
        .map_err(proxy_error)?;
    sidecar
        .run_until_stopped(shutdown)
        .await
        .map_err(proxy_error)
}

async fn serve(component: Component, loaded: LoadedConfig) -> Result<(), Fatal> {
    let shutdown = Shutdown::new();
    shutdown::cancel_on_signal(shutdown.clone());
    if let Some(vault) = loaded
        .secrets
        .as_ref()
        .and_then(cloudsec_secrets::Secrets::vault)
    {
        let _renewal = vault.spawn_token_renewal(shutdown.clone());
    }
    let mut cfg = loaded.config.clone();
    // Held until the component stops: dropping them ends lease renewal.
    let _db_credentials = cloudsec::start_database_credentials(&mut cfg, loaded.secrets.as_ref())
        .await
        .map_err(fatal)?;
    match component {
        Component::Auth => {
            let c = cfg
                .auth
                .ok_or_else(|| missing("auth", "section required to serve auth"))?;
            let tls = tls(c.tls.as_ref(), "auth.tls")?;
            let auth = cloudsec_auth::Auth::build(
                &c,
                cfg.tokens.settings(),
                &cfg.events,
                None,
                loaded.secrets.as_ref(),
            )
            .await
            .map_err(fatal)?;
            tracing::info!(grpc = %auth.grpc_addr(), admin = %auth.admin_addr(), "auth serving");
            auth.run_until_stopped(Some(&tls), shutdown)
                .await
                .map_err(fatal)
        }
        Component::Documents => {
            let c = cfg
                .documents
                .clone()
                .ok_or_else(|| missing("documents", "section required to serve documents"))?;
            let tls = tls(c.tls.as_ref(), "documents.tls")?;
            let verifier = verifier(&cfg, &tls)?;
            let documents = cloudsec_documents::Documents::build(&c, verifier, &cfg.events, None)
                .await
                .map_err(fatal)?;
            tracing::info!(grpc = %documents.grpc_addr(), admin = %documents.admin_addr(), "documents serving");
            documents
                .run_until_stopped(Some(&tls), shutdown)
                .await
                .map_err(fatal)
        }
        Component::Audit => {
            let c = cfg
                .audit
                .clone()
                .ok_or_else(|| missing("audit", "section required to serve audit"))?;
            let tls = tls(c.tls.as_ref(), "audit.tls")?;
            let verifier = verifier(&cfg, &tls)?;
            let bus = cloudsec_bus::Bus::connect(&cfg.events, None)
                .await
                .map_err(|e| missing("events", &e.to_string()))?;
            let queue = bus
                .queue(&cloudsec_audit::queue_spec(&c), cfg.events.provisioning)
                .await
                .map_err(fatal)?;
            let audit = cloudsec_audit::Audit::build(&c, verifier, queue)
                .await
                .map_err(fatal)?;
            tracing::info!(grpc = %audit.grpc_addr(), admin = %audit.admin_addr(), "audit serving");
            audit
                .run_until_stopped(Some(&tls), shutdown)
                .await
                .map_err(fatal)
        }
        Component::Gateway => {
            let c = cfg
                .gateway
                .ok_or_else(|| missing("gateway", "section required to serve the gateway"))?;
            if c.upstreams.is_empty() {
                return Err(missing(
                    "gateway.upstreams",
                    "required: at least one gRPC service and its address",
                ));
            }
            let tls = tls(c.tls.as_ref(), "gateway.tls")?;
            let gateway =
                cloudsec_gateway::Gateway::build(&c, &[cloudsec_proto::FILE_DESCRIPTOR_SET], tls)
                    .await
                    .map_err(|e| startup(e.into()))?;
            tracing::info!(rest = %gateway.local_addr(), admin = %gateway.admin_addr(), "gateway serving");
            gateway.run_until_stopped(shutdown).await.map_err(fatal)
        }
    }
}
