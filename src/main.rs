//! The `cloudsec` command: parse the arguments and run one command of
//! `cmd/`, each a thin layer over the library (`cloudsec::wiring` builds
//! the components, `cloudsec::platform` runs them all for `up`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cmd;

use cmd::Fatal;

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
    /// Start auth, documents, audit and the gateway in one process, on SQLite and
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
    /// Check a configuration file as `serve` (or `proxy`) would load it,
    /// without reading any secret: exits 0, or 64 naming every bad key.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
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
enum ConfigAction {
    /// Check FILE (with the `CLOUDSEC__...` variables on top).
    Check {
        /// Also check what this component needs to start (its section, its
        /// certificate files, where it reaches its peers).
        #[arg(long)]
        component: Option<CheckedComponent>,
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum CheckedComponent {
    Auth,
    Documents,
    Audit,
    Gateway,
    Proxy,
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
pub(crate) enum Component {
    Auth,
    Documents,
    Audit,
    Gateway,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum MaintainComponent {
    Documents,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DbComponent {
    Auth,
    Documents,
    Audit,
}

fn main() -> ExitCode {
    // Databases, keys, the CA and certificates this process writes are
    // for its own user alone, whatever the shell's umask.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let runtime = match &cli.command {
        // The sidecar runs `proxy.worker_threads` workers, like `cloudsec-proxy`.
        Command::Proxy { config } => cmd::proxy::runtime(config.as_deref()),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Fatal {
                code: 1,
                message: format!("cannot start the async runtime: {e}"),
            }),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(Fatal { code, message }) => {
            eprintln!("error: {message}");
            return ExitCode::from(code);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal { code, message }) => {
            cloudsec_runtime::telemetry::flush();
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Fatal> {
    match cli.command {
        Command::Up { data_dir, config } => cmd::up::run(data_dir, config).await,
        Command::Serve { component, config } => cmd::serve::run(component, config).await,
        Command::Proxy { config } => cmd::proxy::run(config).await,
        Command::Call {
            method,
            request,
            token,
            data_dir,
        } => cmd::call::call(method, request, token, data_dir).await,
        Command::Cert {
            name,
            out,
            lifetime,
            data_dir,
            init_ca,
            config,
        } => cmd::call::cert(name, out, lifetime, data_dir, init_ca, config).await,
        Command::Openapi => cmd::openapi(),
        Command::Config {
            action: ConfigAction::Check { component, file },
        } => cmd::check::run(component, &file),
        Command::Secrets {
            action:
                SecretsAction::Put {
                    reference,
                    data_dir,
                    config,
                },
        } => cmd::secrets::put(reference, data_dir, config).await,
        Command::Keys {
            action:
                KeysAction::Rotate {
                    now,
                    data_dir,
                    config,
                },
        } => cmd::keys::rotate(now, data_dir, config).await,
        Command::Maintain {
            component: MaintainComponent::Documents,
            grace,
            data_dir,
            config,
        } => cmd::maintain::documents(grace, data_dir, config).await,
        Command::Migrate { component, config } => cmd::migrate::run(component, config).await,
    }
}
