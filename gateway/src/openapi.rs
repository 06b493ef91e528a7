//! OpenAPI 3.1 generated from the descriptors: one operation per
//! `google.api.http` rule (additional bindings included), with the same
//! mapping the gateway applies at run time.
//!
//! - Path variables become path parameters: `{name=shelves/*}` becomes
//!   `{name}`, and a nested field's dots become underscores
//!   (`{document.id}` is `{document_id}`), since tools such as
//!   Schemathesis read a dot in a path template as attribute access; the
//!   parameter's `x-field-path` keeps the field path.
//! - Fields not bound by the path or body become query parameters, by
//!   JSON name, nested singular messages flattened with dots; maps are
//!   left out, as they cannot be set from a query.
//! - Messages become `components.schemas` keyed by full name, with the
//!   proto3 JSON types: 64-bit integers as strings, enums by name, bytes
//!   as base64, the well-known types in their JSON forms.
//! - `field_behavior`: `REQUIRED` fields are `required`, `OUTPUT_ONLY`
//!   ones `readOnly`, `INPUT_ONLY` ones `writeOnly`; `IMMUTABLE` and
//!   `IDENTIFIER` are noted in the description.
//! - A oneof allows at most one of its members; a proto3 `optional`
//!   field is marked `x-proto3-optional`.
//! - Leading comments become descriptions and summaries.
//! - `cloudsec.api.v1.field_rules` become `minLength`, `maxLength`,
//!   `pattern`, `minItems`, `maxItems`, `minimum` and `maximum`;
//!   `cloudsec.api.v1.required_scopes` becomes `x-required-scopes`.
//! - Server-streaming methods answer `application/x-ndjson` (one
//!   `{"result"}` or `{"error"}` object per line) or `text/event-stream`.
//! - Every operation's error answer is the gateway's error body.

use std::collections::{BTreeMap, HashMap};

use cloudsec_proto::google::api::{HttpRule, http_rule::Pattern};
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, Kind,
    MessageDescriptor, MethodDescriptor,
};
use serde_json::{Map, Value, json};

use crate::policy::{
    Authentication, authentication_extension, option_authentication, option_scopes,
    scopes_extension,
};
use crate::validate::{
    behavior, behavior_extension, field_behaviors, field_rules, rules_extension,
};

/// The document for every annotated RPC in `pool`.
pub fn openapi(pool: &DescriptorPool) -> Value {
    openapi_for(pool, |_| true)
}

/// The document for the annotated RPCs of the services `include` accepts
/// (by full name), e.g. those the gateway has an upstream for.
pub fn openapi_for(pool: &DescriptorPool, include: impl Fn(&str) -> bool) -> Value {
    let http = pool.get_extension_by_name("google.api.http");
    let mut generator = Generator {
        behavior: behavior_extension(pool),
        rules: rules_extension(pool),
        scopes: scopes_extension(pool),
        authentication: authentication_extension(pool),
        comments: Comments::new(pool),
        schemas: BTreeMap::new(),
        pending: Vec::new(),
        names: canonical_names(pool, http.as_ref(), &include),
    };
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut tags = Vec::new();
    for service in pool.services() {
        if !include(service.full_name()) {
            continue;
        }
        let mut any = false;
        for method in service.methods() {
            // The gateway routes no client-streaming method.
            if method.is_client_streaming() {
                continue;
            }
            let Some(rules) = http.as_ref().map(|ext| rules(&method, ext)) else {
                continue;
            };
            for (index, rule) in rules.iter().enumerate() {
                let Some((verb, template)) = pattern(rule) else {
                    continue;
                };
                let Some(operation) = generator.operation(&method, rule, template, index) else {
                    continue;
                };
                any = true;
                paths
                    .entry(generator.openapi_path(template))
                    .or_default()
                    .insert(verb, operation);
            }
        }
        if any {
            let mut tag = json!({"name": service.name()});
            if let Some(text) = generator
                .comments
                .of(service.parent_file().name(), service.path())
            {
                tag["description"] = json!(text);
            }
            tags.push(tag);
        }
    }
    generator.drain();

    let mut schemas: Map<String, Value> = generator.schemas.into_iter().collect();
    schemas.insert("cloudsec.gateway.Error".to_owned(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "cloudsec API",
            "version": "v1",
            "description": "Generated from the protobuf contracts' google.api.http annotations; the gateway serves exactly these routes.",
        },
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from `POST /v1/auth:login` (or a trusted Cognito pool's).",
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "Required on the routes the gateway's configuration marks `api_key = true`.",
                },
            },
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "An error: the HTTP status follows the gRPC code in `code`",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/cloudsec.gateway.Error"}}},
                },
            },
        },
    })
}

