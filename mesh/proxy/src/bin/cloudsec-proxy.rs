//! `cloudsec-proxy`: the sidecar alone, in a binary much smaller than the
//! full `cloudsec` CLI, so that an idle sidecar maps few pages.
//! `cloudsec-proxy --config FILE` reads the same `[proxy]` section as
//! `cloudsec proxy`, and runs `proxy.worker_threads` worker threads.

use std::process::ExitCode;

use cloudsec_proxy::{Proxy, ProxyConfig, ProxyError};
use cloudsec_runtime::config::{self, EXIT_CONFIG};
use cloudsec_runtime::telemetry::{self, LogFormat};
use cloudsec_runtime::{Shutdown, shutdown};
use serde::Deserialize;

/// The configuration file; sections for other components are tolerated so
/// that one file can serve a whole pod.
#[derive(Debug, Deserialize)]
struct File {
    proxy: Option<ProxyConfig>,
    mesh: Option<Mesh>,
}

#[derive(Debug, Deserialize)]
struct Mesh {
    trust_domain: Option<String>,
}

fn usage() -> ExitCode {
    eprintln!("usage: cloudsec-proxy --config FILE");
    ExitCode::from(EXIT_CONFIG as u8)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [flag, path] if flag == "--config" => Some(path.clone()),
        [] => std::env::var("CLOUDSEC_CONFIG").ok(),
        _ => return usage(),
    };
    let text = match path.as_deref().map(std::fs::read_to_string).transpose() {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read configuration file: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let file: File = match config::load(text.as_deref(), &config::process_env()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let Some(proxy) = file.proxy else {
        eprintln!("error: invalid configuration at `proxy`: section required");
        return ExitCode::from(EXIT_CONFIG as u8);
    };
    // `proxy.worker_threads`, never tokio's default or TOKIO_WORKER_THREADS.
    let runtime = match cloudsec_proxy::runtime::build(proxy.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let _guard = telemetry::init("cloudsec-proxy", LogFormat::Json, None);
        let stop = Shutdown::new();
        shutdown::cancel_on_signal(stop.clone());
        let trust_domain = file.mesh.and_then(|m| m.trust_domain);
        match Proxy::run_from_files(&proxy, trust_domain.as_deref(), stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(ProxyError::Config(e)) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG as u8)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        }
    })
}
