//! The head signature of each record (see `crate::signing`).

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_signature")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// `<scheme>:<base64>` over `signing::head_message(tenant, seq, hash)`.
    pub signature: String,
}

impl ActiveModelBehavior for ActiveModel {}
