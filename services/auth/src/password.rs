//! Password policy and argon2id hashing.
//!
//! Hashing is deliberately expensive (OWASP: 19 MiB, 2 passes), so it runs
//! on a bounded pool of low-priority threads with a bounded queue: a login
//! storm queues here (and beyond the queue is refused as busy) instead of
//! starving every other call of CPU and memory.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;

use crate::config::CpuList;
use crate::error::{AuthError, Result};

pub use crate::config::{MIN_LENGTH, PasswordPolicy};

pub const MAX_LENGTH: usize = 128;

/// Passwords that meet the length rule yet top every breach list.
const COMMON: &[&str] = &[
    "password1234",
    "123456789012",
    "qwertyuiopas",
    "passwordpassword",
    "iloveyou1234",
    "administrator",
    "letmein12345",
    "welcome12345",
    "qwerty123456",
    "changeme1234",
    "password123!",
    "trustno1trustno1",
];

/// How many of the four character classes `password` uses.
fn classes(password: &str) -> u8 {
    let has = |f: &dyn Fn(char) -> bool| u8::from(password.chars().any(f));
    has(&|c| c.is_lowercase())
        + has(&|c| c.is_uppercase())
        + has(&|c| c.is_ascii_digit())
        + has(&|c| !c.is_lowercase() && !c.is_uppercase() && !c.is_ascii_digit())
}

pub fn check_policy(
    field: &str,
    password: &str,
    email: &str,
    policy: &PasswordPolicy,
    violations: &mut FieldViolations,
) {
    let chars = password.chars().count();
    let min = policy.min_length.max(8);
    if chars < min {
        violations.add(field, format!("must be at least {min} characters"));
        return;
    }
    if classes(password) < policy.min_classes {
        violations.add(
            field,
            format!(
                "must mix at least {} of: lowercase, uppercase, digits, symbols",
                policy.min_classes
            ),
        );
    }
    if chars > MAX_LENGTH {
        violations.add(field, format!("must be at most {MAX_LENGTH} characters"));
        return;
    }
    if password.chars().all(|c| c.is_ascii_digit()) {
        violations.add(field, "must not be only digits");
    }
    let lower = password.to_lowercase();
    if let Some(local) = email.split('@').next()
        && local.len() >= 4
        && lower.contains(&local.to_lowercase())
    {
        violations.add(field, "must not contain the email name");
    }
    if COMMON.contains(&lower.as_str()) || password.chars().all(|c| password.starts_with(c)) {
        violations.add(field, "is too common");
        return;
    }
    // zxcvbn bundles the 30,000 most common passwords of public breaches,
    // names and common words, and scores keyboard walks, repeats, dates
    // and l33t variants of them; below 3 it takes fewer than 10^10 guesses.
    let local = email.split('@').next().unwrap_or_default();
    let estimate = zxcvbn::zxcvbn(password, &[email, local]);
    if (estimate.score() as u8) < 3 {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        violations.add(
            field,
            format!("is too easy to guess: a common or breached password or a simple pattern{why}"),
        );
    }
}

/// One password check or hash, run on a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// argon2id on a bounded pool of its own threads.
///
/// The threads run at a lower OS priority (nice +10 on Linux), so a storm of
/// logins takes the CPU the rest of the process leaves idle instead of
/// starving it: other requests preempt the hashing. Up to [`QUEUE`] jobs
/// wait; beyond that callers get [`AuthError::Busy`].
#[derive(Clone)]
pub struct Hasher {
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// A real hash of a random password, verified against when the email is
    /// unknown so that both paths cost the same.
    dummy: Arc<str>,
    /// argon2id verifications run, against a stored hash or the dummy.
    verified: Counter,
    /// Passwords hashed (sign-ups, resets, changes).
    hashed: Counter,
    /// Jobs refused because the queue was full.
    refused: Counter,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

/// How much lower than the rest of the process hashing threads run.
const HASH_NICE: i32 = 10;

/// Jobs that may wait for a hashing thread.
pub const QUEUE: usize = 1024;

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::thread::gettid();
        let current = rustix::process::getpriority_process(Some(me)).unwrap_or(0);
        if let Err(error) = rustix::process::setpriority_process(Some(me), current + HASH_NICE) {
            tracing::warn!(%error, "cannot lower the priority of a password hashing thread");
        }
    }
}

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| AuthError::Internal(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &[u8]) -> Result<String> {
    argon2()?
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Internal(format!("argon2 hash: {e}")))
}

fn verify_blocking(password: &[u8], phc: &str) -> Result<bool> {
    let parsed =
        PasswordHash::new(phc).map_err(|e| AuthError::Internal(format!("stored hash: {e}")))?;
    Ok(argon2()?.verify_password(password, &parsed).is_ok())
}

