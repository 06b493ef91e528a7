//! A workload's current certificate, renewed before it expires.
//!
//! Renewal starts at 70% of the certificate's lifetime, which leaves 30% of
//! it to ride out an issuer outage; a failed renewal is retried with
//! jittered exponential backoff while the current certificate is still
//! valid. Consumers watch for new certificates and use them for new
//! handshakes, so live connections are never dropped by a rotation.
//! Every attempt counts in `identity_cert_renewals_total{identity,outcome}`;
//! the certificate's expiry is reported by the sidecar that serves it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{IdentityError, IssuedCert, Issuer, SpiffeId};

/// The share of a certificate's lifetime after which it is renewed.
pub const RENEW_AT: f64 = 0.7;

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The certificate of one workload, kept current.
#[derive(Debug)]
pub struct WorkloadIdentity {
    id: SpiffeId,
    lifetime: Duration,
    issuer: Arc<dyn Issuer>,
    current: watch::Sender<Arc<IssuedCert>>,
}

impl WorkloadIdentity {
    /// Issues the first certificate.
    pub async fn new(
        issuer: Arc<dyn Issuer>,
        id: SpiffeId,
        lifetime: Duration,
    ) -> Result<Arc<Self>, IdentityError> {
        let first = issuer.issue(&id, lifetime).await?;
        let (current, _) = watch::channel(Arc::new(first));
        Ok(Arc::new(Self {
            id,
            lifetime,
            issuer,
            current,
        }))
    }

    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The certificate to use now.
    pub fn current(&self) -> Arc<IssuedCert> {
        self.current.borrow().clone()
    }

    /// Changes whenever a new certificate is issued.
    pub fn subscribe(&self) -> watch::Receiver<Arc<IssuedCert>> {
        self.current.subscribe()
    }

    /// Issues a new certificate now.
    pub async fn renew(&self) -> Result<(), IdentityError> {
        let next = self.issuer.issue(&self.id, self.lifetime).await;
        cloudsec_runtime::metrics::process::identity_renewal(&self.id.to_string(), next.is_ok());
        let next = next?;
        self.current.send_replace(Arc::new(next));
        tracing::info!(id = %self.id, "workload certificate renewed");
        Ok(())
    }

    /// Renews in the background until `stop` is cancelled.
    pub fn spawn_rotation(
        self: &Arc<Self>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let renew_after = this.lifetime.mul_f64(RENEW_AT);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(renew_after) => {}
                }
                let mut delay = RETRY_MIN;
                loop {
                    match this.renew().await {
                        Ok(()) => break,
                        Err(error) => {
                            tracing::warn!(id = %this.id, %error, retry_in = ?delay, "certificate renewal failed");
                            let jittered = delay.mul_f64(0.5 + rand::random::<f64>() / 2.0);
                            tokio::select! {
                                () = stop.cancelled() => return,
                                () = tokio::time::sleep(jittered) => {}
                            }
                            delay = (delay * 2).min(RETRY_MAX);
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalCa;
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails its first `failures` renewals after the first issue.
    #[derive(Debug)]
    struct Flaky {
        ca: LocalCa,
        calls: AtomicUsize,
        failures: usize,
    }

    impl Issuer for Flaky {
        fn issue<'a>(
            &'a self,
            id: &'a SpiffeId,
            lifetime: Duration,
        ) -> BoxFuture<'a, Result<IssuedCert, IdentityError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n >= 1 && n <= self.failures {
                    return Err(IdentityError::InvalidId("issuer down".into()));
                }
                self.ca.issue(id, lifetime).await
            })
        }

        fn trust_bundle(&self) -> String {
            self.ca.trust_bundle()
        }
    }

    fn id() -> SpiffeId {
        SpiffeId::new("cloudsec.local", "default", "documents").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_seventy_percent_of_lifetime() {
        let ca: Arc<dyn Issuer> = Arc::new(LocalCa::generate().unwrap());
        let identity = WorkloadIdentity::new(ca, id(), Duration::from_secs(100))
            .await
            .unwrap();
        let first = identity.current();
        let mut changes = identity.subscribe();
        let stop = CancellationToken::new();
        let task = identity.spawn_rotation(stop.clone());

        tokio::time::sleep(Duration::from_secs(69)).await;
        assert!(!changes.has_changed().unwrap(), "renewed too early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        changes.changed().await.unwrap();
        let second = identity.current();
        assert_ne!(first.cert_pem, second.cert_pem);
        assert_eq!(second.id, id());
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn retries_a_failed_renewal_with_backoff() {
        let flaky = Arc::new(Flaky {
            ca: LocalCa::generate().unwrap(),
            calls: AtomicUsize::new(0),
            failures: 3,
        });
        let identity = WorkloadIdentity::new(flaky.clone(), id(), Duration::from_secs(100))
            .await
            .unwrap();
        let first = identity.current();
        let stop = CancellationToken::new();
        let _task = identity.spawn_rotation(stop.clone());
        // 70 s, then three failures with at most 1 + 2 + 4 s of backoff.
        tokio::time::sleep(Duration::from_secs(70 + 8)).await;
        tokio::task::yield_now().await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 5);
        assert_ne!(identity.current().cert_pem, first.cert_pem);
        // The failures show where an alert can see them.
        let text = cloudsec_runtime::metrics::Metrics::new("proxy").encode();
        let errors = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "identity_cert_renewals_total{component=\"proxy\",identity=\"spiffe://cloudsec.local/ns/default/sa/documents\",outcome=\"error\"} ",
                )
            })
            .and_then(|v| v.parse::<u64>().ok());
        assert!(errors.is_some_and(|n| n >= 3), "{text}");
        stop.cancel();
    }
}
