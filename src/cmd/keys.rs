//! `cloudsec keys rotate`: a new token-signing key for the auth service.

use std::path::PathBuf;
use std::sync::Arc;

use cloudsec_runtime::token::TokenVerifier;

use super::{Fatal, OneShot, fatal, missing, one_shot};

pub(crate) async fn rotate(
    now: bool,
    data_dir: PathBuf,
    config: Option<PathBuf>,
) -> Result<(), Fatal> {
    let OneShot {
        loaded,
        config: cfg,
        credentials: _credentials,
    } = one_shot(&data_dir, config.as_deref()).await?;
    let auth = cfg
        .auth
        .ok_or_else(|| missing("auth", "section required"))?;
    let db =
        cloudsec_runtime::db::connect_to::<cloudsec_auth::migration::Migrator>(&auth.database_url)
            .await
            .map_err(fatal)?;
    use cloudsec_auth::keys::{KeyRing, KeyStore, Policy};
    let store = KeyStore::from_config(&auth.signing, &db, loaded.secrets.as_ref())
        .await
        .map_err(fatal)?;
    let verifier = Arc::new(TokenVerifier::fixed(
        &cfg.tokens.issuer,
        &cfg.tokens.audience,
    ));
    let ring = KeyRing::open(
        store,
        Policy::new(&auth.signing, cfg.tokens.access_ttl),
        auth.signing.check_interval,
        verifier,
    )
    .await
    .map_err(fatal)?;
    let kid = ring.rotate(now).await.map_err(fatal)?;
    let plan = ring.plan();
    println!(
        "new signing key {kid}; signing now: {}; published: {}",
        plan.signing.as_deref().unwrap_or("-"),
        plan.published.join(", ")
    );
    if !now {
        println!(
            "it signs after {} (auth.signing.publish_ahead); running auth replicas pick it up within {}",
            humantime_serde::re::humantime::format_duration(auth.signing.publish_ahead),
            humantime_serde::re::humantime::format_duration(auth.signing.check_interval)
        );
    }
    Ok(())
}
