//! The cloudsec platform, wired: the configuration file's shape and its
//! loading, the one function per component that builds it (shared by
//! `cloudsec serve` and `cloudsec up`), and the one-process platform that
//! `cloudsec up` runs and the end-to-end tests start.
//!
//! The command line (`src/main.rs` and `src/cmd/`) only parses arguments
//! and calls in here; the components themselves live in their own crates.
//!
//! # Layout
//! - [`config`]: [`PlatformConfig`] and its sections, layered loading,
//!   `vault:` references, `cloudsec config check`.
//! - [`wiring`]: one builder per component (auth, documents, audit,
//!   gateway, the sidecar's identity).
//! - [`platform`]: [`LocalPlatform`], every component behind its sidecar in
//!   one process, and its ordered drain.
//! - [`credentials`]: Vault database logins for each component.
//! - [`data`]: the private data directory of `cloudsec up`.
//! - [`mailer`]: the development mailer that logs codes.
//! - [`call`]: `cloudsec call` and `cloudsec cert` against a running
//!   platform.
//! - [`error`]: why the platform could not start ([`PlatformError`]).

pub mod call;
pub mod config;
pub mod credentials;
pub mod data;
pub mod error;
pub mod mailer;
pub mod platform;
pub mod wiring;

pub use config::{
    Component, CredentialsFor, IssuerConfig, LoadedConfig, LocalConfigError, LogFormatName,
    MeshConfig, PlatformConfig, TelemetryConfig, TokensConfig, load_config, local_config,
    local_secrets,
};
pub use credentials::start_database_credentials;
pub use data::private_dir;
pub use error::PlatformError;
pub use platform::{Addresses, LocalPlatform};
pub use wiring::mesh_identity;
