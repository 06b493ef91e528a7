//! `vault:<mount>/<path>#<field>` references and their resolution in a
//! configuration.
//!
//! The same reference works with both providers, so one configuration file
//! serves `cloudsec up` (local keystore) and a cluster (Vault): the mount is
//! the first path segment (Vault's KV v2 mount, or the keystore's top
//! level), the path is the rest, and the field is a key of the secret.

use std::fmt;

use crate::error::{Error, Result};
use crate::provider::SecretsProvider;

/// The prefix that marks a configuration string as a secret reference.
pub const PREFIX: &str = "vault:";

/// A parsed `vault:<mount>/<path>#<field>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    pub mount: String,
    pub path: String,
    pub field: String,
}

impl SecretRef {
    pub fn new(mount: &str, path: &str, field: &str) -> Result<Self> {
        Self::parse(&format!("{PREFIX}{mount}/{path}#{field}"))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it must start with `vault:`"))?;
        let (location, field) = rest.split_once('#').ok_or_else(|| {
            bad("it needs `#<field>` after the path, e.g. `vault:secret/app#password`")
        })?;
        if field.is_empty() {
            return Err(bad("the field after `#` is empty"));
        }
        if field.contains('#') {
            return Err(bad("it has more than one `#`"));
        }
        if !field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(bad(
                "the field may hold only letters, digits, `_`, `-` and `.`",
            ));
        }
        let (mount, path) = location
            .split_once('/')
            .ok_or_else(|| bad("it needs `<mount>/<path>`, e.g. `vault:secret/app#password`"))?;
        for (what, value) in [("mount", mount), ("path", path)] {
            if value.is_empty() {
                return Err(bad(&format!("the {what} is empty")));
            }
            for segment in value.split('/') {
                if segment.is_empty() {
                    return Err(bad(&format!(
                        "the {what} has an empty segment (`//` or a trailing `/`)"
                    )));
                }
                if segment == "." || segment == ".." {
                    return Err(bad(&format!(
                        "the {what} may not contain `.` or `..` segments"
                    )));
                }
                if !segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                {
                    return Err(bad(&format!(
                        "the {what} may hold only letters, digits, `_`, `-`, `.` and `/`"
                    )));
                }
            }
        }
        Ok(Self {
            mount: mount.to_owned(),
            path: path.to_owned(),
            field: field.to_owned(),
        })
    }

    /// `<mount>/<path>`: the secret that holds the field.
    pub fn location(&self) -> String {
        format!("{}/{}", self.mount, self.path)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}/{}#{}", self.mount, self.path, self.field)
    }
}

impl std::str::FromStr for SecretRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Replaces every string of `value` that starts with `vault:` by the
/// secret it names, and returns how many were replaced.
///
/// Run it on the merged configuration table before it is deserialized
/// into typed sections; an error names the configuration key (e.g.
/// `documents.page_token_key`) and the reference.
pub async fn resolve_toml(
    value: &mut toml::Value,
    provider: &dyn SecretsProvider,
) -> Result<usize> {
    let mut found = Vec::new();
    collect(value, String::new(), &mut found);
    let mut resolved = Vec::with_capacity(found.len());
    for (key, text) in &found {
        let wrap = |source: Error| Error::Resolve {
            key: key.clone(),
            source: Box::new(source),
        };
        let reference = SecretRef::parse(text).map_err(wrap)?;
        let secret = provider.get(&reference).await.map_err(wrap)?;
        resolved.push(secret);
    }
    let mut secrets = resolved.into_iter();
    replace(value, &mut secrets);
    Ok(found.len())
}

fn collect(value: &toml::Value, key: String, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::String(s) if s.starts_with(PREFIX) => out.push((key, s.clone())),
        toml::Value::Table(t) => {
            for (k, v) in t {
                let child = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                collect(v, child, out);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                collect(v, format!("{key}[{i}]"), out);
            }
        }
        _ => {}
    }
}

// Walks in the same order as `collect`, so the n-th reference found gets
// the n-th resolved value.
fn replace(value: &mut toml::Value, secrets: &mut impl Iterator<Item = cloudsec_runtime::Secret>) {
    match value {
        toml::Value::String(s) if s.starts_with(PREFIX) => {
            if let Some(secret) = secrets.next() {
                *s = secret.expose().to_owned();
            }
        }
        toml::Value::Table(t) => {
            for (_, v) in t.iter_mut() {
                replace(v, secrets);
            }
        }
        toml::Value::Array(a) => {
            for v in a.iter_mut() {
                replace(v, secrets);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::tests::MapProvider;

    #[test]
    fn parses_references() {
        let r = SecretRef::parse("vault:secret/apps/documents#page_token_key").unwrap();
        assert_eq!(r.mount, "secret");
        assert_eq!(r.path, "apps/documents");
        assert_eq!(r.field, "page_token_key");
        assert_eq!(r.to_string(), "vault:secret/apps/documents#page_token_key");
        assert_eq!(r.location(), "secret/apps/documents");
    }

    #[test]
    fn explains_bad_references() {
        for (text, says) in [
            ("secret/app#x", "must start with `vault:`"),
            ("vault:secret/app", "needs `#<field>`"),
            ("vault:secret/app#", "field after `#` is empty"),
            ("vault:secret#x", "needs `<mount>/<path>`"),
            ("vault:/app#x", "mount is empty"),
            ("vault:secret/#x", "path is empty"),
            ("vault:secret/a//b#x", "empty segment"),
            ("vault:secret/../sys#x", "`..`"),
            ("vault:secret/a b#x", "only letters"),
            ("vault:secret/a#x#y", "more than one `#`"),
        ] {
            let err = SecretRef::parse(text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(says), "{text}: {msg}");
            assert!(msg.contains(text), "{text}: {msg}");
        }
    }

    #[tokio::test]
    async fn resolves_references_in_a_config_tree() {
        let provider = MapProvider::with(&[
            (
                "vault:secret/documents#page_token_key",
                "k".repeat(40).as_str(),
            ),
            ("vault:secret/db#url", "postgres://u:p@db/documents"),
        ]);
        let mut config: toml::Value = toml::from_str(
            r#"
            plain = "vault-not-a-reference"
            [documents]
            page_token_key = "vault:secret/documents#page_token_key"
            listen = "127.0.0.1:7002"
            urls = ["vault:secret/db#url", "sqlite://x"]
            "#,
        )
        .unwrap();
        let n = resolve_toml(&mut config, &provider).await.unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            config["documents"]["page_token_key"].as_str(),
            Some("k".repeat(40).as_str())
        );
        assert_eq!(
            config["documents"]["urls"][0].as_str(),
            Some("postgres://u:p@db/documents")
        );
        assert_eq!(config["documents"]["urls"][1].as_str(), Some("sqlite://x"));
        assert_eq!(config["plain"].as_str(), Some("vault-not-a-reference"));
    }

    #[tokio::test]
    async fn resolution_errors_name_the_key() {
        let provider = MapProvider::with(&[]);
        let mut config: toml::Value =
            toml::from_str("[auth]\nsigning_key = \"vault:secret/auth#missing\"").unwrap();
        let err = resolve_toml(&mut config, &provider).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`auth.signing_key`"), "{msg}");
        assert!(msg.contains("vault:secret/auth#missing"), "{msg}");

        let mut config: toml::Value = toml::from_str("[auth]\nkey = \"vault:nothing\"").unwrap();
        let msg = resolve_toml(&mut config, &provider)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`auth.key`") && msg.contains("#<field>"),
            "{msg}"
        );
    }
}
