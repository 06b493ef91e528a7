//! Token-signing keys: where they are kept, when a new one is made, which
//! one signs and which ones the JWKS publishes.
//!
//! Rotation overlaps on both sides, so that no verifier ever meets a token
//! whose key it cannot find:
//! - a new key is **published** `publish_ahead` before it signs anything,
//!   so verifiers that cache the JWKS have it before the first token;
//! - a superseded key stays **published** for `retain` (the longest token
//!   lifetime plus clock leeway) after the next key took over, so tokens it
//!   signed verify until they expire; then it is deleted.
//!
//! Keys live in the auth database (the default) or in Vault KV v2 (one
//! secret, field `keys`, written with check-and-set so that replicas
//! rotating at the same moment add one key, not two). Every replica reloads
//! the set every `check_interval` and when the next key activates.
//!
//! In the database, private keys are sealed with envelope encryption under
//! the key-encryption key `encryption_key` (Vault transit, AWS KMS with
//! `[auth.signing.kms]`, or the local keystore of `cloudsec up`), bound to
//! their `kid` (and, on KMS, each data key to the kid as its encryption
//! context): a database dump holds no usable signing key. Rows written in the clear by an older version are
//! sealed when they are next loaded.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudsec_proto::auth::v1::Jwks;
use cloudsec_runtime::Shutdown;
use cloudsec_runtime::token::{Signer, TokenVerifier};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, QueryOrder, Set};
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::entity::signing_key;
use crate::error::{AuthError, Result};

pub use crate::config::{KeyStoreConfig, SigningConfig};

/// One signing key as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    /// PKCS#8 PEM.
    pub private_pem: String,
    pub created_at: DateTime<Utc>,
    /// From when it signs.
    pub activates_at: DateTime<Utc>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .finish_non_exhaustive()
    }
}

/// What the key set means at one instant (a pure function of the records,
/// the time and the policy; see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The key that signs now, if any is active.
    pub signing: Option<String>,
    /// The keys the JWKS publishes, newest first.
    pub published: Vec<String>,
    /// Keys past their overlap, to delete.
    pub expired: Vec<String>,
    /// Whether a new key should be made now.
    pub rotate: bool,
    /// The next instant at which the plan changes without a new key.
    pub next_change: Option<DateTime<Utc>>,
}

/// The rotation policy in chrono terms.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub rotation_period: chrono::Duration,
    pub publish_ahead: chrono::Duration,
    pub retain: chrono::Duration,
}

impl Policy {
    /// `retain` covers the longest token lifetime plus the verifiers'
    /// leeway and a margin for clock skew between replicas.
    pub fn new(config: &SigningConfig, longest_token: Duration) -> Self {
        let d = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        Self {
            rotation_period: d(config.rotation_period),
            publish_ahead: d(config.publish_ahead),
            retain: d(longest_token + Duration::from_secs(5 * 60)),
        }
    }
}

pub fn plan(records: &[KeyRecord], now: DateTime<Utc>, policy: &Policy) -> Plan {
    let mut sorted: Vec<&KeyRecord> = records.iter().collect();
    // Newest activation first; the kid breaks ties so every replica agrees.
    sorted.sort_by(|a, b| {
        b.activates_at
            .cmp(&a.activates_at)
            .then_with(|| b.kid.cmp(&a.kid))
    });
    // If no key is active yet (a replica whose clock runs behind the one
    // that made the first key), the earliest one signs rather than none.
    let signing = sorted
        .iter()
        .find(|r| r.activates_at <= now)
        .or_else(|| sorted.last())
        .copied();
    let mut published = Vec::new();
    let mut expired = Vec::new();
    let mut next_change: Option<DateTime<Utc>> = None;
    let mut note = |at: DateTime<Utc>| {
        if at > now && next_change.is_none_or(|n| at < n) {
            next_change = Some(at);
        }
    };
    // The activation of the key after `i` (sorted newest first): when `i`
    // stopped (or will stop) signing.
    for (i, record) in sorted.iter().enumerate() {
        let superseded_at = i
            .checked_sub(1)
            .and_then(|j| sorted.get(j))
            .map(|newer| newer.activates_at);
        note(record.activates_at);
        match superseded_at {
            Some(at) if at <= now => {
                let until = at + policy.retain;
                if until > now {
                    published.push(record.kid.clone());
                    note(until);
                } else {
                    expired.push(record.kid.clone());
                }
            }
            _ => published.push(record.kid.clone()),
        }
    }
    let newest_created = records.iter().map(|r| r.created_at).max();
    let rotate = match newest_created {
        None => true,
        Some(created) => {
            note(created + policy.rotation_period);
            created + policy.rotation_period <= now
        }
    };
    Plan {
        signing: signing.map(|r| r.kid.clone()),
        published,
        expired,
        rotate,
        next_change,
    }
}

