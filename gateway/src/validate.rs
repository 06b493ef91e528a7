//! Request validation from the contracts: every field marked
//! `(google.api.field_behavior) = REQUIRED` must be present before the
//! call leaves the gateway.
//!
//! "Present" follows proto3: a field with presence (a message, `optional`,
//! a oneof member) must be set; a repeated or map field must be non-empty;
//! a plain scalar must differ from its default (so an empty string and an
//! enum's zero value count as missing). Required fields inside a present
//! message are checked too, with paths such as `document.title` or
//! `items[2].name`, in proto field names like the services' own
//! violations.
//!
//! Updates follow AIP-134: when the request carries a
//! `google.protobuf.FieldMask`, required fields inside the resource are
//! checked only where the mask names them, and not at all when the mask is
//! empty (the service decides what an empty mask means). Required fields
//! of the request itself are always checked.

use std::collections::{BTreeSet, HashMap};

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, ReflectMessage, Value,
};

/// `google.api.FieldBehavior` numbers.
pub(crate) mod behavior {
    pub(crate) const OPTIONAL: i32 = 1;
    pub(crate) const REQUIRED: i32 = 2;
    pub(crate) const OUTPUT_ONLY: i32 = 3;
    pub(crate) const INPUT_ONLY: i32 = 4;
    pub(crate) const IMMUTABLE: i32 = 5;
    pub(crate) const IDENTIFIER: i32 = 8;
}

const FIELD_MASK: &str = "google.protobuf.FieldMask";

/// The `google.api.field_behavior` values of a field.
pub(crate) fn field_behaviors(
    field: &FieldDescriptor,
    extension: Option<&ExtensionDescriptor>,
) -> Vec<i32> {
    let Some(extension) = extension else {
        return Vec::new();
    };
    let options = field.options();
    if !options.has_extension(extension) {
        return Vec::new();
    }
    match options.get_extension(extension).as_ref() {
        Value::List(values) => values.iter().filter_map(Value::as_enum_number).collect(),
        Value::EnumNumber(n) => vec![*n],
        _ => Vec::new(),
    }
}

/// The extension, when some descriptor imports `field_behavior.proto`.
pub(crate) fn behavior_extension(pool: &DescriptorPool) -> Option<ExtensionDescriptor> {
    pool.get_extension_by_name("google.api.field_behavior")
}

#[derive(Debug, Default)]
struct MessageRules {
    required: Vec<FieldDescriptor>,
    /// Message-typed fields (singular, repeated or map values) whose type
    /// has required fields somewhere below.
    nested: Vec<FieldDescriptor>,
    /// An `update_mask` FieldMask, which makes the other message fields
    /// partial.
    mask: Option<FieldDescriptor>,
}

/// Precomputed rules for every message reachable from the routes' inputs.
#[derive(Debug, Default)]
pub(crate) struct Validator {
    rules: HashMap<String, MessageRules>,
}

fn message_kind(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    if field.is_map() {
        // A map field's type is its entry; the value is field 2.
        return match field.kind() {
            Kind::Message(entry) => entry.map_entry_value_field().kind().as_message().cloned(),
            _ => None,
        };
    }
    field.kind().as_message().cloned()
}

