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
//! - `wire`: the streaming transcoder, JSON straight to protobuf wire
//!   bytes for the routes it can serve exactly like `transcode`.
//! - `render`: the reply half, protobuf wire bytes straight to the JSON
//!   `transcode` would write, falling back to it for anything else.
//! - [`codec`]: a tonic codec for descriptor-typed messages, and the
//!   gateway's client codec, which keeps replies as wire bytes.
//! - `admission`: per-method concurrency limits, a queue in front of
//!   expensive calls such as a login.
//! - [`error`]: [`GatewayError`] and the JSON error body, including rich
//!   `google.rpc` details.
//! - `server`: [`Gateway`]: building, the handler, the edge checks in
//!   order, access logs and draining shutdown.
//! - `table`: the route table from the descriptors.
//! - `edge`: the API key, limit and JWT checks of a routed request.
//! - `body`, `headers`: what a request may carry across the edge.
//! - `upstream`: the gRPC call behind a route and its answer as HTTP.
//! - `metrics`: the gateway's metric families and rejection reasons.
//! - [`limits`]: token buckets and quotas, in Redis or in process, with
//!   the fallback between them and an injectable [`Clock`].
//! - `policy`: API keys by hash and what each route demands.
//! - `jwt`: the edge JWT authorizer and its JWKS cache.
//! - `cors`: preflights and CORS response headers.
//! - `client`: the client's address, scheme and request id behind
//!   trusted proxies.
//! - `validate`: `google.api.field_behavior = REQUIRED` and
//!   `cloudsec.api.v1.field_rules` checks.
//! - `stream`: server-streaming responses as NDJSON or Server-Sent Events.
//! - `tls`: optional TLS termination on the REST listener.
//! - [`openapi`]: the OpenAPI 3.1 document from the descriptors.

#![forbid(unsafe_code)]

mod admission;
mod body;
mod client;
pub mod codec;
mod concurrency;
pub mod config;
mod console;
mod cors;
mod edge;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod jwt;
pub mod limits;
mod metrics;
pub mod openapi;
mod policy;
mod render;
mod routes;
mod server;
mod stream;
mod table;
#[cfg(test)]
mod test_support;
mod tls;
mod transcode;
mod upstream;
mod validate;
mod wire;

pub use codec::DynamicCodec;
pub use config::{
    ApiKey, Concurrency, ConfigError, CorsConfig, GatewayConfig, JwtConfig, ListenTls, RoutePolicy,
    Throttle, Upstream, UsagePlan,
};
pub use error::GatewayError;
pub use limits::{Clock, SystemClock};
pub use openapi::{openapi, openapi_for};
pub use server::Gateway;
pub use table::descriptor_pool;
pub use tls::ListenTlsError;
pub use validate::RuleError;
