//! Keys the service generates on first start and keeps: today only the
//! page token key.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_secret")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Base64 of the key bytes.
    pub value: String,
}

impl ActiveModelBehavior for ActiveModel {}
