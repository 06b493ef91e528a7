use sea_orm::entity::prelude::*;

/// A sign-in started at a provider, until its code comes back.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "federation_logins")]
pub struct Model {
    /// SHA-256 of the `state` the browser carries.
    #[sea_orm(primary_key, auto_increment = false)]
    pub state_hash: String,
    pub provider: String,
    pub nonce: String,
    /// The PKCE verifier, sent with the code.
    pub code_verifier: String,
    pub client_id: String,
    pub expires_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