impl Hasher {
    /// `concurrency` hashing threads (see the type's doc), on `cpus` when
    /// given ([`AuthError::Config`] when the machine refuses them).
    pub async fn new(concurrency: usize, cpus: Option<&CpuList>) -> Result<Self> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let mut started = Vec::new();
        for n in 0..concurrency.max(1) {
            let queue = Arc::clone(&queue);
            let cpus = cpus.cloned();
            let (ready, pinned) = tokio::sync::oneshot::channel();
            started.push(pinned);
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    let pinned = cpus.as_ref().map_or(Ok(()), CpuList::pin_current_thread);
                    let refused = pinned.is_err();
                    let _ = ready.send(pinned);
                    if refused {
                        return;
                    }
                    lower_priority();
                    loop {
                        // The lock is held only while taking one job.
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            // Every `Hasher` clone is gone.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| AuthError::Internal(format!("cannot start a hashing thread: {e}")))?;
        }
        for pinned in started {
            pinned
                .await
                .map_err(|_| AuthError::Internal("a hashing thread failed to start".into()))?
                .map_err(|e| AuthError::Config(format!("auth.hash_cpus: {e}")))?;
        }
        let mut hasher = Self {
            jobs,
            dummy: Arc::from(""),
            verified: Counter::default(),
            hashed: Counter::default(),
            refused: Counter::default(),
        };
        let dummy = hasher
            .run(|| hash_blocking(uuid::Uuid::new_v4().as_bytes()))
            .await?;
        hasher.dummy = dummy.into();
        Ok(hasher)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.refused.inc();
                return Err(AuthError::Busy);
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(AuthError::Internal("the hashing threads stopped".into()));
            }
        }
        rx.await
            .map_err(|_| AuthError::Internal("a hashing thread failed".into()))?
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        let hashed = self.hashed.clone();
        self.run(move || {
            let phc = hash_blocking(password.as_bytes());
            hashed.inc();
            phc
        })
        .await
    }

    /// Whether `password` matches `phc`; with `None`, burns the same time
    /// against the dummy hash and answers false.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        let verified = self.verified.clone();
        let matched = self
            .run(move || {
                let matched = verify_blocking(password.as_bytes(), &phc);
                verified.inc();
                matched
            })
            .await?;
        Ok(known && matched)
    }

    /// argon2id verifications this hasher (and its clones) has run. An
    /// unknown email counts as one too: that is what makes it cost the same.
    pub fn verifications(&self) -> u64 {
        self.verified.get()
    }

    /// Exposes the hashing work on `metrics`: `auth_password_verifications_total`,
    /// `auth_password_hashes_total` and `auth_password_busy_total` (checks
    /// refused with `UNAVAILABLE` because the queue was full, the
    /// sign of a login storm).
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "auth_password_verifications",
            "argon2id password verifications, of a stored hash or the dummy one an unknown email costs",
            self.verified.clone(),
        );
        metrics.register(
            "auth_password_hashes",
            "passwords hashed (sign-ups, resets, changes)",
            self.hashed.clone(),
        );
        metrics.register(
            "auth_password_busy",
            "password checks refused because the hashing queue was full",
            self.refused.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full queue refuses at once, changes nothing, and is counted; once
    /// the thread is free again, checks run.
    #[tokio::test]
    async fn a_full_queue_refuses_and_counts_the_refusal() {
        let hasher = Hasher::new(1, None).await.unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        hasher
            .jobs
            .try_send(Box::new(move || {
                let _ = started.send(());
                let _ = blocked.recv();
            }))
            .unwrap();
        running.await.unwrap();
        for _ in 0..QUEUE - 1 {
            hasher.jobs.try_send(Box::new(|| ())).unwrap();
        }
        // The last in the queue says when the queue has drained.
        let (drained, empty) = tokio::sync::oneshot::channel();
        hasher
            .jobs
            .try_send(Box::new(move || {
                let _ = drained.send(());
            }))
            .unwrap();
        let before = hasher.verifications();
        let refused = hasher.verify("anything".into(), None).await.unwrap_err();
        assert!(matches!(refused, AuthError::Busy), "{refused:?}");
        assert!(matches!(
            hasher.hash("anything".into()).await,
            Err(AuthError::Busy)
        ));
        assert_eq!(hasher.refused.get(), 2);
        assert_eq!(hasher.verifications(), before);
        release.send(()).unwrap();
        empty.await.unwrap();
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
        assert_eq!(hasher.verifications(), before + 1);
    }

    /// An unknown email costs what a known one does only if the dummy hash
    /// was made with the parameters real hashes are.
    #[tokio::test]
    async fn the_dummy_hash_costs_what_a_real_one_does() {
        let hasher = Hasher::new(1, None).await.unwrap();
        let real = hasher.hash("correct horse battery".into()).await.unwrap();
        let (real, dummy) = (
            PasswordHash::new(&real).unwrap(),
            PasswordHash::new(&hasher.dummy).unwrap(),
        );
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        let before = hasher.verifications();
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
        assert_eq!(hasher.verifications(), before + 1);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let base = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let hasher = Hasher::new(1, None).await.unwrap();
        let theirs = hasher
            .run(|| {
                Ok(rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap())
            })
            .await
            .unwrap();
        assert_eq!(theirs, (base + HASH_NICE).min(19));
        let phc = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("wrong".into(), Some(phc)).await.unwrap());
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_keep_to_the_configured_cpus_and_refuse_missing_ones() {
        let mine = rustix::thread::sched_getaffinity(None).unwrap();
        let last = (0..rustix::thread::CpuSet::MAX_CPU)
            .rev()
            .find(|&c| mine.is_set(c))
            .unwrap();
        let list: CpuList = last.to_string().parse().unwrap();
        let hasher = Hasher::new(2, Some(&list)).await.unwrap();
        let theirs = hasher
            .run(|| Ok(rustix::thread::sched_getaffinity(None).unwrap()))
            .await
            .unwrap();
        let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| theirs.is_set(c))
            .collect();
        assert_eq!(cpus, [last]);
        let phc = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(phc))
                .await
                .unwrap()
        );
        // The caller's own CPUs are untouched.
        assert_eq!(rustix::thread::sched_getaffinity(None).unwrap(), mine);

        // A CPU the machine does not have, alone or beside one it has (the
        // kernel takes the latter silently).
        for text in ["1000", &format!("{last},1000")] {
            let list: CpuList = text.parse().unwrap();
            let err = Hasher::new(1, Some(&list)).await.unwrap_err();
            assert!(matches!(err, AuthError::Config(_)), "{err}");
            let message = err.to_string();
            assert!(message.starts_with("auth.hash_cpus: "), "{message}");
            assert!(message.contains("1000"), "{message}");
            assert!(message.contains("lets auth use"), "{message}");
        }
    }

    fn violations(password: &str) -> Vec<String> {
        let mut v = FieldViolations::new();
        check_policy(
            "password",
            password,
            "alice@example.com",
            &PasswordPolicy::default(),
            &mut v,
        );
        v.iter().map(|(_, d)| d.to_owned()).collect()
    }

    #[test]
    fn character_classes_when_asked() {
        assert_eq!(classes("correct horse battery"), 2);
        assert_eq!(classes("Correct-Horse-Battery-9"), 4);
        assert_eq!(classes("ÉTÉ été 2026"), 4);
        let strict = PasswordPolicy {
            min_length: 16,
            min_classes: 3,
        };
        let check = |p: &str| {
            let mut v = FieldViolations::new();
            check_policy("password", p, "alice@example.com", &strict, &mut v);
            v.iter().map(|(_, d)| d.to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(check("correct horse"), ["must be at least 16 characters"]);
        assert_eq!(
            check("correct horse battery staple"),
            ["must mix at least 3 of: lowercase, uppercase, digits, symbols"]
        );
        assert!(check("Correct horse battery staple").is_empty());
        let parsed: PasswordPolicy = toml::from_str("min_classes = 3").unwrap();
        assert_eq!(parsed.min_length, 12);
        assert!(toml::from_str::<PasswordPolicy>("min_clases = 3").is_err());
    }

    #[test]
    fn policy() {
        assert!(violations("correct horse battery").is_empty());
        assert_eq!(violations("short"), ["must be at least 12 characters"]);
        assert_eq!(
            violations(&"x".repeat(129)),
            ["must be at most 128 characters"]
        );
        assert!(violations("123456789012345").contains(&"must not be only digits".to_owned()));
        for weak in [
            "Password123456",
            "iloveyou12345",
            "qwertyuiopasdf",
            "monkey123456789",
        ] {
            let v = violations(weak);
            assert!(
                v.iter().any(|d| d.starts_with("is too easy to guess")),
                "{weak}: {v:?}"
            );
        }
        assert!(
            violations("my-alice-password").contains(&"must not contain the email name".to_owned())
        );
        assert!(violations("Password1234").contains(&"is too common".to_owned()));
        assert!(violations("aaaaaaaaaaaaaaa").contains(&"is too common".to_owned()));
    }

    #[tokio::test]
    async fn hashes_and_verifies() {
        let hasher = Hasher::new(2, None).await.unwrap();
        let phc = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse battery".into(), Some(phc))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("anything at all".into(), None).await.unwrap());
    }
}
