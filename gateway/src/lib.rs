//! The cloudsec edge gateway: it turns REST/JSON requests into gRPC calls
//! to the services, reading nothing but the contracts' descriptors.
//!
//! Every method whose service has an upstream and whose options carry a
//! `google.api.http` rule (plus its `additional_bindings`) becomes a route;
//! a new annotated RPC appears on REST without a change here. Requests are
//! transcoded with the proto3 JSON mapping, sent over the mesh's mTLS with
//! the caller's `authorization`, a request id and W3C trace context, and
//! errors come back as grpc-gateway style JSON with the HTTP status from the
//! platform's one status table.
//!
//! # Layout
//! - [`config`]: [`GatewayConfig`] and [`Upstream`].
//! - `routes`: path template parsing (`{a.b=x/*}`, `*`, `**`, `:verb`),
//!   matching and the most-specific-first route table.
//! - `transcode`: JSON body, path variables and query parameters into a
//!   request message; the response message back into JSON.
//! - [`codec`]: a tonic codec for descriptor-typed messages.
//! - [`error`]: [`GatewayError`] and the JSON error body, including rich
//!   `google.rpc` details.
//! - `server`: [`Gateway`]: building, the handler, the upstream call,
//!   metrics, access logs and draining shutdown.

#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod error;
mod routes;
mod server;
mod transcode;

pub use codec::DynamicCodec;
pub use config::{GatewayConfig, Upstream};
pub use error::GatewayError;
pub use server::Gateway;
