//! JSON, path variables and query parameters into a request message, and a
//! response message back into JSON, per the proto3 JSON mapping.
//!
//! Everything here is driven by descriptors: a [`Binding`] is built once per
//! route from the method's `google.api.http` rule and then applied to each
//! request. Every failure is a client mistake and its message says what is
//! wrong (the field, or serde's line and column).

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    SerializeOptions, Value,
};
use serde_json::Value as Json;

use std::sync::Arc;

use prost::Message;

use crate::render::RenderPlan;
use crate::routes::{PathTemplate, decode};
use crate::validate::{behavior, field_behaviors, mask_paths, update_mask_field};
use crate::wire::{Override, WirePlan};

/// Where the HTTP body goes in the request message.
#[derive(Debug, Clone)]
pub(crate) enum BodyRule {
    /// No body: fields not bound by the path come from the query string.
    None,
    /// `body: "*"`: the body is the whole request message.
    Whole,
    /// `body: "field"`: the body is that top-level field.
    Field(FieldDescriptor),
}

/// How one route builds its request and renders its response.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    input: MessageDescriptor,
    output: MessageDescriptor,
    body: BodyRule,
    response_body: Option<FieldDescriptor>,
    /// One field path per template variable, in capture order.
    path_fields: Vec<Vec<FieldDescriptor>>,
    /// PATCH with a message body field and an `update_mask` FieldMask:
    /// the mask field, filled from the body's JSON keys when the request
    /// leaves it empty (grpc-gateway's behaviour).
    patch_mask: Option<FieldDescriptor>,
    /// The streaming transcoder's plan, where it applies (`wire.rs`).
    wire: Option<WireRoute>,
    /// The streaming renderer's plan for replies (`render.rs`), unless
    /// the route picks a `response_body` field or the type has none.
    render: Option<Arc<RenderPlan>>,
}

/// A route the streaming transcoder serves: a body of the whole request
/// (`body_number` none) or of one singular message field, path variables
/// binding top-level scalar fields, no update mask to fill.
#[derive(Debug, Clone)]
struct WireRoute {
    plan: Arc<WirePlan>,
    body_number: Option<u32>,
}

impl WireRoute {
    fn new(
        input: &MessageDescriptor,
        body: &BodyRule,
        path_fields: &[Vec<FieldDescriptor>],
        patch_mask: Option<&FieldDescriptor>,
    ) -> Option<Self> {
        let top_level_scalars = path_fields
            .iter()
            .all(|p| p.len() == 1 && !matches!(p[0].kind(), Kind::Message(_)));
        if patch_mask.is_some() || !top_level_scalars {
            return None;
        }
        let (message, body_number) = match body {
            BodyRule::None => return None,
            BodyRule::Whole => (input.clone(), None),
            BodyRule::Field(field) => match field.kind() {
                Kind::Message(m)
                    if !field.is_list()
                        && !field.is_map()
                        && !m.full_name().starts_with("google.protobuf.") =>
                {
                    (m, Some(field.number()))
                }
                _ => return None,
            },
        };
        match WirePlan::new(&message) {
            Ok(plan) => Some(Self {
                plan: Arc::new(plan),
                body_number,
            }),
            Err(why) => {
                tracing::debug!(message = %message.full_name(), why = %why.0, "the reference transcoder serves this route");
                None
            }
        }
    }
}

/// Resolves a dotted path of proto field names (and, for query
/// parameters, JSON names) through singular message fields.
fn resolve(
    message: &MessageDescriptor,
    path: &[impl AsRef<str>],
    json_names: bool,
) -> Result<Vec<FieldDescriptor>, String> {
    let mut fields = Vec::with_capacity(path.len());
    let mut current = message.clone();
    for (i, name) in path.iter().enumerate() {
        let name = name.as_ref();
        let field = current
            .get_field_by_name(name)
            .or_else(|| {
                json_names
                    .then(|| current.get_field_by_json_name(name))
                    .flatten()
            })
            .ok_or_else(|| format!("`{}` has no field `{name}`", current.full_name()))?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => current = m,
                _ => return Err(format!("`{name}` is not a singular message field")),
            }
        }
        fields.push(field);
    }
    Ok(fields)
}

