//! The audit log on its database: appending an event, listing a tenant's
//! records and verifying its chain. The SQL store is here; with
//! `[audit.store] backend = "dynamodb"` the same calls go to
//! [`DynamoStore`](crate::dynamo::DynamoStore).
//!
//! An append is one transaction: record the event id in the inbox (a
//! duplicate delivery stops here), lock the tenant's chain head, insert
//! the record that links to it, move the head. On PostgreSQL the head row
//! is locked `FOR UPDATE`, so a tenant's appends queue behind each other
//! while other tenants' run in parallel; on SQLite the transaction starts
//! as `BEGIN IMMEDIATE`, which serializes every writer before it reads.

use chrono::{DateTime, Utc};
use cloudsec_bus::{Envelope, Inbox};
use cloudsec_runtime::FieldViolations;
use sea_orm::{
    AccessMode, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect, TransactionOptions,
    TransactionTrait,
};

use crate::chain::{AuditRecord, ChainCheck, GENESIS_HASH, Verification, to_micros};
use crate::dynamo::{DynamoAppend, DynamoStore};
use crate::entity::{audit_chain_head, audit_record, audit_secret, audit_signature};
use crate::error::{AuditError, Result};
use crate::metrics::AuditMetrics;
use crate::signing::{HeadSigner, check_signature, head_message};
use crate::summary::{EventDecoder, Summary};
use cloudsec_runtime::page_token::{MIN_KEY_BYTES, PageTokenKey};
use std::collections::HashMap;
use std::sync::Arc;

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 500;
/// Longer filter values cannot match anything a producer sends, and would
/// only make the page token's digest do more work.
pub const MAX_FILTER_CHARS: usize = 256;
/// Records read per query while verifying: bounds memory, not the work.
pub(crate) const VERIFY_BATCH: u64 = 256;
/// The `audit_secret` row of the page token key.
const PAGE_TOKEN_KEY: &str = "page_token_key";
/// Keeps the audit log's page tokens apart from every other service's.
const PAGE_TOKEN_DOMAIN: &str = "cloudsec.audit";

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Recorded(Box<AuditRecord>),
    /// The event id was recorded before: nothing changed.
    Duplicate,
}

/// A list request as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub page_size: i32,
    pub page_token: String,
    pub event_type: String,
    pub subject: String,
}

/// A validated list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub page_size: u64,
    /// List records with a greater `seq`.
    pub after: i64,
    pub event_type: Option<String>,
    pub subject: Option<String>,
}

impl ListQuery {
    /// Checks every field, reporting all violations at once. The page
    /// token must have been issued for `tenant` and these filters.
    pub fn validate(
        params: ListParams,
        tenant: &str,
        tokens: &PageTokenKey,
    ) -> Result<Self, FieldViolations> {
        let mut violations = FieldViolations::new();
        let page_size = cloudsec_runtime::page_token::page_size(
            params.page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
            &mut violations,
        );
        for (field, value) in [
            ("event_type", &params.event_type),
            ("subject", &params.subject),
        ] {
            if value.chars().count() > MAX_FILTER_CHARS {
                violations.add(
                    field,
                    format!("must be at most {MAX_FILTER_CHARS} characters"),
                );
            }
        }
        let event_type = Some(params.event_type).filter(|t| !t.is_empty());
        let subject = Some(params.subject).filter(|s| !s.is_empty());
        let mut query = Self {
            page_size,
            after: 0,
            event_type,
            subject,
        };
        if !params.page_token.is_empty() {
            match tokens.open(&params.page_token, tenant, &query.filters()) {
                Ok(after) => query.after = after,
                Err(error) => violations.add("page_token", error.to_string()),
            }
        }
        violations.check()?;
        Ok(query)
    }

    /// The filters as one unambiguous string, which page tokens bind to.
    pub fn filters(&self) -> String {
        let event_type = self.event_type.as_deref().unwrap_or_default();
        let subject = self.subject.as_deref().unwrap_or_default();
        format!(
            "{}:{event_type}{}:{subject}",
            event_type.len(),
            subject.len()
        )
    }
}

/// One page of records, oldest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<AuditRecord>,
    pub next_page_token: Option<String>,
}

/// Where the records are.
#[derive(Debug, Clone)]
enum Backend {
    Sql(DatabaseConnection),
    Dynamo(DynamoStore),
}

