//! The sidecar's TLS: its own certificate (swapped on rotation without
//! touching live connections), the mesh trust bundle (reloadable), client
//! certificates required inbound, and SPIFFE identity checked outbound.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cloudsec_identity::{SpiffeId, spiffe_id_of};
use cloudsec_runtime::tls::MeshTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("bad certificate PEM: {0}")]
    Cert(String),
    #[error("bad private key PEM: {0}")]
    Key(String),
    #[error("bad trust bundle: {0}")]
    Roots(String),
}

struct Material {
    /// The trust domain of our own SPIFFE id: peers must share it.
    trust_domain: String,
    /// Our SPIFFE id and our certificate's validity.
    identity: String,
    validity: Option<cloudsec_identity::Validity>,
    /// Each trust anchor's subject and expiry.
    anchors: Vec<(String, i64)>,
    key: Arc<CertifiedKey>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
}

fn material(m: &MeshTls) -> Result<Material, TlsError> {
    let chain = CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let own = chain
        .first()
        .ok_or_else(|| TlsError::Cert("no certificate".into()))?;
    let own = spiffe_id_of(own).ok_or_else(|| {
        TlsError::Cert("the certificate has no SPIFFE id (exactly one spiffe:// URI SAN)".into())
    })?;
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes())
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let validity = chain
        .first()
        .and_then(|c| cloudsec_identity::validity_of(c));
    let mut roots = RootCertStore::empty();
    let mut anchors = Vec::new();
    for ca in CertificateDer::pem_slice_iter(m.ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| TlsError::Roots(e.to_string()))?;
        if let Some(v) = cloudsec_identity::validity_of(&ca) {
            anchors.push((v.subject, v.not_after));
        }
        roots.add(ca).map_err(|e| TlsError::Roots(e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let client_verifier = WebPkiClientVerifier::builder(roots.clone())
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    let server_verifier = WebPkiServerVerifier::builder(roots)
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    Ok(Material {
        identity: own.to_string(),
        validity,
        anchors,
        trust_domain: own.trust_domain,
        key: Arc::new(CertifiedKey::new(chain, signing)),
        client_verifier,
        server_verifier,
    })
}

/// Reports the expiry of a sidecar's certificate and trust anchors at
/// scrape time, so a rotation shows at the next scrape:
/// `identity_cert_expiration_timestamp_seconds{identity}` (Linkerd's name),
/// `identity_cert_not_before_timestamp_seconds{identity}` (with it, the
/// share of the lifetime left) and
/// `identity_trust_anchor_expiration_timestamp_seconds{subject}`; Unix
/// seconds, the alerts subtract `time()`.
#[derive(Debug)]
pub(crate) struct ExpiryCollector(pub(crate) Arc<TlsState>);

impl prometheus_client::collector::Collector for ExpiryCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        type Labels = Vec<(String, String)>;
        let material = self.0.current.load();
        let cert = Family::<Labels, Gauge>::default();
        let issued = Family::<Labels, Gauge>::default();
        if let Some(v) = &material.validity {
            let labels = vec![("identity".to_owned(), material.identity.clone())];
            cert.get_or_create(&labels).set(v.not_after);
            issued.get_or_create(&labels).set(v.not_before);
        }
        let anchors = Family::<Labels, Gauge>::default();
        for (subject, at) in &material.anchors {
            anchors
                .get_or_create(&vec![("subject".to_owned(), subject.clone())])
                .set(*at);
        }
        for (name, help, family) in [
            (
                "identity_cert_expiration_timestamp_seconds",
                "when the sidecar's workload certificate expires (Unix time)",
                &cert,
            ),
            (
                "identity_cert_not_before_timestamp_seconds",
                "when the sidecar's workload certificate became valid (Unix time)",
                &issued,
            ),
            (
                "identity_trust_anchor_expiration_timestamp_seconds",
                "when each CA certificate the sidecar trusts expires (Unix time)",
                &anchors,
            ),
        ] {
            if !family.is_empty() {
                let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
                family.encode(metric)?;
            }
        }
        Ok(())
    }
}

/// The current TLS material of one sidecar.
pub struct TlsState {
    current: ArcSwap<Material>,
}

impl fmt::Debug for TlsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsState").finish_non_exhaustive()
    }
}

