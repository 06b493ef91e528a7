use sea_orm::entity::prelude::*;

/// One refresh token. Only its SHA-256 is kept, so a copy of the table does
/// not let anyone refresh.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Lowercase hex SHA-256 of the token's bytes.
    #[sea_orm(unique)]
    pub token_hash: String,
    /// Shared by every token descending from one login by rotation.
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub tenant: String,
    pub client_id: String,
    /// When the login of this family presented the password.
    pub auth_time: ChronoDateTimeUtc,
    pub issued_at: ChronoDateTimeUtc,
    pub expires_at: ChronoDateTimeUtc,
    /// Set when the token was exchanged; presenting it again is reuse.
    pub rotated_at: Option<ChronoDateTimeUtc>,
    pub revoked_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
