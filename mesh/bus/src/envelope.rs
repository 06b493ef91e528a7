//! The CloudEvents 1.0 envelope around a protobuf payload, and its two
//! wire forms.
//!
//! - **Binary mode** puts the context attributes into message attributes
//!   (`ce_id`, `ce_type`, ...; the Kafka binding's names, which SNS and SQS
//!   accept) and the payload into the body. SNS and SQS bodies are text, so
//!   the protobuf bytes travel base64-encoded; the receiver knows because
//!   `ce_datacontenttype` is `application/protobuf`. Filter policies match
//!   on `ce_type`.
//! - **Structured mode** is the CloudEvents JSON format: one JSON object with
//!   the attributes and the payload as `data_base64`. EventBridge carries it
//!   as the event's `detail`, and the outbox and the embedded bus store it.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{BusError, Result};

/// The only CloudEvents version this crate speaks.
pub const SPEC_VERSION: &str = "1.0";
/// The content type of every payload this crate produces.
pub const PROTOBUF: &str = "application/protobuf";
/// The prefix of binary-mode attribute names.
pub const ATTRIBUTE_PREFIX: &str = "ce_";
/// The binary-mode attribute that filter policies and rules route on.
pub const TYPE_ATTRIBUTE: &str = "ce_type";

/// The contracts mark which messages are domain events (see
/// `cloudsec.api.v1.event_aggregate`); the catalogue lives there.
pub use cloudsec_proto::DomainEvent;

/// One event: the CloudEvents context attributes and the payload bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Unique per event (a UUIDv7); subscribers deduplicate on it.
    pub id: String,
    /// Who produced it, as a URI reference (`/cloudsec/documents`).
    pub source: String,
    /// What happened (`cloudsec.events.v1.DocumentCreated`).
    pub event_type: String,
    /// The aggregate the event is about (a document or user id).
    pub subject: Option<String>,
    /// When it happened, to the microsecond.
    pub time: DateTime<Utc>,
    /// How `data` is encoded; [`PROTOBUF`] for domain events.
    pub datacontenttype: String,
    /// Extension `tenant`: whose data the event is about.
    pub tenant: String,
    /// Extension `traceparent` (W3C trace context) of the cause.
    pub traceparent: Option<String>,
    /// The payload.
    pub data: Vec<u8>,
}