/// Seals private keys for the database (see the module doc).
#[derive(Debug, Clone)]
pub struct KeySealer {
    envelope: Arc<cloudsec_secrets::Envelope>,
    key_name: String,
}

/// Marks a sealed `private_pem` column: the base64 of the JSON envelope.
const SEALED_PREFIX: &str = "sealed:v1:";

impl KeySealer {
    pub fn new(keys: Arc<dyn cloudsec_secrets::KeyService>, key_name: &str) -> Self {
        Self {
            // No caching: a key is sealed once and opened once per load.
            envelope: Arc::new(cloudsec_secrets::Envelope::new(
                keys,
                cloudsec_secrets::DataKeyCacheConfig {
                    max_entries: 0,
                    ..Default::default()
                },
            )),
            key_name: key_name.to_owned(),
        }
    }

    /// The sealer `config` names: over KMS with `[auth.signing.kms]`,
    /// else over the platform's key service; `None` (with a warning)
    /// without either, or when `encryption_key` is empty. A KMS key that
    /// does not exist (or KMS out of reach) stops the start.
    pub async fn from_config(
        config: &SigningConfig,
        secrets: Option<&cloudsec_secrets::Secrets>,
    ) -> Result<Option<Self>> {
        if config.encryption_key.is_empty() {
            if config.kms.is_some() {
                return Err(AuthError::Internal(
                    "auth.signing.kms: auth.signing.encryption_key must name the KMS key".into(),
                ));
            }
            return Ok(None);
        }
        if let Some(kms) = &config.kms {
            let keys = kms_keys(kms, &config.encryption_key, "auth.signing.kms").await?;
            return Ok(Some(Self::new(keys, &config.encryption_key)));
        }
        let Some(secrets) = secrets else {
            tracing::warn!(
                "no [secrets] back end: token signing keys and MFA secrets are stored in the \
                 clear in the auth database"
            );
            return Ok(None);
        };
        if let Some(client) = secrets.vault() {
            let transit = cloudsec_secrets::TransitKeys::new(client.clone(), &config.transit_mount);
            // Best effort: a least-privilege token may not create keys; the
            // operator has then made it.
            if let Err(error) = transit.ensure_key(&config.encryption_key).await {
                tracing::debug!(%error, key = %config.encryption_key, "cannot create the transit key (it may exist already)");
            }
        }
        Ok(Some(Self::new(
            secrets.key_service(&config.transit_mount),
            &config.encryption_key,
        )))
    }

    fn context(kid: &str) -> Vec<u8> {
        format!("cloudsec-auth-signing-key/{kid}").into_bytes()
    }

    /// What a signing key's data key is bound to at a key service that
    /// binds (KMS): its key id. CloudTrail logs it with every use.
    fn binding(kid: &str) -> cloudsec_secrets::KeyContext {
        cloudsec_secrets::KeyContext::default()
            .with("purpose", "auth-signing-key")
            .with("kid", kid)
    }

    async fn seal(&self, kid: &str, pem: &str) -> Result<String> {
        self.seal_bytes(&Self::context(kid), &Self::binding(kid), pem.as_bytes())
            .await
    }

