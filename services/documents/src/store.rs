//! The documents store: validated values in, domain documents out.
//!
//! Every query is scoped to the caller's tenant, so another tenant's
//! document reads exactly like a missing one. Each write is one
//! transaction; on SQLite it starts as `BEGIN IMMEDIATE`, so a writer takes
//! the lock before it reads and never fails upgrading a read snapshot.
//!
//! # Content and the transaction
//! Content lives in the [`ContentStore`], one generation per write, and the
//! row points to its generation. The rule is that a committed row never
//! points to a missing object:
//! - create and update write the new generation *before* the row commits;
//!   a rollback (etag conflict, error, crash) leaves an orphan generation,
//!   which create and update shred at once on an error path and a crash
//!   leaves for garbage collection; the previous generation is shredded
//!   only after the commit;
//! - delete takes the row first (the delete statement, with its etag
//!   check), then shreds the generation, then commits. A commit that fails
//!   after shredding leaves a row whose content reads as shredded; deleting
//!   it again completes. The other order could leave a deleted row whose
//!   key survives, which is not shredding.
//!
//! Rows from before content moved to objects (`content_storage = inline`)
//! are read from their column; the first write of their content or
//! classification moves them to an object and empties the column.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use cloudsec_bus::{DomainEvent, Envelope, Outbox};
use cloudsec_proto::events::v1 as events;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    AccessMode, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DerivePartialModel, EntityTrait, IsolationLevel, QueryFilter,
    QueryOrder, QuerySelect, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use crate::content::{ContentError, ContentStore, STORAGE_INLINE};
use crate::domain::{
    Caller, Classification, Document, DocumentPatch, ListQuery, NewDocument, Page,
};
use crate::entity::{document, document_label};
use crate::error::{DocumentsError, Result};
use crate::page_token::Cursor;
use cloudsec_runtime::page_token::PageTokenKey;

/// The documents tables, the key that seals page tokens and the outbox
/// that every change writes its event to.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    tokens: PageTokenKey,
    outbox: Outbox,
    content: ContentStore,
}

/// What a garbage collection did.
#[derive(Debug, Default)]
pub struct GcSummary {
    /// Generations (or stray objects) looked at.
    pub examined: usize,
    /// Orphans deleted.
    pub deleted: usize,
    /// Orphans younger than the grace period, left for the next run.
    pub recent: usize,
    pub failed: Vec<(Vec<String>, ContentError)>,
}

/// What a rewrap job did.
#[derive(Debug, Default)]
pub struct RewrapSummary {
    pub rewrapped: usize,
    pub unchanged: usize,
    pub failed: Vec<(Uuid, ContentError)>,
}

