//! The auth benchmark (`scripts/bench-auth`), one run, three parts:
//!
//! 1. Token verifications per second on one core: `TokenVerifier::verify`
//!    (RS256, the whole check: base64, JSON, signature, claims) on one
//!    thread, against `openssl speed -verify rsa2048` (the bare RSA-2048
//!    signature check) on the same machine.
//! 2. Login latency (p50/p99) through the gateway: REST → gRPC → auth
//!    (argon2id on its bounded pool), one login at a time.
//! 3. The p99 of an unrelated call (`GET /v1/documents` through the
//!    gateway, which verifies the token and reads the database) when idle
//!    and during a login storm (`--storm` concurrent login loops).
//!
//! Arguments (all optional): `--seconds S` (verification run, default 3),
//! `--logins N` (default 60), `--calls N` (unrelated calls per phase,
//! default 400), `--storm N` (default 16), `--login-concurrency N` (the
//! gateway admits at most N logins upstream at once, the rest queue;
//! default 0, off: docs/gateway.md "Concurrency limits"), `--hash-cpus
//! LIST` (auth's hashing threads keep to these CPUs, `auth.hash_cpus`;
//! with the process started under `taskset -c` on the others, password
//! hashing gets cores of its own as auth on its own pods would),
//! `--storm-cpus LIST` (the storm's login loops run on a runtime of their
//! own whose thread keeps to these CPUs, with a client of its own: the
//! load generator off the CPUs that serve the unrelated call, as clients
//! on other machines would be).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cloudsec_runtime::token::TokenVerifier;
use cloudsec_tests::{Backend, Extra, Sandbox};

