use sea_orm::entity::prelude::*;

/// A user's authenticator.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mfa_totp")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The secret in use, sealed like the signing keys; set once verified.
    pub secret: Option<String>,
    /// A secret being enrolled, until its first code is verified.
    pub pending_secret: Option<String>,
    /// The last time step accepted: a code of that step or an earlier one
    /// is a replay.
    pub last_step: Option<i64>,
    pub enabled_at: Option<ChronoDateTimeUtc>,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