    async fn open(&self, kid: &str, stored: &str) -> Result<String> {
        let pem = self
            .open_bytes(&Self::context(kid), &Self::binding(kid), stored)
            .await?;
        String::from_utf8(pem).map_err(|e| AuthError::Internal(format!("signing key {kid}: {e}")))
    }

    /// Whether the key service binds data keys to their context (KMS).
    fn binds(&self) -> bool {
        self.envelope.keys().binds_context()
    }

    /// Seals `plain`, bound to `context`: it opens only with the same one.
    /// A key service that binds data keys (KMS) also binds this one to
    /// `binding`; others ignore it, and the stored form stays as before.
    pub(crate) async fn seal_bytes(
        &self,
        context: &[u8],
        binding: &cloudsec_secrets::KeyContext,
        plain: &[u8],
    ) -> Result<String> {
        use base64::Engine;
        let binding = if self.binds() {
            binding.clone()
        } else {
            cloudsec_secrets::KeyContext::default()
        };
        let sealed = self
            .envelope
            .seal_bound(&self.key_name, plain, context, &binding)
            .await
            .map_err(seal_error)?;
        let json = serde_json::to_vec(&sealed).map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(json)
        ))
    }

    /// Opens what [`KeySealer::seal_bytes`] sealed under `context` and
    /// `binding`.
    pub(crate) async fn open_bytes(
        &self,
        context: &[u8],
        binding: &cloudsec_secrets::KeyContext,
        stored: &str,
    ) -> Result<Vec<u8>> {
        use base64::Engine;
        let bad = |why: String| AuthError::Internal(format!("sealed secret: {why}"));
        let b64 = stored
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| bad("not sealed".into()))?;
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(e.to_string()))?;
        let mut sealed: cloudsec_secrets::Sealed =
            serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
        if self.binds() {
            // The binding this row's identity implies, not the one stored
            // beside the ciphertext: a value copied to another kid or user
            // is refused by the key service itself.
            sealed.binding = binding.clone();
        }
        let plain = self
            .envelope
            .open(&sealed, context)
            .await
            .map_err(seal_error)?;
        Ok(plain.to_vec())
    }
}

/// KMS as a key service for `key_name` (`setting` names the section in
/// errors): the key is created with `create_keys`, and checked either way,
/// so a missing key or an unreachable KMS stops the start.
pub(crate) async fn kms_keys(
    kms: &cloudsec_secrets::KmsConfig,
    key_name: &str,
    setting: &str,
) -> Result<Arc<dyn cloudsec_secrets::KeyService>> {
    let keys = cloudsec_secrets::KmsKeys::connect(kms).await;
    let failed = |e: cloudsec_secrets::Error| {
        let what = format!("{setting}: key `{}`: {e}", keys.alias(key_name));
        if e.is_unavailable() {
            AuthError::Unavailable(what)
        } else {
            AuthError::Internal(what)
        }
    };
    if kms.create_keys {
        keys.ensure_key(key_name).await.map_err(failed)?;
    }
    keys.key_id(key_name).await.map_err(failed)?;
    Ok(Arc::new(keys))
}

fn seal_error(e: cloudsec_secrets::Error) -> AuthError {
    if e.is_unavailable() {
        AuthError::Unavailable(format!("sealing secrets: {e}"))
    } else {
        AuthError::Internal(format!("sealing secrets: {e}"))
    }
}

/// Marks a value [`KeySealer::seal_bytes`] made.
pub(crate) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The private keys' home.
#[derive(Debug, Clone)]
pub enum KeyStore {
    /// The `signing_keys` table; sealed when a sealer is given.
    Database {
        db: DatabaseConnection,
        sealer: Option<KeySealer>,
    },
    Vault {
        client: cloudsec_secrets::VaultClient,
        mount: String,
        path: String,
    },
}

/// A version of the stored set, for check-and-set writes.
type Version = u64;

impl KeyStore {
    /// The table, without sealing (tests, tools).
    pub fn database(db: DatabaseConnection) -> Self {
        Self::Database { db, sealer: None }
    }

