//! Every component that shares the events database runs the bus's
//! migrations when it starts, at the same moment in a Kubernetes rollout.

use sea_orm::{ConnectionTrait, Database, Statement};

#[tokio::test]
async fn concurrent_starts_migrate_once_on_postgres() {
    let Some(database) = cloudsec_testkit::TestDatabase::create("cloudsec_bus_migrate").await
    else {
        return;
    };
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let url = database.url().to_owned();
        starts.spawn(async move {
            // A pool of its own per "process", as separate pods have.
            let db = Database::connect(&url).await.expect("connect");
            let outcome = cloudsec_bus::migration::migrate(&db).await;
            let _ = db.close().await;
            outcome.map_err(|e| e.to_string())
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = starts.join_next().await {
        if let Err(error) = done.expect("task") {
            failures.push(error);
        }
    }
    let db = Database::connect(database.url()).await.expect("connect");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT count(*) FROM {}",
                cloudsec_bus::migration::MIGRATION_TABLE
            ),
        ))
        .await
        .expect("count")
        .expect("a row");
    let applied: i64 = row.try_get_by_index(0).expect("count");
    let _ = db.close().await;
    database.drop().await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        usize::try_from(applied).expect("count"),
        <cloudsec_bus::migration::Migrator as sea_orm_migration::MigratorTrait>::migrations().len()
    );
}
