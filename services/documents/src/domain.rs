//! The documents domain: what a document is, what a valid request is, and
//! the rules that turn a client's input into validated values.
//!
//! Nothing here knows about tonic or the database. The gRPC adapter copies
//! a request's fields into the raw input types ([`DocumentFields`],
//! [`ListParams`]), the `validate` functions check every rule and report
//! all violations at once, and the store works only on validated values.
//! Field paths in violations are those of the contract (`document.title`,
//! `document.labels[env]`, `update_mask.paths[0]`, `page_size`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use cloudsec_runtime::FieldViolations;
use uuid::Uuid;

use crate::page_token::Cursor;
use cloudsec_runtime::page_token::PageTokenKey;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL_KEY_CHARS: usize = 63;
pub const MAX_LABEL_VALUE_CHARS: usize = 63;
/// 1 MiB of UTF-8.
pub const MAX_CONTENT_BYTES: usize = 1_048_576;
pub const MAX_CONTENT_TYPE_CHARS: usize = 127;
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain";
pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;

/// Keeps error messages short when a client sends a huge label key.
const MAX_KEY_IN_PATH: usize = 64;

/// Who may read a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Classification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Classification {
    pub const ALL: [Classification; 4] = [
        Classification::Public,
        Classification::Internal,
        Classification::Confidential,
        Classification::Restricted,
    ];

    /// The value of the contract's enum number; `None` for 0 (unspecified)
    /// and for numbers the contract does not define.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.number() == number)
    }

    /// The contract's enum number.
    pub fn number(self) -> i32 {
        match self {
            Classification::Public => 1,
            Classification::Internal => 2,
            Classification::Confidential => 3,
            Classification::Restricted => 4,
        }
    }

    /// The stored name, which is also the contract's enum name.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "PUBLIC",
            Classification::Internal => "INTERNAL",
            Classification::Confidential => "CONFIDENTIAL",
            Classification::Restricted => "RESTRICTED",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The name in a data key's binding at the key service (KMS's
    /// encryption context). Stored with every wrapped key: never changes.
    pub fn key_label(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Internal => "internal",
            Classification::Confidential => "confidential",
            Classification::Restricted => "restricted",
        }
    }
}

/// The authenticated caller: every query is scoped to `tenant`, and new
/// documents are owned by `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub user: String,
    /// Whether the caller may see and handle `RESTRICTED` documents (a
    /// member of the restricted group, or a tenant admin); to everyone
    /// else they do not exist.
    pub restricted: bool,
}

impl Caller {
    /// A caller who may handle every document of `tenant` (tools, tests).
    pub fn trusted(tenant: &str, user: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            restricted: true,
        }
    }
}

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: Uuid,
    pub tenant: String,
    pub owner: String,
    pub title: String,
    pub classification: Classification,
    pub labels: BTreeMap<String, String>,
    /// `None` where it was not loaded: lists leave content out, so that a
    /// page of 100 documents stays far below message size limits.
    pub content: Option<String>,
    pub content_type: String,
    pub size_bytes: i64,
    pub etag: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub documents: Vec<Document>,
    /// `None` on the last page.
    pub next_page_token: Option<String>,
}

/// A document's writable fields as the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentFields {
    pub title: String,
    /// The contract's enum number.
    pub classification: i32,
    pub labels: HashMap<String, String>,
    pub content: String,
    pub content_type: String,
}

/// A validated document to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocument {
    /// Trimmed.
    pub title: String,
    pub classification: Classification,
    pub labels: BTreeMap<String, String>,
    pub content: String,
    pub content_type: String,
}

impl NewDocument {
    /// Checks every field of `fields`, reported under `document.`.
    pub fn validate(fields: Option<DocumentFields>) -> Result<Self, FieldViolations> {
        let mut v = FieldViolations::new();
        let Some(fields) = fields else {
            v.add("document", "is required");
            return Err(v);
        };
        let title = check_title(&fields.title, &mut v);
        let classification = check_classification(fields.classification, &mut v);
        let labels = check_labels(fields.labels, &mut v);
        check_content(&fields.content, &mut v);
        let content_type = check_content_type(&fields.content_type, &mut v);
        match (title, classification, labels, content_type) {
            (Some(title), Some(classification), Some(labels), Some(content_type))
                if v.is_empty() =>
            {
                Ok(Self {
                    title,
                    classification,
                    labels,
                    content: fields.content,
                    content_type,
                })
            }
            _ => Err(v),
        }
    }
}