    /// The store `config` names, with the platform's secrets back end:
    /// Vault KV needs Vault; the database seals with its key service.
    pub async fn from_config(
        config: &SigningConfig,
        db: &DatabaseConnection,
        secrets: Option<&cloudsec_secrets::Secrets>,
    ) -> Result<Self> {
        let vault = secrets.and_then(cloudsec_secrets::Secrets::vault);
        match &config.store {
            KeyStoreConfig::Database => {
                let sealer = KeySealer::from_config(config, secrets).await?;
                Ok(Self::Database {
                    db: db.clone(),
                    sealer,
                })
            }
            KeyStoreConfig::Vault { mount, path } => {
                let client = vault.cloned().ok_or_else(|| {
                    AuthError::Internal(
                        "auth.signing.store backend = \"vault\" needs a [secrets] section with \
                         backend = \"vault\""
                            .into(),
                    )
                })?;
                Ok(Self::Vault {
                    client,
                    mount: mount.clone(),
                    path: path.clone(),
                })
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Database { sealer: None, .. } => "the auth database (in the clear)".into(),
            Self::Database { .. } => "the auth database (sealed)".into(),
            Self::Vault { mount, path, .. } => format!("vault kv {mount}/{path}"),
        }
    }

    async fn load(&self) -> Result<(Vec<KeyRecord>, Version)> {
        match self {
            Self::Database { db, sealer } => {
                let rows = signing_key::Entity::find()
                    .order_by_desc(signing_key::Column::CreatedAt)
                    .all(db)
                    .await?;
                let mut records = Vec::with_capacity(rows.len());
                for k in rows {
                    let private_pem = match (sealer, k.private_pem.starts_with(SEALED_PREFIX)) {
                        (Some(s), true) => s.open(&k.kid, &k.private_pem).await?,
                        (None, true) => {
                            return Err(AuthError::Internal(format!(
                                "signing key {} is sealed but no [secrets] back end is \
                                 configured to open it",
                                k.kid
                            )));
                        }
                        (Some(s), false) => {
                            // Written in the clear by an older version:
                            // seal it now.
                            let sealed = s.seal(&k.kid, &k.private_pem).await?;
                            signing_key::ActiveModel {
                                kid: sea_orm::Unchanged(k.kid.clone()),
                                private_pem: Set(sealed),
                                ..Default::default()
                            }
                            .update(db)
                            .await?;
                            tracing::info!(kid = %k.kid, "sealed a signing key stored in the clear");
                            k.private_pem
                        }
                        (None, false) => k.private_pem,
                    };
                    records.push(KeyRecord {
                        activates_at: k.activates_at.unwrap_or(k.created_at),
                        kid: k.kid,
                        private_pem,
                        created_at: k.created_at,
                    });
                }
                Ok((records, 0))
            }
            Self::Vault {
                client,
                mount,
                path,
            } => {
                let body = match client
                    .request(reqwest::Method::GET, &format!("{mount}/data/{path}"), None)
                    .await
                {
                    Ok(body) => body,
                    Err(cloudsec_secrets::Error::Vault { status: 404, .. }) => {
                        return Ok((Vec::new(), 0));
                    }
                    Err(e) => return Err(vault_error(e)),
                };
                let version = body["data"]["metadata"]["version"].as_u64().unwrap_or(0);
                let keys = body["data"]["data"]["keys"].as_str().unwrap_or("[]");
                let records: Vec<KeyRecord> = serde_json::from_str(keys).map_err(|e| {
                    AuthError::Internal(format!(
                        "the signing keys at {mount}/{path} are not readable: {e}"
                    ))
                })?;
                Ok((records, version))
            }
        }
    }

    /// Writes `records` as the new set if it is still at `version`;
    /// `false` when another replica changed it first.
    async fn replace(
        &self,
        records: &[KeyRecord],
        added: Option<&KeyRecord>,
        removed: &[String],
        version: Version,
    ) -> Result<bool> {
        match self {
            Self::Database { db, sealer } => {
                if let Some(k) = added {
                    let private_pem = match sealer {
                        Some(s) => s.seal(&k.kid, &k.private_pem).await?,
                        None => k.private_pem.clone(),
                    };
                    signing_key::ActiveModel {
                        kid: Set(k.kid.clone()),
                        private_pem: Set(private_pem),
                        created_at: Set(k.created_at),
                        activates_at: Set(Some(k.activates_at)),
                    }
                    .insert(db)
                    .await?;
                }
                if !removed.is_empty() {
                    use sea_orm::{ColumnTrait, QueryFilter};
                    signing_key::Entity::delete_many()
                        .filter(signing_key::Column::Kid.is_in(removed.iter().cloned()))
                        .exec(db)
                        .await?;
                }
                Ok(true)
            }
            Self::Vault {
                client,
                mount,
                path,
            } => {
                let keys = serde_json::to_string(records)
                    .map_err(|e| AuthError::Internal(e.to_string()))?;
                let body = serde_json::json!({
                    "options": { "cas": version },
                    "data": { "keys": keys },
                });
                match client
                    .request(
                        reqwest::Method::POST,
                        &format!("{mount}/data/{path}"),
                        Some(&body),
                    )
                    .await
                {
                    Ok(_) => Ok(true),
                    // check-and-set mismatch: someone wrote first.
                    Err(cloudsec_secrets::Error::Vault { status: 400, .. }) => Ok(false),
                    Err(e) => Err(vault_error(e)),
                }
            }
        }
    }
}

fn vault_error(e: cloudsec_secrets::Error) -> AuthError {
    if e.is_unavailable() {
        AuthError::Unavailable(format!("signing keys: {e}"))
    } else {
        AuthError::Internal(format!("signing keys: {e}"))
    }
}

/// The signer and the JWKS in force.
#[derive(Debug)]
struct Active {
    signer: Arc<Signer>,
    jwks: Jwks,
    plan: Plan,
}

/// The live key set of one auth replica.
#[derive(Debug)]
pub struct KeyRing {
    store: KeyStore,
    policy: Policy,
    check_interval: Duration,
    clock: RwLock<Arc<dyn Clock>>,
    active: RwLock<Arc<Active>>,
    /// Parsed keys by kid: RSA parsing is slow and the set rarely changes.
    parsed: RwLock<HashMap<String, Arc<Signer>>>,
    /// Kept in step with the JWKS, for this service's own checks.
    verifier: Arc<TokenVerifier>,
}

impl KeyRing {
    /// Loads the set, making the first key if there is none (it signs at
    /// once: no verifier can have cached an older set).
    pub async fn open(
        store: KeyStore,
        policy: Policy,
        check_interval: Duration,
        verifier: Arc<TokenVerifier>,
    ) -> Result<Arc<Self>> {
        Self::open_with_clock(
            store,
            policy,
            check_interval,
            verifier,
            Arc::new(SystemClock),
        )
        .await
    }