struct Args {
    seconds: u64,
    logins: usize,
    calls: usize,
    storm: usize,
    login_concurrency: usize,
    hash_cpus: Option<String>,
    storm_cpus: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 3,
        logins: 60,
        calls: 400,
        storm: 16,
        login_concurrency: 0,
        hash_cpus: None,
        storm_cpus: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = || pair.get(1).and_then(|v| v.parse().ok()).expect("a number");
        match pair[0].as_str() {
            "--seconds" => a.seconds = value() as u64,
            "--logins" => a.logins = value(),
            "--calls" => a.calls = value(),
            "--storm" => a.storm = value(),
            "--login-concurrency" => a.login_concurrency = value(),
            "--hash-cpus" => a.hash_cpus = pair.get(1).cloned(),
            "--storm-cpus" => a.storm_cpus = pair.get(1).cloned(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn pct(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// `verify/s` of `openssl speed -verify rsa2048`-style output for RSA-2048.
fn openssl_verify_per_second(seconds: u64) -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("rsa 2048 bits"))?;
    line.split_whitespace().last()?.parse().ok()
}

async fn get_documents(sb: &Sandbox, token: &str) -> Duration {
    let t = Instant::now();
    let r = sb.get("/v1/documents?pageSize=10", token).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    t.elapsed()
}

/// The storm's login loops: on the benchmark's runtime, or on a thread of
/// their own kept to `--storm-cpus`.
enum Storm {
    Shared(Vec<tokio::task::JoinHandle<u64>>),
    Pinned(std::thread::JoinHandle<u64>),
}

/// Logs in until `stop`; the logins that succeeded.
async fn login_loop(
    http: reqwest::Client,
    (url, body): (String, serde_json::Value),
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let r = http.post(&url).json(&body).send().await.expect("POST");
        let ok = r.status() == 200;
        let _ = r.bytes().await;
        n += u64::from(ok);
    }
    n
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let extra = Extra {
        toml: if args.login_concurrency > 0 {
            format!(
                "[gateway.routes.\"cloudsec.auth.v1.AuthService/Login\"]\n\
                 concurrency = {{ limit = {}, queue = 1024, queue_timeout = \"20s\" }}\n",
                args.login_concurrency
            )
        } else {
            String::new()
        },
        env: args
            .hash_cpus
            .iter()
            .map(|cpus| ("CLOUDSEC__AUTH__HASH_CPUS".to_owned(), cpus.clone()))
            .collect(),
    };
    let sb = Sandbox::start_with(Backend::Sqlite, extra)
        .await
        .expect("sandbox");
    let user = sb.user().await;

    // 1. Verifications per second on one thread.
    let jwks: cloudsec_proto::auth::v1::Jwks = {
        let r = sb
            .http
            .get(sb.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        let keys = body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| cloudsec_proto::auth::v1::Jwk {
                kty: k["kty"].as_str().unwrap_or_default().into(),
                kid: k["kid"].as_str().unwrap_or_default().into(),
                alg: k["alg"].as_str().unwrap_or_default().into(),
                n: k["n"].as_str().unwrap_or_default().into(),
                e: k["e"].as_str().unwrap_or_default().into(),
                ..Default::default()
            })
            .collect();
        cloudsec_proto::auth::v1::Jwks { keys }
    };
    let verifier = Arc::new(TokenVerifier::fixed(
        "https://auth.cloudsec.local",
        "cloudsec",
    ));
    verifier.set_keys(&jwks);
    let token = user.token.clone();
    let seconds = args.seconds;
    let ours = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut n = 0u64;
        let start = Instant::now();
        while Instant::now() < deadline {
            for _ in 0..100 {
                rt.block_on(verifier.verify(&token)).expect("valid token");
            }
            n += 100;
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
    .join()
    .unwrap();
    let openssl = openssl_verify_per_second(args.seconds);

    // 2. Login latency, one at a time.
    let mut logins = Vec::with_capacity(args.logins);
    for _ in 0..args.logins {
        let t = Instant::now();
        sb.login(&user.email, &user.password).await;
        logins.push(t.elapsed());
    }

    // 3. An unrelated call, idle and during a login storm.
    for _ in 0..20 {
        get_documents(&sb, &user.token).await;
    }
    let mut idle = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        idle.push(get_documents(&sb, &user.token).await);
    }
    let sb = Arc::new(sb);
    let stop = Arc::new(AtomicBool::new(false));
    let login = (
        sb.url("/v1/auth:login"),
        serde_json::json!({"email": user.email, "password": user.password}),
    );
    let storm = match args.storm_cpus.clone() {
        None => {
            let loops: Vec<_> = (0..args.storm)
                .map(|_| {
                    let (http, stop, login) = (sb.http.clone(), stop.clone(), login.clone());
                    tokio::spawn(login_loop(http, login, stop))
                })
                .collect();
            Storm::Shared(loops)
        }
        Some(cpus) => {
            let cpus: cloudsec_auth::config::CpuList = cpus.parse().expect("--storm-cpus");
            let (loops, stop) = (args.storm, stop.clone());
            Storm::Pinned(std::thread::spawn(move || {
                cpus.pin_current_thread().expect("--storm-cpus");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let http = reqwest::Client::new();
                    let loops: Vec<_> = (0..loops)
                        .map(|_| {
                            tokio::spawn(login_loop(http.clone(), login.clone(), stop.clone()))
                        })
                        .collect();
                    let mut n = 0;
                    for l in loops {
                        n += l.await.unwrap();
                    }
                    n
                })
            }))
        }
    };
    // Let the storm fill the hashing pool first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let storm_started = Instant::now();
    let mut busy = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        busy.push(get_documents(&sb, &user.token).await);
    }
    let storm_seconds = storm_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let storm_logins = match storm {
        Storm::Shared(loops) => {
            let mut n = 0;
            for l in loops {
                n += l.await.unwrap();
            }
            n
        }
        Storm::Pinned(thread) => tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap(),
    };

    let process_cpus = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "auth benchmark, release build, SQLite sandbox (gateway, sidecars, auth, documents); login concurrency limit at the gateway: {}; the process on CPUs {process_cpus}, password hashing on CPUs {}, the storm's login loops on CPUs {}\n",
        match args.login_concurrency {
            0 => "off".to_owned(),
            n => n.to_string(),
        },
        args.hash_cpus
            .as_deref()
            .unwrap_or("(any of the process's)"),
        args.storm_cpus
            .as_deref()
            .unwrap_or("(the benchmark's runtime, any of the process's)")
    );
    println!("| measure | result |");
    println!("|---|---|");
    println!("| TokenVerifier::verify, RS256, one thread | {ours:.0} verifications/s |");
    match openssl {
        Some(o) => {
            println!("| openssl speed rsa2048 verify, one thread | {o:.0} verifications/s |");
            println!("| ratio (target >= 0.8x) | {:.2}x |", ours / o);
        }
        None => println!("| openssl speed | not available |"),
    }
    println!(
        "| login through the gateway, one at a time ({} logins) | p50 {} ms, p99 {} ms |",
        logins.len(),
        ms(pct(&logins, 0.5)),
        ms(pct(&logins, 0.99))
    );
    println!(
        "| GET /v1/documents idle ({} calls) | p50 {} ms, p99 {} ms |",
        idle.len(),
        ms(pct(&idle, 0.5)),
        ms(pct(&idle, 0.99))
    );
    println!(
        "| GET /v1/documents during a storm of {} login loops ({} calls; {:.0} logins/s meanwhile) | p50 {} ms, p99 {} ms |",
        args.storm,
        busy.len(),
        storm_logins as f64 / storm_seconds,
        ms(pct(&busy, 0.5)),
        ms(pct(&busy, 0.99))
    );
    println!(
        "| unrelated p99 during the storm / idle (target <= 1.2x) | {:.2}x |",
        pct(&busy, 0.99).as_secs_f64() / pct(&idle, 0.99).as_secs_f64()
    );
    match Arc::try_unwrap(sb) {
        Ok(sb) => sb.stop().await,
        Err(_) => eprintln!("sandbox still shared; not stopped cleanly"),
    }
}