impl Binding {
    /// Checks the rule against the method's input and output types; the
    /// error says which part of the rule is wrong.
    pub(crate) fn new(
        method: &MethodDescriptor,
        http_method: &http::Method,
        template: &PathTemplate,
        body: &str,
        response_body: &str,
    ) -> Result<Self, String> {
        let input = method.input();
        let path_fields = template
            .variables()
            .map(|path| {
                let fields = resolve(&input, path, false)?;
                match fields.last() {
                    Some(leaf) if !leaf.is_list() && !leaf.is_map() => Ok(fields),
                    _ => Err(format!(
                        "path variable `{}` must name a singular field",
                        path.join(".")
                    )),
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        let body =
            match body {
                "" => BodyRule::None,
                "*" => BodyRule::Whole,
                name => BodyRule::Field(input.get_field_by_name(name).ok_or_else(|| {
                    format!("body field `{name}` is not in {}", input.full_name())
                })?),
            };
        let response_body = match response_body {
            "" => None,
            name => Some(method.output().get_field_by_name(name).ok_or_else(|| {
                format!(
                    "response_body field `{name}` is not in {}",
                    method.output().full_name()
                )
            })?),
        };
        let patch_mask = match &body {
            BodyRule::Field(field)
                if *http_method == http::Method::PATCH
                    && field.kind().as_message().is_some()
                    && !field.is_list()
                    && !field.is_map() =>
            {
                update_mask_field(&input).filter(|mask| mask != field)
            }
            _ => None,
        };
        let wire = WireRoute::new(&input, &body, &path_fields, patch_mask.as_ref());
        let render = match (&response_body, RenderPlan::new(&method.output())) {
            (None, Ok(plan)) => Some(Arc::new(plan)),
            (None, Err(why)) => {
                tracing::debug!(message = %method.output().full_name(), why = %why.0, "the reference renders this route's replies");
                None
            }
            (Some(_), _) => None,
        };
        Ok(Self {
            input,
            output: method.output(),
            body,
            response_body,
            path_fields,
            patch_mask,
            wire,
            render,
        })
    }

    /// The request message type.
    pub(crate) fn input(&self) -> MessageDescriptor {
        self.input.clone()
    }

    /// The response message type.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    pub(crate) fn output(&self) -> MessageDescriptor {
        self.output.clone()
    }

    /// Whether the route takes a request body at all.
    pub(crate) fn has_body(&self) -> bool {
        !matches!(self.body, BodyRule::None)
    }

    /// The request as wire bytes straight from the JSON, when the route
    /// and this request allow it (no query string); `None` means "use
    /// [`Binding::request`]". Accepts and refuses exactly what
    /// `request` does, and the bytes decode to the message it builds.
    pub(crate) fn request_wire(
        &self,
        captures: &[String],
        query: Option<&str>,
        body: &[u8],
        deny_unknown: bool,
    ) -> Option<Result<Vec<u8>, String>> {
        let wire = self.wire.as_ref()?;
        if query.is_some_and(|q| !q.is_empty()) {
            return None;
        }
        let body = if body.is_empty() {
            b"{}".as_slice()
        } else {
            body
        };
        let run = |overrides: &[Override]| match wire.body_number {
            None => wire.plan.message(body, overrides, deny_unknown),
            Some(number) => wire.plan.field(number, body, overrides, deny_unknown),
        };
        let mut overrides = Vec::with_capacity(self.path_fields.len());
        for (fields, raw) in self.path_fields.iter().zip(captures) {
            let [leaf] = fields.as_slice() else {
                return None;
            };
            let value = match parse_value(leaf, raw) {
                Ok(value) => value,
                // The reference reads the body first: its error wins.
                Err(error) => return Some(run(&[]).and(Err(error))),
            };
            let mut record = DynamicMessage::new(self.input.clone());
            record.set_field(leaf, value);
            overrides.push(Override {
                number: leaf.number(),
                clears: leaf
                    .containing_oneof()
                    .map(|o| o.fields().map(|f| f.number()).collect())
                    .unwrap_or_default(),
                record: record.encode_to_vec(),
            });
        }
        Some(run(&overrides))
    }

    /// Builds the request: body first, then path variables (which win, as
    /// in grpc-gateway), then query parameters.
    pub(crate) fn request(
        &self,
        captures: &[String],
        query: Option<&str>,
        body: &[u8],
        deny_unknown: bool,
    ) -> Result<DynamicMessage, String> {
        let options = DeserializeOptions::new().deny_unknown_fields(deny_unknown);
        // An empty body on a body RPC means `{}` (the OpenAPI document
        // marks such bodies optional); white space alone is not JSON and is
        // refused like any other malformed body.
        let body = if body.is_empty() {
            b"{}".as_slice()
        } else {
            body
        };
        let mut message = match &self.body {
            BodyRule::None => DynamicMessage::new(self.input.clone()),
            BodyRule::Whole => json_message(self.input.clone(), body, &options)?,
            BodyRule::Field(field) => {
                let mut message = DynamicMessage::new(self.input.clone());
                let value = json_field(&self.input, field, body, &options)?;
                message.set_field(field, value);
                message
            }
        };

        for (fields, raw) in self.path_fields.iter().zip(captures) {
            let (leaf, parents) = fields
                .split_last()
                .ok_or_else(|| "empty path variable".to_owned())?;
            let value = parse_value(leaf, raw)?;
            parent_mut(&mut message, parents)?.set_field(leaf, value);
        }

        if let Some(query) = query {
            self.apply_query(&mut message, query, deny_unknown)?;
        }
        if let (Some(mask_field), BodyRule::Field(body_field)) = (&self.patch_mask, &self.body)
            && mask_paths(&message, mask_field).is_empty()
        {
            self.fill_mask(&mut message, mask_field, body_field, body)?;
        }
        Ok(message)
    }

    /// Sets `update_mask` to the fields the PATCH body names: JSON keys as
    /// proto field names, nested objects as dotted paths, sorted. A list,
    /// a map, a well-known type or an empty object ends a path, as in
    /// grpc-gateway. Fields the path binds (the resource's id), output-only
    /// and identifier fields and a top-level `etag` (AIP-154: a
    /// precondition, not a change) are left out, so that echoing a resource
    /// back does not name fields the service refuses to update.
    fn fill_mask(
        &self,
        message: &mut DynamicMessage,
        mask_field: &FieldDescriptor,
        body_field: &FieldDescriptor,
        body: &[u8],
    ) -> Result<(), String> {
        let Kind::Message(resource) = body_field.kind() else {
            return Ok(());
        };
        let Kind::Message(mask_type) = mask_field.kind() else {
            return Ok(());
        };
        // The body parsed as the field already, so this cannot fail on
        // syntax; it is parsed again only for PATCH without a mask.
        let json: Json =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
        let bound: Vec<String> = self
            .path_fields
            .iter()
            .filter_map(|fields| match fields.split_first() {
                Some((first, rest)) if first == body_field && !rest.is_empty() => Some(
                    rest.iter()
                        .map(FieldDescriptor::name)
                        .collect::<Vec<_>>()
                        .join("."),
                ),
                _ => None,
            })
            .collect();
        let mut paths = Vec::new();
        mask_from_json(&resource, &json, "", &mut paths);
        paths.retain(|p| !bound.contains(p) && p != "etag");
        paths.sort();
        paths.dedup();
        if paths.is_empty() {
            return Ok(());
        }
        let mut mask = DynamicMessage::new(mask_type);
        mask.set_field_by_name(
            "paths",
            Value::List(paths.into_iter().map(Value::String).collect()),
        );
        message.set_field(mask_field, Value::Message(mask));
        Ok(())
    }

    fn apply_query(
        &self,
        message: &mut DynamicMessage,
        query: &str,
        deny_unknown: bool,
    ) -> Result<(), String> {
        let params = parse_query(query)?;
        if params.is_empty() {
            return Ok(());
        }
        if matches!(self.body, BodyRule::Whole) {
            if deny_unknown {
                return Err(
                    "query parameters are not accepted here: the body is the whole request"
                        .to_owned(),
                );
            }
            return Ok(());
        }
        // `page_size` and `pageSize` are one field, so count by field.
        let mut seen: Vec<Vec<FieldDescriptor>> = Vec::new();
        for (key, values) in params {
            // grpc-gateway's form for one map entry: `labels[team]=red`.
            let (field_key, map_key) = match key.strip_suffix(']').and_then(|k| k.split_once('[')) {
                Some((base, entry)) if !base.is_empty() => (base, Some(entry)),
                _ => (key.as_str(), None),
            };
            let path: Vec<&str> = field_key.split('.').collect();
            let fields = match resolve(&self.input, &path, true) {
                Ok(fields) => fields,
                Err(_) if !deny_unknown => continue,
                Err(_) => return Err(format!("unknown query parameter `{key}`")),
            };
            if self.binds(&fields) {
                return Err(format!(
                    "query parameter `{key}` sets a field already bound by the path or body"
                ));
            }
            let (leaf, parents) = fields
                .split_last()
                .ok_or_else(|| format!("unknown query parameter `{key}`"))?;
            if let Some(entry) = map_key {
                let Kind::Message(entry_type) = leaf.kind() else {
                    return Err(format!(
                        "query parameter `{key}`: `{field_key}` is not a map"
                    ));
                };
                if !leaf.is_map() {
                    return Err(format!(
                        "query parameter `{key}`: `{field_key}` is not a map"
                    ));
                }
                let [value] = values.as_slice() else {
                    return Err(format!("query parameter `{key}` is given more than once"));
                };
                let in_param = |e: String| format!("query parameter `{key}`: {e}");
                let map_key = parse_value(&entry_type.map_entry_key_field(), entry)
                    .map_err(in_param)?
                    .into_map_key()
                    .ok_or_else(|| format!("query parameter `{key}`: bad map key"))?;
                let value =
                    parse_value(&entry_type.map_entry_value_field(), value).map_err(in_param)?;
                let parent = parent_mut(message, parents)?;
                if let Some(map) = parent.get_field_mut(leaf).as_map_mut()
                    && map.insert(map_key, value).is_some()
                {
                    return Err(format!("query parameter `{key}` is given more than once"));
                }
                continue;
            }
            if leaf.is_map() {
                return Err(format!(
                    "query parameter `{key}` names a map field: set one entry as `{key}[key]=value`"
                ));
            }
            let parent = parent_mut(message, parents)?;
            if leaf.is_list() {
                let parsed = values
                    .iter()
                    .map(|v| parse_value(leaf, v))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(list) = parent.get_field_mut(leaf).as_list_mut() {
                    list.extend(parsed);
                }
            } else {
                let ([value], false) = (values.as_slice(), seen.contains(&fields)) else {
                    return Err(format!(
                        "query parameter `{key}` is given more than once but is not repeated"
                    ));
                };
                parent.set_field(leaf, parse_value(leaf, value)?);
                seen.push(fields.clone());
            }
        }
        Ok(())
    }

    /// Whether `fields` overlaps a field the path or the body already sets.
    fn binds(&self, fields: &[FieldDescriptor]) -> bool {
        let overlaps = |bound: &[FieldDescriptor]| {
            let n = bound.len().min(fields.len());
            bound[..n] == fields[..n]
        };
        let by_body = match &self.body {
            BodyRule::Field(f) => overlaps(std::slice::from_ref(f)),
            BodyRule::Whole => true,
            BodyRule::None => false,
        };
        by_body || self.path_fields.iter().any(|p| overlaps(p))
    }

    /// Renders the reply's wire bytes as JSON: by the streaming renderer
    /// where the route has a plan and the bytes are what prost writes, else
    /// by decoding them and rendering with [`Binding::response`]. Either
    /// way the bytes are the same.
    pub(crate) fn render(&self, reply: &[u8]) -> Result<Vec<u8>, String> {
        if let Some(plan) = &self.render
            && let Ok(json) = plan.render(reply)
        {
            return Ok(json);
        }
        let message = DynamicMessage::decode(self.output.clone(), reply)
            .map_err(|e| format!("cannot decode {}: {e}", self.output.full_name()))?;
        self.response(&message)
    }

    /// The streaming renderer alone: `None` where the route has no plan,
    /// `Some(Err)` where it hands the reply to the reference.
    #[cfg(test)]
    pub(crate) fn render_streaming(
        &self,
        reply: &[u8],
    ) -> Option<Result<Vec<u8>, crate::render::Fallback>> {
        Some(self.render.as_ref()?.render(reply))
    }

    /// Renders the response (or its `response_body` field) as JSON with
    /// the default mapping: lowerCamelCase names, 64-bit integers as
    /// strings, enums by name.
    pub(crate) fn response(&self, message: &DynamicMessage) -> Result<Vec<u8>, String> {
        let options = SerializeOptions::new();
        let mut out = serde_json::Serializer::new(Vec::new());
        match &self.response_body {
            None => message
                .serialize_with_options(&mut out, &options)
                .map_err(|e| e.to_string())?,
            Some(field) => match (field.kind(), message.get_field(field).as_message()) {
                (Kind::Message(_), Some(inner)) if !field.is_list() && !field.is_map() => inner
                    .serialize_with_options(&mut out, &options)
                    .map_err(|e| e.to_string())?,
                _ => {
                    // Scalars, lists and maps: render the whole message
                    // with defaults kept and pick the field's member.
                    let whole = message
                        .serialize_with_options(
                            serde_json::value::Serializer,
                            &options.clone().skip_default_fields(false),
                        )
                        .map_err(|e| e.to_string())?;
                    let member = whole.get(field.json_name()).cloned().unwrap_or(Json::Null);
                    return serde_json::to_vec(&member).map_err(|e| e.to_string());
                }
            },
        }
        Ok(out.into_inner())
    }
}

/// The FieldMask paths a JSON object names in `message`, with `prefix`.
fn mask_from_json(message: &MessageDescriptor, json: &Json, prefix: &str, out: &mut Vec<String>) {
    let Json::Object(members) = json else {
        return;
    };
    let behavior = message
        .parent_pool()
        .get_extension_by_name("google.api.field_behavior");
    for (key, value) in members {
        // Unknown keys were refused while parsing, or are being ignored.
        let Some(field) = message
            .get_field_by_json_name(key)
            .or_else(|| message.get_field_by_name(key))
        else {
            continue;
        };
        let behaviors = field_behaviors(&field, behavior.as_ref());
        if behaviors.contains(&behavior::OUTPUT_ONLY) || behaviors.contains(&behavior::IDENTIFIER) {
            continue;
        }
        let path = if prefix.is_empty() {
            field.name().to_owned()
        } else {
            format!("{prefix}.{}", field.name())
        };
        match (field.kind(), value) {
            (Kind::Message(inner), Json::Object(members))
                if !field.is_list()
                    && !field.is_map()
                    && !members.is_empty()
                    && !inner.full_name().starts_with("google.protobuf.") =>
            {
                mask_from_json(&inner, value, &path, out);
            }
            _ => out.push(path),
        }
    }
}

fn json_message(
    descriptor: MessageDescriptor,
    body: &[u8],
    options: &DeserializeOptions,
) -> Result<DynamicMessage, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let message = DynamicMessage::deserialize_with_options(descriptor, &mut de, options)
        .map_err(|e| format!("invalid JSON body: {e}"))?;
    de.end().map_err(|e| format!("invalid JSON body: {e}"))?;
    Ok(message)
}

/// Parses `body` as the value of `field`.
fn json_field(
    input: &MessageDescriptor,
    field: &FieldDescriptor,
    body: &[u8],
    options: &DeserializeOptions,
) -> Result<Value, String> {
    if let Kind::Message(m) = field.kind()
        && !field.is_list()
        && !field.is_map()
    {
        return json_message(m, body, options).map(Value::Message);
    }
    // Lists, maps and scalars: parse the body as the field's member of
    // the parent, so the JSON mapping rules are prost-reflect's own.
    let json: Json = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let wrapped = Json::Object([(field.json_name().to_owned(), json)].into_iter().collect());
    let mut parent = DynamicMessage::deserialize_with_options(input.clone(), wrapped, options)
        .map_err(|e| format!("invalid JSON body: {e}"))?;
    Ok(parent
        .take_field(field)
        .unwrap_or_else(|| Value::default_value_for_field(field)))
}

/// The message that holds the last field of a path, created as needed.
fn parent_mut<'a>(
    mut message: &'a mut DynamicMessage,
    parents: &[FieldDescriptor],
) -> Result<&'a mut DynamicMessage, String> {
    for field in parents {
        message = message
            .get_field_mut(field)
            .as_message_mut()
            .ok_or_else(|| format!("`{}` is not a message field", field.name()))?;
    }
    Ok(message)
}