/// A writable field, as named in an update mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Title,
    Classification,
    Labels,
    Content,
    ContentType,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::Title,
        Field::Classification,
        Field::Labels,
        Field::Content,
        Field::ContentType,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Classification => "classification",
            Field::Labels => "labels",
            Field::Content => "content",
            Field::ContentType => "content_type",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.path() == path)
    }
}

/// A validated change to one document: `Some` fields are replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentPatch {
    pub id: Uuid,
    /// When set, the change applies only to this version.
    pub if_match: Option<String>,
    pub title: Option<String>,
    pub classification: Option<Classification>,
    pub labels: Option<BTreeMap<String, String>>,
    pub content: Option<String>,
    pub content_type: Option<String>,
}

/// An update as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateParams {
    pub id: String,
    pub etag: String,
    pub fields: DocumentFields,
    /// The update mask's paths; empty means every writable field.
    pub paths: Vec<String>,
}

impl DocumentPatch {
    /// Checks the id, the mask and the fields the mask names; fields
    /// outside the mask are ignored, as output-only fields are.
    pub fn validate(params: Option<UpdateParams>) -> Result<Self, FieldViolations> {
        let mut v = FieldViolations::new();
        let Some(params) = params else {
            v.add("document", "is required");
            return Err(v);
        };
        let id = parse_id("document.id", &params.id, &mut v);

        let mut fields: Vec<Field> = Vec::new();
        for (i, path) in params.paths.iter().enumerate() {
            match Field::from_path(path) {
                Some(field) => fields.push(field),
                None => v.add(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "unknown field `{}`: use title, classification, labels, content or content_type",
                        truncate(path, MAX_KEY_IN_PATH)
                    ),
                ),
            }
        }
        if params.paths.is_empty() {
            fields = Field::ALL.to_vec();
        }

        let input = params.fields;
        let mut patch = DocumentPatch {
            id: id.unwrap_or_default(),
            if_match: (!params.etag.is_empty()).then_some(params.etag),
            ..DocumentPatch::default()
        };
        if fields.contains(&Field::Title) {
            patch.title = check_title(&input.title, &mut v);
        }
        if fields.contains(&Field::Classification) {
            patch.classification = check_classification(input.classification, &mut v);
        }
        if fields.contains(&Field::Labels) {
            patch.labels = check_labels(input.labels, &mut v);
        }
        if fields.contains(&Field::Content) {
            check_content(&input.content, &mut v);
            patch.content = Some(input.content);
        }
        if fields.contains(&Field::ContentType) {
            patch.content_type = check_content_type(&input.content_type, &mut v);
        }
        v.check()?;
        Ok(patch)
    }
}

/// Validates the id and optional etag of a delete.
pub fn validate_delete(id: &str, etag: String) -> Result<(Uuid, Option<String>), FieldViolations> {
    let mut v = FieldViolations::new();
    let id = parse_id("id", id, &mut v);
    v.check()?;
    Ok((id.unwrap_or_default(), (!etag.is_empty()).then_some(etag)))
}

/// Validates the id of a get.
pub fn validate_id(id: &str) -> Result<Uuid, FieldViolations> {
    let mut v = FieldViolations::new();
    let id = parse_id("id", id, &mut v);
    v.check()?;
    Ok(id.unwrap_or_default())
}

/// Only documents that carry label `key` (with `value`, when given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
}

/// What a list is restricted to, besides the caller's tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub classification: Option<Classification>,
    pub label: Option<LabelFilter>,
}