impl Envelope {
    /// An envelope around `event`, with a fresh id and the current time.
    pub fn new<E: DomainEvent>(source: impl Into<String>, event: &E) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            source: source.into(),
            event_type: E::TYPE.to_owned(),
            subject: Some(event.aggregate_id().to_owned()).filter(|s| !s.is_empty()),
            time: now_micros(),
            datacontenttype: PROTOBUF.to_owned(),
            tenant: event.tenant().to_owned(),
            traceparent: None,
            data: event.encode_to_vec(),
        }
    }

    /// Sets the W3C `traceparent` of the request that caused the event.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into()).filter(|t: &String| !t.is_empty());
        self
    }

    /// The payload as `E`; fails when the envelope holds another type.
    pub fn decode<E: DomainEvent>(&self) -> Result<E> {
        if self.event_type != E::TYPE {
            return Err(BusError::WrongType {
                expected: E::TYPE,
                actual: self.event_type.clone(),
            });
        }
        E::decode(self.data.as_slice()).map_err(|e| BusError::Decode(e.to_string()))
    }

    /// The unit of ordering: the subject, or the tenant when there is none.
    pub fn aggregate(&self) -> &str {
        self.subject.as_deref().unwrap_or(&self.tenant)
    }

    /// Checks the required attributes (CloudEvents 1.0, section 3.1).
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.event_type),
            ("datacontenttype", &self.datacontenttype),
        ] {
            if value.is_empty() {
                return Err(BusError::Invalid(format!("attribute `{name}` is empty")));
            }
        }
        Ok(())
    }

    /// Binary mode: the attributes as `ce_*` message attributes, and the
    /// body (the payload, base64 because SNS and SQS bodies are text).
    pub fn to_binary(&self) -> (BTreeMap<String, String>, String) {
        let mut attributes = BTreeMap::new();
        let mut put = |name: &str, value: &str| {
            attributes.insert(format!("{ATTRIBUTE_PREFIX}{name}"), value.to_owned());
        };
        put("specversion", SPEC_VERSION);
        put("id", &self.id);
        put("source", &self.source);
        put("type", &self.event_type);
        if let Some(subject) = &self.subject {
            put("subject", subject);
        }
        put("time", &format_time(self.time));
        put("datacontenttype", &self.datacontenttype);
        if !self.tenant.is_empty() {
            put("tenant", &self.tenant);
        }
        if let Some(traceparent) = &self.traceparent {
            put("traceparent", traceparent);
        }
        (attributes, BASE64.encode(&self.data))
    }

    /// Reads a binary-mode message back.
    pub fn from_binary(attributes: &BTreeMap<String, String>, body: &str) -> Result<Self> {
        let get = |name: &str| {
            attributes
                .get(&format!("{ATTRIBUTE_PREFIX}{name}"))
                .cloned()
        };
        let required = |name: &'static str| {
            get(name).ok_or_else(|| BusError::Decode(format!("attribute `ce_{name}` is missing")))
        };
        let specversion = required("specversion")?;
        check_spec_version(&specversion)?;
        let datacontenttype = get("datacontenttype").unwrap_or_else(|| PROTOBUF.to_owned());
        let data = if is_binary_payload(&datacontenttype) {
            BASE64
                .decode(body.trim())
                .map_err(|e| BusError::Decode(format!("body is not base64: {e}")))?
        } else {
            body.as_bytes().to_vec()
        };
        let envelope = Self {
            id: required("id")?,
            source: required("source")?,
            event_type: required("type")?,
            subject: get("subject"),
            time: match get("time") {
                Some(time) => parse_time(&time)?,
                None => now_micros(),
            },
            datacontenttype,
            tenant: get("tenant").unwrap_or_default(),
            traceparent: get("traceparent"),
            data,
        };
        envelope.validate()?;
        Ok(envelope)
    }

    /// Structured mode: the CloudEvents JSON format.
    pub fn to_json(&self) -> String {
        let structured = Structured {
            specversion: SPEC_VERSION.to_owned(),
            id: self.id.clone(),
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            subject: self.subject.clone(),
            time: Some(format_time(self.time)),
            datacontenttype: Some(self.datacontenttype.clone()),
            tenant: Some(self.tenant.clone()).filter(|t| !t.is_empty()),
            traceparent: self.traceparent.clone(),
            data_base64: Some(BASE64.encode(&self.data)),
            data: None,
        };
        // A struct of strings always serializes.
        serde_json::to_string(&structured).unwrap_or_default()
    }

    /// Reads the CloudEvents JSON format back.
    pub fn from_json(json: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| BusError::Decode(format!("not JSON: {e}")))?;
        Self::from_json_value(value)
    }

    /// Reads a message body that is either a structured CloudEvent or an
    /// EventBridge event whose `detail` is one (what an EventBridge rule
    /// delivers to an SQS target).
    pub fn from_json_value(value: serde_json::Value) -> Result<Self> {
        let value = match value {
            serde_json::Value::Object(mut object)
                if object.contains_key("detail-type") && object.contains_key("detail") =>
            {
                object.remove("detail").unwrap_or_default()
            }
            other => other,
        };
        let structured: Structured = serde_json::from_value(value)
            .map_err(|e| BusError::Decode(format!("not a CloudEvent: {e}")))?;
        check_spec_version(&structured.specversion)?;
        let datacontenttype = structured
            .datacontenttype
            .unwrap_or_else(|| "application/json".to_owned());
        let data = match (structured.data_base64, structured.data) {
            (Some(encoded), _) => BASE64
                .decode(encoded)
                .map_err(|e| BusError::Decode(format!("`data_base64` is not base64: {e}")))?,
            (None, Some(serde_json::Value::String(text))) => text.into_bytes(),
            (None, Some(json)) => json.to_string().into_bytes(),
            (None, None) => Vec::new(),
        };
        let envelope = Self {
            id: structured.id,
            source: structured.source,
            event_type: structured.event_type,
            subject: structured.subject,
            time: match structured.time {
                Some(time) => parse_time(&time)?,
                None => now_micros(),
            },
            datacontenttype,
            tenant: structured.tenant.unwrap_or_default(),
            traceparent: structured.traceparent,
            data,
        };
        envelope.validate()?;
        Ok(envelope)
    }
}

/// The CloudEvents JSON format; unknown extensions are ignored.
#[derive(Serialize, Deserialize)]
struct Structured {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
}

fn check_spec_version(version: &str) -> Result<()> {
    if version == SPEC_VERSION {
        Ok(())
    } else {
        Err(BusError::Decode(format!(
            "unsupported specversion `{version}`, expected {SPEC_VERSION}"
        )))
    }
}

