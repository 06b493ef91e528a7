//! The route table from the descriptors: every method with a
//! `google.api.http` rule (and its additional bindings) whose service has
//! an upstream becomes a [`Target`], with what its route demands at the
//! edge.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use cloudsec_proto::google::api::{HttpRule, http_rule::Pattern};
use cloudsec_runtime::grpc::GrpcError;
use cloudsec_runtime::tls::MeshTls;
use http::uri::PathAndQuery;
use http::{Method, StatusCode};
use prost_reflect::{DescriptorPool, DynamicMessage, ExtensionDescriptor, MethodDescriptor};
use tonic::transport::Channel;

use crate::admission::Admission;
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::policy::{RouteEdge, option_scopes, scopes_extension};
use crate::routes::{PathTemplate, RouteTable};
use crate::transcode::Binding;

/// Where a route's requests go.
#[derive(Debug)]
pub(crate) struct Target {
    /// `pkg.Service/Method`, for logs and the route listing.
    pub(crate) full_method: String,
    pub(crate) grpc_path: PathAndQuery,
    pub(crate) binding: Arc<Binding>,
    pub(crate) method: MethodDescriptor,
    /// Server streaming: answered as NDJSON or Server-Sent Events.
    pub(crate) streaming: bool,
    pub(crate) channel: Channel,
    /// What the route demands at the edge.
    pub(crate) edge: RouteEdge,
    /// The method's turns, shared by its routes, when it has a
    /// concurrency limit.
    pub(crate) admission: Option<Arc<Admission>>,
}

impl Target {
    /// The HTTP status of a successful call: 200 unless overridden.
    pub(crate) fn ok_status(&self) -> StatusCode {
        self.edge
            .status_overrides
            .get(&(tonic::Code::Ok as i32))
            .copied()
            .unwrap_or(StatusCode::OK)
    }
}

/// One pool from several encoded `FileDescriptorSet`s, as the gateway
/// reads them (for [`crate::openapi::openapi`] too).
pub fn descriptor_pool(descriptor_sets: &[&[u8]]) -> Result<DescriptorPool, GatewayError> {
    let mut pool = DescriptorPool::new();
    for (index, set) in descriptor_sets.iter().enumerate() {
        // Decoding from bytes (not from prost_types) keeps the extension
        // options; files already in the pool (shared imports) are skipped.
        pool.decode_file_descriptor_set(*set)
            .map_err(|source| GatewayError::Descriptors { index, source })?;
    }
    Ok(pool)
}

/// The method's `google.api.http` rule and its additional bindings (whose
/// own additional bindings are ignored, as http.proto says).
pub(crate) fn http_rules(
    method: &MethodDescriptor,
    extension: &ExtensionDescriptor,
) -> Result<Vec<HttpRule>, GatewayError> {
    let Some(value) = method.options().take_extension(extension) else {
        return Ok(Vec::new());
    };
    let rule: HttpRule = value
        .as_message()
        .map(DynamicMessage::transcode_to)
        .transpose()
        .map_err(|error| GatewayError::Template {
            method: method.full_name().to_owned(),
            template: String::new(),
            reason: format!("cannot decode google.api.http: {error}"),
        })?
        .unwrap_or_default();
    let mut rules = vec![rule.clone()];
    rules.extend(rule.additional_bindings.into_iter().map(|mut r| {
        r.additional_bindings.clear();
        r
    }));
    Ok(rules)
}

pub(crate) fn pattern(rule: &HttpRule) -> Result<(Method, &str), String> {
    Ok(match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::GET, p),
        Some(Pattern::Put(p)) => (Method::PUT, p),
        Some(Pattern::Post(p)) => (Method::POST, p),
        Some(Pattern::Delete(p)) => (Method::DELETE, p),
        Some(Pattern::Patch(p)) => (Method::PATCH, p),
        Some(Pattern::Custom(custom)) => (
            Method::from_bytes(custom.kind.as_bytes())
                .map_err(|_| format!("invalid custom method `{}`", custom.kind))?,
            &custom.path,
        ),
        None => return Err("the rule has no pattern".to_owned()),
    })
}

