//! Typed, layered configuration: a TOML file, then `CLOUDSEC__...`
//! environment variables on top.
//!
//! Loading is a pure function of the file text and an environment map, so
//! tests pass a map instead of setting process variables. Unknown keys are
//! rejected by the target types (`#[serde(deny_unknown_fields)]`) and every
//! error names the key it is about.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::de::DeserializeOwned;

/// The prefix of environment variables that configure cloudsec.
pub const ENV_PREFIX: &str = "CLOUDSEC__";

/// Configuration that cannot be used; the process exits with code 64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration at `{key}`: {message}")]
pub struct ConfigError {
    /// The dotted key that is wrong (`.` for the whole document).
    pub key: String,
    pub message: String,
}

/// The exit code for bad configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

/// `127.0.0.1:PORT`, the default of every listener but the sidecar's
/// inbound one: a process started without configuration exposes nothing
/// beyond the machine. Named in `#[serde(default = "loopback::<7001>")]`,
/// so each port is written once, next to its key.
pub fn loopback<const PORT: u16>() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, PORT))
}

/// How long every process lets work in flight finish once told to stop
/// (`shutdown_grace`), unless configured: well inside Kubernetes' default
/// 30 s termination grace period, so the pod is not killed mid-drain.
pub fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// Builds `T` from optional TOML text and environment variables.
///
/// `CLOUDSEC__DOCUMENTS__DATABASE__URL=x` sets `documents.database.url`.
/// Values that read as TOML scalars (numbers, booleans) are taken as such;
/// where the target wants a string, the raw text is used instead.
pub fn load<T: DeserializeOwned>(
    file: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Result<T, ConfigError> {
    load_layers(file.as_slice(), env)
}

/// Like [`load`], with several TOML documents merged in order (later keys
/// win, tables merge) under the environment. `cloudsec up` puts its laptop
/// defaults first and the user's file second.
pub fn load_layers<T: DeserializeOwned>(
    layers: &[&str],
    env: &BTreeMap<String, String>,
) -> Result<T, ConfigError> {
    from_table(merge_layers(layers, env)?, env)
}

/// The first half of [`load_layers`]: the layers and the environment
/// merged into one table, before typed deserialization. Callers that must
/// rewrite values first (resolving `vault:` references) use this, then
/// [`from_table`].
pub fn merge_layers(
    layers: &[&str],
    env: &BTreeMap<String, String>,
) -> Result<toml::Table, ConfigError> {
    let mut tables = Vec::with_capacity(layers.len());
    for text in layers {
        tables.push(text.parse::<toml::Table>().map_err(|e| ConfigError {
            key: ".".into(),
            message: format!("not valid TOML: {}", e.message()),
        })?);
    }
    merge_tables(tables, env)
}

/// [`merge_layers`] for layers that are tables already (defaults a program
/// builds as typed values rather than as text).
pub fn merge_tables(
    tables: Vec<toml::Table>,
    env: &BTreeMap<String, String>,
) -> Result<toml::Table, ConfigError> {
    let mut root = toml::Table::new();
    for layer in tables {
        merge(&mut root, layer);
    }
    for (path, raw) in env_entries(env)? {
        insert(&mut root, &path, guess_scalar(raw)).map_err(|message| ConfigError {
            key: path.join("."),
            message,
        })?;
    }
    Ok(root)
}

/// The second half of [`load_layers`]: deserializes a merged table into
/// `T`. `env` is the map the table was merged with, so that a value taken
/// as a number or boolean can be retried as text where `T` wants a string.
pub fn from_table<T: DeserializeOwned>(
    mut root: toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<T, ConfigError> {
    let mut guessed: HashSet<String> = env_entries(env)?
        .into_iter()
        .filter(|(_, raw)| !guess_scalar(raw).is_str())
        .map(|(path, _)| path.join("."))
        .collect();

    // A guessed number or boolean that the target wants as a string is
    // retried as the original text; each retry fixes one key.
    for _ in 0..=guessed.len() {
        let de = toml::Value::Table(root.clone());
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(value) => return Ok(value),
            Err(err) => {
                let key = err.path().to_string();
                if guessed.remove(&key) {
                    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                    if let Some(raw) = env_value(env, &path) {
                        let _ = insert(&mut root, &path, toml::Value::String(raw.clone()));
                        continue;
                    }
                }
                let message = err.inner().to_string();
                return Err(ConfigError {
                    key: unknown_key_path(key, &message),
                    message,
                });
            }
        }
    }
    Err(ConfigError {
        key: ".".into(),
        message: "configuration could not be resolved".into(),
    })
}

/// serde reports an unknown key of a section with a flattened part
/// (`#[serde(flatten)]`, e.g. the AWS settings of a KMS section) at the
/// section's path, naming the key only in its message; the key's own path
/// is what an operator needs.
fn unknown_key_path(path: String, message: &str) -> String {
    let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
    else {
        return path;
    };
    if path.is_empty() || path == "." {
        field.to_owned()
    } else if path.rsplit('.').next() == Some(field) {
        path
    } else {
        format!("{path}.{field}")
    }
}

/// The `CLOUDSEC__...` variables of `env` as lowercase key paths.
fn env_entries(env: &BTreeMap<String, String>) -> Result<Vec<(Vec<String>, &str)>, ConfigError> {
    let mut out = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError {
                key: name.clone(),
                message: "empty segment in environment variable name".into(),
            });
        }
        out.push((path, raw.as_str()));
    }
    Ok(out)
}

