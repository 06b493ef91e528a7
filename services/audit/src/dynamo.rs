//! The audit log on DynamoDB (`[audit.store] backend = "dynamodb"`).
//!
//! # Items
//! One table, key `pk` + `sk`, both strings (the table of Terraform's
//! data module, `cloudsec-<env>-audit-log`):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | a record | `tenant#<tenant>` | its `seq`, zero-padded to 20 digits | `seq` and every field of [`AuditRecord`] |
//! | the chain head | `tenant#<tenant>` | `#head` | `seq`, `hash` |
//! | an inbox entry | `inbox#<subscriber>#<event id>` | `#` | `tenant`, `seq` |
//! | the page token key | `secret#page_token_key` | `#` | `value` |
//!
//! A tenant's records and its head share one partition, so a page is one
//! `Query` on the partition with `sk > <padded after>`, and the head never
//! shows up in it (`#` sorts before the digits). The inbox entries of the
//! audit log stay with it and never expire: an event id is recorded once
//! for the life of the log, not for a retention window.
//!
//! # The append
//! Read the head (consistently), then one `TransactWriteItems`:
//! put the inbox entry if it does not exist, put the record if it does not
//! exist, and put the head on condition that it still is the head that was
//! read (`seq = :prev`, or absent for the first record). Either all three
//! are written or none, so two writers that read the same head cannot both
//! win: the loser's transaction is cancelled, it reads the new head and
//! tries again. A cancelled transaction whose inbox condition failed is a
//! redelivery: nothing changed. Appends of one tenant in one process also
//! queue on a lock, so that retries are for other replicas only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem,
};
use chrono::{DateTime, Utc};
use cloudsec_bus::Provisioning;
use cloudsec_runtime::aws::AwsSettings;
use serde::Deserialize;

use crate::chain::{AuditRecord, ChainCheck, GENESIS_HASH, Verification, format_time};
use crate::error::{AuditError, Result};
use crate::signing::{HeadSigner, check_signature, head_message};
use crate::store::{ListQuery, VERIFY_BATCH};

/// Tries of one append before it gives up (each after a short, growing,
/// jittered pause); only many replicas writing one tenant at once retry.
const MAX_ATTEMPTS: u32 = 64;
/// How many times a record past the head is seen before it is corrupt.
const STRAY_LOOKS: u32 = 4;
/// Striped per-tenant locks: bounded memory whatever the tenant count.
const LOCK_STRIPES: usize = 64;

/// The `[audit.store]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// The service's SQL database (`database_url`): the default.
    #[default]
    Sql,
    /// A DynamoDB table.
    Dynamodb(DynamoConfig),
}

/// Where the DynamoDB table is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoConfig {
    #[serde(default = "default_table")]
    pub table: String,
    /// `region`, `endpoint_url` (moto, DynamoDB Local) and
    /// `dummy_credentials`, in this section itself.
    #[serde(flatten)]
    pub aws: AwsSettings,
    /// `create` makes the table at start; `existing` only checks it (the
    /// Terraform data module creates it).
    #[serde(default)]
    pub provisioning: Provisioning,
    /// The longest one DynamoDB call may take, retries included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The subscriber's inbox table (Terraform's `cloudsec-<env>-inbox`,
    /// TTL on `expires_at`; see `cloudsec_bus::dynamo_inbox`), reached
    /// and provisioned like `table`. With it, a delivery is claimed there
    /// before the append, so replicas skip an event another one handled
    /// or is handling without contending for the tenant's head; without
    /// it every delivery goes to the append. Either way the append's own
    /// inbox item in `table` is what records an event once.
    pub inbox_table: Option<String>,
}

