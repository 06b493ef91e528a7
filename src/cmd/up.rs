//! `cloudsec up`: the whole platform on its laptop defaults.

use std::path::PathBuf;

use cloudsec::LocalPlatform;
use cloudsec::call::RunningPlatform;
use cloudsec_runtime::telemetry::{self, LogFormat};
use cloudsec_runtime::{Shutdown, shutdown};

use super::{Fatal, fatal, log_format, up_config};

pub(crate) async fn run(data_dir: PathBuf, config: Option<PathBuf>) -> Result<(), Fatal> {
    let loaded = up_config(&data_dir, config.as_deref()).await?;
    let _guard = telemetry::init(
        "cloudsec",
        log_format(&loaded.config, LogFormat::Pretty),
        loaded.config.telemetry.otlp_endpoint.clone(),
    );
    // Before anything is printed: a SIGTERM right after the banner must
    // drain, not kill.
    let shutdown = Shutdown::new();
    shutdown::cancel_on_signal(shutdown.clone());
    let platform = LocalPlatform::build(&data_dir, &loaded).await?;
    let a = platform.addresses();
    let base = format!("http://{}", a.gateway);
    let console = match loaded
        .config
        .gateway
        .as_ref()
        .and_then(|g| g.console_dir.as_ref())
    {
        Some(_) => format!("\n  web console    {base}/"),
        None => "\n  web console    not built (npm --prefix web ci && npm --prefix web run build)"
            .to_owned(),
    };
    println!(
        "\ncloudsec is up (data in {dir})\n\
         \n  REST gateway   {base}{console}\
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
    let running = RunningPlatform {
        pid: std::process::id(),
        trust_domain: loaded.config.mesh.trust_domain.clone(),
        namespace: loaded.config.mesh.namespace.clone(),
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
    RunningPlatform::withdraw(&data_dir);
    result
}