impl ListFilter {
    /// One string per distinct filter, which page tokens are bound to.
    /// Label keys cannot hold `=` or `;`, and the value comes last, so the
    /// encoding is unambiguous.
    pub fn canonical(&self) -> String {
        let classification = self
            .classification
            .map(Classification::as_str)
            .unwrap_or("");
        let label = match &self.label {
            None => String::new(),
            Some(LabelFilter { key, value: None }) => key.clone(),
            Some(LabelFilter {
                key,
                value: Some(value),
            }) => format!("{key}={value}"),
        };
        format!("classification={classification};label={label}")
    }
}

/// A list request as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub page_size: i32,
    pub page_token: String,
    pub classification: i32,
    pub label: String,
}

/// A validated list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub page_size: u64,
    /// Where the page starts; `None` for the first page.
    pub after: Option<Cursor>,
    pub filter: ListFilter,
}

impl ListQuery {
    /// Checks the page size and filters, and opens the page token, which
    /// must have been issued to `tenant` for the same filters.
    pub fn validate(
        params: ListParams,
        tenant: &str,
        tokens: &PageTokenKey,
    ) -> Result<Self, FieldViolations> {
        let mut v = FieldViolations::new();
        let page_size = cloudsec_runtime::page_token::page_size(
            params.page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
            &mut v,
        );

        let mut filter = ListFilter::default();
        let mut filter_ok = true;
        if params.classification != 0 {
            filter.classification = Classification::from_number(params.classification);
            if filter.classification.is_none() {
                v.add(
                    "classification",
                    format!("unknown classification {}", params.classification),
                );
                filter_ok = false;
            }
        }
        if !params.label.is_empty() {
            let (key, value) = match params.label.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (params.label.as_str(), None),
            };
            let mut bad = Vec::new();
            if let Some(problem) = label_key_problem(key) {
                bad.push(problem);
            }
            if value.is_some_and(|value| value.chars().count() > MAX_LABEL_VALUE_CHARS) {
                bad.push(format!(
                    "value must be at most {MAX_LABEL_VALUE_CHARS} characters"
                ));
            }
            if bad.is_empty() {
                filter.label = Some(LabelFilter {
                    key: key.to_owned(),
                    value: value.map(str::to_owned),
                });
            } else {
                v.add(
                    "label",
                    format!("must be `key` or `key=value`: {}", bad.join(", ")),
                );
                filter_ok = false;
            }
        }

        let mut after = None;
        // A token can only be checked against well-formed filters.
        if !params.page_token.is_empty() && filter_ok {
            match tokens.open(&params.page_token, tenant, &filter.canonical()) {
                Ok(cursor) => after = Some(cursor),
                Err(error) => v.add("page_token", error.to_string()),
            }
        }
        v.check()?;
        Ok(Self {
            page_size,
            after,
            filter,
        })
    }
}

fn parse_id(field: &str, raw: &str, v: &mut FieldViolations) -> Option<Uuid> {
    if raw.is_empty() {
        v.add(field, "is required");
        return None;
    }
    match Uuid::try_parse(raw) {
        Ok(id) => Some(id),
        Err(_) => {
            v.add(field, "must be a UUID");
            None
        }
    }
}

fn check_title(raw: &str, v: &mut FieldViolations) -> Option<String> {
    let title = raw.trim();
    let chars = title.chars().count();
    if chars == 0 {
        v.add("document.title", "must not be empty");
        None
    } else if chars > MAX_TITLE_CHARS {
        v.add(
            "document.title",
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        );
        None
    } else if title.chars().any(char::is_control) {
        v.add("document.title", "must not contain control characters");
        None
    } else {
        Some(title.to_owned())
    }
}

fn check_classification(number: i32, v: &mut FieldViolations) -> Option<Classification> {
    let classification = Classification::from_number(number);
    if classification.is_none() {
        if number == 0 {
            v.add("document.classification", "is required");
        } else {
            v.add(
                "document.classification",
                format!("unknown classification {number}"),
            );
        }
    }
    classification
}

