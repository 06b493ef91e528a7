//! The schema of the documents service, one migration per file, applied in
//! order at start by [`cloudsec_runtime::db::connect`].
//!
//! The statements are portable sea-query, so the same migrations run on
//! SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod m20250601_000001_create_documents;
mod m20250601_000002_create_document_labels;
mod m20250701_000003_content_objects;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250601_000001_create_documents::Migration),
            Box::new(m20250601_000002_create_document_labels::Migration),
            Box::new(m20250701_000003_content_objects::Migration),
        ]
    }
}

/// The table and column names the migrations use.
#[derive(DeriveIden)]
pub(crate) enum Documents {
    Table,
    Id,
    Tenant,
    Owner,
    Title,
    Classification,
    Content,
    ContentType,
    SizeBytes,
    Etag,
    CreateTime,
    UpdateTime,
    ContentGeneration,
    ContentStorage,
}

#[derive(DeriveIden)]
pub(crate) enum DocumentLabels {
    Table,
    DocumentId,
    Key,
    Value,
}
