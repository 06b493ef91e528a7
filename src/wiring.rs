//! The one composition root: a function per component that builds it from
//! the configuration. `cloudsec serve <component>` calls one of them;
//! `cloudsec up` calls every one, each with a configuration of its own
//! that points at its sidecars ([`crate::platform`]). What the end-to-end
//! tests run through `up` is therefore what runs in every pod.
//!
//! A component without `tls` files listens in plaintext on loopback behind
//! its sidecar and reaches its peers through the sidecar's outbound
//! listener (`http://127.0.0.1:...` URIs); with them it speaks mTLS
//! itself.

use std::sync::Arc;

use cloudsec_audit::Audit;
use cloudsec_auth::Auth;
use cloudsec_bus::Bus;
use cloudsec_documents::Documents;
use cloudsec_gateway::Gateway;
use cloudsec_identity::{Issuer, SpiffeId, WorkloadIdentity};
use cloudsec_proxy::TlsState;
use cloudsec_runtime::ConfigError;
use cloudsec_runtime::tls::{MeshTls, TlsFiles};
use cloudsec_runtime::token::TokenVerifier;
use cloudsec_secrets::{Secrets, SecretsConfig};

use crate::config::{Component, IssuerConfig, MeshConfig, PlatformConfig, TokensConfig};
use crate::error::PlatformError;

/// What every component is built from: the configuration, the secrets
/// back end its references were read from, and the process's bus
/// connection when components share one (`cloudsec up`).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub config: &'a PlatformConfig,
    pub secrets: Option<&'a Secrets>,
    pub bus: Option<&'a Bus>,
}

fn section<'a, T>(value: Option<&'a T>, key: &str) -> Result<&'a T, PlatformError> {
    value.ok_or_else(|| PlatformError::config(key, "section required to run this component"))
}

/// The workload certificate, key and mesh CA named by a component's `tls`
/// setting (`key`), when it has one.
pub fn tls(files: Option<&TlsFiles>, key: &str) -> Result<Option<MeshTls>, PlatformError> {
    files
        .map(|files| {
            files
                .load()
                .map_err(|e| PlatformError::config(key, e.to_string()))
        })
        .transpose()
}

/// The material a channel to `uri` needs: none for the local sidecar
/// (`http://` on loopback), the component's own certificate for mTLS.
fn for_uri(uri: &str, tls: Option<&MeshTls>, tls_key: &str) -> Result<MeshTls, PlatformError> {
    if uri.starts_with("http://") {
        return Ok(tls.cloned().unwrap_or_else(|| MeshTls {
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
        }));
    }
    tls.cloned().ok_or_else(|| {
        PlatformError::config(
            tls_key,
            format!("required to reach {uri} over mTLS (or point at the local sidecar's http:// listener)"),
        )
    })
}

/// A verifier of access tokens as `[tokens]` says: the auth service's keys
/// and revocations through `tokens.auth_uri`, and a Cognito pool if one
/// is trusted.
pub fn verifier(
    tokens: &TokensConfig,
    tls: Option<&MeshTls>,
    tls_key: &str,
) -> Result<Arc<TokenVerifier>, PlatformError> {
    let uri = tokens.auth_uri.as_deref().ok_or_else(|| {
        PlatformError::config(
            "tokens.auth_uri",
            "required: where to reach the auth service (keys, revocations)",
        )
    })?;
    let name = tokens.auth_server_name.as_deref().ok_or_else(|| {
        PlatformError::config(
            "tokens.auth_server_name",
            "required: the auth service's name in the mesh, e.g. auth.default.svc",
        )
    })?;
    let material = for_uri(uri, tls, tls_key)?;
    let channel = cloudsec_runtime::grpc::channel(uri, name, &material)
        .map_err(|e| PlatformError::config("tokens.auth_uri", e.to_string()))?;
    Ok(Arc::new(tokens.trusting(TokenVerifier::from_auth(
        &tokens.issuer,
        &tokens.audience,
        channel,
    ))?))
}

/// The auth service.
pub async fn auth(ctx: &Context<'_>) -> Result<Auth, PlatformError> {
    let config = section(ctx.config.auth.as_ref(), "auth")?;
    Ok(Auth::build(
        config,
        ctx.config.tokens.settings(),
        &ctx.config.events,
        ctx.bus,
        ctx.secrets,
    )
    .await?)
}

/// The documents service.
pub async fn documents(ctx: &Context<'_>) -> Result<Documents, PlatformError> {
    let config = section(ctx.config.documents.as_ref(), "documents")?;
    let own = tls(config.tls.as_ref(), "documents.tls")?;
    let verifier = verifier(&ctx.config.tokens, own.as_ref(), "documents.tls")?;
    Ok(Documents::build(config, verifier, &ctx.config.events, ctx.bus).await?)
}

