//! One row per tenant: the last record's `seq` and `hash`. Appends lock it,
//! which serializes a tenant's appends on PostgreSQL; verification
//! compares it with the last record, so a deleted tail shows.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_chain_head")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    /// 0 before the first record.
    pub seq: i64,
    pub hash: String,
}

impl ActiveModelBehavior for ActiveModel {}
