//! One row per document: its metadata and where its content is.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "documents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant: String,
    pub owner: String,
    pub title: String,
    /// The classification's name (`PUBLIC`, `INTERNAL`, ...), kept as text
    /// so that the column reads the same in both databases.
    pub classification: String,
    /// Only rows written before content moved to object storage
    /// (`content_storage = "inline"`) keep their content here; newer rows
    /// leave it empty.
    #[sea_orm(column_type = "Text")]
    pub content: String,
    /// The content's current generation in the object store (see
    /// [`crate::content`]); `None` for inline content.
    pub content_generation: Option<String>,
    /// `inline`, `envelope-v1` or `plain`.
    pub content_storage: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub etag: String,
    /// Whole microseconds, so that a cursor compares equal on PostgreSQL
    /// (which keeps microseconds) and on SQLite (which keeps what it gets).
    pub create_time: DateTimeUtc,
    pub update_time: DateTimeUtc,
    #[sea_orm(has_many)]
    pub labels: HasMany<super::document_label::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
