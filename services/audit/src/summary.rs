//! What an audit record says about an event's payload: a JSON summary and
//! the actor.
//!
//! Payloads are decoded by reflection over the contracts' descriptor set,
//! so an event added to `cloudsec.events.v1` is summarised without a
//! change here. Only that package is decoded: a producer that sent some
//! other message (a `Document`, say, which has content) under its own type
//! name gets a record with the type alone, never the fields.

use cloudsec_bus::Envelope;
use cloudsec_bus::envelope::PROTOBUF;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Map, Value};

/// The package whose messages are domain events.
const EVENTS_PACKAGE: &str = "cloudsec.events.v1.";
/// The summary key naming the payload type, as in the JSON of `Any`.
const TYPE_KEY: &str = "@type";
/// Set, with why, when a domain event's payload does not decode.
const ERROR_KEY: &str = "@error";
/// What a field marked `(cloudsec.api.v1.sensitive)` reads as: the record
/// shows that a secret was sent, never the secret.
pub const REDACTED: &str = "[redacted]";

/// A payload's summary and actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Canonical JSON: sorted keys, no whitespace.
    pub json: String,
    /// The user id that caused the event; empty when the payload names
    /// none.
    pub actor: String,
}

/// Decodes domain event payloads by their type name.
#[derive(Clone)]
pub struct EventDecoder {
    pool: DescriptorPool,
    sensitive: Option<prost_reflect::ExtensionDescriptor>,
}

impl std::fmt::Debug for EventDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's own Debug prints every descriptor of every contract.
        f.write_str("EventDecoder")
    }
}

impl EventDecoder {
    /// A decoder over the contracts compiled into `cloudsec-proto`.
    pub fn new() -> Result<Self, prost_reflect::DescriptorError> {
        let pool = DescriptorPool::decode(cloudsec_proto::FILE_DESCRIPTOR_SET)?;
        let sensitive = pool.get_extension_by_name("cloudsec.api.v1.sensitive");
        Ok(Self { pool, sensitive })
    }

    /// The summary of `event`. Never fails: the audit log records every
    /// event, and one it cannot read is recorded by its type.
    pub fn summarize(&self, event: &Envelope) -> Summary {
        let mut fields = Map::new();
        let descriptor = event
            .event_type
            .strip_prefix(EVENTS_PACKAGE)
            .filter(|_| event.datacontenttype == PROTOBUF)
            .and_then(|_| self.pool.get_message_by_name(&event.event_type));
        if let Some(descriptor) = descriptor {
            match decode(descriptor, &event.data, self.sensitive.as_ref()) {
                Ok(decoded) => fields = decoded,
                Err(reason) => {
                    fields.insert(ERROR_KEY.to_owned(), Value::String(reason));
                }
            }
        }
        let actor = actor(&event.event_type, &fields);
        fields.insert(TYPE_KEY.to_owned(), Value::String(event.event_type.clone()));
        Summary {
            json: canonical(&Value::Object(fields)),
            actor,
        }
    }
}

fn decode(
    descriptor: prost_reflect::MessageDescriptor,
    data: &[u8],
    sensitive: Option<&prost_reflect::ExtensionDescriptor>,
) -> Result<Map<String, Value>, String> {
    let mut message = DynamicMessage::decode(descriptor.clone(), data)
        .map_err(|e| format!("payload does not decode: {e}"))?;
    // Cleared before serializing, so no secret reaches the JSON even for a
    // moment; the redaction marker is put back after.
    let mut redacted = Vec::new();
    for field in descriptor.fields() {
        if is_sensitive(&field, sensitive) && message.has_field(&field) {
            message.clear_field(&field);
            redacted.push(field.name().to_owned());
        }
    }
    // Proto field names read like the contract; 64-bit integers stay
    // strings, so no value is rounded.
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut fields = match message.serialize_with_options(serde_json::value::Serializer, &options) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err("payload is not a message".to_owned()),
        Err(e) => return Err(format!("payload does not serialize: {e}")),
    };
    for name in redacted {
        fields.insert(name, Value::String(REDACTED.to_owned()));
    }
    Ok(fields)
}

fn is_sensitive(
    field: &prost_reflect::FieldDescriptor,
    sensitive: Option<&prost_reflect::ExtensionDescriptor>,
) -> bool {
    let Some(extension) = sensitive else {
        return false;
    };
    let options = field.options();
    options.has_extension(extension) && options.get_extension(extension).as_bool() == Some(true)
}

