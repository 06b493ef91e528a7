//! Request validation from the contracts, before the call leaves the
//! gateway: every field marked `(google.api.field_behavior) = REQUIRED`
//! must be present, and every value set must keep its field's
//! `(cloudsec.api.v1.field_rules)`.
//!
//! "Present" follows proto3: a field with presence (a message, `optional`,
//! a oneof member) must be set; a repeated or map field must be non-empty;
//! a plain scalar must differ from its default (so an empty string and an
//! enum's zero value count as missing), and a required string must hold
//! more than white space, which the services trim away. Required fields inside a present
//! message are checked too, with paths such as `document.title` or
//! `items[2].name`, in proto field names like the services' own
//! violations.
//!
//! Field rules are a small set (string length and pattern, list and map
//! sizes, number bounds) and apply only to values that are present by the
//! same definition, so that "required" stays the one way to demand
//! presence and a partial update is not refused for fields it leaves out.
//!
//! Updates follow AIP-134: when the request carries a
//! `google.protobuf.FieldMask`, fields inside the resource are checked only
//! where the mask names them, and not at all when the mask is empty (the
//! service decides what an empty mask means). The request's own fields are
//! always checked.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cloudsec_proto::api::v1::FieldRules;
use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, ReflectMessage, Value,
};
use regex::Regex;

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
    match extension.and_then(|e| field.options().take_extension(e)) {
        Some(Value::List(values)) => values.iter().filter_map(Value::as_enum_number).collect(),
        Some(Value::EnumNumber(n)) => vec![n],
        _ => Vec::new(),
    }
}

/// The extension, when some descriptor imports `field_behavior.proto`.
pub(crate) fn behavior_extension(pool: &DescriptorPool) -> Option<ExtensionDescriptor> {
    pool.get_extension_by_name("google.api.field_behavior")
}

/// The `cloudsec.api.v1.field_rules` extension, when some descriptor
/// imports `cloudsec/api/v1/options.proto`.
pub(crate) fn rules_extension(pool: &DescriptorPool) -> Option<ExtensionDescriptor> {
    pool.get_extension_by_name("cloudsec.api.v1.field_rules")
}

/// The field's `cloudsec.api.v1.field_rules`, if it has any.
pub(crate) fn field_rules(
    field: &FieldDescriptor,
    extension: Option<&ExtensionDescriptor>,
) -> Option<FieldRules> {
    extension
        .and_then(|e| field.options().take_extension(e))?
        .as_message()
        .and_then(|m| m.transcode_to::<FieldRules>().ok())
}

/// A field rule that cannot apply to its field; refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cloudsec.api.v1.field_rules on `{field}`: {reason}")]
pub struct RuleError {
    /// The field's full name, e.g. `cloudsec.echo.v1.Owner.display_name`.
    pub field: String,
    pub reason: String,
}

/// One field's rules, checked and compiled once.
#[derive(Debug)]
struct Rules {
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Regex>,
    key_pattern: Option<Regex>,
    /// `pattern_description`, when the contract words the pattern.
    pattern_description: Option<String>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    minimum: Option<f64>,
    maximum: Option<f64>,
}

fn is_number(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Double
            | Kind::Float
            | Kind::Int32
            | Kind::Sint32
            | Kind::Sfixed32
            | Kind::Int64
            | Kind::Sint64
            | Kind::Sfixed64
            | Kind::Uint32
            | Kind::Fixed32
            | Kind::Uint64
            | Kind::Fixed64
    )
}

/// The largest compiled pattern; contracts are trusted, but a typo such
/// as `.{1000000}` should fail at start rather than eat memory.
const MAX_PATTERN_BYTES: usize = 1 << 20;