impl TlsState {
    pub fn new(m: &MeshTls) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(material(m)?),
        }))
    }

    /// Uses `m` for every handshake from now on; connections already open
    /// keep theirs.
    /// The trust domain of the current certificate.
    pub fn trust_domain(&self) -> String {
        self.current.load().trust_domain.clone()
    }

    pub fn update(&self, m: &MeshTls) -> Result<(), TlsError> {
        self.current.store(Arc::new(material(m)?));
        Ok(())
    }

    /// Applies every new certificate or bundle sent on `updates`.
    pub fn follow(
        self: &Arc<Self>,
        mut updates: watch::Receiver<Arc<MeshTls>>,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let next = updates.borrow_and_update().clone();
                match this.update(&next) {
                    Ok(()) => tracing::info!("sidecar TLS material rotated"),
                    Err(error) => {
                        tracing::error!(%error, "rejected new TLS material, keeping the current one")
                    }
                }
            }
        })
    }

    /// Inbound: our certificate; a client certificate from the mesh CA is
    /// mandatory.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(Arc::new(DynamicClientVerifier(Arc::clone(self))))
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    /// Outbound: present our certificate and accept only a peer whose
    /// certificate chains to the mesh CA and names `expected`.
    pub fn client_config(self: &Arc<Self>, expected: SpiffeId) -> Arc<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeVerifier {
                state: Arc::clone(self),
                expected,
            }))
            .with_client_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}

