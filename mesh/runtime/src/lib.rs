//! What every cloudsec service shares, so that each service's own crate
//! holds only its domain.
//!
//! # Layout
//! - [`config`]: typed, layered configuration (file, then `CLOUDSEC__...`).
//! - [`telemetry`]: JSON logs, OTLP traces, W3C trace-context propagation.
//! - [`metrics`]: the Prometheus registry and the gRPC metrics layer.
//! - [`admin`]: `/live`, `/ready` and `/metrics` over HTTP.
//! - `aws` (feature `aws`): where and as whom every AWS client connects.
//! - [`grpc`]: mTLS gRPC server and channel set-up, health, reflection,
//!   request ids, draining shutdown.
//! - [`host`]: one service process: listeners, health, serve, drain.
//! - [`page_token`]: the opaque, tenant- and query-bound page tokens of
//!   every list RPC.
//! - [`tls`]: the workload's certificate, key and trusted CA.
//! - [`db`]: SQLite or PostgreSQL connections and migrations.
//! - [`token`]: access-token verification against the auth service's JWKS.
//! - [`status`]: the one table from error kind to gRPC code and HTTP status.
//! - [`shutdown`]: the process-wide shutdown token.
//! - [`timer`]: a heartbeat that spares tokio's time driver a wake-up
//!   per request deadline.

pub mod admin;
#[cfg(feature = "aws")]
pub mod aws;
pub mod config;
pub mod db;
pub mod grpc;
pub mod host;
pub mod metrics;
pub mod page_token;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod timer;
pub mod tls;
pub mod token;

pub use config::{ConfigError, Secret};
pub use shutdown::Shutdown;
pub use status::{ErrorKind, FieldViolations, ServiceError, into_status};