/// Payloads that are bytes rather than text travel base64-encoded.
fn is_binary_payload(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    !(essence.starts_with("text/") || essence.ends_with("json") || essence.ends_with("+json"))
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| BusError::Decode(format!("`time` is not RFC 3339: {e}")))
}

/// Now, cut to whole microseconds, so that the time survives both wire
/// forms and both databases unchanged.
pub(crate) fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudsec_proto::events::v1::{DocumentCreated, DocumentDeleted};

    fn created() -> DocumentCreated {
        DocumentCreated {
            document_id: "doc-1".into(),
            tenant: "acme".into(),
            actor: "alice".into(),
            title: "plans".into(),
            size_bytes: 42,
            ..Default::default()
        }
    }

    #[test]
    fn new_fills_the_context_from_the_event() {
        let envelope = Envelope::new("/cloudsec/documents", &created())
            .with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(envelope.event_type, "cloudsec.events.v1.DocumentCreated");
        assert_eq!(envelope.subject.as_deref(), Some("doc-1"));
        assert_eq!(envelope.tenant, "acme");
        assert_eq!(envelope.aggregate(), "doc-1");
        assert_eq!(envelope.datacontenttype, PROTOBUF);
        assert!(uuid::Uuid::parse_str(&envelope.id).is_ok());
        assert_eq!(envelope.decode::<DocumentCreated>().unwrap(), created());
    }

    #[test]
    fn decode_refuses_another_type() {
        let envelope = Envelope::new("/cloudsec/documents", &created());
        let err = envelope.decode::<DocumentDeleted>().unwrap_err();
        assert!(matches!(err, BusError::WrongType { .. }), "{err}");
    }

    #[test]
    fn binary_mode_round_trips() {
        let envelope =
            Envelope::new("/cloudsec/documents", &created()).with_traceparent("00-a-b-01");
        let (attributes, body) = envelope.to_binary();
        assert_eq!(
            attributes.get(TYPE_ATTRIBUTE).map(String::as_str),
            Some("cloudsec.events.v1.DocumentCreated")
        );
        assert_eq!(
            attributes.get("ce_tenant").map(String::as_str),
            Some("acme")
        );
        // SNS and SQS allow at most 10 message attributes.
        assert!(attributes.len() <= 10, "{attributes:?}");
        assert_eq!(Envelope::from_binary(&attributes, &body).unwrap(), envelope);
    }

    #[test]
    fn binary_mode_needs_the_required_attributes() {
        let envelope = Envelope::new("/cloudsec/documents", &created());
        let (mut attributes, body) = envelope.to_binary();
        attributes.remove("ce_id");
        let err = Envelope::from_binary(&attributes, &body).unwrap_err();
        assert!(err.to_string().contains("ce_id"), "{err}");

        let (mut attributes, body) = envelope.to_binary();
        attributes.insert("ce_specversion".into(), "0.3".into());
        assert!(Envelope::from_binary(&attributes, &body).is_err());
    }

    #[test]
    fn structured_mode_round_trips() {
        let envelope = Envelope::new("/cloudsec/documents", &created());
        let json = envelope.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(value["type"], "cloudsec.events.v1.DocumentCreated");
        assert_eq!(value["subject"], "doc-1");
        assert_eq!(value["tenant"], "acme");
        assert!(value["data_base64"].is_string());
        assert!(value.get("traceparent").is_none());
        assert_eq!(Envelope::from_json(&json).unwrap(), envelope);
    }

    #[test]
    fn structured_mode_reads_an_eventbridge_delivery() {
        let envelope = Envelope::new("/cloudsec/documents", &created());
        let detail: serde_json::Value = serde_json::from_str(&envelope.to_json()).unwrap();
        let delivered = serde_json::json!({
            "version": "0",
            "id": "eb-id",
            "detail-type": envelope.event_type,
            "source": envelope.source,
            "time": "2025-01-01T00:00:00Z",
            "detail": detail,
        });
        assert_eq!(Envelope::from_json_value(delivered).unwrap(), envelope);
    }

    #[test]
    fn structured_mode_accepts_json_data_and_ignores_unknown_extensions() {
        let json = r#"{"specversion":"1.0","id":"1","source":"/x","type":"t",
            "datacontenttype":"application/json","data":{"a":1},"other":"ext"}"#;
        let envelope = Envelope::from_json(json).unwrap();
        assert_eq!(envelope.data, br#"{"a":1}"#);
        assert!(
            Envelope::from_json(r#"{"specversion":"1.0","id":"","source":"/x","type":"t"}"#)
                .is_err()
        );
        assert!(Envelope::from_json("not json").is_err());
    }
}
