//! Workload identity for the cloudsec mesh.
//!
//! Every workload has a SPIFFE id such as
//! `spiffe://cloudsec.local/ns/default/sa/documents` and a short-lived
//! certificate that carries it as a URI SAN. An [`Issuer`] signs those
//! certificates: [`LocalCa`] is the development CA that `cloudsec up`
//! creates; Vault's PKI engine implements the same interface in production.

pub mod rotation;

pub use rotation::WorkloadIdentity;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The default lifetime of a workload certificate.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The trust domain of the development mesh.
pub const DEFAULT_TRUST_DOMAIN: &str = "cloudsec.local";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid spiffe id `{0}`")]
    InvalidId(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot use the CA files in {path}: {reason}")]
    CaFiles { path: PathBuf, reason: String },
}

/// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl SpiffeId {
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdentityError> {
        let id = Self {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        };
        if [trust_domain, namespace, service_account]
            .iter()
            .all(|s| valid_segment(s))
        {
            Ok(id)
        } else {
            Err(IdentityError::InvalidId(id.to_string()))
        }
    }

    /// Parses the URI form.
    pub fn parse(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::InvalidId(uri.to_owned());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => Self::new(td, ns, sa).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// The DNS name a peer dials to reach this workload inside the mesh,
    /// checked against the certificate like any TLS server name.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.svc", self.service_account, self.namespace)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// A signed workload certificate, its key and the bundle that verifies it.
#[derive(Clone)]
pub struct IssuedCert {
    pub id: SpiffeId,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub lifetime: Duration,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("id", &self.id)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// The TLS material for `cloudsec-runtime`'s gRPC set-up.
    pub fn mesh_tls(&self) -> cloudsec_runtime::tls::MeshTls {
        cloudsec_runtime::tls::MeshTls {
            ca_pem: self.ca_pem.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

/// Signs workload certificates. Asynchronous because production issuers
/// (Vault PKI) are remote.
pub trait Issuer: Send + Sync + fmt::Debug {
    fn issue<'a>(
        &'a self,
        id: &'a SpiffeId,
        lifetime: Duration,
    ) -> BoxFuture<'a, Result<IssuedCert, IdentityError>>;

    /// The CA certificates that verify what this issuer signs, in PEM.
    fn trust_bundle(&self) -> String;
}

/// The development CA: an ECDSA P-256 root kept in a directory.
pub struct LocalCa {
    cert_pem: String,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

impl LocalCa {
    /// A new CA that lives only in memory (tests).
    pub fn generate() -> Result<Self, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "cloudsec development mesh CA");
        dn.push(DnType::OrganizationName, "cloudsec");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// Loads the CA kept in `dir`, creating it on first use. The key file
    /// is written readable by its owner only.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let files_err = |reason: String| IdentityError::CaFiles {
            path: dir.to_owned(),
            reason,
        };
        if cert_path.exists() && key_path.exists() {
            return Self::load(dir);
        }
        let ca = Self::generate()?;
        std::fs::create_dir_all(dir).map_err(|e| files_err(e.to_string()))?;
        write_private(&key_path, &ca.issuer.key().serialize_pem())
            .map_err(|e| files_err(e.to_string()))?;
        std::fs::write(&cert_path, &ca.cert_pem).map_err(|e| files_err(e.to_string()))?;
        tracing::info!(path = %dir.display(), "created development mesh CA");
        Ok(ca)
    }

    /// Loads the CA kept in `dir`; unlike [`LocalCa::load_or_create`] it
    /// never creates one, for commands that must use the running
    /// platform's CA or none.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let files_err = |reason: String| IdentityError::CaFiles {
            path: dir.to_owned(),
            reason,
        };
        let cert_pem = std::fs::read_to_string(dir.join(CA_CERT))
            .map_err(|e| files_err(format!("{CA_CERT}: {e}")))?;
        let key_pem = std::fs::read_to_string(dir.join(CA_KEY))
            .map_err(|e| files_err(format!("{CA_KEY}: {e}")))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| files_err(e.to_string()))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| files_err(e.to_string()))?;
        Ok(Self { cert_pem, issuer })
    }

    fn issue_now(&self, id: &SpiffeId, lifetime: Duration) -> Result<IssuedCert, IdentityError> {
        let now = std::time::SystemTime::now();
        // Back-dated a little so that peers with a slightly slow clock
        // accept a certificate issued a moment ago.
        self.issue_between(id, now - Duration::from_secs(60), now + lifetime)
    }

    /// A certificate valid exactly from `not_before` to `not_after`
    /// (tests use it for expired certificates).
    pub fn issue_between(
        &self,
        id: &SpiffeId,
        not_before: std::time::SystemTime,
        not_after: std::time::SystemTime,
    ) -> Result<IssuedCert, IdentityError> {
        self.sign(id, &[id.to_string()], not_before, not_after)
    }

    /// A certificate for `id`'s DNS name whose URI SANs are exactly `uris`,
    /// valid for an hour: tests forge malformed identities with it (two
    /// SPIFFE ids, a foreign trust domain).
    #[cfg(feature = "test-util")]
    pub fn issue_with_uris(
        &self,
        id: &SpiffeId,
        uris: &[String],
    ) -> Result<IssuedCert, IdentityError> {
        let now = std::time::SystemTime::now();
        self.sign(
            id,
            uris,
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
    }

    fn sign(
        &self,
        id: &SpiffeId,
        uris: &[String],
        not_before: std::time::SystemTime,
        not_after: std::time::SystemTime,
    ) -> Result<IssuedCert, IdentityError> {
        let lifetime = not_after.duration_since(not_before).unwrap_or_default();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![id.dns_name(), "localhost".to_owned()])?;
        for uri in uris {
            let uri = uri
                .clone()
                .try_into()
                .map_err(|_| IdentityError::InvalidId(uri.clone()))?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.service_account.clone());
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = time::OffsetDateTime::from(not_before);
        params.not_after = time::OffsetDateTime::from(not_after);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            id: id.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
            lifetime,
        })
    }
}