pub(crate) fn build_channels(
    pool: &DescriptorPool,
    config: &GatewayConfig,
    mesh: &MeshTls,
) -> Result<BTreeMap<String, Channel>, GatewayError> {
    let mut channels = BTreeMap::new();
    for (service, upstream) in &config.upstreams {
        if pool.get_service_by_name(service).is_none() {
            tracing::warn!(%service, "upstream configured for a service no descriptor defines");
        }
        let channel = cloudsec_runtime::grpc::channel(&upstream.uri, &upstream.server_name, mesh)
            .map_err(|source| match source {
            GrpcError::Tls(_) => GatewayError::Tls {
                service: service.clone(),
                source,
            },
            _ => GatewayError::Upstream {
                service: service.clone(),
                source,
            },
        })?;
        channels.insert(service.clone(), channel);
    }
    Ok(channels)
}

pub(crate) fn build_table(
    pool: &DescriptorPool,
    config: &GatewayConfig,
    channels: &BTreeMap<String, Channel>,
) -> Result<RouteTable<Target>, GatewayError> {
    let mut table = RouteTable::default();
    let Some(extension) = pool.get_extension_by_name("google.api.http") else {
        tracing::warn!("no descriptor imports google/api/annotations.proto: no routes");
        return Ok(table);
    };
    let scopes = scopes_extension(pool);
    let authentication = crate::policy::authentication_extension(pool);
    for service in pool.services() {
        let channel = channels.get(service.full_name());
        let mut unrouted = 0;
        for method in service.methods() {
            let rules = http_rules(&method, &extension)?;
            if rules.is_empty() {
                continue;
            }
            let Some(channel) = channel else {
                unrouted += 1;
                continue;
            };
            if method.is_client_streaming() {
                // HTTP/JSON has no agreed way to send a stream of requests
                // (grpc-gateway's newline-delimited bodies are not
                // supported here).
                tracing::warn!(
                    method = method.full_name(),
                    "client-streaming methods are not transcoded: no route"
                );
                continue;
            }
            let contract_scopes = option_scopes(&method, scopes.as_ref());
            let tokenless =
                crate::policy::option_authentication(&method, authentication.as_ref()).tokenless();
            let full_method = format!("{}/{}", service.full_name(), method.name());
            let edge = RouteEdge::resolve(
                config,
                service.full_name(),
                method.name(),
                &contract_scopes,
                tokenless,
            );
            let admission = edge
                .concurrency
                .map(|limit| Arc::new(Admission::new(&limit)));
            let grpc_path = PathAndQuery::from_maybe_shared(Bytes::from(format!("/{full_method}")))
                .map_err(|error| GatewayError::Template {
                    method: full_method.clone(),
                    template: String::new(),
                    reason: format!("method name is not a valid path: {error}"),
                })?;
            for rule in rules {
                let bad = |template: &str, reason: String| GatewayError::Template {
                    method: full_method.clone(),
                    template: template.to_owned(),
                    reason,
                };
                let (http_method, path) = pattern(&rule).map_err(|r| bad("", r))?;
                let template = PathTemplate::parse(path).map_err(|e| bad(path, e.to_string()))?;
                let binding = Binding::new(
                    &method,
                    &http_method,
                    &template,
                    &rule.body,
                    &rule.response_body,
                )
                .map_err(|r| bad(path, r))?;
                table.insert(
                    http_method,
                    template,
                    Target {
                        full_method: full_method.clone(),
                        grpc_path: grpc_path.clone(),
                        binding: Arc::new(binding),
                        method: method.clone(),
                        streaming: method.is_server_streaming(),
                        channel: channel.clone(),
                        edge: edge.clone(),
                        admission: admission.clone(),
                    },
                );
            }
        }
        if unrouted > 0 {
            tracing::warn!(
                service = service.full_name(),
                methods = unrouted,
                "annotated service has no upstream: no routes"
            );
        }
    }
    Ok(table)
}
