//! Document create/get latency with envelope encryption vs without, one
//! run, through `Store` on SQLite with the local-directory object store.
//!
//! Modes: plaintext objects in the same directory (the baseline: the same
//! object writes and fsyncs, no encryption, no key object), envelope
//! encryption with local keys, with KMS on moto (when `BENCH_KMS` is set;
//! scripts/bench-aws), and with Vault transit (OpenBao, found or started
//! like the tests do; skipped when there is none). The data-key
//! cache is the secrets crate's default: `max_uses = 1` (every document
//! its own data key, one transit `datakey` call per create) and an opening
//! cache of 1024 keys for 5 minutes, so the first read of a document
//! unwraps its key in Vault (`get cold`) and later reads do not (`get warm`).
//!
//! `BENCH_DOCS` (default 300) documents of 64 KiB per mode, in
//! `BENCH_ROUNDS` (default 3) rounds with the mode order rotated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsec_documents::Migrator;
use cloudsec_documents::config::KeyPolicy;
use cloudsec_documents::content::{ContentStore, ObjectStore, Sealing};
use cloudsec_documents::domain::{Caller, Classification, NewDocument};
use cloudsec_documents::store::Store;
use cloudsec_secrets::{DataKeyCacheConfig, Envelope, KeyService, TransitKeys};

const SIZE: usize = 64 * 1024;

/// A mode's name, its key service (none: plaintext) and its prefetch.
type Mode = (&'static str, Option<Arc<dyn KeyService>>, usize);

struct Run {
    create: Vec<Duration>,
    cold: Vec<Duration>,
    warm: Vec<Duration>,
}

fn pct(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i]
}

async fn measure(dir: &std::path::Path, name: &str, content: ContentStore, n: usize) -> Run {
    let url = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    let db = cloudsec_runtime::db::connect::<Migrator>(&url)
        .await
        .unwrap();
    cloudsec_bus::migration::migrate(&db).await.unwrap();
    let store = Store::new(
        db,
        cloudsec_documents::page_token::key(&[7u8; 32]).unwrap(),
        cloudsec_bus::Outbox::new(),
        content,
    );
    let caller = Caller::trusted("bench", "bench");
    let body: String = (0..SIZE).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let classes = Classification::ALL;
    let mut ids = Vec::with_capacity(n);
    let mut run = Run {
        create: Vec::new(),
        cold: Vec::new(),
        warm: Vec::new(),
    };
    for i in 0..n {
        let new = NewDocument {
            title: format!("doc {i}"),
            classification: classes[i % classes.len()],
            labels: BTreeMap::new(),
            content: body.clone(),
            content_type: "text/plain".into(),
        };
        let t = Instant::now();
        let doc = store.create(&caller, new).await.unwrap();
        run.create.push(t.elapsed());
        ids.push(doc.id);
    }
    for samples in [&mut run.cold, &mut run.warm] {
        for id in &ids {
            let t = Instant::now();
            let doc = store.get(&caller, *id).await.unwrap();
            samples.push(t.elapsed());
            assert_eq!(doc.content.as_deref().map(str::len), Some(SIZE));
        }
    }
    run
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = tempfile::tempdir().unwrap();
    let keystore =
        Arc::new(cloudsec_secrets::LocalKeystore::open(&dir.path().join("keys")).unwrap());
    let mut modes: Vec<Mode> = vec![
        ("plaintext objects (baseline)", None, 0),
        (
            "envelope, local keys",
            Some(Arc::new(cloudsec_secrets::LocalKeys::new(keystore))),
            0,
        ),
    ];
    // KMS on moto, when `BENCH_KMS` is set (scripts/bench-aws sets it):
    // each create is a GenerateDataKey round trip to moto, never prefetched
    // (data keys are bound to their document).
    if std::env::var_os("BENCH_KMS").is_some()
        && let Some(moto) = cloudsec_testkit::moto_url()
    {
        let kms =
            cloudsec_secrets::KmsKeys::connect(&cloudsec_secrets::test_util::moto_kms(&moto)).await;
        for key in KeyPolicy::default().key_names() {
            kms.ensure_key(key).await.unwrap();
        }
        modes.push(("envelope, KMS (moto)", Some(Arc::new(kms)), 0));
    }
    if let Some(vault) = cloudsec_secrets::test_util::openbao() {
        let mount = vault.mount("transit").await;
        let transit = TransitKeys::new(vault.root().await, &mount);
        for key in KeyPolicy::default().key_names() {
            transit.ensure_key(key).await.unwrap();
        }
        let transit: Arc<dyn KeyService> = Arc::new(transit);
        modes.push((
            "envelope, Vault transit, no prefetch",
            Some(transit.clone()),
            0,
        ));
        modes.push((
            "envelope, Vault transit, prefetch 16 (documents default)",
            Some(transit),
            16,
        ));
    }

    // Each round gives every mode a fresh database and object directory
    // and runs the modes one after another (a sustained burst of creates,
    // the worst case for prefetching); the order rotates between rounds
    // so that drift in the machine's speed does not favour one mode.
    let mut results: Vec<(&str, Run)> = modes
        .iter()
        .map(|(name, _, _)| {
            (
                *name,
                Run {
                    create: Vec::new(),
                    cold: Vec::new(),
                    warm: Vec::new(),
                },
            )
        })
        .collect();
    for round in 0..rounds {
        for k in 0..modes.len() {
            let m = (k + round) % modes.len();
            let (_, keys, prefetch) = &modes[m];
            let label = format!("r{round}m{m}");
            let objects = ObjectStore::dir(&dir.path().join(format!("objects-{label}"))).unwrap();
            let content = match keys {
                None => ContentStore::new(objects, Sealing::Plaintext),
                Some(keys) => ContentStore::new(
                    objects,
                    Sealing::Envelope {
                        envelope: Arc::new(Envelope::new(
                            keys.clone(),
                            DataKeyCacheConfig {
                                prefetch: *prefetch,
                                ..DataKeyCacheConfig::default()
                            },
                        )),
                        policy: Arc::new(KeyPolicy::default()),
                    },
                ),
            };
            let run = measure(dir.path(), &label, content, n.div_ceil(rounds)).await;
            let into = &mut results[m].1;
            into.create.extend(run.create);
            into.cold.extend(run.cold);
            into.warm.extend(run.warm);
        }
    }

    let base = &results[0].1;
    let ratio = |a: Duration, b: Duration| format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64());
    println!(
        "{n} documents of 64 KiB per mode in {rounds} rounds, SQLite + local directory (fsync per object), release build\n"
    );
    println!(
        "| mode | create p50 ms | create p99 ms | get cold p50 ms | get cold p99 ms | get warm p50 ms | get warm p99 ms | create p50 ratio | get warm p50 ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, r) in &results {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ms(pct(&r.create, 0.5)),
            ms(pct(&r.create, 0.99)),
            ms(pct(&r.cold, 0.5)),
            ms(pct(&r.cold, 0.99)),
            ms(pct(&r.warm, 0.5)),
            ms(pct(&r.warm, 0.99)),
            ratio(pct(&r.create, 0.5), pct(&base.create, 0.5)),
            ratio(pct(&r.warm, 0.5), pct(&base.warm, 0.5)),
        );
    }
}
