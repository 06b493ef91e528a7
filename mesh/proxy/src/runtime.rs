//! The sidecar's async runtime, sized by `proxy.worker_threads`.
//!
//! The thread count is configuration, not tokio's default: tokio's builder
//! ignores `TOKIO_WORKER_THREADS` as soon as a program calls
//! `worker_threads(n)`, which is how a sidecar started with
//! `TOKIO_WORKER_THREADS=1` once ran two workers (the binary hard-coded 2).
//! Now the configured number is always passed, so the environment variable
//! has no say, and the threads carry the proxy's names in `top -H` and
//! `/proc/PID/task/*/comm`.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use cloudsec_runtime::ConfigError;
use serde::Deserialize;
use tokio::runtime::{Builder, Runtime};

/// The name of the threads of a multi-thread runtime (more than one
/// worker). Tokio starts its workers as tasks of its blocking pool and
/// names every pool thread alike, so a blocking-pool thread (a DNS lookup;
/// it exits after 10 s idle) carries this name too.
pub const WORKER_THREAD_NAME: &str = "proxy-worker";

/// The name of the blocking-pool threads of a one-worker runtime, whose
/// only worker is the thread that started it.
pub const BLOCKING_THREAD_NAME: &str = "proxy-blocking";

/// The default of `proxy.worker_threads`: one, as Linkerd's and Envoy's
/// sidecars run by default. A sidecar carries one pod's traffic; one
/// thread keeps its CPU and memory small and avoids cross-thread wake-ups.
pub const DEFAULT_WORKER_THREADS: NonZeroUsize = NonZeroUsize::MIN;

/// A runtime with exactly `worker_threads` threads polling tasks.
///
/// With one, it is a current-thread runtime: the thread that calls
/// `block_on` polls every task, so there is no work stealing and no wake-up
/// crosses threads, which is cheaper per request than one worker beside an
/// idle main thread. With more, a multi-thread runtime with that many
/// workers.
pub fn build(worker_threads: NonZeroUsize) -> std::io::Result<Runtime> {
    let workers = worker_threads.get();
    if workers == 1 {
        return Builder::new_current_thread()
            .enable_all()
            // Every thread the runtime spawns is a blocking-pool thread.
            .thread_name(BLOCKING_THREAD_NAME)
            .build();
    }
    Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name(WORKER_THREAD_NAME)
        .build()
}

/// `proxy.worker_threads` of a configuration file and the environment
/// (`CLOUDSEC__PROXY__WORKER_THREADS`), every other key ignored.
///
/// `cloudsec proxy` sizes its runtime with this before it loads the whole
/// configuration, because loading may need a runtime (secrets from Vault).
pub fn configured_worker_threads(
    file: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Result<NonZeroUsize, ConfigError> {
    // No `deny_unknown_fields`: the full load checks the other keys.
    #[derive(Deserialize)]
    struct File {
        proxy: Option<Section>,
    }
    #[derive(Deserialize)]
    struct Section {
        #[serde(default = "default_threads")]
        worker_threads: NonZeroUsize,
    }
    fn default_threads() -> NonZeroUsize {
        DEFAULT_WORKER_THREADS
    }
    let file: File = cloudsec_runtime::config::load(file, env)?;
    Ok(file
        .proxy
        .map_or(DEFAULT_WORKER_THREADS, |p| p.worker_threads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_worker_threads_alone() {
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let none = env(&[]);
        assert_eq!(configured_worker_threads(None, &none).unwrap().get(), 1);
        let file = "[proxy]\nworker_threads = 3\nadmin_listen = \"127.0.0.1:0\"\n[mesh]\nx = 1\n";
        assert_eq!(
            configured_worker_threads(Some(file), &none).unwrap().get(),
            3
        );
        // The environment wins over the file, as for every key.
        let two = env(&[("CLOUDSEC__PROXY__WORKER_THREADS", "2")]);
        assert_eq!(
            configured_worker_threads(Some(file), &two).unwrap().get(),
            2
        );
        let zero = "[proxy]\nworker_threads = 0\n";
        let err = configured_worker_threads(Some(zero), &none).unwrap_err();
        assert!(err.key.contains("worker_threads"), "{err}");
    }

    #[test]
    fn one_worker_is_a_current_thread_runtime() {
        let rt = build(DEFAULT_WORKER_THREADS).unwrap();
        assert_eq!(
            rt.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        );
        assert_eq!(rt.metrics().num_workers(), 1);
        // Blocking work still runs, on a named blocking-pool thread.
        let name = rt
            .block_on(async {
                tokio::task::spawn_blocking(|| std::thread::current().name().map(str::to_owned))
                    .await
            })
            .unwrap();
        assert_eq!(name.as_deref(), Some(BLOCKING_THREAD_NAME));
    }

    #[test]
    fn more_workers_make_a_multi_thread_runtime() {
        let rt = build(NonZeroUsize::new(3).unwrap()).unwrap();
        assert_eq!(
            rt.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::MultiThread
        );
        assert_eq!(rt.metrics().num_workers(), 3);
        let name = rt
            .block_on(rt.spawn(async { std::thread::current().name().map(str::to_owned) }))
            .unwrap();
        assert_eq!(name.as_deref(), Some(WORKER_THREAD_NAME));
    }
}
