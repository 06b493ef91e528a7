use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Lowercased; unique across tenants because it is the sign-in name.
    #[sea_orm(unique)]
    pub email: String,
    pub tenant: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub is_tenant_admin: bool,
    pub created_at: ChronoDateTimeUtc,
    /// Set while a tenant admin has disabled the user.
    pub disabled_at: Option<ChronoDateTimeUtc>,
    /// When the user proved they own the email; unset, they cannot log in.
    pub confirmed_at: Option<ChronoDateTimeUtc>,
    /// Raised by every revocation of the user's access tokens; tokens carry
    /// the value they were issued under (`cloudsec:generation`), and
    /// verifiers refuse lower ones.
    pub token_generation: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