/// The gateway's error body, `{"code", "message", "details"}`.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "A google.rpc.Status in grpc-gateway's JSON shape.",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"@type": {"type": "string"}},
                    "required": ["@type"],
                    "additionalProperties": true,
                },
            },
        },
        "required": ["code", "message", "details"],
    })
}

fn rules(method: &MethodDescriptor, extension: &ExtensionDescriptor) -> Vec<HttpRule> {
    let Some(Ok(rule)) = method
        .options()
        .take_extension(extension)
        .as_ref()
        .and_then(prost_reflect::Value::as_message)
        .map(DynamicMessage::transcode_to::<HttpRule>)
    else {
        return Vec::new();
    };
    let mut all = vec![rule.clone()];
    all.extend(rule.additional_bindings);
    all
}

fn pattern(rule: &HttpRule) -> Option<(String, &str)> {
    Some(match rule.pattern.as_ref()? {
        Pattern::Get(p) => ("get".to_owned(), p),
        Pattern::Put(p) => ("put".to_owned(), p),
        Pattern::Post(p) => ("post".to_owned(), p),
        Pattern::Delete(p) => ("delete".to_owned(), p),
        Pattern::Patch(p) => ("patch".to_owned(), p),
        Pattern::Custom(c) => {
            let kind = c.kind.to_ascii_lowercase();
            // OpenAPI has no place for other methods.
            if !["head", "options", "trace"].contains(&kind.as_str()) {
                return None;
            }
            (kind, &c.path)
        }
    })
}

/// A template with its variables blanked: the path OpenAPI sees, whatever
/// the variables are named (`/v1/documents/{}` for `{id}` and
/// `{document.id}` alike).
fn shape(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str("{}");
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// A path parameter's own name for a variable's field path, before
/// [`canonical_names`] picks one per path.
fn parameter_name(field_path: &str) -> String {
    field_path.replace('.', "_")
}

/// One name per variable position of each path shape. OpenAPI 3.1 forbids
/// two templates that differ only in their parameters' names (they are one
/// path), so `GET /v1/documents/{id}` and `PATCH /v1/documents/{document.id}`
/// share the shortest name (then the first in order); each parameter keeps
/// its own field in `x-field-path`.
fn canonical_names(
    pool: &DescriptorPool,
    http: Option<&ExtensionDescriptor>,
    include: &impl Fn(&str) -> bool,
) -> HashMap<String, Vec<String>> {
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    let Some(http) = http else {
        return names;
    };
    for service in pool.services().filter(|s| include(s.full_name())) {
        for method in service.methods() {
            for rule in rules(&method, http) {
                let Some((_, template)) = pattern(&rule) else {
                    continue;
                };
                let these: Vec<String> = variables(template)
                    .into_iter()
                    .map(|(path, _)| parameter_name(&path))
                    .collect();
                let chosen = names
                    .entry(shape(template))
                    .or_insert_with(|| these.clone());
                for (chosen, candidate) in chosen.iter_mut().zip(these) {
                    if (candidate.len(), &candidate) < (chosen.len(), &*chosen) {
                        *chosen = candidate;
                    }
                }
            }
        }
    }
    names
}

/// `(field path, segment pattern)` for each variable of a template.
fn variables(template: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        let inner = &after[..close];
        match inner.split_once('=') {
            Some((name, pattern)) => out.push((name.to_owned(), Some(pattern.to_owned()))),
            None => out.push((inner.to_owned(), None)),
        }
        rest = &after[close + 1..];
    }
    out
}

/// Leading comments by file and descriptor path.
struct Comments {
    by_location: HashMap<(String, Vec<i32>), String>,
}

impl Comments {
    fn new(pool: &DescriptorPool) -> Self {
        let mut by_location = HashMap::new();
        for file in pool.files() {
            let proto = file.file_descriptor_proto();
            let Some(info) = &proto.source_code_info else {
                continue;
            };
            for location in &info.location {
                let text = location.leading_comments().trim();
                if !text.is_empty() {
                    by_location.insert(
                        (file.name().to_owned(), location.path.clone()),
                        text.lines().map(str::trim).collect::<Vec<_>>().join("\n"),
                    );
                }
            }
        }
        Self { by_location }
    }

    fn of(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.by_location
            .get(&(file.to_owned(), path.to_vec()))
            .map(String::as_str)
    }

    /// The start of a description's parts: the comment at `file` and
    /// `path`, if there is one; the caller adds the rest.
    fn notes(&self, file: &str, path: &[i32]) -> Vec<String> {
        self.of(file, path).map(str::to_owned).into_iter().collect()
    }
}