/// The payload's `actor`; a sign-up's actor is the user who signed up.
fn actor(event_type: &str, fields: &Map<String, Value>) -> String {
    let field = match fields.get("actor") {
        Some(Value::String(actor)) if !actor.is_empty() => return actor.clone(),
        _ if event_type == "cloudsec.events.v1.UserSignedUp" => "user_id",
        // The user asked for the code (or signed up, which sent it).
        _ if event_type == "cloudsec.events.v1.UserConfirmationRequested" => "user_id",
        _ => return String::new(),
    };
    match fields.get(field) {
        Some(Value::String(actor)) => actor.clone(),
        _ => String::new(),
    }
}

/// JSON with every object's keys sorted and no whitespace, whatever order
/// the maps were built in.
fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudsec_proto::events::v1 as ev;
    use prost::Message as _;

    fn decoder() -> EventDecoder {
        EventDecoder::new().unwrap()
    }

    fn parse(summary: &Summary) -> Value {
        serde_json::from_str(&summary.json).unwrap()
    }

    #[test]
    fn document_events_are_decoded() {
        let event = Envelope::new(
            "/cloudsec/documents",
            &ev::DocumentCreated {
                document_id: "d1".into(),
                tenant: "acme".into(),
                actor: "alice".into(),
                title: "Plan".into(),
                classification: 3,
                labels: [("env".to_owned(), "prod".to_owned())].into(),
                size_bytes: 9_007_199_254_740_993,
                ..Default::default()
            },
        );
        let summary = decoder().summarize(&event);
        assert_eq!(summary.actor, "alice");
        let json = parse(&summary);
        assert_eq!(json["@type"], "cloudsec.events.v1.DocumentCreated");
        assert_eq!(json["document_id"], "d1");
        assert_eq!(json["title"], "Plan");
        assert_eq!(json["classification"], "CONFIDENTIAL");
        assert_eq!(json["labels"]["env"], "prod");
        // Beyond f64's exact range, so it must stay a string.
        assert_eq!(json["size_bytes"], "9007199254740993");
        assert!(!summary.json.contains(' '), "{}", summary.json);
        assert!(summary.json.starts_with(r#"{"@type":"#), "{}", summary.json);
    }

    #[test]
    fn a_sign_up_is_its_users_act() {
        let event = Envelope::new(
            "/cloudsec/auth",
            &ev::UserSignedUp {
                user_id: "u1".into(),
                tenant: "acme".into(),
                email: "u1@example.com".into(),
                tenant_created: true,
                ..Default::default()
            },
        );
        let summary = decoder().summarize(&event);
        assert_eq!(summary.actor, "u1");
        assert_eq!(parse(&summary)["tenant_created"], true);
    }

    #[test]
    fn sensitive_fields_are_redacted() {
        let event = Envelope::new(
            "/cloudsec/auth",
            &ev::UserConfirmationRequested {
                user_id: "u1".into(),
                tenant: "acme".into(),
                email: "u1@example.com".into(),
                purpose: ev::ConfirmationPurpose::PasswordReset as i32,
                sealed_code: "sealed:v1:c2VjcmV0".into(),
                ..Default::default()
            },
        );
        let summary = decoder().summarize(&event);
        assert!(!summary.json.contains("c2VjcmV0"), "{}", summary.json);
        let json = parse(&summary);
        assert_eq!(json["sealed_code"], REDACTED);
        assert_eq!(json["purpose"], "PASSWORD_RESET");
        assert_eq!(json["email"], "u1@example.com");
        assert_eq!(summary.actor, "u1");
    }

    #[test]
    fn unknown_types_keep_only_their_name() {
        let mut event = Envelope::new("/x", &ev::DocumentDeleted::default());
        event.event_type = "com.example.Thing".into();
        let summary = decoder().summarize(&event);
        assert_eq!(summary.json, r#"{"@type":"com.example.Thing"}"#);
        assert_eq!(summary.actor, "");

        // A message outside the events package is not decoded, even one
        // the contracts define.
        event.event_type = "cloudsec.documents.v1.Document".into();
        event.data = cloudsec_proto::documents::v1::Document {
            content: "secret text".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let summary = decoder().summarize(&event);
        assert!(!summary.json.contains("secret"), "{}", summary.json);
    }

    #[test]
    fn undecodable_payloads_are_still_summarised() {
        let mut event = Envelope::new("/x", &ev::DocumentDeleted::default());
        event.data = vec![0xff, 0xff, 0xff];
        let summary = decoder().summarize(&event);
        let json = parse(&summary);
        assert_eq!(json["@type"], "cloudsec.events.v1.DocumentDeleted");
        assert!(json["@error"].as_str().unwrap().contains("does not decode"));
    }

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let value: Value =
            serde_json::from_str(r#"{"b":{"z":1,"a":[{"y":1,"x":2}]},"a":true}"#).unwrap();
        assert_eq!(
            canonical(&value),
            r#"{"a":true,"b":{"a":[{"x":2,"y":1}],"z":1}}"#
        );
    }
}