#[derive(Debug)]
struct Resolver(Arc<TlsState>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct DynamicClientVerifier(Arc<TlsState>);

impl ClientCertVerifier for DynamicClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would borrow from material that may be swapped; clients in
        // the mesh have exactly one certificate to offer anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let current = self.0.current.load();
        let verified =
            current
                .client_verifier
                .verify_client_cert(end_entity, intermediates, now)?;
        // A certificate from our CA is not enough: a shared or federated
        // CA may sign other trust domains' workloads.
        match spiffe_id_of(end_entity) {
            Some(id) if id.trust_domain == current.trust_domain => Ok(verified),
            Some(id) => Err(rustls::Error::General(format!(
                "client identity {id} is outside the trust domain {}",
                current.trust_domain
            ))),
            None => Err(rustls::Error::General(
                "client certificate has no SPIFFE id (exactly one spiffe:// URI SAN)".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current
            .load()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current
            .load()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .current
            .load()
            .client_verifier
            .supported_verify_schemes()
    }
}

/// Checks the chain like any TLS client (against the mesh CA, for the
/// destination's DNS name), then that the URI SAN is the SPIFFE id this
/// destination must have: a valid mesh certificate of another workload is
/// not enough.
#[derive(Debug)]
struct SpiffeVerifier {
    state: Arc<TlsState>,
    expected: SpiffeId,
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(self.expected.dns_name())
            .map_err(|_| rustls::Error::General("invalid expected identity".into()))?;
        self.state
            .current
            .load()
            .server_verifier
            .verify_server_cert(end_entity, intermediates, &name, ocsp, now)?;
        match spiffe_id_of(end_entity) {
            Some(id) if id == self.expected => Ok(ServerCertVerified::assertion()),
            Some(id) => Err(rustls::Error::General(format!(
                "peer identity {id} is not the expected {}",
                self.expected
            ))),
            None => Err(rustls::Error::General(
                "peer certificate has no SPIFFE id (exactly one spiffe:// URI SAN)".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.state
            .current
            .load()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.state
            .current
            .load()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.state
            .current
            .load()
            .server_verifier
            .supported_verify_schemes()
    }
}

/// The SPIFFE id of the peer of an accepted server connection.
pub fn peer_identity(conn: &rustls::ServerConnection) -> Option<SpiffeId> {
    conn.peer_certificates()?
        .first()
        .and_then(|c| spiffe_id_of(c))
}

/// How often certificate files are checked for changes.
const FILE_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// Watches the PEM files and sends their contents whenever they change.
pub fn watch_files(
    files: cloudsec_runtime::tls::TlsFiles,
    stop: tokio_util::sync::CancellationToken,
) -> watch::Receiver<Arc<MeshTls>> {
    let (tx, rx) = watch::channel(Arc::new(MeshTls {
        ca_pem: String::new(),
        cert_pem: String::new(),
        key_pem: String::new(),
    }));
    tokio::spawn(async move {
        let stamp = |f: &cloudsec_runtime::tls::TlsFiles| {
            [&f.ca_file, &f.cert_file, &f.key_file]
                .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        };
        let mut last = stamp(&files);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(FILE_POLL) => {}
            }
            let now = stamp(&files);
            if now == last {
                continue;
            }
            last = now;
            match files.load() {
                Ok(material) => {
                    if tx.send(Arc::new(material)).is_err() {
                        return;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot reload certificate files"),
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudsec_identity::LocalCa;

    fn id(domain: &str, sa: &str) -> SpiffeId {
        SpiffeId::new(domain, "default", sa).unwrap()
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    async fn state(ca: &LocalCa, sa: &str) -> Arc<TlsState> {
        use cloudsec_identity::Issuer;
        let issued = ca
            .issue(
                &id("cloudsec.local", sa),
                std::time::Duration::from_secs(3600),
            )
            .await
            .unwrap();
        TlsState::new(&issued.mesh_tls()).unwrap()
    }

    fn forged(ca: &LocalCa, sa: &str, uris: &[&str]) -> CertificateDer<'static> {
        let uris: Vec<String> = uris.iter().map(|u| (*u).to_owned()).collect();
        der(&ca
            .issue_with_uris(&id("cloudsec.local", sa), &uris)
            .unwrap()
            .cert_pem)
    }

    #[tokio::test]
    async fn reports_certificate_and_anchor_expiry_and_follows_rotation() {
        let ca = LocalCa::generate().unwrap();
        let tls = state(&ca, "documents").await;
        let metrics = cloudsec_runtime::metrics::Metrics::new("proxy");
        metrics.register_collector(ExpiryCollector(tls.clone()));
        let value = |text: &str, series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<i64>().ok())
        };
        let cert_series = "identity_cert_expiration_timestamp_seconds{component=\"proxy\",identity=\"spiffe://cloudsec.local/ns/default/sa/documents\"}";
        let anchor_series = "identity_trust_anchor_expiration_timestamp_seconds{component=\"proxy\",subject=\"cloudsec development mesh CA\"}";
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let text = metrics.encode();
        let first = value(&text, cert_series).unwrap_or_else(|| panic!("{text}"));
        assert!((now + 3500..=now + 3700).contains(&first), "{first}");
        assert!(value(&text, anchor_series).is_some_and(|at| at > now + 365 * 86400));

        use cloudsec_identity::Issuer;
        let longer = ca
            .issue(
                &id("cloudsec.local", "documents"),
                std::time::Duration::from_secs(7200),
            )
            .await
            .unwrap();
        tls.update(&longer.mesh_tls()).unwrap();
        let second = value(&metrics.encode(), cert_series).unwrap();
        assert!(second >= first + 3500, "the rotated certificate shows");
    }

    #[tokio::test]
    async fn inbound_refuses_foreign_trust_domains_and_two_identities() {
        let ca = LocalCa::generate().unwrap();
        let verifier = DynamicClientVerifier(state(&ca, "documents").await);
        let now = UnixTime::now();
        let good = forged(
            &ca,
            "gateway",
            &["spiffe://cloudsec.local/ns/default/sa/gateway"],
        );
        assert!(verifier.verify_client_cert(&good, &[], now).is_ok());
        // Signed by our CA, but for another trust domain.
        let foreign = forged(
            &ca,
            "gateway",
            &["spiffe://evil.example/ns/default/sa/gateway"],
        );
        let error = verifier.verify_client_cert(&foreign, &[], now).unwrap_err();
        assert!(
            error.to_string().contains("outside the trust domain"),
            "{error}"
        );
        // Two URI SANs: which identity would it be?
        let two = forged(
            &ca,
            "gateway",
            &[
                "spiffe://cloudsec.local/ns/default/sa/gateway",
                "spiffe://cloudsec.local/ns/default/sa/auth",
            ],
        );
        let error = verifier.verify_client_cert(&two, &[], now).unwrap_err();
        assert!(error.to_string().contains("no SPIFFE id"), "{error}");
    }

    #[tokio::test]
    async fn outbound_refuses_foreign_trust_domains_and_two_identities() {
        let ca = LocalCa::generate().unwrap();
        let verifier = SpiffeVerifier {
            state: state(&ca, "gateway").await,
            expected: id("cloudsec.local", "documents"),
        };
        let name = ServerName::try_from("documents.default.svc").unwrap();
        let now = UnixTime::now();
        let check =
            |cert: &CertificateDer<'_>| verifier.verify_server_cert(cert, &[], &name, &[], now);
        let good = forged(
            &ca,
            "documents",
            &["spiffe://cloudsec.local/ns/default/sa/documents"],
        );
        assert!(check(&good).is_ok());
        let foreign = forged(
            &ca,
            "documents",
            &["spiffe://evil.example/ns/default/sa/documents"],
        );
        assert!(check(&foreign).is_err());
        let two = forged(
            &ca,
            "documents",
            &[
                "spiffe://cloudsec.local/ns/default/sa/documents",
                "spiffe://cloudsec.local/ns/default/sa/auth",
            ],
        );
        let error = check(&two).unwrap_err();
        assert!(error.to_string().contains("no SPIFFE id"), "{error}");
    }

    #[test]
    fn our_own_certificate_must_carry_one_spiffe_id() {
        let ca = LocalCa::generate().unwrap();
        let two = ca
            .issue_with_uris(
                &id("cloudsec.local", "documents"),
                &[
                    "spiffe://cloudsec.local/ns/default/sa/documents".into(),
                    "spiffe://cloudsec.local/ns/default/sa/auth".into(),
                ],
            )
            .unwrap();
        assert!(matches!(
            TlsState::new(&two.mesh_tls()),
            Err(TlsError::Cert(_))
        ));
    }
}
