//! [`VaultPki`]: Vault's PKI engine as the mesh's workload certificate
//! issuer, behind the same [`Issuer`] interface as the development CA, so
//! rotation ([`cloudsec_identity::WorkloadIdentity`]) works unchanged.
//!
//! Each certificate comes from `<mount>/issue/<role>` with the workload's
//! SPIFFE id as its URI SAN, its mesh DNS name (`<sa>.<ns>.svc`) as common
//! name and DNS SAN, a PKCS#8 key and the requested TTL. Vault's role decides
//! what may be asked for: `allowed_uri_sans = "spiffe://<trust domain>/*"`,
//! `allowed_domains = "svc"` with subdomains, and a short `max_ttl`
//! (`docs/security.md` has the set-up).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use cloudsec_identity::{IdentityError, IssuedCert, Issuer, SpiffeId};
use futures::future::BoxFuture;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::vault::VaultClient;

/// Which PKI mount and role issue the mesh's certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultPkiConfig {
    #[serde(default = "default_mount")]
    pub mount: String,
    pub role: String,
}

fn default_mount() -> String {
    "pki".into()
}

/// Vault PKI as an [`Issuer`] (see the module doc).
pub struct VaultPki {
    client: VaultClient,
    mount: String,
    role: String,
    trust_bundle: RwLock<Arc<String>>,
}

impl std::fmt::Debug for VaultPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultPki")
            .field("address", &self.client.address())
            .field("mount", &self.mount)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl VaultPki {
    /// Reads the CA chain once, so that [`Issuer::trust_bundle`] can answer
    /// without a round trip.
    pub async fn new(client: VaultClient, config: &VaultPkiConfig) -> Result<Self> {
        let pki = Self {
            client,
            mount: config.mount.clone(),
            role: config.role.clone(),
            trust_bundle: RwLock::new(Arc::new(String::new())),
        };
        pki.reload_trust_bundle().await?;
        Ok(pki)
    }

    /// Reads the CA chain again, e.g. after a new issuer was added to the
    /// mount; returns it.
    pub async fn reload_trust_bundle(&self) -> Result<String> {
        let body = self
            .client
            .request(
                reqwest::Method::GET,
                &format!("{}/cert/ca_chain", self.mount),
                None,
            )
            .await?;
        let data = &body["data"];
        let chain = data["ca_chain"]
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| data["certificate"].as_str())
            .filter(|s| s.contains("BEGIN CERTIFICATE"))
            .ok_or_else(|| {
                Error::Malformed(format!(
                    "{}/cert/ca_chain has no CA certificate; generate or import a CA in the mount",
                    self.mount
                ))
            })?
            .trim()
            .to_owned()
            + "\n";
        let mut bundle = self.trust_bundle.write().unwrap_or_else(|p| p.into_inner());
        *bundle = Arc::new(chain.clone());
        Ok(chain)
    }

    async fn issue_now(&self, id: &SpiffeId, lifetime: Duration) -> Result<IssuedCert> {
        let dns = id.dns_name();
        let uri = id.to_string();
        let ttl = format!("{}s", lifetime.as_secs().max(1));
        let mount = self.mount.as_str();
        let role = self.role.as_str();
        let op = format!("issue {mount}/issue/{role} for {uri}");
        let resp = self
            .client
            .call(&op, |s| {
                let (dns, uri, ttl) = (dns.clone(), uri.clone(), ttl.clone());
                async move {
                    let mut opts =
                        vaultrs::api::pki::requests::GenerateCertificateRequest::builder();
                    opts.common_name(dns.clone())
                        .alt_names(dns)
                        .uri_sans(uri)
                        .ttl(ttl)
                        .format("pem")
                        .private_key_format("pkcs8");
                    vaultrs::pki::cert::generate(&s.api, mount, role, Some(&mut opts)).await
                }
            })
            .await?;
        let bundle = self.trust_bundle();
        // The leaf, then any intermediates the peer may not have; the
        // anchors themselves stay out of the presented chain.
        let mut cert_pem = resp.certificate.trim().to_owned() + "\n";
        for ca in resp.ca_chain.iter().flatten() {
            if !bundle.contains(ca.trim()) {
                cert_pem.push_str(ca.trim());
                cert_pem.push('\n');
            }
        }
        let granted = resp
            .expiration
            .map(|exp| {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                Duration::from_secs(exp.saturating_sub(now))
            })
            .unwrap_or(lifetime);
        if granted + Duration::from_secs(5) < lifetime {
            tracing::warn!(
                id = %id,
                requested = ?lifetime,
                granted = ?granted,
                "vault issued a shorter certificate than asked (role max_ttl)"
            );
        }
        Ok(IssuedCert {
            id: id.clone(),
            cert_pem,
            key_pem: resp.private_key,
            ca_pem: bundle,
            lifetime: granted.min(lifetime),
        })
    }
}

impl Issuer for VaultPki {
    fn issue<'a>(
        &'a self,
        id: &'a SpiffeId,
        lifetime: Duration,
    ) -> BoxFuture<'a, std::result::Result<IssuedCert, IdentityError>> {
        Box::pin(async move {
            self.issue_now(id, lifetime).await.map_err(|e| {
                // IdentityError has no variant for a remote issuer; CaFiles
                // carries the location (the PKI mount) and the reason.
                IdentityError::CaFiles {
                    path: PathBuf::from(format!("{}/v1/{}", self.client.address(), self.mount)),
                    reason: e.to_string(),
                }
            })
        })
    }

    fn trust_bundle(&self) -> String {
        self.trust_bundle
            .read()
            .map(|b| b.as_str().to_owned())
            .unwrap_or_else(|p| p.into_inner().as_str().to_owned())
    }
}