impl Validator {
    /// Rules for `inputs` and everything reachable from them.
    pub(crate) fn new(
        inputs: impl IntoIterator<Item = MessageDescriptor>,
        extension: Option<&ExtensionDescriptor>,
    ) -> Self {
        let mut direct: HashMap<String, (MessageDescriptor, Vec<FieldDescriptor>)> = HashMap::new();
        let mut stack: Vec<MessageDescriptor> = inputs.into_iter().collect();
        while let Some(message) = stack.pop() {
            if direct.contains_key(message.full_name()) {
                continue;
            }
            let required = message
                .fields()
                .filter(|f| field_behaviors(f, extension).contains(&behavior::REQUIRED))
                .collect();
            for field in message.fields() {
                if let Some(child) = message_kind(&field) {
                    stack.push(child);
                }
            }
            direct.insert(message.full_name().to_owned(), (message, required));
        }

        // Which messages have a required field anywhere below: grow the set
        // until it stops changing, which also handles recursive types.
        let mut has_required: BTreeSet<String> = direct
            .iter()
            .filter(|(_, (_, req))| !req.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        loop {
            let before = has_required.len();
            for (name, (message, _)) in &direct {
                if !has_required.contains(name)
                    && message.fields().any(|f| {
                        message_kind(&f).is_some_and(|m| has_required.contains(m.full_name()))
                    })
                {
                    has_required.insert(name.clone());
                }
            }
            if has_required.len() == before {
                break;
            }
        }

        let rules = direct
            .into_iter()
            .map(|(name, (message, required))| {
                let nested = message
                    .fields()
                    .filter(|f| {
                        message_kind(f).is_some_and(|m| has_required.contains(m.full_name()))
                    })
                    .collect();
                let mask = message.fields().find(|f| {
                    f.name() == "update_mask"
                        && !f.is_list()
                        && f.kind()
                            .as_message()
                            .is_some_and(|m| m.full_name() == FIELD_MASK)
                });
                (
                    name,
                    MessageRules {
                        required,
                        nested,
                        mask,
                    },
                )
            })
            .collect();
        Self { rules }
    }

    /// Every missing required field as `(path, description)`.
    pub(crate) fn violations(&self, request: &DynamicMessage) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mask = self
            .rules
            .get(request.descriptor().full_name())
            .and_then(|r| r.mask.as_ref())
            .map(|field| mask_paths(request, field));
        self.walk(request, "", mask.as_deref(), true, &mut out);
        out
    }