impl Rules {
    fn compile(field: &FieldDescriptor, rules: &FieldRules) -> Result<Self, RuleError> {
        let bad = |reason: String| RuleError {
            field: field.full_name().to_owned(),
            reason,
        };
        let kind = field.kind();
        let collection = field.is_list() || field.is_map();
        let string_rules =
            rules.min_length.is_some() || rules.max_length.is_some() || !rules.pattern.is_empty();
        // A map's entries are messages; its value field is what the string
        // rules are about.
        let (key_kind, value_kind) = match &kind {
            Kind::Message(entry) if field.is_map() => (
                Some(entry.map_entry_key_field().kind()),
                entry.map_entry_value_field().kind(),
            ),
            other => (None, other.clone()),
        };
        if string_rules && !matches!(value_kind, Kind::String) {
            return Err(bad(
                "min_length, max_length and pattern apply to string fields (and maps of strings) only"
                    .to_owned(),
            ));
        }
        if !rules.key_pattern.is_empty() && !matches!(key_kind, Some(Kind::String)) {
            return Err(bad(
                "key_pattern applies to maps with string keys only".to_owned()
            ));
        }
        if (rules.min_items.is_some() || rules.max_items.is_some()) && !collection {
            return Err(bad(
                "min_items and max_items apply to repeated and map fields only".to_owned(),
            ));
        }
        if (rules.minimum.is_some() || rules.maximum.is_some())
            && (field.is_map() || !is_number(&kind))
        {
            return Err(bad(
                "minimum and maximum apply to number fields only".to_owned()
            ));
        }
        let compile = |source: &str| -> Result<Option<Regex>, RuleError> {
            if source.is_empty() {
                return Ok(None);
            }
            regex::RegexBuilder::new(source)
                .size_limit(MAX_PATTERN_BYTES)
                .build()
                .map(Some)
                .map_err(|error| bad(format!("bad pattern: {error}")))
        };
        let pattern = compile(&rules.pattern)?;
        let key_pattern = compile(&rules.key_pattern)?;
        let size = |n: Option<u32>| n.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(Self {
            min_length: size(rules.min_length),
            max_length: size(rules.max_length),
            pattern,
            key_pattern,
            pattern_description: (!rules.pattern_description.is_empty())
                .then(|| rules.pattern_description.clone()),
            min_items: size(rules.min_items),
            max_items: size(rules.max_items),
            minimum: rules.minimum,
            maximum: rules.maximum,
        })
    }

    /// Checks one present field, pushing what is wrong.
    fn check(&self, value: &Value, path: &str, out: &mut Vec<Violation>) {
        match value {
            Value::List(items) => {
                self.check_count(items.len(), path, out);
                for (i, item) in items.iter().enumerate() {
                    self.check_scalar(item, &format!("{path}[{i}]"), out);
                }
            }
            Value::Map(entries) => {
                self.check_count(entries.len(), path, out);
                for (key, value) in entries {
                    let entry = format!("{path}[{}]", map_key(key));
                    if let (Some(pattern), MapKey::String(key)) = (&self.key_pattern, key)
                        && !pattern.is_match(key)
                    {
                        out.push(Violation::invalid(
                            &entry,
                            match &self.pattern_description {
                                Some(words) => format!("key must be {words}"),
                                None => format!("key must match `{}`", pattern.as_str()),
                            },
                        ));
                    }
                    self.check_scalar(value, &entry, out);
                }
            }
            scalar => self.check_scalar(scalar, path, out),
        }
    }

    fn check_count(&self, n: usize, path: &str, out: &mut Vec<Violation>) {
        check_size(n, self.min_items, self.max_items, path, out, |bound| {
            format!("must have {bound} items")
        });
    }

    fn check_scalar(&self, value: &Value, path: &str, out: &mut Vec<Violation>) {
        if let Value::String(s) = value {
            // Only count characters when a length rule needs them.
            if self.min_length.is_some() || self.max_length.is_some() {
                let n = s.chars().count();
                check_size(n, self.min_length, self.max_length, path, out, |bound| {
                    format!("must be {bound} characters")
                });
            }
            if let Some(pattern) = &self.pattern
                && !pattern.is_match(s)
            {
                out.push(Violation::invalid(
                    path,
                    match &self.pattern_description {
                        Some(words) => format!("must be {words}"),
                        None => format!("must match `{}`", pattern.as_str()),
                    },
                ));
            }
            return;
        }
        let number = match value {
            Value::I32(n) => f64::from(*n),
            Value::U32(n) => f64::from(*n),
            // Bounds are doubles: beyond 2^53 the comparison is approximate,
            // which only matters for bounds that large.
            Value::I64(n) => *n as f64,
            Value::U64(n) => *n as f64,
            Value::F32(n) => f64::from(*n),
            Value::F64(n) => *n,
            _ => return,
        };
        // NaN is within no bounds.
        if let Some(min) = self.minimum
            && (number.is_nan() || number < min)
        {
            out.push(Violation::invalid(path, format!("must be at least {min}")));
        }
        if let Some(max) = self.maximum
            && (number.is_nan() || number > max)
        {
            out.push(Violation::invalid(path, format!("must be at most {max}")));
        }
    }
}