fn default_table() -> String {
    "cloudsec-audit".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl DynamoConfig {
    /// A configuration for `table` at `endpoint_url` with dummy
    /// credentials (emulators), created at start.
    pub fn emulator(table: &str, endpoint_url: &str) -> Self {
        Self {
            table: table.to_owned(),
            aws: AwsSettings {
                region: Some("us-east-1".into()),
                endpoint_url: Some(endpoint_url.to_owned()),
                dummy_credentials: true,
            },
            provisioning: Provisioning::Create,
            request_timeout: default_timeout(),
            inbox_table: None,
        }
    }
}

/// The audit tables on DynamoDB (see the module doc).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    locks: Arc<[tokio::sync::Mutex<()>]>,
}

/// What one append transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The inbox entry, the record and the head were written together.
    Committed,
    /// The event id was recorded before: nothing was written.
    Duplicate,
    /// The head moved since it was read (another writer won, or the
    /// transaction conflicted): nothing was written.
    Stale,
    /// A record already sits at the new seq while the head is where it was
    /// read: nothing was written.
    PastHead,
}

/// What one DynamoDB append did.
#[derive(Debug)]
pub(crate) enum DynamoAppend {
    Recorded,
    Duplicate,
}

impl DynamoStore {
    /// Connects, and creates the table in `create` mode or checks it in
    /// `existing` mode.
    pub async fn connect(config: &DynamoConfig) -> Result<Self> {
        let sdk =
            cloudsec_runtime::aws::sdk_config(&config.aws, Some(config.request_timeout)).await;
        let store = Self::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table);
        match config.provisioning {
            Provisioning::Create => store.create_table().await?,
            Provisioning::Existing => store.check_table().await?,
        }
        Ok(store)
    }

    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn create_table(&self) -> Result<()> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(dynamo_error("CreateTable", &self.table, e)),
        }
    }

    /// A read of one key: it fails with `ResourceNotFoundException` when
    /// the table is missing, and needs only `dynamodb:GetItem`, which the
    /// service's policy grants (`DescribeTable` it does not need).
    async fn check_table(&self) -> Result<()> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S("secret#page_token_key".into()))
            .key("sk", single_sk())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| dynamo_error("GetItem", &self.table, e))
    }

    fn tenant_pk(tenant: &str) -> AttributeValue {
        AttributeValue::S(format!("tenant#{tenant}"))
    }

    fn lock_for(&self, tenant: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        tenant.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % LOCK_STRIPES as u64).unwrap_or(0);
        &self.locks[stripe]
    }

    /// The tenant's head `(seq, hash)`, `None` before its first record.
    pub async fn head(&self, tenant: &str) -> Result<Option<(i64, String)>> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", Self::tenant_pk(tenant))
            .key("sk", head_sk())
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", &self.table, e))?;
        match got.item() {
            None => Ok(None),
            Some(item) => Ok(Some((
                number(item, "seq")?,
                string(item, "hash")?.to_owned(),
            ))),
        }
    }

    /// Appends the record that `make` builds on the head `(seq, hash)`,
    /// once per `event_id` (see the module doc).
    pub(crate) async fn append(
        &self,
        inbox: &str,
        event_id: &str,
        tenant: &str,
        make: impl Fn(i64, &str) -> AuditRecord,
        signer: Option<&dyn HeadSigner>,
    ) -> Result<(DynamoAppend, Option<AuditRecord>)> {
        let _queued = self.lock_for(tenant).lock().await;
        let mut stray = 0;
        for attempt in 0..MAX_ATTEMPTS {
            let head = self.head(tenant).await?;
            let (head_seq, head_hash) =
                head.clone().unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
            let record = make(head_seq, &head_hash);
            let signature = match signer {
                Some(signer) => Some(
                    signer
                        .sign(&head_message(&record.tenant, record.seq, &record.hash))
                        .await?,
                ),
                None => None,
            };
            match self
                .try_append(
                    inbox,
                    event_id,
                    head.as_ref(),
                    &record,
                    signature.as_deref(),
                )
                .await?
            {
                Attempt::Committed => return Ok((DynamoAppend::Recorded, Some(record))),
                Attempt::Duplicate => return Ok((DynamoAppend::Duplicate, None)),
                Attempt::Stale => {}
                Attempt::PastHead => {
                    // DynamoDB's transactions make that a hand-made item;
                    // an emulator that applies a transaction's items one
                    // by one (moto) shows it for a moment: a few looks.
                    stray += 1;
                    if stray >= STRAY_LOOKS {
                        return Err(AuditError::Corrupt(format!(
                            "record {} of tenant `{tenant}` exists beyond its chain head",
                            record.seq
                        )));
                    }
                }
            }
            // Another writer moved the head first (or DynamoDB saw a
            // conflicting transaction): read the new head and try again.
            let pause = 2u64.saturating_pow(attempt.min(6)) + rand::random::<u64>() % 5;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Err(AuditError::Contended(format!(
            "the chain head of tenant `{tenant}` kept moving for {MAX_ATTEMPTS} attempts"
        )))
    }

    /// One attempt: a `TransactWriteItems` of the inbox entry, `record`
    /// and the new head, on condition that the head still is `head` (the
    /// one `record` links to; `None` before the first record).
    pub async fn try_append(
        &self,
        inbox: &str,
        event_id: &str,
        head: Option<&(i64, String)>,
        record: &AuditRecord,
        signature: Option<&str>,
    ) -> Result<Attempt> {
        let tenant = record.tenant.as_str();
        let inbox_item = Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("inbox#{inbox}#{event_id}")))
            .item("sk", single_sk())
            .item("tenant", AttributeValue::S(tenant.to_owned()))
            .item("seq", AttributeValue::N(record.seq.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let mut record_put = Put::builder()
            .table_name(&self.table)
            .condition_expression("attribute_not_exists(pk)");
        for (name, value) in record_item(record) {
            record_put = record_put.item(name, value);
        }
        // The head signature (see `crate::signing`), when signing is on.
        if let Some(signature) = signature {
            record_put = record_put.item("signature", AttributeValue::S(signature.to_owned()));
        }
        let record_put = record_put.build().map_err(build_error)?;
        let head_put = Put::builder()
            .table_name(&self.table)
            .item("pk", Self::tenant_pk(tenant))
            .item("sk", head_sk())
            .item("seq", AttributeValue::N(record.seq.to_string()))
            .item("hash", AttributeValue::S(record.hash.clone()));
        let head_put = match head {
            // The head must still be the one the record links to.
            Some((seq, _)) => head_put
                .condition_expression("#seq = :prev")
                .expression_attribute_names("#seq", "seq")
                .expression_attribute_values(":prev", AttributeValue::N(seq.to_string())),
            None => head_put.condition_expression("attribute_not_exists(pk)"),
        }
        .build()
        .map_err(build_error)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(inbox_item).build())
            .transact_items(TransactWriteItem::builder().put(record_put).build())
            .transact_items(TransactWriteItem::builder().put(head_put).build())
            .send()
            .await;
        let error = match sent {
            Ok(_) => return Ok(Attempt::Committed),
            Err(error) => error,
        };
        let reasons: Vec<Option<String>> = match &error {
            SdkError::ServiceError(service) => match service.err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_owned))
                    .collect(),
                // Another transaction held one of the items: try again.
                TransactWriteItemsError::TransactionInProgressException(_) => Vec::new(),
                other if other.code() == Some("TransactionConflictException") => Vec::new(),
                _ => return Err(dynamo_error("TransactWriteItems", &self.table, error)),
            },
            _ => return Err(dynamo_error("TransactWriteItems", &self.table, error)),
        };
        let failed = |i: usize| {
            reasons
                .get(i)
                .and_then(Option::as_deref)
                .is_some_and(|code| code == "ConditionalCheckFailed")
        };
        Ok(if failed(0) {
            Attempt::Duplicate
        } else if failed(1) && !failed(2) {
            Attempt::PastHead
        } else {
            Attempt::Stale
        })
    }

    /// One page of `tenant`'s records, oldest first; the bool says
    /// whether more match.
    pub(crate) async fn list(
        &self,
        tenant: &str,
        query: &ListQuery,
    ) -> Result<(Vec<AuditRecord>, bool)> {
        let mut filters = Vec::new();
        let mut values = HashMap::from([
            (":pk".to_owned(), Self::tenant_pk(tenant)),
            (":after".to_owned(), seq_sk(query.after)),
        ]);
        let mut names = HashMap::new();
        if let Some(event_type) = &query.event_type {
            filters.push("#type = :type");
            names.insert("#type".to_owned(), "event_type".to_owned());
            values.insert(":type".to_owned(), AttributeValue::S(event_type.clone()));
        }
        if let Some(subject) = &query.subject {
            filters.push("#subject = :subject");
            names.insert("#subject".to_owned(), "subject".to_owned());
            values.insert(":subject".to_owned(), AttributeValue::S(subject.clone()));
        }
        let wanted = usize::try_from(query.page_size).unwrap_or(usize::MAX);
        let mut records = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk > :after")
                .set_filter_expression((!filters.is_empty()).then(|| filters.join(" AND ")))
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                // One more than asked tells whether another page exists.
                .limit(i32::try_from(query.page_size + 1).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| dynamo_error("Query", &self.table, e))?;
            for item in page.items() {
                records.push(from_item(item)?);
            }
            if records.len() > wanted {
                break;
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        let more = records.len() > wanted;
        records.truncate(wanted);
        Ok((records, more))
    }

    /// Checks `tenant`'s chain. DynamoDB has no snapshot across items, so
    /// the head is read first and only records up to it are checked;
    /// records past it must be covered by a head read after them, or they
    /// lie beyond the head (see the module doc of `chain`).
    pub(crate) async fn verify(
        &self,
        tenant: &str,
        signer: Option<&dyn HeadSigner>,
    ) -> Result<Verification> {
        let head = self.head(tenant).await?;
        let head_seq = head.as_ref().map_or(0, |(seq, _)| *seq);
        let mut check = ChainCheck::new(tenant);
        let mut beyond = None;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        'pages: loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk > :zero")
                .expression_attribute_values(":pk", Self::tenant_pk(tenant))
                .expression_attribute_values(":zero", seq_sk(0))
                .consistent_read(true)
                .limit(i32::try_from(VERIFY_BATCH).unwrap_or(256))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| dynamo_error("Query", &self.table, e))?;
            for item in page.items() {
                let record = from_item(item)?;
                if record.seq > head_seq {
                    beyond = Some(record.seq);
                    break 'pages;
                }
                if !check.check(&record) {
                    break 'pages;
                }
                let signature = match item.get("signature") {
                    Some(AttributeValue::S(s)) => Some(s.as_str()),
                    _ => None,
                };
                if !check_signature(signer, &mut check, &record, signature).await? {
                    break 'pages;
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        let mut verdict = check.finish(head);
        if verdict.ok
            && let Some(seq) = beyond
        {
            let now = self.head(tenant).await?.map_or(0, |(s, _)| s);
            if seq > now {
                verdict.ok = false;
                verdict.first_invalid_seq = seq;
                verdict.reason = format!("record {seq} lies beyond the chain head");
            }
        }
        Ok(verdict)
    }

    /// The stored secret `name`, or `fresh` stored under it when none
    /// was (whichever replica starts first wins).
    pub(crate) async fn secret(&self, name: &str, fresh: &str) -> Result<String> {
        let pk = AttributeValue::S(format!("secret#{name}"));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk.clone())
            .item("sk", single_sk())
            .item("value", AttributeValue::S(fresh.to_owned()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => return Ok(fresh.to_owned()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
            Err(e) => return Err(dynamo_error("PutItem", &self.table, e)),
        }
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", single_sk())
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", &self.table, e))?;
        let item = got
            .item()
            .ok_or_else(|| AuditError::Corrupt(format!("secret `{name}` vanished")))?;
        Ok(string(item, "value")?.to_owned())
    }
}

/// Sort keys are strings (the Terraform table's `sk` is `S`): a seq is
/// zero-padded to 20 digits so that string order is number order.
fn seq_sk(seq: i64) -> AttributeValue {
    AttributeValue::S(format!("{seq:020}"))
}

/// The head's sort key: `#` sorts before every digit, so the head is
/// never in a `sk > <padded seq>` range of records.
fn head_sk() -> AttributeValue {
    AttributeValue::S("#head".into())
}

/// The sort key of items alone in their partition (inbox, secrets).
fn single_sk() -> AttributeValue {
    AttributeValue::S("#".into())
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(build_error)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(build_error)
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> AuditError {
    AuditError::Corrupt(format!("cannot build a DynamoDB request: {error}"))
}

fn record_item(record: &AuditRecord) -> Vec<(&'static str, AttributeValue)> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    vec![
        ("pk", DynamoStore::tenant_pk(&record.tenant)),
        ("sk", seq_sk(record.seq)),
        ("seq", AttributeValue::N(record.seq.to_string())),
        ("tenant", s(&record.tenant)),
        ("event_id", s(&record.event_id)),
        ("event_type", s(&record.event_type)),
        ("source", s(&record.source)),
        ("subject", s(&record.subject)),
        ("actor", s(&record.actor)),
        ("occur_time", s(&format_time(record.occur_time))),
        ("record_time", s(&format_time(record.record_time))),
        ("summary", s(&record.summary)),
        ("prev_hash", s(&record.prev_hash)),
        ("hash", s(&record.hash)),
    ]
}

fn string<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(AuditError::Corrupt(format!(
            "audit item without a string `{name}`"
        ))),
    }
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Result<i64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| AuditError::Corrupt(format!("audit item `{name}` is not an integer"))),
        _ => Err(AuditError::Corrupt(format!(
            "audit item without a number `{name}`"
        ))),
    }
}

