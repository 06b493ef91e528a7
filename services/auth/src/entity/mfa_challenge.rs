use sea_orm::entity::prelude::*;

/// A login waiting for its second step; the session token is stored as
/// its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mfa_challenges")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_hash: String,
    pub user_id: Uuid,
    /// `totp` (answer with a code) or `setup` (enrol first).
    pub kind: String,
    /// The app client the login is for.
    pub client_id: String,
    pub attempts: i32,
    pub expires_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