/// The audit tables, the inbox and the key that seals page tokens.
#[derive(Debug, Clone)]
pub struct AuditLog {
    backend: Backend,
    /// Signs each new head and checks the signatures (`[audit.signing]`).
    signer: Option<Arc<dyn HeadSigner>>,
    decoder: EventDecoder,
    /// The inbox's subscriber name, shared with the [`cloudsec_bus::Subscriber`]'s inbox.
    inbox: String,
    tokens: PageTokenKey,
    metrics: AuditMetrics,
}

impl AuditLog {
    /// The log over `db`, whose audit and bus migrations must have run.
    /// Creates the page token key on first use of the database.
    pub async fn open(
        db: DatabaseConnection,
        inbox: impl Into<String>,
        metrics: AuditMetrics,
    ) -> Result<Self> {
        let tokens = page_token_key(&db).await?;
        Ok(Self {
            backend: Backend::Sql(db),
            signer: None,
            decoder: EventDecoder::new()?,
            inbox: inbox.into(),
            tokens,
            metrics,
        })
    }

    /// The log on a DynamoDB table (created or checked by
    /// [`DynamoStore::connect`]); the page token key is kept in it.
    pub async fn open_dynamodb(
        store: DynamoStore,
        inbox: impl Into<String>,
        metrics: AuditMetrics,
    ) -> Result<Self> {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let fresh: [u8; MIN_KEY_BYTES] = rand::random();
        let stored = store
            .secret(PAGE_TOKEN_KEY, &STANDARD.encode(fresh))
            .await?;
        let bytes = STANDARD
            .decode(stored.as_bytes())
            .map_err(|_| AuditError::Corrupt("page token key is not base64".into()))?;
        Ok(Self {
            backend: Backend::Dynamo(store),
            signer: None,
            decoder: EventDecoder::new()?,
            inbox: inbox.into(),
            tokens: PageTokenKey::new(PAGE_TOKEN_DOMAIN, &bytes)?,
            metrics,
        })
    }