impl Issuer for LocalCa {
    fn issue<'a>(
        &'a self,
        id: &'a SpiffeId,
        lifetime: Duration,
    ) -> BoxFuture<'a, Result<IssuedCert, IdentityError>> {
        Box::pin(async move { self.issue_now(id, lifetime) })
    }

    fn trust_bundle(&self) -> String {
        self.cert_pem.clone()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// The SPIFFE id of a DER certificate: its one URI SAN, when that is a
/// valid SPIFFE id. The SPIFFE X.509-SVID specification requires exactly
/// one URI SAN, so a certificate with two (which could claim two
/// identities) or with an unparsable one has none.
pub fn spiffe_id_of(cert_der: &[u8]) -> Option<SpiffeId> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let only = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    SpiffeId::parse(only).ok()
}

/// When a certificate became valid and when it expires, in seconds since
/// the Unix epoch, and its subject's common name (or the whole subject when
/// it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
    pub subject: String,
}

/// The validity of a DER certificate: what the sidecars report as
/// `identity_cert_expiration_timestamp_seconds`,
/// `identity_cert_not_before_timestamp_seconds` and
/// `identity_trust_anchor_expiration_timestamp_seconds`.
pub fn validity_of(cert_der: &[u8]) -> Option<Validity> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let subject = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| cert.subject().to_string(), str::to_owned);
    Some(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_expiry_and_subject() {
        let ca = LocalCa::generate().unwrap();
        let id = SpiffeId::new("cloudsec.local", "default", "auth").unwrap();
        let before = time::OffsetDateTime::now_utc().unix_timestamp();
        let cert = ca.issue(&id, Duration::from_secs(3600)).await.unwrap();
        let leaf = validity_of(&rustls_pemfile_der(&cert.cert_pem)).unwrap();
        assert!(
            (before + 3590..=before + 3610).contains(&leaf.not_after),
            "{leaf:?}"
        );
        assert!(
            (before - 70..=before).contains(&leaf.not_before),
            "back-dated a minute"
        );
        assert_eq!(leaf.subject, "auth");
        let ca = validity_of(&rustls_pemfile_der(&cert.ca_pem)).unwrap();
        assert!(ca.not_after > before + 3000 * 86400);
        assert_eq!(ca.subject, "cloudsec development mesh CA");
    }

    #[test]
    fn spiffe_ids_round_trip() {
        let id = SpiffeId::new("cloudsec.local", "default", "documents").unwrap();
        assert_eq!(
            id.to_string(),
            "spiffe://cloudsec.local/ns/default/sa/documents"
        );
        assert_eq!(SpiffeId::parse(&id.to_string()).unwrap(), id);
        assert!(SpiffeId::parse("spiffe://x/ns/a").is_err());
        assert!(SpiffeId::parse("https://x/ns/a/sa/b").is_err());
        assert!(SpiffeId::new("cloudsec.local", "Default", "x").is_err());
    }

    #[tokio::test]
    async fn issues_certificates_with_the_spiffe_san() {
        let ca = LocalCa::generate().unwrap();
        let id = SpiffeId::new("cloudsec.local", "default", "auth").unwrap();
        let cert = ca.issue(&id, DEFAULT_LIFETIME).await.unwrap();
        let der = rustls_pemfile_der(&cert.cert_pem);
        assert_eq!(spiffe_id_of(&der), Some(id));
        assert_eq!(cert.ca_pem, ca.trust_bundle());
    }

    #[test]
    fn reloads_the_same_ca_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalCa::load_or_create(dir.path()).unwrap();
        let second = LocalCa::load_or_create(dir.path()).unwrap();
        assert_eq!(first.trust_bundle(), second.trust_bundle());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
    }

    fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}