fn time(item: &HashMap<String, AttributeValue>, name: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(string(item, name)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| AuditError::Corrupt(format!("audit item `{name}` is not a time")))
}

/// A record item back into a record; anything missing or of the wrong
/// type is a corrupt item (and, unlike a changed value, is not hashed).
fn from_item(item: &HashMap<String, AttributeValue>) -> Result<AuditRecord> {
    Ok(AuditRecord {
        tenant: string(item, "tenant")?.to_owned(),
        seq: number(item, "seq")?,
        event_id: string(item, "event_id")?.to_owned(),
        event_type: string(item, "event_type")?.to_owned(),
        source: string(item, "source")?.to_owned(),
        subject: string(item, "subject")?.to_owned(),
        actor: string(item, "actor")?.to_owned(),
        occur_time: time(item, "occur_time")?,
        record_time: time(item, "record_time")?,
        summary: string(item, "summary")?.to_owned(),
        prev_hash: string(item, "prev_hash")?.to_owned(),
        hash: string(item, "hash")?.to_owned(),
    })
}

/// One translation of SDK errors: no answer (or a server fault, or
/// throttling) is unavailable; a refusal keeps DynamoDB's code and message.
pub(crate) fn dynamo_error<E, R>(operation: &str, table: &str, err: SdkError<E, R>) -> AuditError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    use cloudsec_runtime::aws::{Failure, classify};
    const TRANSIENT: &[&str] = &[
        "InternalServerError",
        "ServiceUnavailable",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    ];
    let operation = format!("{operation} {table}");
    match classify(&err, TRANSIENT) {
        Failure::Unavailable { reason } => AuditError::DynamoUnavailable { operation, reason },
        Failure::Refused { code, message } => AuditError::Dynamo {
            operation,
            code,
            message,
        },
    }
}