fn check_labels(
    labels: HashMap<String, String>,
    v: &mut FieldViolations,
) -> Option<BTreeMap<String, String>> {
    if labels.len() > MAX_LABELS {
        // One violation, not one per label: the list could be long.
        v.add(
            "document.labels",
            format!(
                "must hold at most {MAX_LABELS} labels, got {}",
                labels.len()
            ),
        );
        return None;
    }
    let labels: BTreeMap<String, String> = labels.into_iter().collect();
    let mut ok = true;
    for (key, value) in &labels {
        let path = format!("document.labels[{}]", truncate(key, MAX_KEY_IN_PATH));
        if let Some(problem) = label_key_problem(key) {
            v.add(path.clone(), problem);
            ok = false;
        }
        if value.chars().count() > MAX_LABEL_VALUE_CHARS {
            v.add(
                path,
                format!("value must be at most {MAX_LABEL_VALUE_CHARS} characters"),
            );
            ok = false;
        }
    }
    ok.then_some(labels)
}

fn label_key_problem(key: &str) -> Option<String> {
    let valid = !key.is_empty()
        && key.len() <= MAX_LABEL_KEY_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    (!valid).then(|| {
        format!("key must be 1 to {MAX_LABEL_KEY_CHARS} characters of a-z, 0-9, `_` and `-`")
    })
}

fn check_content(content: &str, v: &mut FieldViolations) {
    if content.len() > MAX_CONTENT_BYTES {
        v.add(
            "document.content",
            format!(
                "must be at most {MAX_CONTENT_BYTES} bytes of UTF-8, got {}",
                content.len()
            ),
        );
    }
}

fn check_content_type(raw: &str, v: &mut FieldViolations) -> Option<String> {
    if raw.is_empty() {
        return Some(DEFAULT_CONTENT_TYPE.to_owned());
    }
    if raw.chars().count() > MAX_CONTENT_TYPE_CHARS {
        v.add(
            "document.content_type",
            format!("must be at most {MAX_CONTENT_TYPE_CHARS} characters"),
        );
        return None;
    }
    if !is_media_type(raw) {
        v.add(
            "document.content_type",
            "must be a media type `type/subtype` such as text/plain",
        );
        return None;
    }
    Some(raw.to_owned())
}

/// `type/subtype` with RFC 6838 names, optionally followed by
/// `; name=value` parameters.
fn is_media_type(raw: &str) -> bool {
    let mut parts = raw.split(';');
    let essence = parts.next().unwrap_or_default().trim_end();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    if !is_restricted_name(kind) || !is_restricted_name(subtype) {
        return false;
    }
    parts.all(|param| {
        let Some((name, value)) = param.trim().split_once('=') else {
            return false;
        };
        is_restricted_name(name)
            && !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    })
}