/// The audit service and its subscription.
pub async fn audit(ctx: &Context<'_>) -> Result<Audit, PlatformError> {
    let config = section(ctx.config.audit.as_ref(), "audit")?;
    let own = tls(config.tls.as_ref(), "audit.tls")?;
    let verifier = verifier(&ctx.config.tokens, own.as_ref(), "audit.tls")?;
    let bus = match ctx.bus {
        Some(bus) => bus.clone(),
        None => Bus::connect(&ctx.config.events, None).await?,
    };
    let queue = bus
        .queue(
            &cloudsec_audit::queue_spec(config),
            ctx.config.events.provisioning,
        )
        .await?;
    let vault = ctx.secrets.and_then(Secrets::vault);
    Ok(Audit::build_with_vault(config, verifier, queue, vault).await?)
}

/// The REST gateway. Its edge authorizer (when `gateway.jwt` is on)
/// trusts what `[tokens]` says, the same as the services.
pub async fn gateway(ctx: &Context<'_>) -> Result<Gateway, PlatformError> {
    let mut config = section(ctx.config.gateway.as_ref(), "gateway")?.clone();
    if config.upstreams.is_empty() {
        return Err(PlatformError::config(
            "gateway.upstreams",
            "required: at least one gRPC service and its address",
        ));
    }
    if let Some(jwt) = config.jwt.as_mut() {
        ctx.config.tokens.apply_to(jwt);
    }
    let own = tls(config.tls.as_ref(), "gateway.tls")?;
    let material = match config
        .upstreams
        .values()
        .find(|u| !u.uri.starts_with("http://"))
    {
        Some(upstream) => for_uri(&upstream.uri, own.as_ref(), "gateway.tls")?,
        None => for_uri("http://127.0.0.1", own.as_ref(), "gateway.tls")?,
    };
    Ok(Gateway::build(&config, &[cloudsec_proto::FILE_DESCRIPTOR_SET], material).await?)
}

/// TLS state that follows `identity`: each rotated certificate replaces
/// the served one without a restart. The returned task ends when the
/// identity or the state is dropped.
pub fn follow_identity(
    identity: &WorkloadIdentity,
) -> Result<(Arc<TlsState>, tokio::task::JoinHandle<()>), PlatformError> {
    let tls = TlsState::new(&identity.current().mesh_tls())
        .map_err(|e| PlatformError::Tls(e.to_string()))?;
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(identity.current().mesh_tls()));
    let mut changes = identity.subscribe();
    let forward = tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let next = changes.borrow_and_update().mesh_tls();
            if tx.send(Arc::new(next)).is_err() {
                return;
            }
        }
    });
    tls.follow(rx);
    Ok((tls, forward))
}

/// The mesh's issuer from `[mesh.issuer] backend = "vault"`.
pub async fn vault_issuer(
    mesh: &MeshConfig,
    secrets: Option<&Secrets>,
) -> Result<Option<Arc<dyn Issuer>>, PlatformError> {
    let IssuerConfig::Vault { mount, role } = &mesh.issuer else {
        return Ok(None);
    };
    let client = secrets.and_then(Secrets::vault).cloned().ok_or_else(|| {
        PlatformError::config(
            "secrets",
            "mesh.issuer with backend = \"vault\" needs a [secrets] section with backend = \"vault\"",
        )
    })?;
    let pki = cloudsec_secrets::pki::VaultPki::new(
        client,
        &cloudsec_secrets::pki::VaultPkiConfig {
            mount: mount.clone(),
            role: role.clone(),
        },
    )
    .await?;
    Ok(Some(Arc::new(pki)))
}

/// The identity of one workload from the `[mesh]` issuer (Vault PKI), for
/// a sidecar run as `cloudsec proxy` without `[proxy.tls]` files: a
/// certificate for `spiffe://<trust domain>/ns/<namespace>/sa/<service
/// account>`, and TLS state that follows its rotation once
/// [`WorkloadIdentity::spawn_rotation`] runs.
pub async fn mesh_identity(
    mesh: &MeshConfig,
    secrets: Option<&Secrets>,
) -> Result<(Arc<WorkloadIdentity>, Arc<TlsState>), PlatformError> {
    let issuer = vault_issuer(mesh, secrets).await?.ok_or_else(|| {
        PlatformError::config(
            "proxy.tls",
            "required (or mesh.issuer with backend = \"vault\")",
        )
    })?;
    let account = mesh.service_account.as_deref().ok_or_else(|| {
        PlatformError::config("mesh.service_account", "required to ask the issuer")
    })?;
    let id = SpiffeId::new(&mesh.trust_domain, &mesh.namespace, account)?;
    let identity = WorkloadIdentity::new(issuer, id, mesh.certificate_lifetime).await?;
    let (tls, _forward) = follow_identity(&identity)?;
    Ok((identity, tls))
}

