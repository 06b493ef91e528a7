use sea_orm::entity::prelude::*;

/// The latest access-token revocation of a user: tokens issued under a
/// lower generation are refused by every verifier.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "token_revocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The user's token generation after the revocation.
    pub min_generation: i64,
    /// When the revocation was last raised; verifiers pull by it.
    pub updated_at: ChronoDateTimeUtc,
    /// When every token it covers has expired anyway.
    pub expires_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
