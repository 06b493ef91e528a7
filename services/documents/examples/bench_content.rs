//! Document create/get latency with envelope encryption vs without, one
//! run, through `Store` on SQLite with the local-directory object store.
//!
//! Modes: plaintext objects in the same directory (the baseline: the same
//! object writes and fsyncs, no encryption, no key object), envelope
//! encryption with local keys, and with Vault transit (OpenBao, found or
//! started like the tests do; skipped when there is none). The data-key
//! cache is the secrets crate's default: `max_uses = 1` (every document
//! its own data key, one transit `datakey` call per create) and an opening
//! cache of 1024 keys for 5 minutes, so the first read of a document
//! unwraps its key in Vault (`get cold`) and later reads do not (`get warm`).
//!
//! `BENCH_DOCS` (default 300) documents of 64 KiB per mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsec_documents::Migrator;
use cloudsec_documents::content::{ContentStore, ObjectStore, Sealing};
use cloudsec_documents::domain::{Caller, Classification, NewDocument};
use cloudsec_documents::page_token::PageTokenKey;
use cloudsec_documents::store::Store;
use cloudsec_secrets::{DataKeyCacheConfig, Envelope, KeyPolicy, KeyService, TransitKeys};

const SIZE: usize = 64 * 1024;

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
        PageTokenKey::new(&[7u8; 32]).unwrap(),
        cloudsec_bus::Outbox::new(),
        content,
    );
    let caller = Caller {
        tenant: "bench".into(),
        user: "bench".into(),
    };
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
    let dir = tempfile::tempdir().unwrap();
    let objects = ObjectStore::dir(&dir.path().join("objects")).unwrap();
    let keystore =
        Arc::new(cloudsec_secrets::LocalKeystore::open(&dir.path().join("keys")).unwrap());
    let sealed = |keys: Arc<dyn KeyService>| {
        ContentStore::new(
            objects.clone(),
            Sealing::Envelope {
                envelope: Arc::new(Envelope::new(keys, DataKeyCacheConfig::default())),
                policy: Arc::new(KeyPolicy::default()),
            },
        )
    };

    let mut results = Vec::new();
    let plain = ContentStore::new(objects.clone(), Sealing::Plaintext);
    results.push((
        "plaintext objects (baseline)",
        measure(dir.path(), "plain", plain, n).await,
    ));
    let local = sealed(Arc::new(cloudsec_secrets::LocalKeys::new(keystore)));
    results.push((
        "envelope, local keys",
        measure(dir.path(), "local", local, n).await,
    ));
    if let Some(vault) = cloudsec_secrets::test_util::openbao() {
        let mount = vault.mount("transit").await;
        let transit = TransitKeys::new(vault.root().await, &mount);
        for key in KeyPolicy::default().key_names() {
            transit.ensure_key(key).await.unwrap();
        }
        results.push((
            "envelope, Vault transit",
            measure(dir.path(), "vault", sealed(Arc::new(transit)), n).await,
        ));
    }

    let base = &results[0].1;
    let ratio = |a: Duration, b: Duration| format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64());
    println!(
        "{n} documents of 64 KiB per mode, SQLite + local directory (fsync per object), release build\n"
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
