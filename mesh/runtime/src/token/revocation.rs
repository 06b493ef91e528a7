//! The auth service's access-token revocations, pulled by a verifier.
//!
//! Access tokens are checked locally, so a disabled user's token would pass
//! until it expires. The auth service keeps "tokens of user U below
//! generation G are dead" rows; a verifier pulls the ones raised since its last pull
//! (`ListTokenRevocations`) at most every `interval`, in the background of
//! the call that finds the list due, and refuses a covered token.
//!
//! The very first pull is waited for, so a verifier fresh from a restart
//! does not pass tokens revoked before it started. When the auth service
//! cannot be reached the verifier keeps what it has and tokens keep
//! passing (a warning is logged): failing closed would turn an auth outage
//! into an outage of every service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloudsec_proto::auth::v1::auth_service_client::AuthServiceClient;
use cloudsec_proto::auth::v1::{ListTokenRevocationsRequest, TokenRevocation};
use tokio::time::Instant;
use tonic::transport::Channel;

use super::TokenError;

/// How often a verifier pulls revocations by default.
pub const REVOCATION_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest interval honoured, so a zero cannot turn every call into
/// a pull.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The longest one pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(2);

/// `last_attempt` before the first attempt.
const NEVER: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Tokens with a lower `cloudsec:generation` are revoked.
    min_generation: i64,
    /// After this (seconds) the entry covers no unexpired token.
    expires: i64,
}

#[derive(Debug)]
pub(crate) struct Revocations {
    client: AuthServiceClient<Channel>,
    interval: Duration,
    entries: RwLock<HashMap<String, Entry>>,
    /// The `server_time` of the last good pull: the next one's `since`.
    since: tokio::sync::Mutex<Option<prost_types::Timestamp>>,
    /// Milliseconds from `epoch` to the last pull attempt, or [`NEVER`].
    last_attempt: AtomicU64,
    epoch: Instant,
    pulled_once: AtomicBool,
    pulling: AtomicBool,
}

impl Revocations {
    pub(crate) fn new(client: AuthServiceClient<Channel>, interval: Duration) -> Self {
        Self {
            client,
            interval: interval.max(MIN_INTERVAL),
            entries: RwLock::new(HashMap::new()),
            since: tokio::sync::Mutex::new(None),
            last_attempt: AtomicU64::new(NEVER),
            epoch: Instant::now(),
            pulled_once: AtomicBool::new(false),
            pulling: AtomicBool::new(false),
        }
    }

    pub(crate) fn client(&self) -> AuthServiceClient<Channel> {
        self.client.clone()
    }

    fn due(&self) -> bool {
        let last = self.last_attempt.load(Ordering::Acquire);
        if last == NEVER {
            return true;
        }
        let elapsed = self.epoch.elapsed().as_millis();
        elapsed.saturating_sub(u128::from(last)) >= self.interval.as_millis()
    }

    /// Refuses a token of `sub` issued under `generation` that a
    /// revocation covers.
    pub(crate) async fn check(
        self: &Arc<Self>,
        sub: &str,
        generation: i64,
    ) -> Result<(), TokenError> {
        if self.due() {
            if self.pulled_once.load(Ordering::Acquire) {
                if !self.pulling.swap(true, Ordering::AcqRel) {
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        me.pull().await;
                        me.pulling.store(false, Ordering::Release);
                    });
                }
            } else {
                self.pull().await;
            }
        }
        let revoked = self
            .entries
            .read()
            .ok()
            .and_then(|entries| entries.get(sub).copied())
            .is_some_and(|entry| generation < entry.min_generation);
        if revoked {
            return Err(TokenError::Revoked);
        }
        Ok(())
    }

    async fn pull(&self) {
        let mut since = self.since.lock().await;
        // Another caller may have pulled while this one waited.
        if !self.due() {
            return;
        }
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.last_attempt.store(elapsed, Ordering::Release);
        let mut request = tonic::Request::new(ListTokenRevocationsRequest { since: *since });
        request.set_timeout(PULL_TIMEOUT);
        crate::grpc::propagate(&mut request);
        match self.client.clone().list_token_revocations(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let now = response.server_time.map_or(0, |t| t.seconds);
                if let Ok(mut entries) = self.entries.write() {
                    merge(&mut entries, &response.revocations, now);
                }
                *since = response.server_time;
                self.pulled_once.store(true, Ordering::Release);
            }
            Err(status) => {
                tracing::warn!(%status, "pulling token revocations failed; tokens revoked since the last pull still pass");
            }
        }
    }
}

/// Adds `pulled` to `entries` (a higher generation wins) and forgets what
/// has expired by `now`.
fn merge(entries: &mut HashMap<String, Entry>, pulled: &[TokenRevocation], now: i64) {
    for r in pulled {
        let entry = Entry {
            min_generation: r.min_generation,
            expires: r.expire_time.map_or(i64::MAX, |t| t.seconds),
        };
        entries
            .entry(r.user_id.clone())
            .and_modify(|e| {
                if entry.min_generation >= e.min_generation {
                    *e = entry;
                }
            })
            .or_insert(entry);
    }
    entries.retain(|_, e| e.expires > now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(user: &str, min_generation: i64, expires: i64) -> TokenRevocation {
        TokenRevocation {
            user_id: user.into(),
            min_generation,
            expire_time: Some(prost_types::Timestamp {
                seconds: expires,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn later_revocations_win_and_expired_ones_are_forgotten() {
        let mut entries = HashMap::new();
        merge(&mut entries, &[rev("a", 100, 1000), rev("b", 50, 200)], 10);
        assert_eq!(entries.len(), 2);
        // An overlapping pull repeats an older row: it must not lower the bar.
        merge(&mut entries, &[rev("a", 90, 990), rev("a", 120, 1020)], 20);
        assert_eq!(entries["a"].min_generation, 120);
        merge(&mut entries, &[], 500);
        assert_eq!(entries.len(), 1, "b expired at 200");
        assert!(entries.contains_key("a"));
    }
}
