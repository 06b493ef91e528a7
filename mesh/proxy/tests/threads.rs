//! The `cloudsec-proxy` binary runs exactly `proxy.worker_threads` workers,
//! whatever `TOKIO_WORKER_THREADS` says (issue 21: a sidecar started with
//! `TOKIO_WORKER_THREADS=1` showed two workers).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
use cloudsec_proxy::runtime::{BLOCKING_THREAD_NAME, WORKER_THREAD_NAME};

/// Kills the sidecar even when an assertion fails.
struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn write_certs(dir: &Path) {
    let ca = LocalCa::generate().unwrap();
    let id = SpiffeId::new("cloudsec.local", "default", "client").unwrap();
    let cert = ca.issue(&id, Duration::from_secs(3600)).await.unwrap();
    std::fs::write(dir.join("ca.pem"), &cert.ca_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
}

/// Starts the sidecar with `worker_threads` (none: the default) and
/// `TOKIO_WORKER_THREADS=4`, and returns once it logged that it serves.
fn start(dir: &Path, worker_threads: Option<usize>) -> Sidecar {
    let d = dir.display();
    let threads = worker_threads.map_or(String::new(), |n| format!("worker_threads = {n}\n"));
    let config = format!(
        "[proxy]\n{threads}admin_listen = \"127.0.0.1:0\"\n\
         tls = {{ ca_file = \"{d}/ca.pem\", cert_file = \"{d}/cert.pem\", key_file = \"{d}/key.pem\" }}\n\
         [proxy.outbound]\nlisten = \"127.0.0.1:0\"\n"
    );
    let path = dir.join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudsec-proxy"))
        .arg("--config")
        .arg(&path)
        .env("TOKIO_WORKER_THREADS", "4")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let sidecar = Sidecar(child);
    // The runtime exists before the sidecar logs that it serves; a sidecar
    // that exits ends the loop with its log in the failure message.
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("proxy serving") {
            return sidecar;
        }
    }
    panic!("the sidecar stopped before serving:\n{log}");
}

/// The names of the process's threads, once every thread the runtime
/// started has named itself: a thread that was just spawned still carries
/// the process's name until it runs, so an early look miscounts.
fn thread_names(pid: u32) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let tasks: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|task| {
                let task = task.unwrap();
                let tid = task.file_name().to_string_lossy().parse().unwrap();
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap();
                (tid, comm.trim().to_owned())
            })
            .collect();
        let main = tasks
            .iter()
            .find(|(tid, _)| *tid == pid)
            .map(|(_, name)| name.clone())
            .unwrap_or_default();
        let unnamed = tasks.iter().any(|(tid, name)| *tid != pid && *name == main);
        if !unnamed || std::time::Instant::now() >= deadline {
            return tasks.into_iter().map(|(_, name)| name).collect();
        }
        // Polling: /proc has nothing to wait on.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

#[tokio::test]
async fn worker_threads_is_honoured_and_tokio_worker_threads_is_not() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path()).await;

    // Static endpoints: nothing asks the blocking pool for a thread, so
    // the only pool threads are the workers.
    let two = start(dir.path(), Some(2));
    let names = thread_names(two.0.id());
    assert_eq!(count(&names, WORKER_THREAD_NAME), 2, "{names:?}");
    assert_eq!(count(&names, "tokio-rt-worker"), 0, "{names:?}");
    drop(two);

    // The default: one thread, the main one, polls every task.
    let one = start(dir.path(), None);
    let names = thread_names(one.0.id());
    assert_eq!(count(&names, WORKER_THREAD_NAME), 0, "{names:?}");
    assert_eq!(count(&names, "tokio-rt-worker"), 0, "{names:?}");
    // Only the main thread and the blocking pool (file reads).
    let others: Vec<_> = names
        .iter()
        .filter(|n| *n != BLOCKING_THREAD_NAME)
        .collect();
    assert_eq!(others.len(), 1, "{names:?}");
}
