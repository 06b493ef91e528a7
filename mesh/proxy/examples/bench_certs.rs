//! Writes a throw-away mesh CA and workload certificates for the benchmark
//! and profiling scripts, so that they need only the sidecar's own crate
//! built (not the whole `cloudsec` binary for `cloudsec cert`).
//!
//! Usage: `bench_certs DIR NAME...` writes `DIR/NAME/{ca,cert,key}.pem` for
//! `spiffe://cloudsec.local/ns/default/sa/NAME`, valid for two hours.

use std::path::PathBuf;
use std::time::Duration;

use cloudsec_identity::{Issuer, LocalCa, SpiffeId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: bench_certs DIR NAME...")?);
    let ca = LocalCa::generate()?;
    for name in args {
        let id = SpiffeId::new("cloudsec.local", "default", &name)?;
        let cert = ca.issue(&id, Duration::from_secs(2 * 3600)).await?;
        let out = dir.join(&name);
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("ca.pem"), &cert.ca_pem)?;
        std::fs::write(out.join("cert.pem"), &cert.cert_pem)?;
        std::fs::write(out.join("key.pem"), &cert.key_pem)?;
    }
    Ok(())
}