struct Generator {
    behavior: Option<ExtensionDescriptor>,
    rules: Option<ExtensionDescriptor>,
    scopes: Option<ExtensionDescriptor>,
    authentication: Option<ExtensionDescriptor>,
    /// The parameter names of each path shape (see [`canonical_names`]).
    names: HashMap<String, Vec<String>>,
    comments: Comments,
    schemas: BTreeMap<String, Value>,
    /// Messages and enums referenced but not yet described.
    pending: Vec<Referenced>,
}

enum Referenced {
    Message(MessageDescriptor),
    Enum(EnumDescriptor),
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A JSON form of a well-known type, or `None` for other messages.
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    let int64 = json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"});
    let uint64 = json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"});
    let nullable = |mut schema: Value| {
        let kind = schema["type"].clone();
        schema["type"] = json!([kind, "null"]);
        schema
    };
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"})
        }
        "google.protobuf.FieldMask" => {
            json!({"type": "string", "description": "Comma-separated field paths in lowerCamelCase."})
        }
        "google.protobuf.Empty" => {
            json!({"type": "object", "properties": {}, "additionalProperties": false})
        }
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array", "items": {}}),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": {"@type": {"type": "string"}},
            "required": ["@type"],
            "additionalProperties": true,
        }),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => {
            nullable(json!({"type": "number"}))
        }
        "google.protobuf.Int64Value" => nullable(int64),
        "google.protobuf.UInt64Value" => nullable(uint64),
        "google.protobuf.Int32Value" => nullable(json!({"type": "integer", "format": "int32"})),
        "google.protobuf.UInt32Value" => {
            nullable(json!({"type": "integer", "minimum": 0, "maximum": 4_294_967_295_u64}))
        }
        "google.protobuf.BoolValue" => nullable(json!({"type": "boolean"})),
        "google.protobuf.StringValue" => nullable(json!({"type": "string"})),
        "google.protobuf.BytesValue" => {
            nullable(json!({"type": "string", "contentEncoding": "base64"}))
        }
        _ => return None,
    })
}

impl Generator {
    /// The names of `template`'s path parameters, one per variable.
    fn names_of(&self, template: &str) -> Vec<String> {
        self.names
            .get(&shape(template))
            .cloned()
            .unwrap_or_else(|| {
                variables(template)
                    .into_iter()
                    .map(|(path, _)| parameter_name(&path))
                    .collect()
            })
    }