    pub async fn open_with_clock(
        store: KeyStore,
        policy: Policy,
        check_interval: Duration,
        verifier: Arc<TokenVerifier>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>> {
        let (records, plan) = settle(&store, &policy, clock.as_ref()).await?;
        let mut parsed = HashMap::new();
        let active = build_active(&records, plan, &mut parsed)?;
        crate::metrics::signing_keys(&records, &active.plan, policy.rotation_period);
        verifier.set_keys(&active.jwks);
        Ok(Arc::new(Self {
            store,
            policy,
            check_interval,
            clock: RwLock::new(clock),
            active: RwLock::new(Arc::new(active)),
            parsed: RwLock::new(parsed),
            verifier,
        }))
    }

    /// Reads time from `clock` from now on (tests).
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.write().unwrap_or_else(|p| p.into_inner()) = clock;
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.read().unwrap_or_else(|p| p.into_inner()).now()
    }

    fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The key that signs now.
    pub fn signer(&self) -> Arc<Signer> {
        self.active().signer.clone()
    }

    /// The keys that verify this service's tokens now.
    pub fn jwks(&self) -> Jwks {
        self.active().jwks.clone()
    }

    /// The plan in force (which key signs, which are published).
    pub fn plan(&self) -> Plan {
        self.active().plan.clone()
    }