fn is_restricted_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> DocumentFields {
        DocumentFields {
            title: "Quarterly report".into(),
            classification: Classification::Internal.number(),
            labels: HashMap::from([("env".into(), "prod".into())]),
            content: "hello".into(),
            content_type: String::new(),
        }
    }

    fn violated(v: &FieldViolations) -> Vec<String> {
        v.iter().map(|(f, _)| f.to_owned()).collect()
    }

    fn create_err(f: DocumentFields) -> Vec<String> {
        violated(&NewDocument::validate(Some(f)).unwrap_err())
    }

    #[test]
    fn accepts_a_good_document_and_defaults_content_type() {
        let mut f = fields();
        f.title = "  padded  ".into();
        let doc = NewDocument::validate(Some(f)).unwrap();
        assert_eq!(doc.title, "padded");
        assert_eq!(doc.content_type, "text/plain");
        assert_eq!(doc.classification, Classification::Internal);
        assert_eq!(doc.labels["env"], "prod");
    }

    #[test]
    fn missing_document_is_reported() {
        assert_eq!(
            violated(&NewDocument::validate(None).unwrap_err()),
            ["document"]
        );
        assert_eq!(
            violated(&DocumentPatch::validate(None).unwrap_err()),
            ["document"]
        );
    }

    #[test]
    fn title_rules() {
        for bad in ["", "   ", &"x".repeat(201), "a\u{0}b"] {
            let mut f = fields();
            f.title = bad.to_owned();
            assert_eq!(create_err(f), ["document.title"], "{bad:?}");
        }
        let mut f = fields();
        f.title = "é".repeat(200);
        assert!(
            NewDocument::validate(Some(f)).is_ok(),
            "200 chars, 400 bytes"
        );
    }

    #[test]
    fn classification_rules() {
        for bad in [0, 5, -1] {
            let mut f = fields();
            f.classification = bad;
            assert_eq!(create_err(f), ["document.classification"], "{bad}");
        }
        for c in Classification::ALL {
            assert_eq!(Classification::from_number(c.number()), Some(c));
            assert_eq!(Classification::from_name(c.as_str()), Some(c));
        }
    }

    #[test]
    fn label_rules() {
        let mut f = fields();
        f.labels = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(create_err(f), ["document.labels"]);

        let mut f = fields();
        f.labels = (0..32).map(|i| (format!("k{i}"), "v".repeat(63))).collect();
        assert!(NewDocument::validate(Some(f)).is_ok());

        for bad_key in ["", "Env", "a.b", "ключ", &"k".repeat(64), "a b"] {
            let mut f = fields();
            f.labels = HashMap::from([(bad_key.to_owned(), "v".into())]);
            let errs = create_err(f);
            assert_eq!(errs.len(), 1, "{bad_key:?}");
            assert!(errs[0].starts_with("document.labels["), "{errs:?}");
        }

        let mut f = fields();
        f.labels = HashMap::from([("env".into(), "v".repeat(64))]);
        assert_eq!(create_err(f), ["document.labels[env]"]);

        let mut f = fields();
        f.labels = HashMap::from([("ok_-9".into(), "é".repeat(63))]);
        assert!(NewDocument::validate(Some(f)).is_ok());
    }

    #[test]
    fn content_rules() {
        let mut f = fields();
        f.content = "a".repeat(MAX_CONTENT_BYTES);
        assert!(NewDocument::validate(Some(f)).is_ok());
        let mut f = fields();
        f.content = "a".repeat(MAX_CONTENT_BYTES + 1);
        assert_eq!(create_err(f), ["document.content"]);
    }

    #[test]
    fn content_type_rules() {
        for good in [
            "text/plain",
            "application/vnd.api+json",
            "text/markdown; charset=utf-8",
        ] {
            let mut f = fields();
            f.content_type = good.into();
            assert_eq!(NewDocument::validate(Some(f)).unwrap().content_type, good);
        }
        for bad in [
            "text",
            "/plain",
            "text/",
            "text/pl ain",
            "te xt/plain",
            "text/plain;",
            "a/b; x",
            &format!("text/{}", "a".repeat(123)),
        ] {
            let mut f = fields();
            f.content_type = bad.into();
            assert_eq!(create_err(f), ["document.content_type"], "{bad:?}");
        }
    }

    #[test]
    fn all_violations_are_collected() {
        let f = DocumentFields {
            title: String::new(),
            classification: 0,
            labels: HashMap::from([("BAD".into(), String::new())]),
            content: "a".repeat(MAX_CONTENT_BYTES + 1),
            content_type: "nope".into(),
        };
        assert_eq!(
            create_err(f),
            [
                "document.title",
                "document.classification",
                "document.labels[BAD]",
                "document.content",
                "document.content_type"
            ]
        );
    }

    #[test]
    fn ids_must_be_uuids() {
        assert_eq!(violated(&validate_id("").unwrap_err()), ["id"]);
        assert_eq!(violated(&validate_id("nope").unwrap_err()), ["id"]);
        let id = Uuid::now_v7();
        assert_eq!(validate_id(&id.to_string()), Ok(id));
        assert_eq!(
            violated(&validate_delete("x", String::new()).unwrap_err()),
            ["id"]
        );
        assert_eq!(
            validate_delete(&id.to_string(), "e".into()),
            Ok((id, Some("e".into())))
        );
    }

    fn update(paths: &[&str], f: DocumentFields) -> Result<DocumentPatch, FieldViolations> {
        DocumentPatch::validate(Some(UpdateParams {
            id: Uuid::nil().to_string(),
            etag: String::new(),
            fields: f,
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }))
    }

    #[test]
    fn update_mask_rules() {
        let err = update(&["title", "owner", "labels.env"], fields()).unwrap_err();
        assert_eq!(
            violated(&err),
            ["update_mask.paths[1]", "update_mask.paths[2]"]
        );

        // Only masked fields are checked and set.
        let mut f = fields();
        f.classification = 0;
        let patch = update(&["title"], f.clone()).unwrap();
        assert_eq!(patch.title.as_deref(), Some("Quarterly report"));
        assert_eq!(patch.classification, None);
        assert_eq!(patch.content, None);
        // An empty mask means all fields, so the missing classification counts.
        assert_eq!(
            violated(&update(&[], f).unwrap_err()),
            ["document.classification"]
        );

        let patch = update(&[], fields()).unwrap();
        assert!(patch.title.is_some() && patch.labels.is_some() && patch.content.is_some());
        assert_eq!(patch.content_type.as_deref(), Some("text/plain"));
        assert_eq!(patch.if_match, None);

        let err = DocumentPatch::validate(Some(UpdateParams {
            id: "bad".into(),
            ..UpdateParams::default()
        }))
        .unwrap_err();
        assert_eq!(violated(&err)[0], "document.id");
    }

    fn key() -> PageTokenKey {
        crate::page_token::key(&[7; 32]).unwrap()
    }

    fn list(p: ListParams) -> Result<ListQuery, FieldViolations> {
        ListQuery::validate(p, "acme", &key())
    }

    #[test]
    fn list_rules() {
        assert_eq!(list(ListParams::default()).unwrap().page_size, 20);
        assert_eq!(
            list(ListParams {
                page_size: 100,
                ..Default::default()
            })
            .unwrap()
            .page_size,
            100
        );
        for bad in [-1, 101] {
            let err = list(ListParams {
                page_size: bad,
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(violated(&err), ["page_size"]);
        }
        let err = list(ListParams {
            classification: 9,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(violated(&err), ["classification"]);
        for bad in [
            "=x",
            "Env",
            "a=b=c".repeat(20).as_str(),
            &format!("k={}", "v".repeat(64)),
        ] {
            let err = list(ListParams {
                label: bad.into(),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(violated(&err), ["label"], "{bad:?}");
        }
        let q = list(ListParams {
            label: "env=a=b".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            q.filter.label,
            Some(LabelFilter {
                key: "env".into(),
                value: Some("a=b".into())
            })
        );
        let q = list(ListParams {
            label: "env".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            q.filter.label,
            Some(LabelFilter {
                key: "env".into(),
                value: None
            })
        );
    }

    #[test]
    fn page_tokens_bind_tenant_and_filters() {
        let filter = ListFilter {
            classification: Some(Classification::Public),
            label: None,
        };
        let cursor = Cursor {
            create_time_micros: 5,
            id: Uuid::now_v7(),
        };
        let token = key().seal("acme", &filter.canonical(), cursor);
        let params = ListParams {
            page_token: token.clone(),
            classification: 1,
            ..Default::default()
        };
        assert_eq!(list(params.clone()).unwrap().after, Some(cursor));

        let err = ListQuery::validate(params.clone(), "globex", &key()).unwrap_err();
        assert_eq!(violated(&err), ["page_token"]);
        let other_filters = ListParams {
            classification: 2,
            ..params.clone()
        };
        assert_eq!(violated(&list(other_filters).unwrap_err()), ["page_token"]);
        let with_label = ListParams {
            label: "env".into(),
            ..params
        };
        assert_eq!(violated(&list(with_label).unwrap_err()), ["page_token"]);
        let forged = ListParams {
            page_token: "AAAA".into(),
            ..Default::default()
        };
        assert_eq!(violated(&list(forged).unwrap_err()), ["page_token"]);
    }

    #[test]
    fn canonical_filters_differ() {
        let label = |key: &str, value: Option<&str>| ListFilter {
            classification: None,
            label: Some(LabelFilter {
                key: key.into(),
                value: value.map(Into::into),
            }),
        };
        let all = [
            ListFilter::default().canonical(),
            label("env", None).canonical(),
            label("env", Some("")).canonical(),
            label("env", Some("x")).canonical(),
            ListFilter {
                classification: Some(Classification::Public),
                label: None,
            }
            .canonical(),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