    /// `/v1/{name=shelves/*}/x:verb` as OpenAPI writes it, with the path's
    /// one set of parameter names: `/v1/{name}/x:verb`.
    fn openapi_path(&self, template: &str) -> String {
        let names = self.names_of(template);
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        let mut index = 0;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            out.push('{');
            out.push_str(names.get(index).map_or("", String::as_str));
            out.push('}');
            index += 1;
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The schema of one value of `kind` (not repeated).
    fn kind_schema(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "minimum": 0, "maximum": 4_294_967_295_u64})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Enum(e) => {
                if e.full_name() == "google.protobuf.NullValue" {
                    return json!({"type": "null"});
                }
                if !self.schemas.contains_key(e.full_name()) {
                    self.pending.push(Referenced::Enum(e.clone()));
                }
                schema_ref(e.full_name())
            }
            Kind::Message(m) => {
                if let Some(schema) = well_known(m) {
                    return schema;
                }
                if !self.schemas.contains_key(m.full_name()) {
                    self.pending.push(Referenced::Message(m.clone()));
                }
                schema_ref(m.full_name())
            }
        }
    }

    /// The schema of a field, lists and maps included.
    fn field_schema(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => self.kind_schema(&entry.map_entry_value_field().kind()),
                _ => json!({}),
            };
            return json!({"type": "object", "additionalProperties": value});
        }
        let one = self.kind_schema(&field.kind());
        if field.is_list() {
            json!({"type": "array", "items": one})
        } else {
            one
        }
    }

    /// A field's schema with its comment and field behaviours.
    fn property(&mut self, field: &FieldDescriptor) -> (Value, bool) {
        let mut schema = self.field_schema(field);
        let behaviors = field_behaviors(field, self.behavior.as_ref());
        let mut notes = self
            .comments
            .notes(field.parent_file().name(), field.path());
        if behaviors.contains(&behavior::IMMUTABLE) {
            notes.push("Immutable: set on creation only.".to_owned());
        }
        if behaviors.contains(&behavior::IDENTIFIER) {
            notes.push("The resource's identifier.".to_owned());
        }
        if behaviors.contains(&behavior::OPTIONAL) {
            notes.push("Optional.".to_owned());
        }
        // `$ref` siblings are fine in 3.1, so annotations can sit beside it.
        if let Some(object) = schema.as_object_mut() {
            if !notes.is_empty() {
                object.insert("description".to_owned(), json!(notes.join("\n\n")));
            }
            if behaviors.contains(&behavior::OUTPUT_ONLY) {
                object.insert("readOnly".to_owned(), json!(true));
            }
            if behaviors.contains(&behavior::INPUT_ONLY) {
                object.insert("writeOnly".to_owned(), json!(true));
            }
            if field.field_descriptor_proto().proto3_optional() {
                object.insert("x-proto3-optional".to_owned(), json!(true));
            }
        }
        self.constrain(field, &mut schema);
        let required = behaviors.contains(&behavior::REQUIRED);
        if required {
            require(field, &mut schema);
        } else {
            empty_is_unset(field, &mut schema);
        }
        (schema, required)
    }

    /// A body property: [`Generator::property`], and `null` allowed where
    /// the field is optional, since the proto3 JSON mapping reads `null`
    /// as the field's default (a required field's default is its absence,
    /// refused).
    fn body_property(&mut self, field: &FieldDescriptor) -> (Value, bool) {
        let (mut schema, required) = self.property(field);
        let output_only =
            field_behaviors(field, self.behavior.as_ref()).contains(&behavior::OUTPUT_ONLY);
        if !required && !output_only {
            schema = nullable(schema);
        }
        (schema, required)
    }

    /// The field's `cloudsec.api.v1.field_rules` as JSON Schema keywords,
    /// on the items of a list for the per-value rules.
    fn constrain(&self, field: &FieldDescriptor, schema: &mut Value) {
        let Some(rules) = field_rules(field, self.rules.as_ref()) else {
            return;
        };
        if (field.is_list() || field.is_map())
            && let Some(object) = schema.as_object_mut()
        {
            let (min, max) = if field.is_list() {
                ("minItems", "maxItems")
            } else {
                ("minProperties", "maxProperties")
            };
            if let Some(n) = rules.min_items {
                object.insert(min.to_owned(), json!(n));
            }
            if let Some(n) = rules.max_items {
                object.insert(max.to_owned(), json!(n));
            }
        }
        if field.is_map()
            && !rules.key_pattern.is_empty()
            && let Some(object) = schema.as_object_mut()
        {
            object.insert(
                "propertyNames".to_owned(),
                json!({"pattern": rules.key_pattern}),
            );
        }
        let target = if field.is_list() {
            schema.get_mut("items")
        } else if field.is_map() {
            schema.get_mut("additionalProperties")
        } else {
            Some(schema)
        };
        let Some(object) = target.and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(n) = rules.min_length {
            object.insert("minLength".to_owned(), json!(n));
        }
        if let Some(n) = rules.max_length {
            object.insert("maxLength".to_owned(), json!(n));
        }
        if !rules.pattern.is_empty() {
            object.insert("pattern".to_owned(), json!(rules.pattern));
        }
        if !rules.pattern_description.is_empty() && !object.contains_key("description") {
            object.insert(
                "description".to_owned(),
                json!(format!("{}.", rules.pattern_description)),
            );
        }
        // 64-bit integers are strings in JSON, where number bounds mean
        // nothing; the gateway still checks them.
        if object.get("type") != Some(&json!("string")) {
            if let Some(n) = rules.minimum {
                object.insert("minimum".to_owned(), json!(n));
            }
            if let Some(n) = rules.maximum {
                object.insert("maximum".to_owned(), json!(n));
            }
        }
    }

    /// An object schema for `message`, leaving out `skip` fields.
    fn message_schema(&mut self, message: &MessageDescriptor, skip: &[String]) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            if skip.iter().any(|s| s == field.name()) {
                continue;
            }
            let (schema, is_required) = self.body_property(&field);
            if is_required {
                required.push(json!(field.json_name()));
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        if let Some(text) = self
            .comments
            .of(message.parent_file().name(), message.path())
        {
            schema["description"] = json!(text);
        }
        // At most one member of each oneof: one branch per member, plus
        // one for none of them.
        let mut all_of = Vec::new();
        for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
            let members: Vec<Value> = oneof
                .fields()
                .filter(|f| !skip.iter().any(|s| s == f.name()))
                .map(|f| json!({"required": [f.json_name()]}))
                .collect();
            if members.len() < 2 {
                continue;
            }
            let mut branches = members.clone();
            branches.push(json!({"not": {"anyOf": members}}));
            all_of.push(json!({"oneOf": branches}));
        }
        if !all_of.is_empty() {
            schema["allOf"] = json!(all_of);
        }
        schema
    }

    fn enum_schema(&self, e: &EnumDescriptor) -> Value {
        let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
        let mut schema = json!({"type": "string", "enum": names});
        let mut notes = self.comments.notes(e.parent_file().name(), e.path());
        for value in e.values() {
            if let Some(text) = self.comments.of(value.parent_file().name(), value.path()) {
                notes.push(format!("- `{}`: {text}", value.name()));
            }
        }
        if !notes.is_empty() {
            schema["description"] = json!(notes.join("\n"));
        }
        schema
    }

    /// Describes everything referenced so far, and what that references.
    fn drain(&mut self) {
        while let Some(next) = self.pending.pop() {
            match next {
                Referenced::Message(m) => {
                    if self.schemas.contains_key(m.full_name()) {
                        continue;
                    }
                    // A placeholder first, so recursive types terminate.
                    self.schemas.insert(m.full_name().to_owned(), json!({}));
                    let schema = self.message_schema(&m, &[]);
                    self.schemas.insert(m.full_name().to_owned(), schema);
                }
                Referenced::Enum(e) => {
                    let schema = self.enum_schema(&e);
                    self.schemas.insert(e.full_name().to_owned(), schema);
                }
            }
        }
    }

    /// Query parameters for the fields of `message` not in `bound`, with
    /// nested singular messages flattened.
    fn query_parameters(
        &mut self,
        message: &MessageDescriptor,
        prefix: &str,
        proto_prefix: &[String],
        bound: &[Vec<String>],
        seen: &mut Vec<String>,
        out: &mut Vec<Value>,
    ) {
        if seen.iter().any(|s| s == message.full_name()) {
            return;
        }
        seen.push(message.full_name().to_owned());
        for field in message.fields() {
            let name = if prefix.is_empty() {
                field.json_name().to_owned()
            } else {
                format!("{prefix}.{}", field.json_name())
            };
            let mut proto_path = proto_prefix.to_vec();
            proto_path.push(field.name().to_owned());
            // Anything overlapping a path or body binding is not a
            // parameter, as the transcoder refuses it.
            if bound.iter().any(|b| {
                let n = b.len().min(proto_path.len());
                b[..n] == proto_path[..n]
            }) {
                continue;
            }
            let behaviors = field_behaviors(&field, self.behavior.as_ref());
            if behaviors.contains(&behavior::OUTPUT_ONLY) || field.is_map() {
                continue;
            }
            match field.kind() {
                Kind::Message(m) if !field.is_list() && well_known(&m).is_none() => {
                    self.query_parameters(&m, &name, &proto_path, bound, seen, out);
                }
                Kind::Message(m) if field.is_list() && well_known(&m).is_none() => {
                    // Repeated messages cannot be given in a query.
                }
                _ => {
                    let (schema, _) = self.property(&field);
                    let mut parameter = json!({
                        "name": name,
                        "in": "query",
                        "schema": schema,
                    });
                    if field.is_list() {
                        parameter["style"] = json!("form");
                        parameter["explode"] = json!(true);
                    }
                    out.push(parameter);
                }
            }
        }
        seen.pop();
    }

    fn operation(
        &mut self,
        method: &MethodDescriptor,
        rule: &HttpRule,
        template: &str,
        index: usize,
    ) -> Option<Value> {
        let input = method.input();
        let mut parameters = Vec::new();
        let mut bound: Vec<Vec<String>> = Vec::new();
        let names = self.names_of(template);
        for ((path, segments), name) in variables(template).into_iter().zip(names) {
            let names: Vec<String> = path.split('.').map(str::to_owned).collect();
            let leaf = resolve(&input, &names)?;
            let (mut schema, _) = self.property(&leaf);
            if let (Some(segments), Some(object)) = (&segments, schema.as_object_mut()) {
                let note = format!("Matches `{segments}`.");
                let description = match object.get("description").and_then(Value::as_str) {
                    Some(text) => format!("{text}\n\n{note}"),
                    None => note,
                };
                object.insert("description".to_owned(), json!(description));
            }
            if let Some(object) = schema.as_object_mut() {
                object.remove("readOnly");
            }
            let mut parameter = json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": schema,
            });
            if name != path {
                parameter["x-field-path"] = json!(path);
            }
            parameters.push(parameter);
            bound.push(names);
        }

        let request_body = match rule.body.as_str() {
            "" => {
                self.query_parameters(&input, "", &[], &bound, &mut Vec::new(), &mut parameters);
                None
            }
            "*" => {
                let top: Vec<String> = bound
                    .iter()
                    .filter(|b| b.len() == 1)
                    .map(|b| b[0].clone())
                    .collect();
                let schema = if top.is_empty() {
                    self.kind_schema(&Kind::Message(input.clone()))
                } else {
                    // Fields the path binds are left out of the body.
                    self.message_schema(&input, &top)
                };
                Some(schema)
            }
            field_name => {
                let field = input.get_field_by_name(field_name)?;
                bound.push(vec![field_name.to_owned()]);
                self.query_parameters(&input, "", &[], &bound, &mut Vec::new(), &mut parameters);
                match (field.kind(), crate::validate::update_mask_field(&input)) {
                    // An update: only the fields the mask names are read,
                    // so the body requires none of them.
                    (Kind::Message(resource), Some(_)) if !field.is_list() => {
                        let mut schema = self.message_schema(&resource, &[]);
                        if let Some(object) = schema.as_object_mut() {
                            object.remove("required");
                            object.insert(
                                "description".to_owned(),
                                json!("Only the fields `updateMask` names are read and checked; an empty mask names every writable field."),
                            );
                        }
                        Some(schema)
                    }
                    _ => Some(self.field_schema(&field)),
                }
            }
        };

        let response = match rule.response_body.as_str() {
            "" => self.kind_schema(&Kind::Message(method.output())),
            name => {
                let field = method.output().get_field_by_name(name)?;
                self.field_schema(&field)
            }
        };
        let content = if method.is_server_streaming() {
            json!({
                "application/x-ndjson": {"schema": {
                    "description": "One object per line: each message as `result`, a failure after the first message as `error`.",
                    "type": "object",
                    "properties": {
                        "result": response,
                        "error": {"$ref": "#/components/schemas/cloudsec.gateway.Error"},
                    },
                }},
                "text/event-stream": {"schema": {
                    "description": "With `Accept: text/event-stream`: each message as a `data:` event, a failure as an `error` event.",
                    "type": "string",
                }},
            })
        } else {
            json!({"application/json": {"schema": response}})
        };

        let service = method.parent_service();
        let operation_id = if index == 0 {
            format!("{}_{}", service.name(), method.name())
        } else {
            format!("{}_{}{index}", service.name(), method.name())
        };
        let mut operation = json!({
            "operationId": operation_id,
            "tags": [service.name()],
            "x-grpc-method": format!("{}/{}", service.full_name(), method.name()),
            "responses": {
                "200": {
                    "description": "OK",
                    "content": content,
                },
                "default": {"$ref": "#/components/responses/Error"},
            },
        });
        if let Some(text) = self.comments.of(method.parent_file().name(), method.path()) {
            let summary = text.lines().next().unwrap_or_default();
            operation["summary"] = json!(summary);
            operation["description"] = json!(text);
        }
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        let scopes = option_scopes(method, self.scopes.as_ref());
        if !scopes.is_empty() {
            operation["x-required-scopes"] = json!(scopes);
        }
        // Who may call: a bearer token, nothing, or either a token or the
        // login session the body carries.
        operation["security"] = match option_authentication(method, self.authentication.as_ref()) {
            Authentication::Bearer => json!([{"bearerAuth": []}]),
            Authentication::None => json!([]),
            Authentication::BearerOrSession => json!([{}, {"bearerAuth": []}]),
        };
        if let Some(schema) = request_body {
            // A body whose message has a required field cannot be left
            // out: an absent body is every field at its default.
            let required = match rule.body.as_str() {
                "*" => input.fields().any(|f| {
                    field_behaviors(&f, self.behavior.as_ref()).contains(&behavior::REQUIRED)
                }),
                name => input.get_field_by_name(name).is_some_and(|f| {
                    field_behaviors(&f, self.behavior.as_ref()).contains(&behavior::REQUIRED)
                }),
            };
            operation["requestBody"] = json!({
                "required": required,
                "content": {"application/json": {"schema": schema}},
            });
        }
        Some(operation)
    }
}

