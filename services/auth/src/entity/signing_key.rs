use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// PKCS#8 PEM (`[auth.signing.store] backend = "vault"` keeps keys in
    /// Vault instead of this table).
    #[sea_orm(column_type = "Text")]
    pub private_pem: String,
    pub created_at: ChronoDateTimeUtc,
    /// From when the key signs; `None` (keys made before rotation
    /// existed) means from `created_at`.
    pub activates_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
