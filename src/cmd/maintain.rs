//! `cloudsec maintain documents`: re-wrap data keys under their key's
//! latest version and collect orphan content, once.

use std::path::PathBuf;
use std::time::Duration;

use super::{Fatal, fatal, missing, one_shot};

pub(crate) async fn documents(
    grace: Duration,
    data_dir: PathBuf,
    config: Option<PathBuf>,
) -> Result<(), Fatal> {
    let run = one_shot(&data_dir, config.as_deref()).await?;
    let c = run
        .config
        .documents
        .ok_or_else(|| missing("documents", "section required"))?;
    let store = cloudsec_documents::open_store(&c).await.map_err(fatal)?;
    let report = cloudsec_documents::maintain(&store, grace)
        .await
        .map_err(fatal)?;
    println!(
        "rewrap: {} re-wrapped, {} already current, {} failed",
        report.rewrap.rewrapped,
        report.rewrap.unchanged,
        report.rewrap.failed.len()
    );
    for (id, error) in &report.rewrap.failed {
        println!("  document {id}: {error}");
    }
    println!(
        "orphans: {} generations examined, {} deleted, {} younger than {} kept, {} failed",
        report.garbage.examined,
        report.garbage.deleted,
        report.garbage.recent,
        humantime_serde::re::humantime::format_duration(grace),
        report.garbage.failed.len()
    );
    for (objects, error) in &report.garbage.failed {
        println!("  {}: {error}", objects.join(", "));
    }
    if report.rewrap.failed.is_empty() && report.garbage.failed.is_empty() {
        Ok(())
    } else {
        Err(fatal(
            "some documents could not be maintained (listed above)",
        ))
    }
}