    /// Signs every new head with `signer` and requires a valid signature
    /// on every record when verifying (see [`crate::signing`]).
    pub fn with_signer(mut self, signer: Arc<dyn HeadSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The SQL database, unless the log is on DynamoDB.
    pub fn connection(&self) -> Option<&DatabaseConnection> {
        match &self.backend {
            Backend::Sql(db) => Some(db),
            Backend::Dynamo(_) => None,
        }
    }

    /// The DynamoDB store, when the log is on it.
    pub fn dynamodb(&self) -> Option<&DynamoStore> {
        match &self.backend {
            Backend::Sql(_) => None,
            Backend::Dynamo(store) => Some(store),
        }
    }

    fn db(&self) -> Result<&DatabaseConnection> {
        self.connection()
            .ok_or_else(|| AuditError::Corrupt("the SQL store was asked of a DynamoDB log".into()))
    }

    pub fn page_tokens(&self) -> &PageTokenKey {
        &self.tokens
    }

    pub fn inbox(&self) -> &str {
        &self.inbox
    }

    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    async fn begin_write(&self) -> Result<DatabaseTransaction> {
        Ok(cloudsec_bus::begin_write(self.db()?).await?)
    }

    /// A transaction whose reads all see one snapshot, so the head and the
    /// records agree while appends go on. SQLite gives that to any
    /// transaction; PostgreSQL's default (read committed) does not.
    async fn begin_read(&self) -> Result<DatabaseTransaction> {
        let db = self.db()?;
        let options = match db.get_database_backend() {
            DbBackend::Postgres => TransactionOptions {
                isolation_level: Some(IsolationLevel::RepeatableRead),
                access_mode: Some(AccessMode::ReadOnly),
                sqlite_transaction_mode: None,
            },
            _ => TransactionOptions::default(),
        };
        Ok(db.begin_with_options(options).await?)
    }

    /// Appends `event` to its tenant's chain, once per event id. The
    /// caller has checked that the event names a tenant.
    pub async fn append(&self, event: &Envelope) -> Result<Appended> {
        let summary = self.decoder.summarize(event);
        if let Backend::Dynamo(store) = &self.backend {
            let record_time = to_micros(Utc::now());
            let make = |head_seq: i64, head_hash: &str| {
                chained(event, &summary, head_seq, head_hash, record_time)
            };
            return match store
                .append(
                    &self.inbox,
                    &event.id,
                    &event.tenant,
                    make,
                    self.signer.as_deref(),
                )
                .await?
            {
                (DynamoAppend::Recorded, Some(record)) => {
                    self.metrics.record_appended();
                    tracing::debug!(tenant = %record.tenant, seq = record.seq, event_id = %record.event_id, "audit record appended");
                    Ok(Appended::Recorded(Box::new(record)))
                }
                _ => Ok(Appended::Duplicate),
            };
        }
        let txn = self.begin_write().await?;
        if !Inbox::record_in(&txn, &self.inbox, &event.id)
            .await
            .map_err(bus_db_error)?
        {
            txn.rollback().await?;
            return Ok(Appended::Duplicate);
        }
        let (head_seq, head_hash) = lock_head(&txn, &event.tenant).await?;
        let record = chained(event, &summary, head_seq, &head_hash, to_micros(Utc::now()));
        audit_record::Entity::insert(audit_record::ActiveModel {
            tenant: Set(record.tenant.clone()),
            seq: Set(record.seq),
            event_id: Set(record.event_id.clone()),
            event_type: Set(record.event_type.clone()),
            source: Set(record.source.clone()),
            subject: Set(record.subject.clone()),
            actor: Set(record.actor.clone()),
            occur_time: Set(record.occur_time),
            record_time: Set(record.record_time),
            summary: Set(record.summary.clone()),
            prev_hash: Set(record.prev_hash.clone()),
            hash: Set(record.hash.clone()),
        })
        .exec_without_returning(&txn)
        .await?;
        if let Some(signer) = &self.signer {
            let message = head_message(&record.tenant, record.seq, &record.hash);
            audit_signature::Entity::insert(audit_signature::ActiveModel {
                tenant: Set(record.tenant.clone()),
                seq: Set(record.seq),
                signature: Set(signer.sign(&message).await?),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        let moved = audit_chain_head::Entity::update_many()
            .col_expr(audit_chain_head::Column::Seq, record.seq.into())
            .col_expr(audit_chain_head::Column::Hash, record.hash.clone().into())
            .filter(audit_chain_head::Column::Tenant.eq(record.tenant.as_str()))
            .filter(audit_chain_head::Column::Seq.eq(head_seq))
            .exec(&txn)
            .await?
            .rows_affected;
        if moved != 1 {
            // Only possible if the lock did not hold: refuse to fork the chain.
            return Err(AuditError::Corrupt(format!(
                "chain head of tenant `{}` moved during an append",
                record.tenant
            )));
        }
        txn.commit().await?;
        self.metrics.record_appended();
        tracing::debug!(tenant = %record.tenant, seq = record.seq, event_id = %record.event_id, "audit record appended");
        Ok(Appended::Recorded(Box::new(record)))
    }

    /// One page of `tenant`'s records, oldest first.
    pub async fn list(&self, tenant: &str, query: &ListQuery) -> Result<Page> {
        if let Backend::Dynamo(store) = &self.backend {
            let (records, more) = store.list(tenant, query).await?;
            let next_page_token = match records.last() {
                Some(last) if more => Some(self.tokens.seal(tenant, &query.filters(), last.seq)),
                _ => None,
            };
            return Ok(Page {
                records,
                next_page_token,
            });
        }
        let mut select = audit_record::Entity::find()
            .filter(audit_record::Column::Tenant.eq(tenant))
            .filter(audit_record::Column::Seq.gt(query.after));
        if let Some(event_type) = &query.event_type {
            select = select.filter(audit_record::Column::EventType.eq(event_type.as_str()));
        }
        if let Some(subject) = &query.subject {
            select = select.filter(audit_record::Column::Subject.eq(subject.as_str()));
        }
        // One more row than asked tells whether another page exists.
        let mut rows = select
            .order_by_asc(audit_record::Column::Seq)
            .limit(query.page_size + 1)
            .all(self.db()?)
            .await?;
        let more = rows.len() as u64 > query.page_size;
        rows.truncate(usize::try_from(query.page_size).unwrap_or(usize::MAX));
        let records: Vec<AuditRecord> = rows.into_iter().map(from_row).collect();
        let next_page_token = match records.last() {
            Some(last) if more => Some(self.tokens.seal(tenant, &query.filters(), last.seq)),
            _ => None,
        };
        Ok(Page {
            records,
            next_page_token,
        })
    }

    /// Recomputes every record of `tenant` in seq order and checks the
    /// links, the sequence and the head, all in one snapshot.
    pub async fn verify(&self, tenant: &str) -> Result<Verification> {
        let verdict = match &self.backend {
            Backend::Sql(_) => self.verify_sql(tenant).await?,
            Backend::Dynamo(store) => store.verify(tenant, self.signer.as_deref()).await?,
        };
        if !verdict.ok {
            self.metrics.record_verify_failure();
            tracing::warn!(
                tenant,
                first_invalid_seq = verdict.first_invalid_seq,
                reason = %verdict.reason,
                "audit chain verification failed"
            );
        }
        Ok(verdict)
    }

    async fn verify_sql(&self, tenant: &str) -> Result<Verification> {
        let txn = self.begin_read().await?;
        let head = audit_chain_head::Entity::find_by_id(tenant.to_owned())
            .one(&txn)
            .await?
            .map(|head| (head.seq, head.hash));
        let mut check = ChainCheck::new(tenant);
        let mut after = 0;
        'batches: loop {
            let rows = audit_record::Entity::find()
                .filter(audit_record::Column::Tenant.eq(tenant))
                .filter(audit_record::Column::Seq.gt(after))
                .order_by_asc(audit_record::Column::Seq)
                .limit(VERIFY_BATCH)
                .all(&txn)
                .await?;
            let last = rows.len() as u64 == VERIFY_BATCH;
            let signatures: HashMap<i64, String> = match (&self.signer, rows.first(), rows.last()) {
                (Some(_), Some(first), Some(end)) => audit_signature::Entity::find()
                    .filter(audit_signature::Column::Tenant.eq(tenant))
                    .filter(audit_signature::Column::Seq.between(first.seq, end.seq))
                    .all(&txn)
                    .await?
                    .into_iter()
                    .map(|s| (s.seq, s.signature))
                    .collect(),
                _ => HashMap::new(),
            };
            for row in rows {
                after = row.seq;
                let record = from_row(row);
                if !check.check(&record) {
                    break 'batches;
                }
                let signature = signatures.get(&record.seq).map(String::as_str);
                if !check_signature(self.signer.as_deref(), &mut check, &record, signature).await? {
                    break 'batches;
                }
            }
            if !last {
                break;
            }
        }
        txn.commit().await?;
        Ok(check.finish(head))
    }
}

/// The tenant's head `(seq, hash)`, created at the genesis when missing,
/// and locked until the transaction ends.
async fn lock_head(txn: &DatabaseTransaction, tenant: &str) -> Result<(i64, String)> {
    audit_chain_head::Entity::insert(audit_chain_head::ActiveModel {
        tenant: Set(tenant.to_owned()),
        seq: Set(0),
        hash: Set(GENESIS_HASH.to_owned()),
    })
    .on_conflict_do_nothing_on([audit_chain_head::Column::Tenant])
    .exec_without_returning(txn)
    .await?;
    // `FOR UPDATE` on PostgreSQL; SQLite has no row locks and needs none
    // inside its immediate transaction, and sea-query leaves it out there.
    let head = audit_chain_head::Entity::find_by_id(tenant.to_owned())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| AuditError::Corrupt(format!("no chain head for tenant `{tenant}`")))?;
    Ok((head.seq, head.hash))
}

/// The page token key, generated and stored by whichever replica starts
/// first; the others read the same one.
async fn page_token_key(db: &DatabaseConnection) -> Result<PageTokenKey> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    let fresh: [u8; MIN_KEY_BYTES] = rand::random();
    audit_secret::Entity::insert(audit_secret::ActiveModel {
        name: Set(PAGE_TOKEN_KEY.to_owned()),
        value: Set(STANDARD.encode(fresh)),
    })
    .on_conflict_do_nothing_on([audit_secret::Column::Name])
    .exec_without_returning(db)
    .await?;
    let stored = audit_secret::Entity::find_by_id(PAGE_TOKEN_KEY.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| AuditError::Corrupt("page token key missing".into()))?;
    let bytes = STANDARD
        .decode(stored.value.as_bytes())
        .map_err(|_| AuditError::Corrupt("page token key is not base64".into()))?;
    Ok(PageTokenKey::new(PAGE_TOKEN_DOMAIN, &bytes)?)
}

fn from_row(row: audit_record::Model) -> AuditRecord {
    AuditRecord {
        tenant: row.tenant,
        seq: row.seq,
        event_id: row.event_id,
        event_type: row.event_type,
        source: row.source,
        subject: row.subject,
        actor: row.actor,
        occur_time: row.occur_time,
        record_time: row.record_time,
        summary: row.summary,
        prev_hash: row.prev_hash,
        hash: row.hash,
    }
}

/// The inbox's errors are the database's, wrapped by the bus.
fn bus_db_error(error: cloudsec_bus::BusError) -> AuditError {
    match error {
        cloudsec_bus::BusError::Db(db) => AuditError::Database(db),
        other => AuditError::Bus(other),
    }
}

/// The record that appends `event` after the head `head_seq`/`head_hash`,
/// with its hash; the same for both stores, so both chains verify alike.
fn chained(
    event: &Envelope,
    summary: &Summary,
    head_seq: i64,
    head_hash: &str,
    record_time: DateTime<Utc>,
) -> AuditRecord {
    let mut record = AuditRecord {
        tenant: event.tenant.clone(),
        seq: head_seq + 1,
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        source: event.source.clone(),
        subject: event.subject.clone().unwrap_or_default(),
        actor: summary.actor.clone(),
        occur_time: to_micros(event.time),
        record_time,
        summary: summary.json.clone(),
        prev_hash: head_hash.to_owned(),
        hash: String::new(),
    };
    record.hash = record.compute_hash();
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PageTokenKey {
        PageTokenKey::new(PAGE_TOKEN_DOMAIN, &[7; MIN_KEY_BYTES]).unwrap()
    }

    fn violated(error: FieldViolations) -> Vec<String> {
        error.iter().map(|(f, _)| f.to_owned()).collect()
    }

    #[test]
    fn defaults_and_bounds() {
        let query = ListQuery::validate(ListParams::default(), "acme", &key()).unwrap();
        assert_eq!(query.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(query.after, 0);
        assert_eq!(query.event_type, None);
        for ok in [1, 500] {
            let params = ListParams {
                page_size: ok,
                ..Default::default()
            };
            assert_eq!(
                ListQuery::validate(params, "acme", &key())
                    .unwrap()
                    .page_size,
                ok as u64
            );
        }
        for bad in [-1, 501, i32::MIN] {
            let params = ListParams {
                page_size: bad,
                ..Default::default()
            };
            let error = ListQuery::validate(params, "acme", &key()).unwrap_err();
            assert_eq!(violated(error), ["page_size"]);
        }
    }

    #[test]
    fn every_violation_is_reported() {
        let params = ListParams {
            page_size: -5,
            page_token: "forged".into(),
            event_type: "t".repeat(MAX_FILTER_CHARS + 1),
            subject: "s".repeat(MAX_FILTER_CHARS + 1),
        };
        let error = ListQuery::validate(params, "acme", &key()).unwrap_err();
        assert_eq!(
            violated(error),
            ["page_size", "event_type", "subject", "page_token"]
        );
    }

    #[test]
    fn page_tokens_bind_tenant_and_filters() {
        let query = ListQuery {
            page_size: 10,
            after: 0,
            event_type: Some("a".into()),
            subject: None,
        };
        let token = key().seal("acme", &query.filters(), 12);
        let params = |event_type: &str, subject: &str| ListParams {
            page_token: token.clone(),
            event_type: event_type.into(),
            subject: subject.into(),
            ..Default::default()
        };
        assert_eq!(
            ListQuery::validate(params("a", ""), "acme", &key())
                .unwrap()
                .after,
            12
        );
        assert!(ListQuery::validate(params("a", ""), "globex", &key()).is_err());
        assert!(ListQuery::validate(params("", "a"), "acme", &key()).is_err());
        assert!(ListQuery::validate(params("", ""), "acme", &key()).is_err());
    }

    #[test]
    fn filters_are_unambiguous() {
        let q = |t: &str, s: &str| ListQuery {
            page_size: 1,
            after: 0,
            event_type: Some(t.to_owned()).filter(|t| !t.is_empty()),
            subject: Some(s.to_owned()).filter(|s| !s.is_empty()),
        };
        assert_ne!(q("a1:b", "").filters(), q("a", "b").filters());
        assert_ne!(q("ab", "").filters(), q("a", "b").filters());
    }
}
