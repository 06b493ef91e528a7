//! `cloudsec proxy`: the sidecar beside a service, with its certificate
//! from files or from the mesh issuer (Vault PKI).

use std::path::{Path, PathBuf};

use cloudsec::IssuerConfig;
use cloudsec_runtime::config;
use cloudsec_runtime::telemetry::{self, LogFormat};
use cloudsec_runtime::{Shutdown, shutdown};

use super::{Fatal, load_config, log_format, missing, read_file};

/// The sidecar's runtime, sized by `proxy.worker_threads` (file or
/// `CLOUDSEC__PROXY__WORKER_THREADS`), built before the rest of the
/// configuration is loaded because loading it may need the runtime.
pub(crate) fn runtime(config: Option<&Path>) -> Result<tokio::runtime::Runtime, Fatal> {
    let text = read_file(config)?;
    let threads = cloudsec_proxy::runtime::configured_worker_threads(
        text.as_deref(),
        &config::process_env(),
    )?;
    cloudsec_proxy::runtime::build(threads).map_err(|e| Fatal {
        code: 1,
        message: format!("cannot start the async runtime: {e}"),
    })
}

pub(crate) async fn run(config: Option<PathBuf>) -> Result<(), Fatal> {
    let loaded = load_config(config.as_deref()).await?;
    let _guard = telemetry::init(
        "cloudsec-proxy",
        log_format(&loaded.config, LogFormat::Json),
        loaded.config.telemetry.otlp_endpoint.clone(),
    );
    let cfg = &loaded.config;
    let c = cfg
        .proxy
        .clone()
        .ok_or_else(|| missing("proxy", "section required to run the sidecar"))?;
    let shutdown = Shutdown::new();
    shutdown::cancel_on_signal(shutdown.clone());
    let proxy_error =
        |e: cloudsec_proxy::ProxyError| -> Fatal { cloudsec::PlatformError::from(e).into() };
    if c.tls.is_some() || matches!(cfg.mesh.issuer, IssuerConfig::Local) {
        return cloudsec_proxy::Proxy::run_from_files(&c, Some(&cfg.mesh.trust_domain), shutdown)
            .await
            .map_err(proxy_error);
    }
    // No certificate files: the sidecar asks the mesh issuer (Vault PKI)
    // for its identity and rotates it itself.
    c.validate()?;
    let renewal = loaded
        .secrets
        .as_ref()
        .and_then(cloudsec_secrets::Secrets::vault)
        .map(|vault| vault.spawn_token_renewal(shutdown.clone()));
    let (identity, tls) = cloudsec::mesh_identity(&cfg.mesh, loaded.secrets.as_ref()).await?;
    let rotation = identity.spawn_rotation(shutdown.clone());
    tracing::info!(id = %identity.current().id, "workload certificate from the mesh issuer");
    let sidecar = cloudsec_proxy::Proxy::build(&c, tls)
        .await
        .map_err(proxy_error)?;
    let result = sidecar
        .run_until_stopped(shutdown.clone())
        .await
        .map_err(proxy_error);
    shutdown.cancel();
    let _ = rotation.await;
    if let Some(renewal) = renewal {
        let _ = renewal.await;
    }
    result
}