/// What a `REQUIRED` field demands beyond presence, as the gateway checks
/// it: the JSON mapping's default value counts as absent, so a required
/// string is not empty (nor white space only), a required list not empty,
/// and a required enum is not its zero value.
fn require(field: &FieldDescriptor, schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if field.is_list() {
        if !object.contains_key("minItems") {
            object.insert("minItems".to_owned(), json!(1));
        }
        return;
    }
    match field.kind() {
        Kind::String => {
            if object.get("minLength").and_then(Value::as_u64).unwrap_or(0) == 0 {
                object.insert("minLength".to_owned(), json!(1));
            }
            // White space only counts as missing (the gateway's check, the
            // services' trim); a field's own pattern already demands more.
            if !object.contains_key("pattern") {
                object.insert(
                    "pattern".to_owned(),
                    json!(crate::validate::NOT_BLANK_PATTERN),
                );
            }
        }
        Kind::Enum(e) => {
            let values: Vec<String> = e
                .values()
                .filter(|v| v.number() != 0)
                .map(|v| v.name().to_owned())
                .collect();
            object.remove("$ref");
            object.insert("type".to_owned(), json!("string"));
            object.insert("enum".to_owned(), json!(values));
        }
        _ => {}
    }
}

/// Field rules apply to a value that is set, and a plain proto3 string
/// (without presence) is unset when empty: so an optional string with a
/// pattern or a minimum length also takes `""`, exactly as the gateway
/// does.
fn empty_is_unset(field: &FieldDescriptor, schema: &mut Value) {
    if field.is_list() || field.is_map() || field.supports_presence() {
        return;
    }
    if !matches!(field.kind(), Kind::String) {
        return;
    }
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let mut when_set = Map::new();
    for key in ["minLength", "pattern"] {
        if let Some(value) = object.remove(key) {
            when_set.insert(key.to_owned(), value);
        }
    }
    if !when_set.is_empty() {
        object.insert(
            "anyOf".to_owned(),
            json!([{"maxLength": 0}, Value::Object(when_set)]),
        );
    }
}

