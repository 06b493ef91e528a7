use sea_orm::entity::prelude::*;

/// One code in flight per user and purpose; a new one replaces it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "confirmation_codes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// `sign_up` or `password_reset`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub purpose: String,
    /// SHA-256 of the user, the purpose and the code; the clear code is
    /// only in the event that delivers it.
    pub code_hash: String,
    /// Wrong codes tried; the code dies at the configured maximum.
    pub attempts: i32,
    pub created_at: ChronoDateTimeUtc,
    pub expires_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