/// Pushes a violation for each bound a size `n` breaks; `words` puts the
/// bound (`at least 2`, `at most 9`) into the message.
fn check_size(
    n: usize,
    min: Option<usize>,
    max: Option<usize>,
    path: &str,
    out: &mut Vec<Violation>,
    words: impl Fn(String) -> String,
) {
    if let Some(min) = min
        && n < min
    {
        out.push(Violation::invalid(path, words(format!("at least {min}"))));
    }
    if let Some(max) = max
        && n > max
    {
        out.push(Violation::invalid(path, words(format!("at most {max}"))));
    }
}

/// One field that breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The proto path, e.g. `owner.id` or `deputies[1].id`.
    pub(crate) field: String,
    pub(crate) description: String,
    /// A missing required field rather than a value breaking a rule.
    pub(crate) missing: bool,
}

impl Violation {
    fn missing(field: String) -> Self {
        Self {
            field,
            description: "is required".to_owned(),
            missing: true,
        }
    }

    fn invalid(field: &str, description: String) -> Self {
        Self {
            field: field.to_owned(),
            description,
            missing: false,
        }
    }
}

#[derive(Debug, Default)]
struct MessageRules {
    required: Vec<FieldDescriptor>,
    constrained: Vec<(FieldDescriptor, Arc<Rules>)>,
    /// Message-typed fields (singular, repeated or map values) whose type
    /// has something to check somewhere below.
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

/// The `update_mask` field of a request, if it has a FieldMask one.
pub(crate) fn update_mask_field(message: &MessageDescriptor) -> Option<FieldDescriptor> {
    message.fields().find(|f| {
        f.name() == "update_mask"
            && !f.is_list()
            && f.kind()
                .as_message()
                .is_some_and(|m| m.full_name() == FIELD_MASK)
    })
}

type Direct = (
    MessageDescriptor,
    Vec<FieldDescriptor>,
    Vec<(FieldDescriptor, Arc<Rules>)>,
);

impl Validator {
    /// Rules for `inputs` and everything reachable from them; a field rule
    /// that cannot apply to its field is an error.
    pub(crate) fn new(
        inputs: impl IntoIterator<Item = MessageDescriptor>,
        behavior: Option<&ExtensionDescriptor>,
        rules: Option<&ExtensionDescriptor>,
    ) -> Result<Self, RuleError> {
        let mut direct: HashMap<String, Direct> = HashMap::new();
        let mut stack: Vec<MessageDescriptor> = inputs.into_iter().collect();
        while let Some(message) = stack.pop() {
            if direct.contains_key(message.full_name()) {
                continue;
            }
            let required = message
                .fields()
                .filter(|f| field_behaviors(f, behavior).contains(&behavior::REQUIRED))
                .collect();
            let mut constrained = Vec::new();
            for field in message.fields() {
                if let Some(found) = field_rules(&field, rules) {
                    constrained.push((field.clone(), Arc::new(Rules::compile(&field, &found)?)));
                }
                if let Some(child) = message_kind(&field) {
                    stack.push(child);
                }
            }
            direct.insert(
                message.full_name().to_owned(),
                (message, required, constrained),
            );
        }

        // Which messages have something to check anywhere below: grow the
        // set until it stops changing, which also handles recursive types.
        let mut has_checks: BTreeSet<String> = direct
            .iter()
            .filter(|(_, (_, req, con))| !req.is_empty() || !con.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        loop {
            let before = has_checks.len();
            for (name, (message, _, _)) in &direct {
                if !has_checks.contains(name)
                    && message.fields().any(|f| {
                        message_kind(&f).is_some_and(|m| has_checks.contains(m.full_name()))
                    })
                {
                    has_checks.insert(name.clone());
                }
            }
            if has_checks.len() == before {
                break;
            }
        }

        let rules = direct
            .into_iter()
            .map(|(name, (message, required, constrained))| {
                let nested = message
                    .fields()
                    .filter(|f| message_kind(f).is_some_and(|m| has_checks.contains(m.full_name())))
                    .collect();
                let mask = update_mask_field(&message);
                (
                    name,
                    MessageRules {
                        required,
                        constrained,
                        nested,
                        mask,
                    },
                )
            })
            .collect();
        Ok(Self { rules })
    }

    /// Whether a `message` request has anything to check.
    pub(crate) fn checks(&self, message: &MessageDescriptor) -> bool {
        self.rules.get(message.full_name()).is_some_and(|r| {
            !r.required.is_empty() || !r.constrained.is_empty() || !r.nested.is_empty()
        })
    }

    /// Every missing required field and every value breaking a rule.
    pub(crate) fn violations(&self, request: &DynamicMessage) -> Vec<Violation> {
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
        out: &mut Vec<Violation>,
    ) {
        let Some(rules) = self.rules.get(message.descriptor().full_name()) else {
            return;
        };
        // The request's own fields are always checked; below it a mask,
        // when there is one, selects the fields.
        let filter = if top { None } else { mask };
        let selected = |field: &FieldDescriptor| {
            filter.is_none_or(|paths| paths.iter().any(|p| p == field.name()))
        };
        for field in &rules.required {
            if selected(field) && (!present(message, field) || blank(message, field)) {
                out.push(Violation::missing(join(prefix, field.name())));
            }
        }
        for (field, field_rules) in &rules.constrained {
            if selected(field) && present(message, field) {
                field_rules.check(&message.get_field(field), &join(prefix, field.name()), out);
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
pub(crate) fn mask_paths(message: &DynamicMessage, field: &FieldDescriptor) -> Vec<String> {
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

/// The OpenAPI `pattern` of a required string: at least one character
/// that is not white space as Rust's `str::trim` (and so the services)
/// sees it. Spelt out, because `\s` means other sets in other regex
/// dialects: ECMA-262's, which JSON Schema validators use, leaves out
/// U+0085 (which `trim` removes) and adds U+FEFF (which it keeps), so a
/// client trusting `\S` could send a value the gateway counts as missing.
/// The `\uXXXX` escapes read the same in ECMA-262, Python and Rust's
/// regex.
pub(crate) const NOT_BLANK_PATTERN: &str =
    "[^\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// A singular string of white space only: the services trim what they are
/// given, so for a required field it is as missing as the empty string
/// (and the OpenAPI schema says so with [`NOT_BLANK_PATTERN`]).
fn blank(message: &DynamicMessage, field: &FieldDescriptor) -> bool {
    !field.is_list()
        && matches!(field.kind(), prost_reflect::Kind::String)
        && matches!(message.get_field(field).as_ref(), Value::String(s) if s.trim().is_empty())
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

    #[test]
    fn the_not_blank_pattern_is_exactly_what_trim_keeps() {
        let class = regex::Regex::new(&format!("^{NOT_BLANK_PATTERN}$")).unwrap();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(
                class.is_match(c.encode_utf8(&mut [0; 4])),
                !c.is_whitespace(),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    fn validator(pool: &DescriptorPool) -> Validator {
        let inputs = pool
            .services()
            .flat_map(|s| s.methods().map(|m| m.input()).collect::<Vec<_>>());
        Validator::new(
            inputs,
            behavior_extension(pool).as_ref(),
            rules_extension(pool).as_ref(),
        )
        .unwrap()
    }

    fn message(pool: &DescriptorPool, name: &str, json: serde_json::Value) -> DynamicMessage {
        DynamicMessage::deserialize(pool.get_message_by_name(name).unwrap(), json).unwrap()
    }

    fn fields(v: Vec<Violation>) -> Vec<String> {
        v.into_iter().map(|v| v.field).collect()
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
        // White space only is missing too: the services trim it away.
        let refresh = message(
            &pool,
            "cloudsec.auth.v1.RefreshRequest",
            serde_json::json!({"refresh_token": " \t "}),
        );
        assert_eq!(fields(v.violations(&refresh)), ["refresh_token"]);

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

    fn rules_pool(source: &'static str) -> (DescriptorPool, MessageDescriptor) {
        let pool = crate::test_support::compile(source);
        let message = pool.get_message_by_name("t.M").unwrap();
        (pool, message)
    }

    #[test]
    fn field_rules_check_only_present_values() {
        let (pool, m) = rules_pool(
            r#"syntax = "proto3"; package t;
            import "cloudsec/api/v1/options.proto";
            message M {
              string s = 1 [(cloudsec.api.v1.field_rules) = {min_length: 2, max_length: 3, pattern: "^a"}];
              repeated int64 n = 2 [(cloudsec.api.v1.field_rules) = {min_items: 2, maximum: 10}];
              map<string, string> m = 3 [(cloudsec.api.v1.field_rules) = {max_items: 1}];
              double d = 4 [(cloudsec.api.v1.field_rules) = {minimum: 0}];
            }"#,
        );
        let v = Validator::new([m.clone()], None, rules_extension(&pool).as_ref()).unwrap();
        let check = |json: serde_json::Value| -> Vec<(String, String)> {
            let message = DynamicMessage::deserialize(m.clone(), json).unwrap();
            v.violations(&message)
                .into_iter()
                .map(|v| {
                    assert!(!v.missing);
                    (v.field, v.description)
                })
                .collect()
        };
        let pair = |f: &str, d: &str| (f.to_owned(), d.to_owned());
        // Nothing set, nothing to check: presence is REQUIRED's business.
        assert!(check(serde_json::json!({})).is_empty());
        assert!(check(serde_json::json!({"s": "abc", "n": ["1", "10"], "d": 0.5})).is_empty());
        // Characters, not bytes.
        assert_eq!(
            check(serde_json::json!({"s": "é"})),
            [
                pair("s", "must be at least 2 characters"),
                pair("s", "must match `^a`")
            ]
        );
        assert_eq!(
            check(serde_json::json!({"s": "abcd"})),
            [pair("s", "must be at most 3 characters")]
        );
        assert_eq!(
            check(serde_json::json!({"n": ["11"]})),
            [
                pair("n", "must have at least 2 items"),
                pair("n[0]", "must be at most 10")
            ]
        );
        assert_eq!(
            check(serde_json::json!({"m": {"a": "1", "b": "2"}})),
            [pair("m", "must have at most 1 items")]
        );
        for d in [serde_json::json!(-0.5), serde_json::json!("NaN")] {
            assert_eq!(
                check(serde_json::json!({"d": d})),
                [pair("d", "must be at least 0")]
            );
        }
    }

    #[test]
    fn map_rules_check_keys_and_values() {
        let (pool, m) = rules_pool(
            r#"syntax = "proto3"; package t; import "cloudsec/api/v1/options.proto";
               message M { map<string, string> n = 1 [(cloudsec.api.v1.field_rules) = {max_items: 2, key_pattern: "^[a-z]+$", max_length: 3}]; }"#,
        );
        let validator = Validator::new([m.clone()], None, rules_extension(&pool).as_ref()).unwrap();
        let check = |json: serde_json::Value| {
            let message = DynamicMessage::deserialize(m.clone(), json).unwrap();
            let mut out: Vec<(String, String)> = validator
                .violations(&message)
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect();
            out.sort();
            out
        };
        assert!(check(serde_json::json!({"n": {"env": "ok"}})).is_empty());
        assert_eq!(
            check(serde_json::json!({"n": {"Env": "ok", "b": "long"}})),
            [
                (
                    "n[\"Env\"]".to_owned(),
                    "key must match `^[a-z]+$`".to_owned()
                ),
                (
                    "n[\"b\"]".to_owned(),
                    "must be at most 3 characters".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn rules_that_cannot_apply_are_refused_at_start() {
        for source in [
            r#"syntax = "proto3"; package t; import "cloudsec/api/v1/options.proto";
               message M { int32 n = 1 [(cloudsec.api.v1.field_rules) = {max_length: 3}]; }"#,
            r#"syntax = "proto3"; package t; import "cloudsec/api/v1/options.proto";
               message M { string n = 1 [(cloudsec.api.v1.field_rules) = {minimum: 1}]; }"#,
            r#"syntax = "proto3"; package t; import "cloudsec/api/v1/options.proto";
               message M { string n = 1 [(cloudsec.api.v1.field_rules) = {max_items: 2}]; }"#,
            r#"syntax = "proto3"; package t; import "cloudsec/api/v1/options.proto";
               message M { string n = 1 [(cloudsec.api.v1.field_rules) = {pattern: "("}]; }"#,
            r#"syntax = "proto3"; package t; import "cloudsec/api/v1/options.proto";
               message M { map<string, int32> n = 1 [(cloudsec.api.v1.field_rules) = {max_length: 2}]; }"#,
            r#"syntax = "proto3"; package t; import "cloudsec/api/v1/options.proto";
               message M { map<int32, string> n = 1 [(cloudsec.api.v1.field_rules) = {key_pattern: "a"}]; }"#,
            r#"syntax = "proto3"; package t; import "cloudsec/api/v1/options.proto";
               message M { string n = 1 [(cloudsec.api.v1.field_rules) = {key_pattern: "a"}]; }"#,
        ] {
            let (pool, m) = rules_pool(source);
            let error = Validator::new([m], None, rules_extension(&pool).as_ref()).unwrap_err();
            assert_eq!(error.field, "t.M.n", "{error}");
        }
    }
}
