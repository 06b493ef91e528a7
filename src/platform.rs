//! `cloudsec up`: auth, documents, audit and the gateway in one process,
//! each with its own workload identity and sidecar, built by the same
//! [`crate::wiring`] functions that `cloudsec serve` calls. Applications
//! listen in plaintext on loopback, and every call between them goes app →
//! outbound sidecar → mTLS → inbound sidecar → app, exactly as on
//! Kubernetes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloudsec_audit::Audit;
use cloudsec_auth::Auth;
use cloudsec_bus::Bus;
use cloudsec_documents::Documents;
use cloudsec_gateway::{Gateway, Upstream};
use cloudsec_identity::{Issuer, LocalCa, SpiffeId, WorkloadIdentity};
use cloudsec_proxy::{Proxy, ProxyConfig, TlsState};
use cloudsec_runtime::{Secret, Shutdown};
use cloudsec_secrets::Secrets;

use crate::config::{LoadedConfig, MeshConfig, PlatformConfig};
use crate::error::PlatformError;
use crate::wiring::{self, Context};

/// The four sidecars, one per workload.
#[derive(Debug)]
struct Sidecars {
    auth: Proxy,
    documents: Proxy,
    audit: Proxy,
    gateway: Proxy,
}

/// Auth, documents, audit and the gateway in one process (see the module
/// docs).
#[derive(Debug)]
pub struct LocalPlatform {
    auth: Auth,
    documents: Documents,
    audit: Audit,
    gateway: Gateway,
    sidecars: Sidecars,
    identities: Vec<Arc<WorkloadIdentity>>,
    /// Forward each identity's rotated certificates to its sidecar.
    followers: Vec<tokio::task::JoinHandle<()>>,
    /// The one bus connection of the process, so that in-process
    /// subscribers wake at commit.
    bus: Bus,
    issuer: Arc<dyn Issuer>,
    mesh: MeshConfig,
    /// Kept logged in (token renewal) while the platform runs.
    vault: Option<cloudsec_secrets::VaultClient>,
    /// Renew and replace the database logins while the platform runs.
    db_credentials: Vec<cloudsec_secrets::database::DbCredentials>,
    /// Logs confirmation codes: `up` has no mail server.
    mailer: cloudsec_bus::Subscriber,
}