    fn walk(
        &self,
        message: &DynamicMessage,
        prefix: &str,
        mask: Option<&[String]>,
        top: bool,
        out: &mut Vec<(String, String)>,
    ) {
        let Some(rules) = self.rules.get(message.descriptor().full_name()) else {
            return;
        };
        // The request's own fields are always checked; below it a mask,
        // when there is one, selects the fields.
        let filter = if top { None } else { mask };
        for field in &rules.required {
            if filter.is_some_and(|paths| !paths.iter().any(|p| p == field.name())) {
                continue;
            }
            if !present(message, field) {
                out.push((join(prefix, field.name()), "is required".to_owned()));
            }
        }
        for field in &rules.nested {
            if !message.has_field(field) {
                continue;
            }
            let below: Option<Vec<String>> = match (top, mask) {
                // Below the top a mask applies to the resource field itself.
                (true, Some(paths)) => {
                    if rules.mask.as_ref() == Some(field) {
                        continue;
                    }
                    Some(paths.to_vec())
                }
                (false, Some(paths)) => {
                    if paths.iter().any(|p| p == field.name()) {
                        // The whole sub-message is replaced: check all of it.
                        None
                    } else {
                        let inner: Vec<String> = paths
                            .iter()
                            .filter_map(|p| p.strip_prefix(field.name())?.strip_prefix('.'))
                            .map(str::to_owned)
                            .collect();
                        if inner.is_empty() {
                            continue;
                        }
                        Some(inner)
                    }
                }
                (_, None) => None,
            };
            let path = join(prefix, field.name());
            match message.get_field(field).as_ref() {
                Value::Message(inner) => {
                    self.walk(inner, &path, below.as_deref(), false, out);
                }
                Value::List(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Message(inner) = item {
                            let at = format!("{path}[{i}]");
                            self.walk(inner, &at, below.as_deref(), false, out);
                        }
                    }
                }
                Value::Map(entries) => {
                    for (key, value) in entries {
                        if let Value::Message(inner) = value {
                            let at = format!("{path}[{}]", map_key(key));
                            self.walk(inner, &at, below.as_deref(), false, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The paths of a FieldMask field; empty when it is unset.
fn mask_paths(message: &DynamicMessage, field: &FieldDescriptor) -> Vec<String> {
    let value = message.get_field(field);
    let Some(mask) = value.as_message() else {
        return Vec::new();
    };
    mask.get_field_by_name("paths")
        .and_then(|paths| {
            paths.as_list().map(|list| {
                list.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn present(message: &DynamicMessage, field: &FieldDescriptor) -> bool {
    if field.is_list() || field.is_map() {
        return match message.get_field(field).as_ref() {
            Value::List(items) => !items.is_empty(),
            Value::Map(entries) => !entries.is_empty(),
            _ => false,
        };
    }
    // Without presence, has_field is false exactly for the default value.
    message.has_field(field)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => format!("{s:?}"),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    fn validator(pool: &DescriptorPool) -> Validator {
        let inputs = pool
            .services()
            .flat_map(|s| s.methods().map(|m| m.input()).collect::<Vec<_>>());
        Validator::new(inputs, behavior_extension(pool).as_ref())
    }

    fn message(pool: &DescriptorPool, name: &str, json: serde_json::Value) -> DynamicMessage {
        DynamicMessage::deserialize(pool.get_message_by_name(name).unwrap(), json).unwrap()
    }

    fn fields(v: Vec<(String, String)>) -> Vec<String> {
        v.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn reads_field_behavior_from_the_descriptors() {
        let pool = pool();
        let ext = behavior_extension(&pool).unwrap();
        let m = pool
            .get_message_by_name("cloudsec.auth.v1.SignUpRequest")
            .unwrap();
        let password = m.get_field_by_name("password").unwrap();
        assert_eq!(
            field_behaviors(&password, Some(&ext)),
            [behavior::REQUIRED, behavior::INPUT_ONLY]
        );
        let doc = pool
            .get_message_by_name("cloudsec.documents.v1.Document")
            .unwrap();
        assert_eq!(
            field_behaviors(&doc.get_field_by_name("id").unwrap(), Some(&ext)),
            [behavior::IDENTIFIER, behavior::OUTPUT_ONLY]
        );
        assert!(field_behaviors(&doc.get_field_by_name("etag").unwrap(), Some(&ext)).is_empty());
    }

    #[test]
    fn missing_required_fields_are_named_with_their_path() {
        let pool = pool();
        let v = validator(&pool);
        let signup = message(
            &pool,
            "cloudsec.auth.v1.SignUpRequest",
            serde_json::json!({"email": "", "password": "x"}),
        );
        assert_eq!(fields(v.violations(&signup)), ["email", "tenant"]);

        let create = message(
            &pool,
            "cloudsec.documents.v1.CreateDocumentRequest",
            serde_json::json!({}),
        );
        assert_eq!(fields(v.violations(&create)), ["document"]);
        let create = message(
            &pool,
            "cloudsec.documents.v1.CreateDocumentRequest",
            serde_json::json!({"document": {"content": "c"}}),
        );
        assert_eq!(
            fields(v.violations(&create)),
            ["document.title", "document.classification"]
        );
        let create = message(
            &pool,
            "cloudsec.documents.v1.CreateDocumentRequest",
            serde_json::json!({"document": {"title": "t", "classification": "PUBLIC"}}),
        );
        assert!(v.violations(&create).is_empty());
    }

    #[test]
    fn an_update_checks_only_what_its_mask_names() {
        let pool = pool();
        let v = validator(&pool);
        let name = "cloudsec.documents.v1.UpdateDocumentRequest";
        // No mask: the resource's own required fields are the service's
        // business.
        let m = message(
            &pool,
            name,
            serde_json::json!({"document": {"id": "x", "content": "c"}}),
        );
        assert!(v.violations(&m).is_empty());
        // A mask naming the title: an empty title is missing.
        let m = message(
            &pool,
            name,
            serde_json::json!({"document": {"id": "x"}, "updateMask": "title,content"}),
        );
        assert_eq!(fields(v.violations(&m)), ["document.title"]);
        // The request's own required field is always checked.
        let m = message(&pool, name, serde_json::json!({"updateMask": "title"}));
        assert_eq!(fields(v.violations(&m)), ["document"]);
    }

    #[test]
    fn messages_without_rules_pass() {
        let pool = pool();
        let v = Validator::default();
        let m = message(
            &pool,
            "cloudsec.auth.v1.SignUpRequest",
            serde_json::json!({}),
        );
        assert!(v.violations(&m).is_empty());
    }
}
