//! `cloudsec serve <component>`: one component, as it runs in a pod, built
//! by the same wiring as `cloudsec up`.

use std::path::PathBuf;

use cloudsec::wiring::{self, Context};
use cloudsec_runtime::telemetry::{self, LogFormat};
use cloudsec_runtime::{Shutdown, shutdown};

use super::{Fatal, fatal, load_config, log_format};
use crate::Component;

pub(crate) async fn run(component: Component, config: Option<PathBuf>) -> Result<(), Fatal> {
    let loaded = load_config(config.as_deref()).await?;
    let name = match component {
        Component::Auth => "cloudsec-auth",
        Component::Documents => "cloudsec-documents",
        Component::Audit => "cloudsec-audit",
        Component::Gateway => "cloudsec-gateway",
    };
    let _guard = telemetry::init(
        name,
        log_format(&loaded.config, LogFormat::Json),
        loaded.config.telemetry.otlp_endpoint.clone(),
    );
    // What `cloudsec config check --component` checks, before anything
    // connects or writes: every problem named at once.
    let checked = match component {
        Component::Auth => cloudsec::Component::Auth,
        Component::Documents => cloudsec::Component::Documents,
        Component::Audit => cloudsec::Component::Audit,
        Component::Gateway => cloudsec::Component::Gateway,
    };
    let problems = wiring::requirements(&loaded.config, checked);
    if let Some(first) = problems.first() {
        for problem in &problems[1..] {
            eprintln!("error: {problem}");
        }
        return Err(first.clone().into());
    }
    let shutdown = Shutdown::new();
    shutdown::cancel_on_signal(shutdown.clone());
    let renewal = loaded
        .secrets
        .as_ref()
        .and_then(cloudsec_secrets::Secrets::vault)
        .map(|vault| vault.spawn_token_renewal(shutdown.clone()));
    let mut cfg = loaded.config.clone();
    // Held until the component stops: dropping them ends lease renewal.
    let _db_credentials =
        cloudsec::start_database_credentials(&mut cfg, loaded.secrets.as_ref()).await?;
    let ctx = Context {
        config: &cfg,
        secrets: loaded.secrets.as_ref(),
        bus: None,
    };
    let result = match component {
        Component::Auth => {
            let own = wiring::tls(cfg.auth.as_ref().and_then(|c| c.tls.as_ref()), "auth.tls")?;
            let auth = wiring::auth(&ctx).await?;
            tracing::info!(grpc = %auth.grpc_addr(), admin = %auth.admin_addr(), "auth serving");
            auth.run_until_stopped(own.as_ref(), shutdown.clone())
                .await
                .map_err(fatal)
        }
        Component::Documents => {
            let own = wiring::tls(
                cfg.documents.as_ref().and_then(|c| c.tls.as_ref()),
                "documents.tls",
            )?;
            let documents = wiring::documents(&ctx).await?;
            tracing::info!(grpc = %documents.grpc_addr(), admin = %documents.admin_addr(), "documents serving");
            documents
                .run_until_stopped(own.as_ref(), shutdown.clone())
                .await
                .map_err(fatal)
        }
        Component::Audit => {
            let own = wiring::tls(cfg.audit.as_ref().and_then(|c| c.tls.as_ref()), "audit.tls")?;
            let audit = wiring::audit(&ctx).await?;
            tracing::info!(grpc = %audit.grpc_addr(), admin = %audit.admin_addr(), "audit serving");
            audit
                .run_until_stopped(own.as_ref(), shutdown.clone())
                .await
                .map_err(fatal)
        }
        Component::Gateway => {
            let gateway = wiring::gateway(&ctx).await?;
            tracing::info!(rest = %gateway.local_addr(), admin = %gateway.admin_addr(), "gateway serving");
            gateway
                .run_until_stopped(shutdown.clone())
                .await
                .map_err(fatal)
        }
    };
    shutdown.cancel();
    if let Some(renewal) = renewal {
        let _ = renewal.await;
    }
    result
}