/// What `component` needs to start beyond a well-formed file, as `serve`
/// (or `proxy`) would find out: each missing or unusable setting, by key.
/// Files named by `tls` settings are read; secrets are not.
pub fn requirements(config: &PlatformConfig, component: Component) -> Vec<ConfigError> {
    let mut problems = Problems::default();
    match component {
        Component::Auth => {
            let auth = problems.section(config.auth.as_ref(), "auth", "serve auth");
            problems.need(
                config.secrets.is_some(),
                "secrets",
                "required: auth seals confirmation codes for the mailer with a key service",
            );
            if let Some(auth) = auth {
                problems.tls_files(auth.tls.as_ref(), "auth.tls");
            }
        }
        Component::Documents => {
            if let Some(documents) =
                problems.section(config.documents.as_ref(), "documents", "serve documents")
            {
                problems.token_verifier(&config.tokens, documents.tls.as_ref(), "documents.tls");
            }
        }
        Component::Audit => {
            if let Some(audit) = problems.section(config.audit.as_ref(), "audit", "serve audit") {
                problems.token_verifier(&config.tokens, audit.tls.as_ref(), "audit.tls");
                problems.0.extend(audit.requirements());
                problems.need(
                    !audit.signing.as_ref().is_some_and(|s| s.needs_vault())
                        || matches!(config.secrets, Some(SecretsConfig::Vault { .. })),
                    "secrets",
                    "required: audit.signing backend = \"transit\" signs through \
                     a [secrets] section with backend = \"vault\"",
                );
            }
        }
        Component::Gateway => {
            if let Some(gateway) =
                problems.section(config.gateway.as_ref(), "gateway", "serve the gateway")
            {
                problems.need(
                    !gateway.upstreams.is_empty(),
                    "gateway.upstreams",
                    "required: at least one gRPC service and its address",
                );
                let tls = problems.tls_files(gateway.tls.as_ref(), "gateway.tls");
                if !tls
                    && let Some(upstream) = gateway
                        .upstreams
                        .values()
                        .find(|u| !u.uri.starts_with("http://"))
                {
                    problems.add(
                        "gateway.tls",
                        format!("required to reach {} over mTLS", upstream.uri),
                    );
                }
                if let Err(e) = gateway.validate() {
                    problems.add(
                        format!("gateway.{}", e.key.trim_start_matches("gateway.")),
                        e.reason,
                    );
                }
            }
        }
        Component::Proxy => {
            if let Some(proxy) = problems.section(config.proxy.as_ref(), "proxy", "run the sidecar")
            {
                if let Err(e) = proxy.validate() {
                    problems.0.push(e);
                }
                let has_files = problems.tls_files(proxy.tls.as_ref(), "proxy.tls");
                problems.need(
                    has_files || matches!(config.mesh.issuer, IssuerConfig::Vault { .. }),
                    "proxy.tls",
                    "required (or mesh.issuer with backend = \"vault\")",
                );
            }
        }
    }
    problems.0
}

/// The problems [`requirements`] finds, in the order it finds them.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    /// The configuration section `key`, or a problem saying it is
    /// required to do `to`.
    fn section<'c, T>(&mut self, section: Option<&'c T>, key: &str, to: &str) -> Option<&'c T> {
        if section.is_none() {
            self.add(key, format!("section required to {to}"));
        }
        section
    }

    fn need(&mut self, present: bool, key: &str, message: &str) {
        if !present {
            self.add(key, message);
        }
    }

    /// Reads the files a `tls` setting names, if any; whether it is set.
    fn tls_files(&mut self, files: Option<&TlsFiles>, key: &str) -> bool {
        if let Some(files) = files
            && let Err(e) = files.load()
        {
            self.add(key, e.to_string());
        }
        files.is_some()
    }

    /// What a service that verifies tokens needs: its own `tls` files, and
    /// where and as whom to reach auth for keys and revocations (over mTLS
    /// unless `tokens.auth_uri` is plain HTTP, as behind a sidecar).
    fn token_verifier(&mut self, tokens: &TokensConfig, files: Option<&TlsFiles>, tls_key: &str) {
        let tls = self.tls_files(files, tls_key);
        match tokens.auth_uri.as_deref() {
            None => self.add(
                "tokens.auth_uri",
                "required: where to reach the auth service (keys, revocations)",
            ),
            Some(uri) if !uri.starts_with("http://") && !tls => {
                self.add(tls_key, format!("required to reach {uri} over mTLS"));
            }
            Some(_) => {}
        }
        self.need(
            tokens.auth_server_name.is_some(),
            "tokens.auth_server_name",
            "required: the auth service's name in the mesh",
        );
    }
}
