//! Short-lived PostgreSQL logins from Vault's database engine
//! (`[database_credentials.<component>]`): each component's
//! `database_url` follows its lease, renewed and replaced before it ends.

use cloudsec_secrets::Secrets;

use crate::config::{CredentialsFor, PlatformConfig};
use crate::error::PlatformError;

/// Starts the `[database_credentials]` of `config` and points each
/// component's `database_url` at them. The returned handles keep the
/// leases renewed and replaced; dropping them stops that.
pub async fn start_database_credentials(
    config: &mut PlatformConfig,
    secrets: Option<&Secrets>,
) -> Result<Vec<cloudsec_secrets::database::DbCredentials>, PlatformError> {
    use cloudsec_runtime::db::DatabaseUrl;
    use cloudsec_secrets::database::DbCredentials;
    let mut handles = Vec::new();
    for (target, wanted) in config.database_credentials.clone() {
        let client = secrets.and_then(Secrets::vault).cloned().ok_or_else(|| {
            PlatformError::config(
                "secrets",
                "database_credentials need a [secrets] section with backend = \"vault\"",
            )
        })?;
        let base = match target {
            CredentialsFor::Auth => config.auth.as_ref().map(|c| c.database_url.expose()),
            CredentialsFor::Documents => config.documents.as_ref().map(|c| c.database_url.expose()),
            CredentialsFor::Audit => config
                .audit
                .as_ref()
                .and_then(|c| c.database_url.as_ref())
                .map(DatabaseUrl::expose),
            CredentialsFor::Events => config.events.database_url.as_ref().map(DatabaseUrl::expose),
        }
        .ok_or_else(|| PlatformError::Credentials {
            key: target.key(),
            reason: "is not set; dynamic credentials need the database's postgres:// URL".into(),
        })?;
        let credentials = DbCredentials::start(client, wanted).await?;
        let first =
            credentials
                .current()
                .postgres_url(&base)
                .map_err(|e| PlatformError::Credentials {
                    key: target.key(),
                    reason: e.to_string(),
                })?;
        let (tx, rx) = tokio::sync::watch::channel(first);
        let mut changes = credentials.subscribe();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let next = changes.borrow_and_update().postgres_url(&base);
                match next {
                    Ok(url) => {
                        if tx.send(url).is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::error!(%error, "cannot use new database credentials"),
                }
            }
        });
        let url = DatabaseUrl::dynamic(rx);
        match target {
            CredentialsFor::Auth => {
                if let Some(c) = config.auth.as_mut() {
                    c.database_url = url;
                }
            }
            CredentialsFor::Documents => {
                if let Some(c) = config.documents.as_mut() {
                    c.database_url = url;
                }
            }
            CredentialsFor::Audit => {
                if let Some(c) = config.audit.as_mut() {
                    c.database_url = Some(url);
                }
            }
            CredentialsFor::Events => config.events.database_url = Some(url),
        }
        tracing::info!(component = ?target, "database credentials from vault");
        handles.push(credentials);
    }
    Ok(handles)
}
