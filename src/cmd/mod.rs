//! The commands, one module each, and what they share: a failure that
//! ends the process with its exit code, configuration loading and logging
//! set-up.

pub(crate) mod call;
pub(crate) mod check;
pub(crate) mod keys;
pub(crate) mod maintain;
pub(crate) mod migrate;
pub(crate) mod proxy;
pub(crate) mod secrets;
pub(crate) mod serve;
pub(crate) mod up;

use std::path::Path;

use cloudsec::{LoadedConfig, LocalConfigError, LogFormatName, PlatformConfig, PlatformError};
use cloudsec_runtime::config::{self, ConfigError, EXIT_CONFIG};
use cloudsec_runtime::telemetry::LogFormat;

/// The exit code when a back end the configuration needs is down
/// (`EX_UNAVAILABLE` from sysexits.h).
pub(crate) const EXIT_UNAVAILABLE: u8 = 69;

/// The exit code when an input file is missing (`EX_NOINPUT`).
pub(crate) const EXIT_NO_INPUT: u8 = 66;

/// A failure that ends the process, with its exit code.
#[derive(Debug)]
pub(crate) struct Fatal {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl From<ConfigError> for Fatal {
    fn from(e: ConfigError) -> Self {
        Fatal {
            code: EXIT_CONFIG as u8,
            message: e.to_string(),
        }
    }
}

impl From<PlatformError> for Fatal {
    /// Configuration mistakes found while wiring exit 64 like those found
    /// while parsing; anything else is a failure to start (1).
    fn from(e: PlatformError) -> Self {
        match e.as_config() {
            Some(config) => config.into(),
            None => fatal(e),
        }
    }
}

pub(crate) fn fatal(e: impl std::fmt::Display) -> Fatal {
    Fatal {
        code: 1,
        message: e.to_string(),
    }
}

pub(crate) fn missing(key: &str, why: &str) -> Fatal {
    ConfigError {
        key: key.to_owned(),
        message: why.to_owned(),
    }
    .into()
}

pub(crate) fn read_file(path: Option<&Path>) -> Result<Option<String>, Fatal> {
    path.map(|p| {
        std::fs::read_to_string(p).map_err(|e| Fatal {
            code: EXIT_CONFIG as u8,
            message: format!("cannot read configuration file {}: {e}", p.display()),
        })
    })
    .transpose()
}

pub(crate) fn config_failure(e: LocalConfigError) -> Fatal {
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
        LocalConfigError::Platform(e) => e.into(),
    }
}

/// The configuration `cloudsec up` runs with under `data_dir`.
pub(crate) async fn up_config(data_dir: &Path, path: Option<&Path>) -> Result<LoadedConfig, Fatal> {
    let text = read_file(path)?;
    let env = config::process_env();
    match cloudsec::local_config(data_dir, text.as_deref(), &env).await {
        Ok(loaded) => Ok(loaded),
        Err(LocalConfigError::Config(first)) => Err(every_problem(
            first,
            cloudsec::config::check_local_layers(data_dir, text.as_deref(), &env),
        )),
        Err(e) => Err(config_failure(e)),
    }
}

/// A configuration that did not load, with every wrong key named (on
/// standard error, one line each) rather than one per attempt to start:
/// `first` is what loading stopped at, `problems` what a check found.
fn every_problem(first: ConfigError, mut problems: Vec<ConfigError>) -> Fatal {
    if !problems.iter().any(|p| p.key == first.key) {
        problems.insert(0, first);
    }
    if problems.len() == 1 {
        return problems.swap_remove(0).into();
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Fatal {
        code: EXIT_CONFIG as u8,
        message: format!("{} problems in the configuration", problems.len()),
    }
}

/// What a one-shot command against `cloudsec up`'s data runs with: the
/// loaded configuration, and the same with Vault's dynamic database
/// credentials in place (they are renewed while `credentials` lives).
pub(crate) struct OneShot {
    pub(crate) loaded: LoadedConfig,
    pub(crate) config: PlatformConfig,
    pub(crate) credentials: Vec<cloudsec_secrets::database::DbCredentials>,
}

/// [`up_config`], then the database credentials of the configuration.
pub(crate) async fn one_shot(data_dir: &Path, path: Option<&Path>) -> Result<OneShot, Fatal> {
    let loaded = up_config(data_dir, path).await?;
    let mut config = loaded.config.clone();
    let credentials =
        cloudsec::start_database_credentials(&mut config, loaded.secrets.as_ref()).await?;
    Ok(OneShot {
        loaded,
        config,
        credentials,
    })
}

/// The configuration `serve`, `proxy` and `migrate` run with: the file and
/// the variables, no laptop defaults.
pub(crate) async fn load_config(path: Option<&Path>) -> Result<LoadedConfig, Fatal> {
    let text = read_file(path)?;
    let layers: Vec<&str> = text.as_deref().into_iter().collect();
    let env = config::process_env();
    match cloudsec::load_config(&layers, &env, None).await {
        Ok(loaded) => Ok(loaded),
        // A pod's log should name every wrong key, not one per restart:
        // the file and the variables are what `config check` reads.
        Err(LocalConfigError::Config(first)) => Err(every_problem(
            first,
            cloudsec::config::check(text.as_deref().unwrap_or(""), &env, None),
        )),
        Err(e) => Err(config_failure(e)),
    }
}

pub(crate) fn log_format(cfg: &PlatformConfig, default: LogFormat) -> LogFormat {
    match cfg.telemetry.log_format {
        Some(LogFormatName::Json) => LogFormat::Json,
        Some(LogFormatName::Pretty) => LogFormat::Pretty,
        None => default,
    }
}

/// `cloudsec openapi`: the OpenAPI 3.1 document of every annotated RPC.
pub(crate) fn openapi() -> Result<(), Fatal> {
    let pool =
        cloudsec_gateway::descriptor_pool(&[cloudsec_proto::FILE_DESCRIPTOR_SET]).map_err(fatal)?;
    let doc = cloudsec_gateway::openapi(&pool);
    println!("{}", serde_json::to_string_pretty(&doc).map_err(fatal)?);
    Ok(())
}
