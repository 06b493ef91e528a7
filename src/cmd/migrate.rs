//! `cloudsec migrate <component>`: a component's database migrations (its
//! own and the bus tables beside them: outbox, inbox), then exit; the
//! chart runs it as a pre-install and pre-upgrade hook.

use std::path::PathBuf;

use cloudsec_runtime::db::connect_to;
use cloudsec_runtime::telemetry::{self, LogFormat};

use super::{Fatal, fatal, load_config, log_format, missing};
use crate::DbComponent;

pub(crate) async fn run(component: DbComponent, config: Option<PathBuf>) -> Result<(), Fatal> {
    let loaded = load_config(config.as_deref()).await?;
    let mut cfg = loaded.config;
    let _db_credentials =
        cloudsec::start_database_credentials(&mut cfg, loaded.secrets.as_ref()).await?;
    let _guard = telemetry::init("cloudsec", log_format(&cfg, LogFormat::Json), None);
    let section = |name| missing(name, "section required");
    let db = match component {
        DbComponent::Auth => {
            let c = cfg.auth.ok_or_else(|| section("auth"))?;
            connect_to::<cloudsec_auth::migration::Migrator>(&c.database_url)
                .await
                .map_err(fatal)?
        }
        DbComponent::Documents => {
            let c = cfg.documents.ok_or_else(|| section("documents"))?;
            connect_to::<cloudsec_documents::migration::Migrator>(&c.database_url)
                .await
                .map_err(fatal)?
        }
        DbComponent::Audit => {
            let c = cfg.audit.ok_or_else(|| section("audit"))?;
            if matches!(c.store, cloudsec_audit::config::StoreConfig::Dynamodb(_)) {
                // The log, its inbox entries and the page token key are
                // DynamoDB items: there is no SQL schema to migrate.
                println!("nothing to migrate: the audit log is on DynamoDB");
                return Ok(());
            }
            let url = c.sql_database_url().map_err(Fatal::from)?;
            cloudsec_audit::connect(url).await.map_err(fatal)?
        }
    };
    cloudsec_bus::migration::migrate(&db).await.map_err(fatal)?;
    println!("migrations applied");
    Ok(())
}