    /// Adds a key that activates after `publish_ahead` (or at once with
    /// `immediately`, for a compromised key: tokens signed by the old key
    /// keep verifying only if it is not also removed). Returns its kid.
    pub async fn rotate(&self, immediately: bool) -> Result<String> {
        loop {
            let (records, version) = self.store.load().await?;
            let now = self.now();
            let activates = if immediately || records.is_empty() {
                now
            } else {
                now + self.policy.publish_ahead
            };
            let key = generate(now, activates).await?;
            let mut next = records.clone();
            next.push(key.clone());
            if self.store.replace(&next, Some(&key), &[], version).await? {
                tracing::info!(kid = %key.kid, activates_at = %key.activates_at, store = %self.store.describe(), "new token signing key");
                self.refresh().await?;
                return Ok(key.kid);
            }
        }
    }

    /// Reloads the set: rotates if due, deletes keys past their overlap and
    /// applies the plan.
    pub async fn refresh(&self) -> Result<()> {
        let clock = self.clock.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (records, plan) = settle(&self.store, &self.policy, clock.as_ref()).await?;
        let active = {
            let mut parsed = self.parsed.write().unwrap_or_else(|p| p.into_inner());
            build_active(&records, plan, &mut parsed)?
        };
        crate::metrics::signing_keys(&records, &active.plan, self.policy.rotation_period);
        self.verifier.set_keys(&active.jwks);
        if self.active().plan != active.plan {
            tracing::debug!(signing = ?active.plan.signing, published = ?active.plan.published, "signing keys in force");
        }
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(active);
        Ok(())
    }

    /// Reloads every `check_interval` and at each planned change until
    /// `shutdown`; failures are logged and the current keys keep serving.
    pub fn spawn(self: &Arc<Self>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let ring = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let mut wait = ring.check_interval;
                if let Some(at) = ring.plan().next_change {
                    let until = (at - ring.now()).to_std().unwrap_or_default();
                    wait = wait.min(until + Duration::from_millis(50));
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                if let Err(error) = ring.refresh().await {
                    tracing::error!(%error, "cannot reload the token signing keys; the current ones keep serving");
                }
            }
        })
    }
}

/// Loads the set and makes it current: adds a key when rotation is due,
/// deletes keys past their overlap (with check-and-set on Vault, retried
/// when another replica wrote first), and returns the set and its plan.
async fn settle(
    store: &KeyStore,
    policy: &Policy,
    clock: &dyn Clock,
) -> Result<(Vec<KeyRecord>, Plan)> {
    for _ in 0..5 {
        let (mut records, version) = store.load().await?;
        let now = clock.now();
        let p = plan(&records, now, policy);
        if !p.rotate && p.expired.is_empty() {
            return Ok((records, p));
        }
        let added = if p.rotate {
            // The first key signs at once (no verifier has an older set);
            // later ones after the publication period.
            let activates = if records.is_empty() {
                now
            } else {
                now + policy.publish_ahead
            };
            Some(generate(now, activates).await?)
        } else {
            None
        };
        records.retain(|r| !p.expired.contains(&r.kid));
        records.extend(added.clone());
        if store
            .replace(&records, added.as_ref(), &p.expired, version)
            .await?
        {
            if let Some(k) = &added {
                tracing::info!(kid = %k.kid, activates_at = %k.activates_at, store = %store.describe(), "rotated token signing key");
            }
            for kid in &p.expired {
                tracing::info!(%kid, "deleted retired token signing key");
            }
            let p = plan(&records, now, policy);
            return Ok((records, p));
        }
    }
    Err(AuthError::Internal(
        "the signing keys changed under five writes in a row".into(),
    ))
}