/// `schema`, also accepting JSON `null`.
fn nullable(mut schema: Value) -> Value {
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    match object.get("type").cloned() {
        Some(Value::String(kind)) => {
            object.insert("type".to_owned(), json!([kind, "null"]));
            if let Some(Value::Array(values)) = object.get_mut("enum") {
                values.push(Value::Null);
            }
            schema
        }
        Some(Value::Array(mut kinds)) => {
            if !kinds.contains(&json!("null")) {
                kinds.push(json!("null"));
            }
            object.insert("type".to_owned(), Value::Array(kinds));
            schema
        }
        _ => {
            // A `$ref` (or an untyped schema): either it or null.
            let mut wrapper = Map::new();
            for key in ["description", "readOnly", "writeOnly", "x-proto3-optional"] {
                if let Some(value) = object.remove(key) {
                    wrapper.insert(key.to_owned(), value);
                }
            }
            if object.is_empty() {
                // `{}` already accepts null.
                return Value::Object(wrapper);
            }
            wrapper.insert(
                "anyOf".to_owned(),
                json!([Value::Object(object.clone()), {"type": "null"}]),
            );
            Value::Object(wrapper)
        }
    }
}

/// The leaf field of a dotted path of proto names.
fn resolve(message: &MessageDescriptor, path: &[String]) -> Option<FieldDescriptor> {
    let (last, parents) = path.split_last()?;
    let mut current = message.clone();
    for name in parents {
        current = current
            .get_field_by_name(name)?
            .kind()
            .as_message()?
            .clone();
    }
    current.get_field_by_name(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Value {
        let pool = DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET).unwrap();
        openapi(&pool)
    }

    #[test]
    fn converts_templates() {
        assert_eq!(shape("/v1/{name=shelves/*}/x:publish"), "/v1/{}/x:publish");
        assert_eq!(shape("/v1/documents/{document.id}"), "/v1/documents/{}");
        assert_eq!(
            variables("/v1/{a.b=x/*}/{c}"),
            vec![
                ("a.b".to_owned(), Some("x/*".to_owned())),
                ("c".to_owned(), None)
            ]
        );
    }

    #[test]
    fn every_annotated_platform_rpc_is_an_operation() {
        let doc = platform();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, verb, id) in [
            ("/v1/auth:signUp", "post", "AuthService_SignUp"),
            ("/v1/auth:login", "post", "AuthService_Login"),
            ("/.well-known/jwks.json", "get", "AuthService_GetJwks"),
            (
                "/.well-known/openid-configuration",
                "get",
                "AuthService_GetOpenIdConfiguration",
            ),
            ("/v1/documents", "post", "DocumentService_CreateDocument"),
            ("/v1/documents", "get", "DocumentService_ListDocuments"),
            ("/v1/documents/{id}", "get", "DocumentService_GetDocument"),
            (
                "/v1/documents/{id}",
                "delete",
                "DocumentService_DeleteDocument",
            ),
            (
                "/v1/documents/{id}",
                "patch",
                "DocumentService_UpdateDocument",
            ),
        ] {
            assert_eq!(paths[path][verb]["operationId"], id, "{path} {verb}");
        }
        // One path, one set of parameter names (OpenAPI 3.1 forbids two
        // templates that differ only in their names).
        let shapes: Vec<String> = paths.keys().map(|p| shape(p)).collect();
        let mut unique = shapes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(shapes.len(), unique.len(), "{shapes:?}");
    }

    #[test]
    fn security_follows_the_contract() {
        let doc = platform();
        let paths = &doc["paths"];
        assert_eq!(paths["/v1/auth:login"]["post"]["security"], json!([]));
        assert_eq!(paths["/v1/auth:refresh"]["post"]["security"], json!([]));
        assert_eq!(
            paths["/v1/documents"]["get"]["security"],
            json!([{"bearerAuth": []}])
        );
        assert_eq!(
            paths["/v1/auth:verifySoftwareToken"]["post"]["security"],
            json!([{}, {"bearerAuth": []}])
        );
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
        assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
    }

    #[test]
    fn required_means_not_the_default_and_optional_accepts_null() {
        let doc = platform();
        let schemas = &doc["components"]["schemas"];
        let document = &schemas["cloudsec.documents.v1.Document"]["properties"];
        assert_eq!(document["title"]["minLength"], 1);
        // White space only is as missing as empty, as the gateway checks.
        let refresh = &schemas["cloudsec.auth.v1.RefreshRequest"]["properties"];
        assert_eq!(
            refresh["refreshToken"]["pattern"],
            crate::validate::NOT_BLANK_PATTERN
        );
        // A field's own pattern already demands more, and stays.
        let confirm = &schemas["cloudsec.auth.v1.ConfirmSignUpRequest"]["properties"];
        assert_eq!(confirm["code"]["pattern"], "^[0-9]{6}$");
        let classes = document["classification"]["enum"].as_array().unwrap();
        assert!(!classes.contains(&json!("CLASSIFICATION_UNSPECIFIED")));
        assert_eq!(document["contentType"]["type"], json!(["string", "null"]));
        // The update body requires nothing: the mask says what is read.
        let update = &doc["paths"]["/v1/documents/{id}"]["patch"];
        let body = &update["requestBody"]["content"]["application/json"]["schema"];
        assert!(body.get("required").is_none(), "{body}");
        assert_eq!(body["properties"]["title"]["minLength"], 1);
    }

    #[test]
    fn schemas_honour_the_json_mapping_and_field_behavior() {
        let doc = platform();
        let schemas = &doc["components"]["schemas"];
        let document = &schemas["cloudsec.documents.v1.Document"];
        assert_eq!(document["required"], json!(["title", "classification"]));
        let props = &document["properties"];
        assert_eq!(props["sizeBytes"]["type"], "string");
        assert_eq!(props["sizeBytes"]["readOnly"], true);
        assert_eq!(props["createTime"]["format"], "date-time");
        assert_eq!(props["labels"]["type"], json!(["object", "null"]));
        // Required: inlined without its zero value.
        assert_eq!(props["classification"]["enum"][0], "PUBLIC");
        assert!(
            props["title"]["description"]
                .as_str()
                .unwrap()
                .starts_with("1 to 200 characters.")
        );
        let classification = &schemas["cloudsec.documents.v1.Classification"];
        assert_eq!(classification["enum"][1], "PUBLIC");
        let signup = &schemas["cloudsec.auth.v1.SignUpRequest"];
        assert_eq!(signup["properties"]["password"]["writeOnly"], true);
        assert_eq!(signup["required"], json!(["email", "password", "tenant"]));
        assert!(schemas["cloudsec.gateway.Error"]["properties"]["details"].is_object());
    }

    #[test]
    fn parameters_and_bodies_follow_the_rules() {
        let doc = platform();
        let list = &doc["paths"]["/v1/documents"]["get"];
        let names: Vec<&str> = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["pageSize", "pageToken", "classification", "label"]);
        assert!(list.get("requestBody").is_none());
        assert_eq!(
            list["summary"],
            "Lists the caller's tenant's documents, newest first."
        );

        let update = &doc["paths"]["/v1/documents/{id}"]["patch"];
        let params = update["parameters"].as_array().unwrap();
        assert_eq!(params[0]["name"], "id");
        assert_eq!(params[0]["x-field-path"], "document.id");
        assert_eq!(params[0]["in"], "path");
        assert_eq!(params[1]["name"], "updateMask");
        assert_eq!(params[1]["in"], "query");
        assert_eq!(
            update["requestBody"]["content"]["application/json"]["schema"]["type"],
            "object"
        );
        let create = &doc["paths"]["/v1/auth:signUp"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/cloudsec.auth.v1.SignUpRequest"
        );
        assert_eq!(
            create["responses"]["default"]["$ref"],
            "#/components/responses/Error"
        );
    }

    #[test]
    fn only_included_services_are_documented() {
        let pool = DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET).unwrap();
        let doc = openapi_for(&pool, |s| s == "cloudsec.auth.v1.AuthService");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/v1/auth:login"));
        assert!(!paths.contains_key("/v1/documents"));
        assert!(
            doc["components"]["schemas"]
                .get("cloudsec.documents.v1.Document")
                .is_none()
        );
    }
}