/// Reads the process environment into a map for [`load`].
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect()
}

fn env_value<'a>(env: &'a BTreeMap<String, String>, path: &[String]) -> Option<&'a String> {
    let name = format!(
        "{ENV_PREFIX}{}",
        path.iter()
            .map(|p| p.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join("__")
    );
    env.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&name))
        .map(|(_, v)| v)
}

fn guess_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => return toml::Value::Boolean(true),
        "false" => return toml::Value::Boolean(false),
        _ => {}
    }
    if let Ok(f) = raw.parse::<f64>()
        && raw.contains('.')
        && f.is_finite()
    {
        return toml::Value::Float(f);
    }
    toml::Value::String(raw.to_owned())
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{p}` is a value, not a section")),
        };
    }
    cur.insert(last.clone(), value);
    Ok(())
}

/// A string that never shows up in `Debug` or `Display` output.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::net::SocketAddr;
    use std::time::Duration;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        svc: Svc,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Svc {
        listen: SocketAddr,
        #[serde(default)]
        workers: u16,
        #[serde(default)]
        password: Secret,
        #[serde(with = "humantime_serde", default)]
        grace: Option<Duration>,
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_file_and_keeps_types() {
        let cfg: Root = load(
            Some("[svc]\nlisten = \"127.0.0.1:1\"\nworkers = 2\n"),
            &env(&[
                ("CLOUDSEC__SVC__WORKERS", "8"),
                ("CLOUDSEC__SVC__PASSWORD", "12345"),
                ("CLOUDSEC__SVC__GRACE", "3s"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.svc.workers, 8);
        assert_eq!(cfg.svc.password.expose(), "12345");
        assert_eq!(cfg.svc.grace, Some(Duration::from_secs(3)));
        assert_eq!(cfg.svc.listen.port(), 1);
        assert_eq!(format!("{:?}", cfg.svc.password), "Secret(***)");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load::<Root>(
            Some("[svc]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n"),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.key, "svc.lisen");
        assert!(err.message.contains("lisen"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load::<Root>(None, &env(&[("CLOUDSEC__SVC__LISTEN", "nowhere")])).unwrap_err();
        assert_eq!(err.key, "svc.listen");
        let err = load::<Root>(
            Some("[svc]\nlisten = \"127.0.0.1:1\"\n"),
            &env(&[("CLOUDSEC__SVC__WORKERS", "lots")]),
        )
        .unwrap_err();
        assert_eq!(err.key, "svc.workers");
    }

    #[test]
    fn layers_merge_tables() {
        let cfg: Root = load_layers(
            &[
                "[svc]\nlisten = \"127.0.0.1:1\"\nworkers = 2\n",
                "[svc]\nworkers = 3\n",
            ],
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!((cfg.svc.listen.port(), cfg.svc.workers), (1, 3));
    }

    #[test]
    fn broken_toml_is_reported() {
        let err = load::<Root>(Some("[svc"), &BTreeMap::new()).unwrap_err();
        assert_eq!(err.key, ".");
    }
}
