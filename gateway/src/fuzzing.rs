//! Entry points for the cargo-fuzz targets in `gateway/fuzz` and the
//! benchmark example (feature `fuzzing`). Not an API: it exists because
//! those are separate crates and the parser and transcoder are private.
//!
//! Each function must return normally for every input; a panic is a bug.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};

use crate::error::GatewayError;
use crate::routes::{PathTemplate, RouteTable, decode};
use crate::table::{descriptor_pool, http_rules, pattern};
use crate::transcode::{Binding, parse_query};
use crate::validate::{Validator, behavior_extension, rules_extension};

/// Parses `template`, then matches `path` against it alone and in a table
/// with a few fixed routes.
pub fn path_template(template: &str, path: &str) {
    let _ = decode(path, true);
    let _ = decode(path, false);
    let _ = parse_query(path);
    let Ok(parsed) = PathTemplate::parse(template) else {
        return;
    };
    let _ = parsed.matches(path);
    let _ = parsed.variables().count();
    let mut table = RouteTable::default();
    table.insert(http::Method::GET, parsed, 0);
    for (i, fixed) in [
        "/v1/items/{id}",
        "/v1/{name=shelves/*}/books/{book=**}",
        "/v1/items:watch",
    ]
    .iter()
    .enumerate()
    {
        if let Ok(fixed) = PathTemplate::parse(fixed) {
            table.insert(http::Method::POST, fixed, i + 1);
        }
    }
    let _ = table.find(&http::Method::GET, path);
    let _ = table.find(&http::Method::POST, path);
    let _ = table.methods(path);
}

/// Every route's binding of a set of contracts, and their validator.
#[derive(Debug)]
pub struct Transcoder {
    bindings: Vec<Binding>,
    validator: Validator,
}