/// Splits a query string into decoded keys and their values, in order of
/// first appearance.
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let form_decode = |s: &str| {
        decode(&s.replace('+', " "), true)
            .ok_or_else(|| format!("query string has a bad percent-escape in `{s}`"))
    };
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (form_decode(key)?, form_decode(value)?);
        match params.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value),
            None => params.push((key, vec![value])),
        }
    }
    Ok(params)
}

/// Parses one path or query value as the type of `field`.
pub(crate) fn parse_value(field: &FieldDescriptor, s: &str) -> Result<Value, String> {
    let fail = |expected: &str| {
        format!(
            "invalid value {s:?} for field `{}`: expected {expected}",
            field.name()
        )
    };
    let value = match field.kind() {
        Kind::Double => Value::F64(s.parse().map_err(|_| fail("a number"))?),
        Kind::Float => Value::F32(s.parse().map_err(|_| fail("a number"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(s.parse().map_err(|_| fail("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(s.parse().map_err(|_| fail("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            Value::U32(s.parse().map_err(|_| fail("an unsigned 32-bit integer"))?)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(s.parse().map_err(|_| fail("an unsigned 64-bit integer"))?)
        }
        Kind::Bool => match s {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(fail("true or false")),
        },
        Kind::String => Value::String(s.to_owned()),
        Kind::Bytes => {
            use base64::Engine;
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(s).ok())
                .ok_or_else(|| fail("base64"))?;
            Value::Bytes(bytes.into())
        }
        Kind::Enum(e) => {
            let number = e
                .get_value_by_name(s)
                .map(|v| v.number())
                .or_else(|| s.parse().ok().filter(|n| e.get_value(*n).is_some()))
                .ok_or_else(|| {
                    let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
                    fail(&format!("one of {}", names.join(", ")))
                })?;
            Value::EnumNumber(number)
        }
        Kind::Message(m) => {
            // Well-known types (Timestamp, Duration, FieldMask, wrappers)
            // have JSON forms that are strings or plain values.
            let options = DeserializeOptions::new();
            // A `google.protobuf.Value` is any JSON: `5` and `true` mean
            // the number and the boolean, and text that is not JSON is a
            // string.
            if m.full_name() == "google.protobuf.Value"
                && let Ok(json) = serde_json::from_str::<Json>(s)
                && let Ok(message) =
                    DynamicMessage::deserialize_with_options(m.clone(), json, &options)
            {
                return Ok(Value::Message(message));
            }
            let as_string = DynamicMessage::deserialize_with_options(
                m.clone(),
                Json::String(s.to_owned()),
                &options,
            );
            let message = match as_string {
                Ok(message) => message,
                Err(first) => serde_json::from_str::<Json>(s)
                    .ok()
                    .and_then(|json| {
                        DynamicMessage::deserialize_with_options(m.clone(), json, &options).ok()
                    })
                    .ok_or_else(|| {
                        format!("invalid value {s:?} for field `{}`: {first}", field.name())
                    })?,
            };
            Value::Message(message)
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;

    /// A tiny contract compiled by hand, so these unit tests need no
    /// files.
    fn pool() -> DescriptorPool {
        use prost_types::field_descriptor_proto::{Label, Type};
        use prost_types::{
            DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
            FileDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto,
        };
        let field = |name: &str, number: i32, ty: Type, label: Label, type_name: &str| {
            FieldDescriptorProto {
                name: Some(name.into()),
                number: Some(number),
                r#type: Some(ty as i32),
                label: Some(label as i32),
                type_name: (!type_name.is_empty()).then(|| type_name.into()),
                json_name: Some(prost_reflect_json_name(name)),
                ..Default::default()
            }
        };
        let one = Label::Optional;
        let many = Label::Repeated;
        let file = FileDescriptorProto {
            name: Some("t.proto".into()),
            package: Some("t".into()),
            syntax: Some("proto3".into()),
            enum_type: vec![EnumDescriptorProto {
                name: Some("Color".into()),
                value: ["COLOR_UNSPECIFIED", "RED", "GREEN"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| EnumValueDescriptorProto {
                        name: Some((*n).into()),
                        number: Some(i as i32),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            message_type: vec![
                DescriptorProto {
                    name: Some("Inner".into()),
                    field: vec![
                        field("id", 1, Type::String, one, ""),
                        field("note", 2, Type::String, one, ""),
                    ],
                    ..Default::default()
                },
                DescriptorProto {
                    name: Some("Req".into()),
                    field: vec![
                        field("name", 1, Type::String, one, ""),
                        field("page_size", 2, Type::Int32, one, ""),
                        field("big", 3, Type::Int64, one, ""),
                        field("flag", 4, Type::Bool, one, ""),
                        field("color", 5, Type::Enum, one, ".t.Color"),
                        field("tags", 6, Type::String, many, ""),
                        field("inner", 7, Type::Message, one, ".t.Inner"),
                        field("ratio", 8, Type::Double, one, ""),
                        field("raw", 9, Type::Bytes, one, ""),
                        field("counts", 10, Type::Uint32, many, ""),
                        field("attrs", 11, Type::Message, many, ".t.Req.AttrsEntry"),
                    ],
                    nested_type: vec![DescriptorProto {
                        name: Some("AttrsEntry".into()),
                        field: vec![
                            field("key", 1, Type::String, one, ""),
                            field("value", 2, Type::Int32, one, ""),
                        ],
                        options: Some(prost_types::MessageOptions {
                            map_entry: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
            service: vec![ServiceDescriptorProto {
                name: Some("S".into()),
                method: vec![MethodDescriptorProto {
                    name: Some("M".into()),
                    input_type: Some(".t.Req".into()),
                    output_type: Some(".t.Req".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet {
            file: vec![file],
        })
        .unwrap()
    }

    fn prost_reflect_json_name(name: &str) -> String {
        let mut out = String::new();
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }

    fn binding(template: &str, body: &str, response_body: &str) -> Binding {
        let pool = pool();
        let method = pool
            .get_service_by_name("t.S")
            .unwrap()
            .methods()
            .next()
            .unwrap();
        Binding::new(
            &method,
            &http::Method::POST,
            &PathTemplate::parse(template).unwrap(),
            body,
            response_body,
        )
        .unwrap()
    }

    fn json(binding: &Binding, message: &DynamicMessage) -> Json {
        serde_json::from_slice(&binding.response(message).unwrap()).unwrap()
    }

    #[test]
    fn query_parameters_are_parsed_per_type() {
        let b = binding("/v1/{name}", "", "");
        let m = b
            .request(
                &["n1".into()],
                Some("page_size=5&big=9007199254740993&flag=true&color=GREEN&tags=a&tags=b+c&inner.id=x%2Fy&ratio=0.5&raw=aGk&counts=1&counts=2&pageSize=6"),
                b"",
                true,
            )
            .unwrap_err();
        // `page_size` and its JSON name `pageSize` are one field.
        assert!(m.contains("more than once"), "{m}");

        let m = b
            .request(
                &["n1".into()],
                Some("page_size=5&big=9007199254740993&flag=true&color=GREEN&tags=a&tags=b+c&inner.id=x%2Fy&ratio=0.5&raw=aGk&counts=1&counts=2"),
                b"",
                true,
            )
            .unwrap();
        assert_eq!(
            json(&b, &m),
            serde_json::json!({
                "name": "n1", "pageSize": 5, "big": "9007199254740993", "flag": true,
                "color": "GREEN", "tags": ["a", "b c"], "inner": {"id": "x/y"},
                "ratio": 0.5, "raw": "aGk=", "counts": [1, 2],
            })
        );

        let m = b
            .request(&["n".into()], Some("color=1&flag=0"), b"", true)
            .unwrap();
        assert_eq!(json(&b, &m)["color"], "RED");
        assert!(json(&b, &m).get("flag").is_none());
    }

    #[test]
    fn map_entries_come_as_bracketed_keys() {
        let b = binding("/v1/{name}", "", "");
        let m = b
            .request(
                &["n".into()],
                Some("attrs[a]=1&attrs%5Bb%20c%5D=2"),
                b"",
                true,
            )
            .unwrap();
        assert_eq!(json(&b, &m)["attrs"], serde_json::json!({"a": 1, "b c": 2}));
        for (query, error) in [
            ("attrs=1", "attrs[key]=value"),
            ("attrs[a]=1&attrs[a]=2", "more than once"),
            ("attrs[a]=x", "attrs"),
            ("flag[a]=1", "not a map"),
        ] {
            let m = b
                .request(&["n".into()], Some(query), b"", true)
                .unwrap_err();
            assert!(m.contains(error), "{query}: {m}");
        }
    }

    #[test]
    fn bad_query_values_name_the_field() {
        let b = binding("/v1/{name}", "", "");
        for (query, needle) in [
            ("page_size=five", "page_size"),
            ("page_size=99999999999", "32-bit"),
            ("big=1.5", "big"),
            ("flag=yes", "true or false"),
            ("color=PURPLE", "RED"),
            ("color=7", "color"),
            ("counts=-1", "counts"),
            ("raw=***", "base64"),
            ("nope=1", "unknown query parameter `nope`"),
            ("inner=x", "inner"),
            ("name=other", "already bound"),
            ("page_size=%zz", "percent"),
        ] {
            let error = b
                .request(&["n".into()], Some(query), b"", true)
                .unwrap_err();
            assert!(error.contains(needle), "{query}: {error}");
        }
        // With unknown fields allowed, unknown parameters are ignored.
        assert!(b.request(&["n".into()], Some("nope=1"), b"", false).is_ok());
    }

    #[test]
    fn body_star_maps_the_whole_object_and_path_wins() {
        let b = binding("/v1/{name}", "*", "");
        let m = b
            .request(
                &["from-path".into()],
                None,
                br#"{"name":"from-body","pageSize":3}"#,
                true,
            )
            .unwrap();
        assert_eq!(
            json(&b, &m),
            serde_json::json!({"name": "from-path", "pageSize": 3})
        );
        // An empty body is `{}`.
        assert!(b.request(&["n".into()], None, b"", true).is_ok());
        // The whole body leaves no room for query parameters.
        assert!(
            b.request(&["n".into()], Some("page_size=1"), b"", true)
                .is_err()
        );
    }

    #[test]
    fn body_field_and_nested_path_variables() {
        let b = binding("/v1/{inner.id}", "inner", "");
        let m = b
            .request(&["i9".into()], Some("tags=t"), br#"{"note":"hello"}"#, true)
            .unwrap();
        assert_eq!(
            json(&b, &m),
            serde_json::json!({"inner": {"id": "i9", "note": "hello"}, "tags": ["t"]})
        );
        // A body that is a list, for a repeated body field.
        let b = binding("/v1/{name}", "tags", "");
        let m = b
            .request(&["n".into()], None, br#"["x","y"]"#, true)
            .unwrap();
        assert_eq!(json(&b, &m)["tags"], serde_json::json!(["x", "y"]));
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        let b = binding("/v1/{name}", "*", "");
        let malformed = b
            .request(&["n".into()], None, b"{\"pageSize\": ", true)
            .unwrap_err();
        assert!(malformed.contains("line 1"), "{malformed}");
        let unknown = b
            .request(&["n".into()], None, br#"{"bogus": 1}"#, true)
            .unwrap_err();
        assert!(unknown.contains("bogus"), "{unknown}");
        assert!(
            b.request(&["n".into()], None, br#"{"bogus": 1}"#, false)
                .is_ok()
        );
        let wrong = b
            .request(&["n".into()], None, br#"{"pageSize": "many"}"#, true)
            .unwrap_err();
        assert!(wrong.contains("invalid JSON body"), "{wrong}");
        let trailing = b.request(&["n".into()], None, b"{} {}", true).unwrap_err();
        assert!(trailing.contains("trailing"), "{trailing}");
    }

    #[test]
    fn path_values_are_typed_too() {
        let b = binding("/v1/{page_size}", "", "");
        assert!(b.request(&["12".into()], None, b"", true).is_ok());
        let error = b.request(&["twelve".into()], None, b"", true).unwrap_err();
        assert!(error.contains("page_size"), "{error}");
    }

    #[test]
    fn bad_rules_are_rejected_at_build_time() {
        let pool = pool();
        let method = pool
            .get_service_by_name("t.S")
            .unwrap()
            .methods()
            .next()
            .unwrap();
        let rule = |template: &str, body: &str, response: &str| {
            Binding::new(
                &method,
                &http::Method::GET,
                &PathTemplate::parse(template).unwrap(),
                body,
                response,
            )
        };
        assert!(rule("/v1/{missing}", "", "").is_err());
        assert!(rule("/v1/{tags}", "", "").is_err());
        assert!(rule("/v1/{name.x}", "", "").is_err());
        assert!(rule("/v1/{name}", "nope", "").is_err());
        assert!(rule("/v1/{name}", "", "nope").is_err());
        assert!(rule("/v1/{inner.id}", "", "").is_ok());
    }

    #[test]
    fn response_body_selects_a_field() {
        let b = binding("/v1/{name}", "", "inner");
        let m = b
            .request(&["n".into()], Some("inner.id=7&big=5"), b"", true)
            .unwrap();
        assert_eq!(json(&b, &m), serde_json::json!({"id": "7"}));
        let b = binding("/v1/{name}", "", "tags");
        let m = b.request(&["n".into()], Some("tags=a"), b"", true).unwrap();
        assert_eq!(json(&b, &m), serde_json::json!(["a"]));
    }

    fn echo_binding(
        method: &str,
        http_method: http::Method,
        template: &str,
        body: &str,
    ) -> Binding {
        let pool = crate::test_support::echo_pool();
        let method = pool
            .get_service_by_name("cloudsec.echo.v1.EchoService")
            .unwrap()
            .methods()
            .find(|m| m.name() == method)
            .unwrap();
        Binding::new(
            &method,
            &http_method,
            &PathTemplate::parse(template).unwrap(),
            body,
            "",
        )
        .unwrap()
    }

    fn request_json(binding: &Binding, captures: &[&str], query: Option<&str>, body: &str) -> Json {
        let captures: Vec<String> = captures.iter().map(|c| (*c).to_owned()).collect();
        let message = binding
            .request(&captures, query, body.as_bytes(), true)
            .unwrap();
        serde_json::to_value(&message).unwrap()
    }

    #[test]
    fn patch_fills_an_empty_update_mask_from_the_body_keys() {
        let b = echo_binding(
            "UpdateItem",
            http::Method::PATCH,
            "/v1/items/{item.id}",
            "item",
        );
        // Nested keys become dotted paths in proto names, sorted; the id
        // bound by the path and the etag are not changes.
        let m = request_json(
            &b,
            &["p1"],
            None,
            r#"{"title": "t", "sizeBytes": "3", "owner": {"displayName": "Ann"}, "labels": ["a"], "id": "x", "etag": "e1"}"#,
        );
        assert_eq!(m["updateMask"], "labels,owner.displayName,sizeBytes,title");
        assert_eq!(m["item"]["id"], "p1");
        // An empty object, null and a well-known type end the path.
        let m = request_json(
            &b,
            &["p1"],
            None,
            r#"{"owner": {}, "content": null, "expireTime": "2025-01-01T00:00:00Z", "createTime": "2025-01-01T00:00:00Z"}"#,
        );
        // createTime is OUTPUT_ONLY: never a change.
        assert_eq!(m["updateMask"], "content,expireTime,owner");
        // A mask from the query wins.
        let m = request_json(
            &b,
            &["p1"],
            Some("update_mask=title"),
            r#"{"title": "t", "kind": 1}"#,
        );
        assert_eq!(m["updateMask"], "title");
        // An empty body leaves the mask empty.
        let m = request_json(&b, &["p1"], None, "");
        assert!(m.get("updateMask").is_none(), "{m}");
        // Only PATCH: a PUT with the same rule keeps the mask empty.
        let put = echo_binding(
            "UpdateItem",
            http::Method::PUT,
            "/v1/items/{item.id}",
            "item",
        );
        let m = request_json(&put, &["p1"], None, r#"{"title": "t"}"#);
        assert!(m.get("updateMask").is_none(), "{m}");
        // Unknown keys are ignored when unknown fields are allowed.
        let message = b
            .request(
                &["p1".to_owned()],
                None,
                br#"{"title": "t", "bogus": {"x": 1}}"#,
                false,
            )
            .unwrap();
        let m = serde_json::to_value(&message).unwrap();
        assert_eq!(m["updateMask"], "title");
    }
}