/// Where a started platform listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub gateway: SocketAddr,
    pub gateway_admin: SocketAddr,
    /// The auth service's mTLS address (its inbound sidecar).
    pub auth: SocketAddr,
    pub auth_admin: SocketAddr,
    /// The documents service's mTLS address (its inbound sidecar).
    pub documents: SocketAddr,
    pub documents_admin: SocketAddr,
    /// The audit service's mTLS address (its inbound sidecar).
    pub audit: SocketAddr,
    pub audit_admin: SocketAddr,
    pub auth_sidecar_admin: SocketAddr,
    pub documents_sidecar_admin: SocketAddr,
    pub audit_sidecar_admin: SocketAddr,
    pub gateway_sidecar_admin: SocketAddr,
}

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The address to dial for a listener bound to `addr` on this host.
pub(crate) fn dial(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

/// A sidecar in front of a workload: inbound on the workload's published
/// address (when it serves), outbound towards `destinations`.
fn sidecar_config(
    inbound: Option<SocketAddr>,
    destinations: &[(&SpiffeId, SocketAddr)],
    grace: Duration,
) -> ProxyConfig {
    use cloudsec_proxy::config::{DestinationConfig, InboundConfig, OutboundConfig};
    ProxyConfig {
        admin_listen: loopback_any(),
        tls: None,
        inbound: inbound.map(|listen| InboundConfig {
            listen,
            // Set once the application is bound.
            app: loopback_any(),
            authorization: Default::default(),
        }),
        outbound: (!destinations.is_empty()).then(|| OutboundConfig {
            listen: loopback_any(),
            destinations: destinations
                .iter()
                .map(|(id, addr)| {
                    (
                        id.dns_name(),
                        DestinationConfig {
                            endpoints: vec![*addr],
                            dns: None,
                            dns_refresh: Duration::from_secs(10),
                            identity: id.to_string(),
                        },
                    )
                })
                .collect(),
            routes: Default::default(),
            queue_capacity: 10_000,
            failfast_timeout: Duration::from_secs(1),
            balancer: Default::default(),
        }),
        shutdown_grace: grace,
        // In-process sidecars share the platform's runtime.
        worker_threads: cloudsec_proxy::runtime::DEFAULT_WORKER_THREADS,
    }
}

/// One workload's view of the configuration: its application on an
/// ephemeral loopback port without TLS of its own (its sidecar has the
/// published address), its peers through its sidecar's outbound listener.
fn behind_sidecar(
    config: &PlatformConfig,
    outbound: Option<SocketAddr>,
    auth: &SpiffeId,
) -> PlatformConfig {
    let mut own = config.clone();
    if let Some(outbound) = outbound {
        own.tokens.auth_uri = Some(format!("http://{outbound}"));
        own.tokens.auth_server_name = Some(auth.dns_name());
    }
    if let Some(c) = own.auth.as_mut() {
        c.grpc_listen = loopback_any();
        c.tls = None;
    }
    if let Some(c) = own.documents.as_mut() {
        c.grpc_listen = loopback_any();
        c.tls = None;
    }
    if let Some(c) = own.audit.as_mut() {
        c.grpc_listen = loopback_any();
        c.tls = None;
    }
    own
}

impl LocalPlatform {
    /// Creates what is missing under the data directory (CA, databases,
    /// keys), applies migrations and binds every listener.
    pub async fn build(dir: &Path, loaded: &LoadedConfig) -> Result<Self, PlatformError> {
        let mut config = loaded.config.clone();
        let db_credentials =
            crate::credentials::start_database_credentials(&mut config, loaded.secrets.as_ref())
                .await?;
        let config = &config;
        crate::data::private_dir(dir)?;
        let mesh = config.mesh.clone();
        let secrets = loaded.secrets.as_ref();
        let vault = secrets.and_then(Secrets::vault).cloned();
        let issuer: Arc<dyn Issuer> = match wiring::vault_issuer(&mesh, secrets).await? {
            Some(vault) => vault,
            None => Arc::new(LocalCa::load_or_create(&dir.join("pki"))?),
        };
        let id = |sa: &str| SpiffeId::new(&mesh.trust_domain, &mesh.namespace, sa);
        let (auth_id, documents_id, audit_id, gateway_id) =
            (id("auth")?, id("documents")?, id("audit")?, id("gateway")?);
        let mut identities = Vec::new();
        let mut followers = Vec::new();
        let mut tls_of = async |sid: &SpiffeId| -> Result<Arc<TlsState>, PlatformError> {
            let identity =
                WorkloadIdentity::new(issuer.clone(), sid.clone(), mesh.certificate_lifetime)
                    .await?;
            // Rotated certificates flow from the identity into the sidecar.
            let (tls, follower) = wiring::follow_identity(&identity)?;
            identities.push(identity);
            followers.push(follower);
            Ok(tls)
        };
        let auth_tls = tls_of(&auth_id).await?;
        let documents_tls = tls_of(&documents_id).await?;
        let audit_tls = tls_of(&audit_id).await?;
        let gateway_tls = tls_of(&gateway_id).await?;

        let required = |key: &str| PlatformError::config(key, "section required");
        let auth_section = config.auth.as_ref().ok_or_else(|| required("auth"))?;
        let documents_section = config
            .documents
            .as_ref()
            .ok_or_else(|| required("documents"))?;
        let audit_section = config.audit.as_ref().ok_or_else(|| required("audit"))?;
        let gateway_section = config.gateway.as_ref().ok_or_else(|| required("gateway"))?;

        // Inbound sidecars take the services' published addresses; the
        // applications move to ephemeral loopback ports behind them.
        let (mut auth_sidecar, auth_inbound) = service_sidecar(
            "auth",
            auth_section.grpc_listen,
            auth_section.shutdown_grace,
            &[],
            auth_tls,
        )
        .await?;
        let (mut documents_sidecar, documents_inbound) = service_sidecar(
            "documents",
            documents_section.grpc_listen,
            documents_section.shutdown_grace,
            &[(&auth_id, auth_inbound)],
            documents_tls,
        )
        .await?;
        let (mut audit_sidecar, audit_inbound) = service_sidecar(
            "audit",
            audit_section.grpc_listen,
            audit_section.shutdown_grace,
            &[(&auth_id, auth_inbound)],
            audit_tls,
        )
        .await?;
        let gateway_sidecar = Proxy::build(
            &sidecar_config(
                None,
                &[
                    (&auth_id, auth_inbound),
                    (&documents_id, documents_inbound),
                    (&audit_id, audit_inbound),
                ],
                gateway_section.shutdown_grace,
            ),
            gateway_tls,
        )
        .await?;

        let bus = match (&config.events.transport, &config.events.database_url) {
            (cloudsec_bus::TransportKind::Embedded, None) => {
                let mut events = config.events.clone();
                events.database_url =
                    Some(Secret::new(format!("sqlite://{}", dir.join("bus.db").display())).into());
                Bus::connect(&events, None).await?
            }
            _ => Bus::connect(&config.events, None).await?,
        };
        let context = |config| Context {
            config,
            secrets,
            bus: Some(&bus),
        };

        let auth_config = behind_sidecar(config, None, &auth_id);
        let auth = wiring::auth(&context(&auth_config)).await?;
        auth_sidecar.set_inbound_app(auth.grpc_addr())?;

        let documents_config = behind_sidecar(config, documents_sidecar.outbound_addr(), &auth_id);
        let documents = wiring::documents(&context(&documents_config)).await?;
        documents_sidecar.set_inbound_app(documents.grpc_addr())?;

        let audit_config = behind_sidecar(config, audit_sidecar.outbound_addr(), &auth_id);
        let audit = wiring::audit(&context(&audit_config)).await?;
        audit_sidecar.set_inbound_app(audit.grpc_addr())?;

        let mailer = crate::mailer::log_codes(
            &bus,
            config.events.provisioning,
            audit_section.shutdown_grace,
            cloudsec_auth::codes::CodeSeal::from_config(&auth_section.confirmation, secrets)
                .await
                .map_err(|e| PlatformError::Auth(e.into()))?,
        )
        .await?;

        let gateway_outbound = gateway_sidecar
            .outbound_addr()
            .ok_or_else(|| PlatformError::config("gateway", "its sidecar has no outbound"))?;
        let mut gateway_config = behind_sidecar(config, None, &auth_id);
        if let Some(gateway) = gateway_config.gateway.as_mut() {
            gateway.tls = None;
            for (service, sid) in [
                ("cloudsec.auth.v1.AuthService", &auth_id),
                ("cloudsec.documents.v1.DocumentService", &documents_id),
                ("cloudsec.audit.v1.AuditService", &audit_id),
            ] {
                gateway.upstreams.insert(
                    service.into(),
                    Upstream {
                        uri: format!("http://{gateway_outbound}"),
                        server_name: sid.dns_name(),
                    },
                );
            }
        }
        let gateway = wiring::gateway(&context(&gateway_config)).await?;
        Ok(Self {
            auth,
            documents,
            audit,
            gateway,
            sidecars: Sidecars {
                auth: auth_sidecar,
                documents: documents_sidecar,
                audit: audit_sidecar,
                gateway: gateway_sidecar,
            },
            identities,
            followers,
            bus,
            issuer,
            mesh,
            vault,
            db_credentials,
            mailer,
        })
    }

    pub fn addresses(&self) -> Addresses {
        let sidecars = &self.sidecars;
        Addresses {
            gateway: self.gateway.local_addr(),
            gateway_admin: self.gateway.admin_addr(),
            auth: sidecars
                .auth
                .inbound_addr()
                .unwrap_or(self.auth.grpc_addr()),
            auth_admin: self.auth.admin_addr(),
            documents: sidecars
                .documents
                .inbound_addr()
                .unwrap_or(self.documents.grpc_addr()),
            documents_admin: self.documents.admin_addr(),
            audit: sidecars
                .audit
                .inbound_addr()
                .unwrap_or(self.audit.grpc_addr()),
            audit_admin: self.audit.admin_addr(),
            auth_sidecar_admin: sidecars.auth.admin_addr(),
            documents_sidecar_admin: sidecars.documents.admin_addr(),
            audit_sidecar_admin: sidecars.audit.admin_addr(),
            gateway_sidecar_admin: sidecars.gateway.admin_addr(),
        }
    }

    /// The event bus the services publish to.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The REST routes the gateway serves.
    pub fn routes(&self) -> Vec<String> {
        self.gateway.routes()
    }

    /// A certificate for another workload of this mesh (tests, tools).
    pub async fn issue(
        &self,
        service_account: &str,
    ) -> Result<cloudsec_runtime::tls::MeshTls, PlatformError> {
        let id = SpiffeId::new(
            &self.mesh.trust_domain,
            &self.mesh.namespace,
            service_account,
        )?;
        Ok(self
            .issuer
            .issue(&id, self.mesh.certificate_lifetime)
            .await?
            .mesh_tls())
    }

    /// The DNS name in a workload's certificate.
    pub fn server_name(&self, service_account: &str) -> String {
        format!("{service_account}.{}.svc", self.mesh.namespace)
    }

    /// Serves until `shutdown` is cancelled, then drains in order; if one
    /// component fails, the others are stopped (in the same order) and the
    /// failure is returned.
    ///
    /// The order is what finishes every accepted request: first the
    /// gateway stops accepting and waits for its calls in flight (which
    /// still need the sidecars and services behind it), then the services
    /// and the mailer drain, and the sidecars go last, as Kubernetes stops
    /// native sidecars after the app containers. Every task the platform
    /// started is joined before this returns.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), PlatformError> {
        let Self {
            auth,
            documents,
            audit,
            gateway,
            sidecars,
            identities,
            followers,
            vault,
            db_credentials,
            mailer,
            ..
        } = self;
        // Held to the end: dropping a handle stops its lease renewal.
        let _db_credentials = db_credentials;
        let mut background = followers;
        if let Some(vault) = &vault {
            background.push(vault.spawn_token_renewal(shutdown.clone()));
        }
        for identity in &identities {
            background.push(identity.spawn_rotation(shutdown.clone()));
        }

        // One token per phase, in drain order.
        const EDGE: usize = 0;
        const APPS: usize = 1;
        const SIDECARS: usize = 2;
        let phases: [Shutdown; 3] = [Shutdown::new(), Shutdown::new(), Shutdown::new()];
        let mut tasks = Phased::default();
        tasks.spawn(
            "gateway",
            EDGE,
            gateway.run_until_stopped(phases[EDGE].clone()),
        );
        tasks.spawn(
            "auth",
            APPS,
            auth.run_until_stopped(None, phases[APPS].clone()),
        );
        tasks.spawn(
            "documents",
            APPS,
            documents.run_until_stopped(None, phases[APPS].clone()),
        );
        tasks.spawn(
            "audit",
            APPS,
            audit.run_until_stopped(None, phases[APPS].clone()),
        );
        tasks.spawn("mailer", APPS, mailer.run(phases[APPS].clone()));
        let Sidecars {
            auth,
            documents,
            audit,
            gateway,
        } = sidecars;
        for (name, sidecar) in [
            ("auth-sidecar", auth),
            ("documents-sidecar", documents),
            ("audit-sidecar", audit),
            ("gateway-sidecar", gateway),
        ] {
            tasks.spawn(
                name,
                SIDECARS,
                sidecar.run_until_stopped(phases[SIDECARS].clone()),
            );
        }

        let first_error = tasks.run(&shutdown, &phases).await;
        shutdown.cancel();
        for task in background {
            task.abort();
            let _ = task.await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A service's sidecar, its inbound on the service's published address
/// `listen`, and the address that inbound is bound to (for the other
/// sidecars' destinations).
async fn service_sidecar(
    name: &str,
    listen: SocketAddr,
    grace: Duration,
    destinations: &[(&SpiffeId, SocketAddr)],
    tls: Arc<TlsState>,
) -> Result<(Proxy, SocketAddr), PlatformError> {
    let sidecar = Proxy::build(&sidecar_config(Some(listen), destinations, grace), tls).await?;
    let inbound = sidecar
        .inbound_addr()
        .ok_or_else(|| PlatformError::config(name, "its sidecar has no inbound listener"))?;
    Ok((sidecar, inbound))
}

type Outcome = (&'static str, usize, Result<(), String>);

/// Component tasks grouped in drain phases.
#[derive(Default)]
struct Phased {
    tasks: tokio::task::JoinSet<Outcome>,
    left: [usize; 3],
}

impl Phased {
    fn spawn<E: std::fmt::Display>(
        &mut self,
        name: &'static str,
        phase: usize,
        run: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    ) {
        self.left[phase] += 1;
        self.tasks
            .spawn(async move { (name, phase, run.await.map_err(|e| e.to_string())) });
    }

    /// Runs until every task is done: on `shutdown`, or the first failure,
    /// each phase is cancelled once the ones before it are done (empty
    /// phases pass at once). Returns the first failure.
    async fn run(mut self, shutdown: &Shutdown, phases: &[Shutdown; 3]) -> Option<PlatformError> {
        let advance = |left: &[usize; 3]| {
            for (phase, token) in phases.iter().enumerate() {
                token.cancel();
                if left[phase] > 0 {
                    return;
                }
            }
        };
        let mut draining = false;
        let mut first_error = None;
        loop {
            let joined = tokio::select! {
                () = shutdown.cancelled(), if !draining => {
                    draining = true;
                    tracing::info!("draining: gateway, then services, then sidecars");
                    advance(&self.left);
                    continue;
                }
                joined = self.tasks.join_next() => joined,
            };
            let Some(joined) = joined else { break };
            let (component, phase, outcome) = match joined {
                Ok(done) => done,
                Err(join) => ("platform", phases.len() - 1, Err(join.to_string())),
            };
            self.left[phase] = self.left[phase].saturating_sub(1);
            let failure = match outcome {
                Err(message) => Some(message),
                Ok(()) if draining => None,
                Ok(()) => Some("stopped unexpectedly".to_owned()),
            };
            if let Some(message) = failure {
                // One component down takes the platform down, loudly.
                tracing::error!(component, %message, "component failed");
                first_error.get_or_insert(PlatformError::Stopped { component, message });
                shutdown.cancel();
            }
            if draining {
                advance(&self.left);
            }
        }
        first_error
    }
}

impl std::fmt::Debug for Phased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phased").field("left", &self.left).finish()
    }
}