/// A list row: everything but the content.
#[derive(Debug, Clone, DerivePartialModel)]
#[sea_orm(entity = "document::Entity")]
struct Summary {
    id: Uuid,
    tenant: String,
    owner: String,
    title: String,
    classification: String,
    content_type: String,
    size_bytes: i64,
    etag: String,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl Store {
    /// A store over `db`, whose migrations (its own and the bus's) must
    /// have run.
    pub fn new(
        db: DatabaseConnection,
        tokens: PageTokenKey,
        outbox: Outbox,
        content: ContentStore,
    ) -> Self {
        Self {
            db,
            tokens,
            outbox,
            content,
        }
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// A document with its content, inside `txn`.
    async fn load(&self, txn: &DatabaseTransaction, caller: &Caller, id: Uuid) -> Result<Document> {
        let (mut document, row) = load_row(txn, caller, id).await?;
        document.content = Some(self.content_of(&row).await?);
        Ok(document)
    }

    /// Writes `event` into the outbox as part of `txn`, carrying the trace
    /// of the request being served.
    async fn emit<E: DomainEvent>(&self, txn: &DatabaseTransaction, event: &E) -> Result<()> {
        let envelope = Envelope::new(crate::EVENT_SOURCE, event).with_current_trace();
        self.outbox.append(txn, &envelope).await?;
        Ok(())
    }

    pub fn page_tokens(&self) -> &PageTokenKey {
        &self.tokens
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    async fn begin_write(&self) -> Result<DatabaseTransaction> {
        Ok(cloudsec_bus::begin_write(&self.db).await?)
    }

    /// A transaction whose statements all see one snapshot, so a document
    /// and its labels always match. SQLite gives that to any transaction;
    /// PostgreSQL's default (read committed) does not.
    async fn begin_read(&self) -> Result<DatabaseTransaction> {
        let options = match self.db.get_database_backend() {
            DbBackend::Postgres => TransactionOptions {
                isolation_level: Some(IsolationLevel::RepeatableRead),
                access_mode: Some(AccessMode::ReadOnly),
                sqlite_transaction_mode: None,
            },
            _ => TransactionOptions::default(),
        };
        Ok(self.db.begin_with_options(options).await?)
    }

    pub async fn create(&self, caller: &Caller, new: NewDocument) -> Result<Document> {
        may_classify(caller, new.classification)?;
        let now = now();
        let document = Document {
            id: Uuid::now_v7(),
            tenant: caller.tenant.clone(),
            owner: caller.user.clone(),
            title: new.title,
            classification: new.classification,
            labels: new.labels,
            size_bytes: size_of(&new.content),
            content: Some(new.content),
            content_type: new.content_type,
            etag: new_etag(),
            create_time: now,
            update_time: now,
        };
        // Written before the transaction starts, so no lock is held for
        // the object store's round trips.
        let generation = self
            .content
            .put(
                &document.tenant,
                document.id,
                document.classification,
                document.content.as_deref().unwrap_or_default().as_bytes(),
            )
            .await?;
        let row = document::ActiveModel {
            id: Set(document.id),
            tenant: Set(document.tenant.clone()),
            owner: Set(document.owner.clone()),
            title: Set(document.title.clone()),
            classification: Set(document.classification.as_str().to_owned()),
            content: Set(String::new()),
            content_generation: Set(Some(generation.clone())),
            content_storage: Set(self.content.storage().to_owned()),
            content_type: Set(document.content_type.clone()),
            size_bytes: Set(document.size_bytes),
            etag: Set(document.etag.clone()),
            create_time: Set(document.create_time),
            update_time: Set(document.update_time),
        };
        match self.insert(caller, &document, row).await {
            Ok(()) => {
                tracing::info!(document_id = %document.id, tenant = %caller.tenant, "document created");
                Ok(document)
            }
            Err(error) => {
                self.discard(&document.tenant, document.id, &generation)
                    .await;
                Err(error)
            }
        }
    }

    async fn insert(
        &self,
        caller: &Caller,
        document: &Document,
        row: document::ActiveModel,
    ) -> Result<()> {
        let txn = self.begin_write().await?;
        document::Entity::insert(row)
            .exec_without_returning(&txn)
            .await?;
        insert_labels(&txn, document.id, &document.labels).await?;
        self.emit(
            &txn,
            &events::DocumentCreated {
                document_id: document.id.to_string(),
                tenant: document.tenant.clone(),
                actor: caller.user.clone(),
                title: document.title.clone(),
                classification: document.classification.number(),
                labels: document.labels.clone().into_iter().collect(),
                content_type: document.content_type.clone(),
                size_bytes: document.size_bytes,
                etag: document.etag.clone(),
                create_time: Some(timestamp(document.create_time)),
            },
        )
        .await?;
        txn.commit().await?;
        self.outbox.committed();
        Ok(())
    }

    /// Shreds a generation that no committed row points to (any more);
    /// a failure leaves it for garbage collection.
    async fn discard(&self, tenant: &str, id: Uuid, generation: &str) {
        if let Err(error) = self.content.shred(tenant, id, generation).await {
            tracing::warn!(%error, document_id = %id, generation, "orphan content generation left behind");
        }
    }

    pub async fn get(&self, caller: &Caller, id: Uuid) -> Result<Document> {
        // The content is fetched after the read transaction, so no
        // snapshot is held across object-store round trips. An update that
        // commits in between shreds the generation just read from the row:
        // then the row is read again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let txn = self.begin_read().await?;
            let (mut document, row) = load_row(&txn, caller, id).await?;
            txn.commit().await?;
            match self.content_of(&row).await {
                Ok(content) => {
                    document.content = Some(content);
                    return Ok(document);
                }
                Err(DocumentsError::Content(e))
                    if attempts < 3
                        && (e.is_integrity() || matches!(e, ContentError::Missing(_))) =>
                {
                    let current = document::Entity::find_by_id(id)
                        .select_only()
                        .column(document::Column::ContentGeneration)
                        .into_tuple::<Option<String>>()
                        .one(&self.db)
                        .await?;
                    if current.as_ref() == Some(&row.content_generation) {
                        return Err(e.into());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The row's content, from its column or its object.
    async fn content_of(&self, row: &document::Model) -> Result<String> {
        let generation = match (&row.content_generation, row.content_storage.as_str()) {
            (_, STORAGE_INLINE) => return Ok(row.content.clone()),
            (Some(generation), _) => generation,
            (None, storage) => {
                return Err(DocumentsError::Corrupt(format!(
                    "content stored as `{storage}` without a generation"
                )));
            }
        };
        let plain = self
            .content
            .get(&row.tenant, row.id, generation, &row.content_storage)
            .await?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| DocumentsError::Corrupt("content is not UTF-8".into()))
    }

    /// The rewrap job: brings every sealed generation's data key to its
    /// key's latest version (after `Envelope::rotate` or a rotation in
    /// Vault). Failures are collected, not fatal.
    pub async fn rewrap_all(&self) -> Result<RewrapSummary> {
        let mut summary = RewrapSummary::default();
        let mut after: Option<Uuid> = None;
        loop {
            let mut select = document::Entity::find()
                .select_only()
                .column(document::Column::Id)
                .column(document::Column::Tenant)
                .column(document::Column::ContentGeneration)
                .filter(document::Column::ContentStorage.eq(self.content.storage()))
                .filter(document::Column::ContentGeneration.is_not_null())
                .order_by_asc(document::Column::Id)
                .limit(256);
            if let Some(after) = after {
                select = select.filter(document::Column::Id.gt(after));
            }
            let rows = select
                .into_tuple::<(Uuid, String, Option<String>)>()
                .all(&self.db)
                .await?;
            let Some(last) = rows.last() else {
                return Ok(summary);
            };
            after = Some(last.0);
            for (id, tenant, generation) in rows {
                let Some(generation) = generation else {
                    continue;
                };
                match self.content.rewrap(&tenant, id, &generation).await {
                    Ok(true) => summary.rewrapped += 1,
                    Ok(false) => summary.unchanged += 1,
                    Err(e) => summary.failed.push((id, e)),
                }
            }
        }
    }

    /// Garbage collection: deletes the object generations no row points to
    /// (left by a crash between writing objects and committing, or by a
    /// failed delete) once they are older than `grace`, which protects
    /// generations whose write is still in flight. Sealed ones are
    /// shredded (key object first).
    pub async fn collect_garbage(&self, grace: std::time::Duration) -> Result<GcSummary> {
        let mut summary = GcSummary::default();
        let cutoff = std::time::SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(std::time::UNIX_EPOCH);
        let generations = self.content.generations().await?;
        for chunk in generations.chunks(256) {
            let ids: Vec<Uuid> = chunk
                .iter()
                .filter_map(|g| g.document.as_ref().map(|(id, _)| *id))
                .collect();
            let live: std::collections::HashMap<Uuid, Option<String>> = document::Entity::find()
                .select_only()
                .column(document::Column::Id)
                .column(document::Column::ContentGeneration)
                .filter(document::Column::Id.is_in(ids))
                .into_tuple::<(Uuid, Option<String>)>()
                .all(&self.db)
                .await?
                .into_iter()
                .collect();
            for generation in chunk {
                summary.examined += 1;
                let referenced = generation.document.as_ref().is_some_and(|(id, g)| {
                    live.get(id)
                        .is_some_and(|current| current.as_deref() == Some(g))
                });
                if referenced {
                    continue;
                }
                if generation.modified > cutoff {
                    summary.recent += 1;
                    continue;
                }
                match self.content.delete_objects(&generation.objects).await {
                    Ok(()) => summary.deleted += 1,
                    Err(e) => summary.failed.push((generation.objects.clone(), e)),
                }
            }
        }
        Ok(summary)
    }

    /// One page of the caller's tenant's documents, newest first.
    pub async fn list(&self, caller: &Caller, query: ListQuery) -> Result<Page> {
        let mut select = visible(
            document::Entity::find().filter(document::Column::Tenant.eq(caller.tenant.as_str())),
            caller,
        );
        if let Some(classification) = query.filter.classification {
            select = select.filter(document::Column::Classification.eq(classification.as_str()));
        }
        if let Some(label) = &query.filter.label {
            let mut labelled = Query::select();
            labelled
                .expr(Expr::val(1))
                .from(document_label::Entity)
                .and_where(
                    Expr::col((document_label::Entity, document_label::Column::DocumentId))
                        .equals((document::Entity, document::Column::Id)),
                )
                .and_where(
                    Expr::col((document_label::Entity, document_label::Column::Key))
                        .eq(label.key.as_str()),
                );
            if let Some(value) = &label.value {
                labelled.and_where(
                    Expr::col((document_label::Entity, document_label::Column::Value))
                        .eq(value.as_str()),
                );
            }
            select = select.filter(Expr::exists(labelled.to_owned()));
        }
        if let Some(after) = query.after {
            let time = DateTime::from_timestamp_micros(after.create_time_micros)
                .ok_or_else(|| DocumentsError::Corrupt("page cursor out of range".into()))?;
            select = select.filter(
                Condition::any()
                    .add(document::Column::CreateTime.lt(time))
                    .add(
                        Condition::all()
                            .add(document::Column::CreateTime.eq(time))
                            .add(document::Column::Id.lt(after.id)),
                    ),
            );
        }
        // One more row than asked tells whether another page exists.
        let rows = select
            .order_by_desc(document::Column::CreateTime)
            .order_by_desc(document::Column::Id)
            .limit(query.page_size + 1)
            .into_partial_model::<Summary>();

        let txn = self.begin_read().await?;
        let mut rows = rows.all(&txn).await?;
        let more = rows.len() as u64 > query.page_size;
        rows.truncate(usize::try_from(query.page_size).unwrap_or(usize::MAX));
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut labels = labels_of(&txn, &ids).await?;
        txn.commit().await?;

        let documents = rows
            .into_iter()
            .map(|row| {
                let labels = labels.remove(&row.id).unwrap_or_default();
                Ok(Document {
                    id: row.id,
                    tenant: row.tenant,
                    owner: row.owner,
                    title: row.title,
                    classification: classification(&row.classification)?,
                    labels,
                    content: None,
                    content_type: row.content_type,
                    size_bytes: row.size_bytes,
                    etag: row.etag,
                    create_time: row.create_time,
                    update_time: row.update_time,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = match documents.last() {
            Some(last) if more => Some(self.tokens.seal(
                &caller.tenant,
                &query.filter.canonical(),
                Cursor {
                    create_time_micros: last.create_time.timestamp_micros(),
                    id: last.id,
                },
            )),
            _ => None,
        };
        Ok(Page {
            documents,
            next_page_token,
        })
    }

    /// Applies `patch`; when it carries an etag, only to that version.
    pub async fn update(&self, caller: &Caller, patch: DocumentPatch) -> Result<Document> {
        let changed_fields: Vec<String> = [
            ("title", patch.title.is_some()),
            ("classification", patch.classification.is_some()),
            ("labels", patch.labels.is_some()),
            ("content", patch.content.is_some()),
            ("content_type", patch.content_type.is_some()),
        ]
        .into_iter()
        .filter(|&(_, set)| set)
        .map(|(name, _)| name.to_owned())
        .collect();
        let mut update = document::Entity::update_many()
            .col_expr(document::Column::Etag, Expr::value(new_etag()))
            .col_expr(document::Column::UpdateTime, Expr::value(now()))
            .filter(document::Column::Id.eq(patch.id))
            .filter(document::Column::Tenant.eq(caller.tenant.as_str()));
        if !caller.restricted {
            update = update.filter(document::Column::Classification.ne(RESTRICTED));
        }
        if let Some(classification) = patch.classification
            && let Err(refused) = may_classify(caller, classification)
        {
            // A document the caller cannot see stays missing to them.
            let exists = visible(
                document::Entity::find_by_id(patch.id)
                    .filter(document::Column::Tenant.eq(caller.tenant.as_str())),
                caller,
            )
            .one(&self.db)
            .await?
            .is_some();
            return Err(if exists {
                refused
            } else {
                DocumentsError::NotFound
            });
        }
        if let Some(title) = patch.title {
            update = update.col_expr(document::Column::Title, Expr::value(title));
        }
        if let Some(classification) = patch.classification {
            update = update.col_expr(
                document::Column::Classification,
                Expr::value(classification.as_str()),
            );
        }
        if let Some(content) = &patch.content {
            update = update.col_expr(document::Column::SizeBytes, Expr::value(size_of(content)));
        }
        if let Some(content_type) = patch.content_type {
            update = update.col_expr(document::Column::ContentType, Expr::value(content_type));
        }
        if let Some(etag) = &patch.if_match {
            update = update.filter(document::Column::Etag.eq(etag.as_str()));
        }

        // The update is the first statement, so it takes the row (or, on
        // SQLite, the database) before anything is read: the etag check
        // and the change are one step.
        let txn = self.begin_write().await?;
        let changed = update.exec(&txn).await?.rows_affected;
        if changed == 0 {
            return Err(why_unchanged(&txn, caller, patch.id).await);
        }
        if let Some(labels) = &patch.labels {
            document_label::Entity::delete_many()
                .filter(document_label::Column::DocumentId.eq(patch.id))
                .exec(&txn)
                .await?;
            insert_labels(&txn, patch.id, labels).await?;
        }
        let (_, row) = load_row(&txn, caller, patch.id).await?;
        let (old, new) = self
            .write_content(
                &txn,
                &row,
                patch.content.as_deref(),
                patch.classification.is_some(),
            )
            .await?;
        let committed = self
            .finish_update(&txn, caller, &patch.id, changed_fields)
            .await;
        let committed = match committed {
            Ok(document) => txn.commit().await.map(|()| document).map_err(Into::into),
            Err(e) => Err(e),
        };
        match committed {
            Ok(document) => {
                self.outbox.committed();
                if let (Some(old), Some(_)) = (&old, &new) {
                    self.discard(&row.tenant, row.id, old).await;
                }
                tracing::info!(document_id = %document.id, tenant = %caller.tenant, "document updated");
                Ok(document)
            }
            Err(e) => {
                if let Some(new) = &new {
                    self.discard(&row.tenant, row.id, new).await;
                }
                Err(e)
            }
        }
    }

    /// Writes a new content generation when the content changed, or when
    /// the classification changed and the content must move to another
    /// key (or off the inline column), and points the row to it. Returns
    /// the previous and the new generation.
    async fn write_content(
        &self,
        txn: &DatabaseTransaction,
        row: &document::Model,
        content: Option<&str>,
        reclassified: bool,
    ) -> Result<(Option<String>, Option<String>)> {
        let classification = classification(&row.classification)?;
        let inline = row.content_storage == STORAGE_INLINE;
        let new = match (content, &row.content_generation) {
            (Some(content), _) => Some(
                self.content
                    .put(&row.tenant, row.id, classification, content.as_bytes())
                    .await?,
            ),
            (None, _) if reclassified && inline => Some(
                self.content
                    .put(&row.tenant, row.id, classification, row.content.as_bytes())
                    .await?,
            ),
            (None, Some(generation))
                if reclassified && row.content_storage == self.content.storage() =>
            {
                self.content
                    .rekey(&row.tenant, row.id, generation, classification)
                    .await?
            }
            _ => None,
        };
        let Some(new) = new else {
            return Ok((None, None));
        };
        let pointed = document::Entity::update_many()
            .col_expr(
                document::Column::ContentGeneration,
                Expr::value(new.clone()),
            )
            .col_expr(
                document::Column::ContentStorage,
                Expr::value(self.content.storage()),
            )
            .col_expr(document::Column::Content, Expr::value(String::new()))
            .filter(document::Column::Id.eq(row.id))
            .exec(txn)
            .await;
        if let Err(e) = pointed {
            self.discard(&row.tenant, row.id, &new).await;
            return Err(e.into());
        }
        let old = if inline {
            None
        } else {
            row.content_generation.clone()
        };
        Ok((old, Some(new)))
    }

    async fn finish_update(
        &self,
        txn: &DatabaseTransaction,
        caller: &Caller,
        id: &Uuid,
        changed_fields: Vec<String>,
    ) -> Result<Document> {
        let document = self.load(txn, caller, *id).await?;
        self.emit(
            txn,
            &events::DocumentUpdated {
                document_id: document.id.to_string(),
                tenant: document.tenant.clone(),
                actor: caller.user.clone(),
                changed_fields,
                title: document.title.clone(),
                classification: document.classification.number(),
                labels: document.labels.clone().into_iter().collect(),
                content_type: document.content_type.clone(),
                size_bytes: document.size_bytes,
                etag: document.etag.clone(),
                update_time: Some(timestamp(document.update_time)),
            },
        )
        .await?;
        Ok(document)
    }

    /// Deletes a document and its labels; when `if_match` is set, only
    /// that version.
    pub async fn delete(&self, caller: &Caller, id: Uuid, if_match: Option<String>) -> Result<()> {
        let mut delete = document::Entity::delete_many()
            .filter(document::Column::Id.eq(id))
            .filter(document::Column::Tenant.eq(caller.tenant.as_str()));
        if !caller.restricted {
            delete = delete.filter(document::Column::Classification.ne(RESTRICTED));
        }
        if let Some(etag) = if_match {
            delete = delete.filter(document::Column::Etag.eq(etag));
        }
        let txn = self.begin_write().await?;
        let Some(row) = delete.exec_with_returning(&txn).await?.pop() else {
            return Err(why_unchanged(&txn, caller, id).await);
        };
        // Shredded while the row is taken and before the commit (see the
        // module doc): a failure here rolls the delete back.
        if row.content_storage != STORAGE_INLINE
            && let Some(generation) = &row.content_generation
        {
            self.content.shred(&row.tenant, id, generation).await?;
        }
        // The foreign key cascades; this covers a connection opened
        // without foreign-key enforcement, so no label outlives its row.
        document_label::Entity::delete_many()
            .filter(document_label::Column::DocumentId.eq(id))
            .exec(&txn)
            .await?;
        self.emit(
            &txn,
            &events::DocumentDeleted {
                document_id: id.to_string(),
                tenant: caller.tenant.clone(),
                actor: caller.user.clone(),
                delete_time: Some(timestamp(now())),
            },
        )
        .await?;
        txn.commit().await?;
        self.outbox.committed();
        tracing::info!(document_id = %id, tenant = %caller.tenant, "document deleted");
        Ok(())
    }
}

/// Only callers who may see restricted documents may make one.
fn may_classify(caller: &Caller, classification: Classification) -> Result<()> {
    if classification == Classification::Restricted && !caller.restricted {
        return Err(DocumentsError::Restricted);
    }
    Ok(())
}

/// The stored name of the restricted classification.
const RESTRICTED: &str = "RESTRICTED";

/// `select` without the restricted documents when the caller may not see
/// them: to them such documents do not exist (NOT_FOUND, absent from lists).
fn visible<S: QueryFilter>(select: S, caller: &Caller) -> S {
    if caller.restricted {
        select
    } else {
        select.filter(document::Column::Classification.ne(RESTRICTED))
    }
}

/// A conditional write changed nothing: either the document is not the
/// caller's tenant's (or does not exist), or its etag moved on.
async fn why_unchanged(txn: &DatabaseTransaction, caller: &Caller, id: Uuid) -> DocumentsError {
    let found = document::Entity::find()
        .select_only()
        .column(document::Column::Id)
        .filter(document::Column::Id.eq(id))
        .filter(document::Column::Tenant.eq(caller.tenant.as_str()));
    let found = visible(found, caller).into_tuple::<Uuid>().one(txn).await;
    match found {
        Ok(Some(_)) => DocumentsError::EtagMismatch,
        Ok(None) => DocumentsError::NotFound,
        Err(error) => error.into(),
    }
}

/// A document without its content, and its row.
async fn load_row(
    txn: &DatabaseTransaction,
    caller: &Caller,
    id: Uuid,
) -> Result<(Document, document::Model)> {
    let row = visible(
        document::Entity::find_by_id(id)
            .filter(document::Column::Tenant.eq(caller.tenant.as_str())),
        caller,
    )
    .one(txn)
    .await?
    .ok_or(DocumentsError::NotFound)?;
    let labels = labels_of(txn, &[id]).await?.remove(&id).unwrap_or_default();
    let document = Document {
        id: row.id,
        tenant: row.tenant.clone(),
        owner: row.owner.clone(),
        title: row.title.clone(),
        classification: classification(&row.classification)?,
        labels,
        content: None,
        content_type: row.content_type.clone(),
        size_bytes: row.size_bytes,
        etag: row.etag.clone(),
        create_time: row.create_time,
        update_time: row.update_time,
    };
    Ok((document, row))
}

async fn labels_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, BTreeMap<String, String>>> {
    let mut labels: HashMap<Uuid, BTreeMap<String, String>> = HashMap::new();
    if ids.is_empty() {
        return Ok(labels);
    }
    let rows = document_label::Entity::find()
        .filter(document_label::Column::DocumentId.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    for row in rows {
        labels
            .entry(row.document_id)
            .or_default()
            .insert(row.key, row.value);
    }
    Ok(labels)
}

async fn insert_labels(
    db: &impl ConnectionTrait,
    id: Uuid,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    let rows = labels
        .iter()
        .map(|(key, value)| document_label::ActiveModel {
            document_id: Set(id),
            key: Set(key.clone()),
            value: Set(value.clone()),
        });
    document_label::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

fn classification(stored: &str) -> Result<Classification> {
    Classification::from_name(stored)
        .ok_or_else(|| DocumentsError::Corrupt(format!("unknown classification `{stored}`")))
}

/// Now, cut to whole microseconds: PostgreSQL keeps no more, and a cursor
/// must compare equal to the row it came from on every database.
fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        // Below one billion by construction, so the cast is lossless.
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// A fresh, unguessable version tag.
fn new_etag() -> String {
    Uuid::new_v4().simple().to_string()
}

fn size_of(content: &str) -> i64 {
    i64::try_from(content.len()).unwrap_or(i64::MAX)
}
