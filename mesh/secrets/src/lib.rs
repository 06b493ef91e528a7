//! Secrets, keys and certificates for cloudsec services, from HashiCorp
//! Vault / OpenBao in production and from an embedded encrypted keystore
//! for `cloudsec up`.
//!
//! The design puts secrets in `mesh/runtime`; this is a separate small crate
//! so that vaultrs (and its HTTP client) is compiled only into binaries that
//! talk to Vault, not into every crate that depends on the runtime. It
//! depends on `cloudsec-identity` (for the `Issuer` trait) and so on the
//! runtime, which therefore cannot depend on it: the code that loads a
//! service's configuration (the CLI, a service's `main`) resolves `vault:`
//! references with [`resolve_toml`] before typed deserialization.
//! Its own secret strings are the runtime's [`Secret`], so resolved values
//! drop into existing configuration types.
//!
//! # Layout
//! - [`setup`]: [`Secrets::from_config`], one call from a `[secrets]`
//!   section to a provider, a key service and (with Vault) the client.
//! - [`config`]: `SecretsConfig`, `VaultConfig` (address, auth method,
//!   namespace, CA, timeouts, start-up retry) and the cache settings.
//! - [`vault`]: [`VaultClient`]: login (token, AppRole, Kubernetes),
//!   renewal at two thirds of the TTL, login again on expiry.
//! - [`reference`](mod@reference): `vault:<mount>/<path>#<field>` references and
//!   [`resolve_toml`] for configuration trees.
//! - [`provider`]: the [`SecretsProvider`] interface; [`kv`] implements it
//!   on KV v2 ([`VaultSecrets`]), [`keystore`] on the local encrypted file
//!   ([`LocalKeystore`]).
//! - [`envelope`]: envelope encryption ([`Envelope`], [`Sealed`]), the
//!   [`KeyService`] interface (keys by name: which key protects what is
//!   the owning service's policy), the bounded data-key cache, rotation, rewrap and shredding; [`transit`]
//!   implements the key service on Vault transit ([`TransitKeys`]),
//!   [`local_keys`] on the local keystore ([`LocalKeys`]), [`kms`] on AWS
//!   KMS ([`KmsKeys`], data keys bound to a [`KeyContext`]).
//! - [`pki`]: [`pki::VaultPki`], Vault's PKI engine as the mesh's
//!   `cloudsec_identity::Issuer` (kept here so mesh/identity stays light).
//! - [`database`]: [`database::DbCredentials`], dynamic PostgreSQL
//!   credentials from Vault's database engine, renewed and replaced before
//!   they expire and published on a watch channel.
//! - `test_util` (feature `test-util`): an OpenBao dev server for tests
//!   and a proxy that cuts the connection to it.
//! - `docs/security.md` in the repository describes the whole model.

pub mod config;
pub mod database;
pub mod envelope;
pub mod error;
pub mod keystore;
pub mod kms;
pub mod kv;
pub mod local_keys;
pub mod pki;
pub mod provider;
pub mod reference;
pub mod setup;
pub mod transit;
pub mod vault;

mod aead;

#[cfg(feature = "test-util")]
pub mod test_util;

pub use cloudsec_runtime::Secret;
pub use config::{CacheConfig, RetryConfig, SecretsConfig, VaultAuth, VaultConfig};
pub use envelope::{
    DataKey, DataKeyCacheConfig, Envelope, KeyContext, KeyService, RewrapReport, Sealed,
    document_context,
};
pub use error::{Error, Result};
pub use keystore::LocalKeystore;
pub use kms::{KmsConfig, KmsKeys};
pub use kv::VaultSecrets;
pub use local_keys::LocalKeys;
pub use provider::SecretsProvider;
pub use reference::{SecretRef, resolve_toml};
pub use setup::Secrets;
pub use transit::TransitKeys;
pub use vault::VaultClient;