fn build_active(
    records: &[KeyRecord],
    plan: Plan,
    parsed: &mut HashMap<String, Arc<Signer>>,
) -> Result<Active> {
    parsed.retain(|kid, _| records.iter().any(|r| &r.kid == kid));
    for r in records {
        if !parsed.contains_key(&r.kid) {
            match Signer::from_pem(&r.kid, &r.private_pem) {
                Ok(s) => {
                    parsed.insert(r.kid.clone(), Arc::new(s));
                }
                Err(error) => {
                    tracing::warn!(kid = %r.kid, %error, "skipping unreadable signing key")
                }
            }
        }
    }
    let signer = plan
        .signing
        .as_ref()
        .and_then(|kid| parsed.get(kid).cloned())
        .ok_or_else(|| AuthError::Internal("no usable signing key is active".into()))?;
    let jwks = Jwks {
        keys: plan
            .published
            .iter()
            .filter_map(|kid| parsed.get(kid).map(|s| s.jwk().clone()))
            .collect(),
    };
    Ok(Active { signer, jwks, plan })
}

async fn generate(created_at: DateTime<Utc>, activates_at: DateTime<Utc>) -> Result<KeyRecord> {
    let signer = tokio::task::spawn_blocking(Signer::generate)
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))??;
    Ok(KeyRecord {
        kid: signer.kid().to_owned(),
        private_pem: signer.pem().to_owned(),
        created_at,
        activates_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn record(kid: &str, created: i64, activates: i64) -> KeyRecord {
        KeyRecord {
            kid: kid.into(),
            private_pem: String::new(),
            created_at: at(created),
            activates_at: at(activates),
        }
    }

    fn policy() -> Policy {
        Policy {
            rotation_period: chrono::Duration::seconds(1000),
            publish_ahead: chrono::Duration::seconds(100),
            retain: chrono::Duration::seconds(300),
        }
    }

    #[test]
    fn an_empty_set_rotates() {
        let p = plan(&[], at(0), &policy());
        assert!(p.rotate);
        assert_eq!(p.signing, None);
    }

    #[test]
    fn a_new_key_is_published_before_it_signs_and_the_old_one_after() {
        let keys = [record("a", 0, 0), record("b", 1000, 1100)];
        // Before b activates: a signs, both are published.
        let p = plan(&keys, at(1050), &policy());
        assert_eq!(p.signing.as_deref(), Some("a"));
        assert_eq!(p.published, ["b", "a"]);
        assert!(!p.rotate);
        assert_eq!(p.next_change, Some(at(1100)));
        // b signs; a stays published for `retain` after b took over.
        let p = plan(&keys, at(1100), &policy());
        assert_eq!(p.signing.as_deref(), Some("b"));
        assert_eq!(p.published, ["b", "a"]);
        assert_eq!(p.next_change, Some(at(1400)));
        let p = plan(&keys, at(1399), &policy());
        assert_eq!(p.published, ["b", "a"]);
        // Then a is retired.
        let p = plan(&keys, at(1400), &policy());
        assert_eq!(p.published, ["b"]);
        assert_eq!(p.expired, ["a"]);
    }

    #[test]
    fn rotation_is_due_a_period_after_the_newest_key() {
        let keys = [record("a", 0, 0)];
        assert!(!plan(&keys, at(999), &policy()).rotate);
        assert_eq!(plan(&keys, at(999), &policy()).next_change, Some(at(1000)));
        assert!(plan(&keys, at(1000), &policy()).rotate);
        // A pending key counts: no second rotation while it waits.
        let keys = [record("a", 0, 0), record("b", 1000, 1100)];
        assert!(!plan(&keys, at(1050), &policy()).rotate);
    }

    #[test]
    fn a_clock_behind_the_first_key_still_signs_with_it() {
        let keys = [record("a", 10, 10)];
        assert_eq!(plan(&keys, at(5), &policy()).signing.as_deref(), Some("a"));
    }

    #[test]
    fn an_immediate_key_supersedes_at_once() {
        let keys = [record("a", 0, 0), record("b", 500, 500)];
        let p = plan(&keys, at(500), &policy());
        assert_eq!(p.signing.as_deref(), Some("b"));
        assert_eq!(p.published, ["b", "a"]);
    }
}
