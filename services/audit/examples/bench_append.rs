//! Audit append throughput: the SQL store (SQLite file) against the
//! DynamoDB store (on moto), on one machine, printed as a markdown table.
//!
//! Two loads per store: one tenant, appends one after another (the chain
//! head is the bottleneck by design), and 8 tenants appending at once.
//! moto is a Python emulator whose `TransactWriteItems` copies the whole
//! table on every call: its numbers say how the code behaves against an
//! emulator, not what DynamoDB does; read them relative to SQL on the
//! same machine, never as AWS figures.
//!
//! `BENCH_EVENTS` (default 300) appends per load; `CLOUDSEC_TEST_MOTO_URL`
//! or a `moto_server` on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cloudsec_audit::AuditLog;
use cloudsec_audit::dynamo::{DynamoConfig, DynamoStore};
use cloudsec_audit::metrics::AuditMetrics;
use cloudsec_bus::Envelope;
use cloudsec_proto::events::v1 as ev;

fn event(tenant: &str, i: usize) -> Envelope {
    Envelope::new(
        "/cloudsec/documents",
        &ev::DocumentCreated {
            document_id: format!("d{i}"),
            tenant: tenant.into(),
            actor: "alice".into(),
            title: format!("document {i}"),
            ..Default::default()
        },
    )
}

/// Appends `n` events: one tenant in sequence, or `tenants` at once. A
/// failed append is tried again, as the subscriber's redelivery would;
/// returns the time and how many tries failed.
async fn load(log: &AuditLog, n: usize, tenants: usize) -> (Duration, usize) {
    let run = cloudsec_testkit::unique("t");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..tenants {
        let log = log.clone();
        let tenant = format!("{run}-{t}");
        let share = n / tenants;
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..share {
                let event = event(&tenant, i);
                while let Err(error) = log.append(&event).await {
                    failed += 1;
                    assert!(failed < 1000, "appends keep failing: {error}");
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap();
    }
    (start.elapsed(), failed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let db = cloudsec_audit::connect(&url.as_str().into()).await.unwrap();
    let sql = AuditLog::open(db, "audit", AuditMetrics::default())
        .await
        .unwrap();
    let mut logs = vec![("SQL (SQLite file)", sql)];
    match cloudsec_testkit::moto_url() {
        Some(moto) => {
            let table = cloudsec_testkit::unique("bench-audit");
            let store = DynamoStore::connect(&DynamoConfig::emulator(&table, &moto))
                .await
                .unwrap();
            let log = AuditLog::open_dynamodb(store, "audit", AuditMetrics::default())
                .await
                .unwrap();
            logs.push(("DynamoDB (moto)", log));
        }
        None => eprintln!("no moto: DynamoDB skipped"),
    }
    println!("{n} appends per load, release build\n");
    println!("| store | load | seconds | appends/s | vs SQL | failed tries (retried) |");
    println!("|---|---|---|---|---|---|");
    for (tenants, label) in [(1, "1 tenant, sequential"), (8, "8 tenants at once")] {
        let mut base = None;
        for (name, log) in &logs {
            let (took, failed) = load(log, n, tenants).await;
            let rate = n as f64 / took.as_secs_f64();
            let base_rate = *base.get_or_insert(rate);
            println!(
                "| {name} | {label} | {:.2} | {rate:.1} | {:.3}x | {failed} |",
                took.as_secs_f64(),
                rate / base_rate
            );
        }
    }
}
