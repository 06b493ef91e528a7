//! `cloudsec call` and `cloudsec cert`: a gRPC client and certificates for
//! tools, against the platform whose data directory they find; neither
//! ever creates state (but `cert --init-ca`).

use std::path::PathBuf;
use std::time::Duration;

use cloudsec_runtime::config;

use super::{Fatal, fatal, read_file};

pub(crate) async fn call(
    method: String,
    request: String,
    token: Option<String>,
    data_dir: Option<PathBuf>,
) -> Result<(), Fatal> {
    let data_dir = cloudsec::call::find_data_dir(data_dir.as_deref()).map_err(fatal)?;
    let out = cloudsec::call::call(&data_dir, &method, &request, token.as_deref())
        .await
        .map_err(fatal)?;
    println!("{out}");
    Ok(())
}

pub(crate) async fn cert(
    name: String,
    out: PathBuf,
    lifetime: Duration,
    data_dir: Option<PathBuf>,
    init_ca: bool,
    config_file: Option<PathBuf>,
) -> Result<(), Fatal> {
    #[derive(serde::Deserialize)]
    struct MeshOnly {
        #[serde(default)]
        mesh: cloudsec::MeshConfig,
    }
    let text = read_file(config_file.as_deref())?;
    let mesh = config::load::<MeshOnly>(text.as_deref(), &config::process_env())?.mesh;
    if let (true, Some(dir)) = (init_ca, &data_dir) {
        cloudsec::private_dir(dir)?;
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