impl Transcoder {
    /// Bindings for every `google.api.http` rule in `descriptor_sets`.
    pub fn new(descriptor_sets: &[&[u8]]) -> Result<Self, GatewayError> {
        let pool: DescriptorPool = descriptor_pool(descriptor_sets)?;
        let mut bindings = Vec::new();
        if let Some(extension) = pool.get_extension_by_name("google.api.http") {
            for method in pool
                .services()
                .flat_map(|s| s.methods().collect::<Vec<_>>())
            {
                for rule in http_rules(&method, &extension)? {
                    let Ok((http_method, path)) = pattern(&rule) else {
                        continue;
                    };
                    let Ok(template) = PathTemplate::parse(path) else {
                        continue;
                    };
                    if let Ok(binding) = Binding::new(
                        &method,
                        &http_method,
                        &template,
                        &rule.body,
                        &rule.response_body,
                    ) {
                        bindings.push(binding);
                    }
                }
            }
        }
        let validator = Validator::new(
            bindings.iter().map(Binding::input),
            behavior_extension(&pool).as_ref(),
            rules_extension(&pool).as_ref(),
        )?;
        Ok(Self {
            bindings,
            validator,
        })
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Builds route `route`'s request from the pieces as the gateway does,
    /// validates it, and renders it back to JSON, which must parse again
    /// as the same message: the transcoder never writes JSON it would
    /// refuse. The error says how that property failed; the fuzz target
    /// turns it into a crash.
    pub fn request(
        &self,
        route: usize,
        captures: &[String],
        query: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let Some(binding) = self.bindings.get(route % self.bindings.len().max(1)) else {
            return Ok(());
        };
        for deny_unknown in [true, false] {
            let reference = binding.request(captures, Some(query), body, deny_unknown);
            if let Some(wire) = binding.request_wire(captures, Some(query), body, deny_unknown) {
                crate::wire::same_request(&binding.input(), &reference, &wire)?;
            }
            let Ok(message) = reference else {
                continue;
            };
            let _ = self.validator.violations(&message);
            let json = serde_json::to_vec(&message)
                .map_err(|error| format!("cannot render an accepted request: {error}"))?;
            let mut de = serde_json::Deserializer::from_slice(&json);
            let again =
                DynamicMessage::deserialize(message.descriptor(), &mut de).map_err(|error| {
                    format!(
                        "rendered JSON does not parse back: {error}: {}",
                        String::from_utf8_lossy(&json)
                    )
                })?;
            // Compared as JSON values: maps have no order, and NaN is not
            // equal to itself as a number but is as the string "NaN".
            let first: serde_json::Value = serde_json::from_slice(&json)
                .map_err(|error| format!("rendered JSON is not JSON: {error}"))?;
            let second = serde_json::to_value(&again)
                .map_err(|error| format!("cannot render the parsed request: {error}"))?;
            if first != second {
                return Err(format!(
                    "the round trip changed the request: {first} became {second}"
                ));
            }
        }
        Ok(())
    }

    /// Route `route`'s request from a JSON body, transcoded and validated
    /// as the gateway does before a call, as the protobuf bytes it would
    /// send.
    pub fn to_protobuf(&self, route: usize, body: &[u8]) -> Result<Vec<u8>, String> {
        let binding = self
            .bindings
            .get(route)
            .ok_or_else(|| format!("no route #{route}"))?;
        let check = |message: &DynamicMessage| match self.validator.violations(message).first() {
            Some(first) => Err(format!("{}: {}", first.field, first.description)),
            None => Ok(()),
        };
        if let Some(bytes) = binding.request_wire(&[], None, body, true) {
            let bytes = bytes?;
            if self.validator.checks(&binding.input()) {
                let message = DynamicMessage::decode(binding.input(), bytes.as_slice())
                    .map_err(|e| e.to_string())?;
                check(&message)?;
            }
            return Ok(bytes);
        }
        self.to_protobuf_reference(route, body)
    }

    /// [`Transcoder::to_protobuf`] through the reference transcoder (a
    /// `DynamicMessage`, then encoded), whatever the route.
    pub fn to_protobuf_reference(&self, route: usize, body: &[u8]) -> Result<Vec<u8>, String> {
        let binding = self
            .bindings
            .get(route)
            .ok_or_else(|| format!("no route #{route}"))?;
        let message = binding.request(&[], None, body, true)?;
        if let Some(first) = self.validator.violations(&message).first() {
            return Err(format!("{}: {}", first.field, first.description));
        }
        Ok(message.encode_to_vec())
    }

    /// Route `route`'s reply `bytes` as the JSON the gateway answers with
    /// (the streaming renderer where it applies).
    pub fn to_json(&self, route: usize, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.bindings
            .get(route)
            .ok_or_else(|| format!("no route #{route}"))?
            .render(bytes)
    }

    /// [`Transcoder::to_json`] through the reference renderer (decoded to
    /// a `DynamicMessage`, then serialized), whatever the route.
    pub fn to_json_reference(&self, route: usize, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let binding = self
            .bindings
            .get(route)
            .ok_or_else(|| format!("no route #{route}"))?;
        let message = DynamicMessage::decode(binding.output(), bytes).map_err(|e| e.to_string())?;
        binding.response(&message)
    }

    /// Whether route `route` has the streaming transcoder.
    pub fn streams(&self, route: usize) -> bool {
        self.bindings
            .get(route)
            .is_some_and(|b| b.request_wire(&[], None, b"{}", false).is_some())
    }

    /// Renders `bytes` (as a service could send them) as route `route`'s
    /// response, the way the gateway answers. Where the streaming renderer
    /// answers, its JSON must equal the reference's (as JSON values: the
    /// reference writes map entries in `HashMap` order); the error names
    /// the first difference.
    pub fn response(&self, route: usize, bytes: &[u8]) -> Result<(), String> {
        let Some(binding) = self.bindings.get(route % self.bindings.len().max(1)) else {
            return Ok(());
        };
        let rendered = binding.render(bytes);
        let Ok(message) = DynamicMessage::decode(binding.output(), bytes) else {
            return match rendered {
                Ok(json) => Err(format!(
                    "rendered {} from bytes the reference cannot decode",
                    String::from_utf8_lossy(&json)
                )),
                Err(_) => Ok(()),
            };
        };
        let reference = binding.response(&message);
        let parse = |r: &Result<Vec<u8>, String>| {
            r.as_ref()
                .ok()
                .and_then(|j| serde_json::from_slice::<serde_json::Value>(j).ok())
        };
        if parse(&reference) != parse(&rendered) || reference.is_ok() != rendered.is_ok() {
            return Err(format!(
                "rendered {rendered:?}, the reference {reference:?}"
            ));
        }
        Ok(())
    }
}
