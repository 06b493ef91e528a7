//! `cloudsec secrets put`: one field into the keystore of `cloudsec up` or
//! Vault KV v2, from standard input.

use std::path::PathBuf;

use cloudsec_runtime::config::{self, EXIT_CONFIG};

use super::{Fatal, config_failure, fatal, missing, read_file};

pub(crate) async fn put(
    reference: String,
    data_dir: PathBuf,
    config_file: Option<PathBuf>,
) -> Result<(), Fatal> {
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
    let text = read_file(config_file.as_deref())?;
    let secrets = cloudsec::local_secrets(&data_dir, text.as_deref(), &config::process_env())
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
