//! Schema migrations, one per file, applied at start.

use sea_orm_migration::prelude::*;

mod m20261129_000001_create_tables;
mod m20261129_000002_sessions;
mod m20261129_000003_key_rotation;
mod m20261129_000004_disabled_users;
mod m20261129_000005_password_history;
mod m20261129_000006_groups;
mod m20261129_000007_confirmation;
mod m20261129_000008_mfa;
mod m20261129_000009_federation;
mod m20261130_000010_token_revocations;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_tables::Migration),
            Box::new(m20261129_000002_sessions::Migration),
            Box::new(m20261129_000003_key_rotation::Migration),
            Box::new(m20261129_000004_disabled_users::Migration),
            Box::new(m20261129_000005_password_history::Migration),
            Box::new(m20261129_000006_groups::Migration),
            Box::new(m20261129_000007_confirmation::Migration),
            Box::new(m20261129_000008_mfa::Migration),
            Box::new(m20261129_000009_federation::Migration),
            Box::new(m20261130_000010_token_revocations::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "auth_migrations".into_iden()
    }
}
