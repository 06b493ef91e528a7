use sea_orm::entity::prelude::*;

/// Consecutive failed logins per email string, whether or not an account
/// has that email, so that lockouts do not reveal which accounts exist.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_attempts")]
pub struct Model {
    /// Lowercase hex SHA-256 of the normalized email: attackers choose
    /// these strings, and the table need not hold them in clear.
    #[sea_orm(primary_key, auto_increment = false)]
    pub email_hash: String,
    pub failures: i32,
    pub locked_until: Option<ChronoDateTimeUtc>,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
