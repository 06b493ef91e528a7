//! One row per recorded event: the chain's links.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_record")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    /// 1, 2, 3, ... per tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    /// Empty when the event has none.
    pub subject: String,
    /// Empty when the payload names none.
    pub actor: String,
    /// Whole microseconds, so the hash reads the same on both databases.
    pub occur_time: DateTimeUtc,
    pub record_time: DateTimeUtc,
    /// Text, not a JSON column: the hash covers these exact bytes, which a
    /// JSON column type would be free to reformat.
    #[sea_orm(column_type = "Text")]
    pub summary: String,
    pub prev_hash: String,
    pub hash: String,
}

impl ActiveModelBehavior for ActiveModel {}
