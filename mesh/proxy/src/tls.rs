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
    key: Arc<CertifiedKey>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
}

fn material(m: &MeshTls) -> Result<Material, TlsError> {
    let chain = CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Cert("no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes())
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(m.ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| TlsError::Roots(e.to_string()))?;
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
        key: Arc::new(CertifiedKey::new(chain, signing)),
        client_verifier,
        server_verifier,
    })
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
        let verified = self.0.current.load().client_verifier.verify_client_cert(
            end_entity,
            intermediates,
            now,
        )?;
        if spiffe_id_of(end_entity).is_none() {
            return Err(rustls::Error::General(
                "client certificate has no SPIFFE id".into(),
            ));
        }
        Ok(verified)
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
                "peer certificate has no SPIFFE id".into(),
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
