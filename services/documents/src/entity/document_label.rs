//! One row per label of a document; deleted with the document.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "document_labels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub document_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub value: String,
    #[sea_orm(belongs_to, from = "document_id", to = "id", on_delete = "Cascade")]
    pub document: HasOne<super::document::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
