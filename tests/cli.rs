//! The `cloudsec` binary as an operator runs it: configuration errors exit
//! 64 naming the key, `up` serves, stops cleanly on SIGTERM and reuses its
//! data on the next start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn cloudsec() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudsec"));
    cmd.env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("CLOUDSEC__") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn fails_with_64(cmd: &mut Command, key: &str) {
    let out = cmd.output().expect("run cloudsec");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    assert!(stderr.contains(key), "{key} not named in: {stderr}");
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[gateway]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    fails_with_64(
        cloudsec()
            .args(["up", "--data-dir"])
            .arg(dir.path())
            .arg("--config")
            .arg(&file),
        "gateway.lisen",
    );
    fails_with_64(
        cloudsec()
            .args(["up", "--data-dir"])
            .arg(dir.path())
            .env("CLOUDSEC__AUTH__GRPC_LISTEN", "nowhere"),
        "auth.grpc_listen",
    );
    std::fs::write(&file, "[tokens]\naccess_ttl = \"soon\"\n").unwrap();
    fails_with_64(
        cloudsec()
            .args(["up", "--data-dir"])
            .arg(dir.path())
            .arg("--config")
            .arg(&file),
        "tokens.access_ttl",
    );
    // Every wrong key at once, two in one section, over `up`'s defaults
    // (which fill in what the file leaves out: nothing reported missing).
    let many = dir.path().join("many.toml");
    std::fs::write(
        &many,
        "[gateway]\nlisen = \"127.0.0.1:1\"\nlisten = \"nope\"\n[auth]\nhash_concurrency = -3\n",
    )
    .unwrap();
    let out = cloudsec()
        .args(["up", "--data-dir"])
        .arg(dir.path().join("many-data"))
        .arg("--config")
        .arg(&many)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in ["gateway.lisen", "gateway.listen", "auth.hash_concurrency"] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    assert!(
        stderr.contains("error: 3 problems in the configuration"),
        "{stderr}"
    );
    assert!(!stderr.contains("missing field"), "{stderr}");
    assert!(!dir.path().join("many-data").exists());
    // A bad start leaves nothing behind: no data directory, no keys.
    let fresh = dir.path().join("never-created");
    fails_with_64(
        cloudsec()
            .args(["up", "--data-dir"])
            .arg(&fresh)
            .arg("--config")
            .arg(&file),
        "tokens.access_ttl",
    );
    assert!(
        !fresh.exists(),
        "a bad configuration created {}",
        fresh.display()
    );
    std::fs::write(&file, "not toml at all [").unwrap();
    fails_with_64(
        cloudsec().args(["up", "--config"]).arg(&file),
        "not valid TOML",
    );
    fails_with_64(cloudsec().args(["serve", "documents"]), "documents");
    // `serve` names every wrong key at once, as `config check` does.
    std::fs::write(
        &file,
        "[gateway]\nlisen = \"127.0.0.1:1\"\nlisten = \"nope\"\n[tokens]\naccess_ttl = \"soon\"\n",
    )
    .unwrap();
    let out = cloudsec()
        .args(["serve", "gateway", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in ["gateway.lisen", "gateway.listen", "tokens.access_ttl"] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    assert!(
        stderr.contains("error: 3 problems in the configuration"),
        "{stderr}"
    );
    std::fs::write(&file, "[auth]\ndatabase_url = \"sqlite::memory:\"\n").unwrap();
    // Auth seals codes for the mailer: no key service, no start.
    fails_with_64(
        cloudsec().args(["serve", "auth", "--config"]).arg(&file),
        "secrets",
    );
    fails_with_64(
        cloudsec()
            .args(["up", "--config"])
            .arg(dir.path().join("missing.toml")),
        "cannot read configuration file",
    );
}

/// A running `cloudsec up`: the child, the gateway URL it printed, the
/// confirmation codes its log shows, as they appear, and every log line.
struct Up {
    child: std::process::Child,
    url: String,
    codes: mpsc::Receiver<String>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The code in a log line of the development mailer, if it is one.
fn logged_code(line: &str) -> Option<String> {
    // Strip the colours of the pretty format.
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    if !plain.contains("confirmation code") {
        return None;
    }
    let at = plain.find("code=")? + "code=".len();
    let code: String = plain[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (code.len() == 6).then_some(code)
}

/// Starts `cloudsec up` on port-0 listeners.
fn start_up(data: &std::path::Path) -> Up {
    let mut child = cloudsec()
        .args(["up", "--data-dir"])
        .arg(data)
        .env("CLOUDSEC__GATEWAY__LISTEN", "127.0.0.1:0")
        .env("CLOUDSEC__GATEWAY__ADMIN_LISTEN", "127.0.0.1:0")
        .env("CLOUDSEC__AUTH__GRPC_LISTEN", "127.0.0.1:0")
        .env("CLOUDSEC__AUTH__ADMIN_LISTEN", "127.0.0.1:0")
        .env("CLOUDSEC__DOCUMENTS__GRPC_LISTEN", "127.0.0.1:0")
        .env("CLOUDSEC__DOCUMENTS__ADMIN_LISTEN", "127.0.0.1:0")
        .env("CLOUDSEC__AUDIT__GRPC_LISTEN", "127.0.0.1:0")
        .env("CLOUDSEC__AUDIT__ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cloudsec up");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let banner = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = banner.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("REST gateway") {
                let _ = tx.send(url.trim().to_owned());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let (code_tx, codes) = mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        // Read to the end, so the child never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(code) = logged_code(&line) {
                let _ = code_tx.send(code);
            }
            lines.lock().unwrap().push(line);
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("cloudsec up prints the gateway URL");
    // The banner names every admin port, the sidecars' included.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !banner
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("sidecar admin"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no sidecar admin ports in the banner"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sidecars = banner
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("sidecar admin"))
        .cloned()
        .unwrap();
    assert_eq!(sidecars.matches("/metrics").count(), 4, "{sidecars}");
    Up {
        child,
        url,
        codes,
        log,
    }
}

/// Every file and directory under `dir` is its owner's alone.
#[cfg(unix)]
fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "{} has mode {:o}",
        dir.display(),
        mode & 0o777
    );
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_private(&path);
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} has mode {:o}",
                path.display(),
                mode & 0o777
            );
        }
    }
}

fn stop(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "cloudsec up exits 0 after SIGTERM: {status}"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cloudsec up did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post(url: &str, body: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        // The banner prints after the listeners are bound; retry briefly in
        // case the accept loop has not started yet.
        for _ in 0..50 {
            match client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
            {
                Ok(r) => return (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("{url} unreachable");
    })
}

#[test]
fn up_serves_stops_cleanly_and_reuses_its_data() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join(".cloudsec");
    let Up {
        child,
        url,
        codes,
        log,
    } = start_up(&data);
    let (status, body) = post(
        &format!("{url}/v1/auth:signUp"),
        r#"{"email":"ada@example.com","password":"correct horse battery","tenant":"acme"}"#,
    );
    assert_eq!(status, 200, "{body}");
    // `up` has no mail server: the code is in its log.
    let code = codes
        .recv_timeout(Duration::from_secs(30))
        .expect("cloudsec up logs the confirmation code");
    let (status, body) = post(
        &format!("{url}/v1/auth:confirmSignUp"),
        &format!(r#"{{"email":"ada@example.com","code":"{code}"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    // The one log line with the code in clear is the mailer's delivery.
    {
        let log = log.lock().unwrap();
        let with_code: Vec<_> = log.iter().filter(|l| l.contains(code.as_str())).collect();
        assert!(!with_code.is_empty());
        for line in with_code {
            assert!(
                line.contains("confirmation code"),
                "the code leaked into: {line}"
            );
        }
    }

    // `call` and `cert` find the running platform from a subdirectory and
    // reach every service, audit included.
    let sub = root.path().join("src").join("deeper");
    std::fs::create_dir_all(&sub).unwrap();
    let out = cloudsec()
        .args([
            "call",
            "cloudsec.audit.v1.AuditService/ListAuditRecords",
            "{}",
        ])
        .current_dir(&sub)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // No token: the audit service itself answers, so the call got there.
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    // A default start is a clean start: no warning, and a log written to a
    // pipe carries no colour codes.
    {
        let log = log.lock().unwrap();
        assert!(!log.is_empty());
        for line in log.iter() {
            assert!(
                !line.contains('\u{1b}'),
                "ANSI escape in a piped log: {line:?}"
            );
            assert!(!line.contains("WARN"), "a default start warned: {line}");
        }
    }
    #[cfg(unix)]
    assert_private(&data);
    stop(child);
    assert!(
        !data.join("platform.json").exists(),
        "a stopped platform withdraws its address file"
    );

    // Stopped: `call` says so instead of making a new CA.
    let out = cloudsec()
        .args([
            "call",
            "cloudsec.documents.v1.DocumentService/ListDocuments",
        ])
        .current_dir(&sub)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not running"), "{stderr}");

    let Up { child, url, .. } = start_up(&data);
    let (status, body) = post(
        &format!("{url}/v1/auth:login"),
        r#"{"email":"ada@example.com","password":"correct horse battery"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("accessToken"), "{body}");
    // The same tenant again is taken: the data survived the restart.
    let (status, _) = post(
        &format!("{url}/v1/auth:signUp"),
        r#"{"email":"bob@example.com","password":"correct horse battery","tenant":"acme"}"#,
    );
    assert_eq!(status, 409);
    stop(child);
}

#[test]
fn serve_runs_one_component_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = cloudsec()
        .args(["cert", "auth", "--init-ca", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("auth.toml");
    std::fs::write(
        &config,
        format!(
            "[secrets]\nbackend = \"local\"\ndir = \"{keys}\"\n\n\
             [auth]\ngrpc_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:0\"\n\
             database_url = \"sqlite://{}\"\n\
             tls = {{ ca_file = \"{c}/ca.pem\", cert_file = \"{c}/cert.pem\", key_file = \"{c}/key.pem\" }}\n",
            dir.path().join("auth.db").display(),
            keys = dir.path().join("keystore").display(),
            c = certs.display()
        ),
    )
    .unwrap();
    // The variable wins over the file's port 1.
    let mut child = cloudsec()
        .args(["serve", "auth", "--config"])
        .arg(&config)
        .env("CLOUDSEC__AUTH__GRPC_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Logs are JSON in serve mode; the start line names the bound address.
    let grpc = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("auth logs its start");
        let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
            panic!("not a JSON log line: {line}");
        };
        if log["message"] == "auth serving" {
            break log["grpc"].as_str().unwrap().to_owned();
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let tls = cloudsec_runtime::tls::TlsFiles {
            ca_file: certs.join("ca.pem"),
            cert_file: certs.join("cert.pem"),
            key_file: certs.join("key.pem"),
        }
        .load()
        .unwrap();
        let channel =
            cloudsec_runtime::grpc::channel(&format!("https://{grpc}"), "auth.default.svc", &tls)
                .unwrap();
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "cloudsec.auth.v1.AuthService".into(),
            })
            .await
            .map(|r| r.into_inner().status)
    });
    assert_eq!(status.expect("health over mTLS"), 1);
    stop(child);
}

#[test]
fn read_only_commands_never_create_state() {
    // Run where no platform ever was: `call` and `cert` say so and write
    // nothing (no fresh CA whose certificates the real platform refuses).
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "call",
            "cloudsec.documents.v1.DocumentService/ListDocuments",
        ],
        vec!["cert", "tools", "--out", "certs"],
    ] {
        let out = cloudsec()
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no cloudsec platform data found") && stderr.contains("cloudsec up"),
            "{args:?}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
}

#[test]
fn secrets_put_into_a_named_keystore_leaves_no_data_dir() {
    // The chart's operators seed a keystore with a file that names it; the
    // default `.cloudsec` of the working directory must not appear.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = dir.path().join("secrets.toml");
    std::fs::write(
        &config,
        format!(
            "[secrets]\nbackend = \"local\"\ndir = \"{}\"\n",
            store.display()
        ),
    )
    .unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut child = cloudsec()
        .args([
            "secrets",
            "put",
            "vault:secret/documents#page_token_key",
            "--config",
        ])
        .arg(&config)
        .current_dir(&work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"k\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(store.is_dir(), "the keystore was not written");
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(left.is_empty(), "created {left:?}");
}

#[cfg(unix)]
#[test]
fn up_refuses_a_keystore_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    // A first start creates the keystore.
    let Up { child, .. } = start_up(data.path());
    stop(child);
    let store = data.path().join("keystore").join("keystore.enc");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cloudsec()
        .args(["up", "--data-dir"])
        .arg(data.path())
        .env("CLOUDSEC__GATEWAY__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("chmod -R go-rwx"), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
}

#[test]
fn proxy_refuses_a_certificate_of_another_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = cloudsec()
        .args(["cert", "documents", "--init-ca", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[mesh]\ntrust_domain = \"prod.example\"\n\n[proxy]\nadmin_listen = \"127.0.0.1:0\"\n\
             tls = {{ ca_file = \"{c}/ca.pem\", cert_file = \"{c}/cert.pem\", key_file = \"{c}/key.pem\" }}\n\
             [proxy.inbound]\nlisten = \"127.0.0.1:0\"\napp = \"127.0.0.1:1\"\n",
            c = certs.display()
        ),
    )
    .unwrap();
    fails_with_64(
        cloudsec().args(["proxy", "--config"]).arg(&config),
        "mesh.trust_domain",
    );
}

#[test]
fn config_check_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[tokens]\nauth_uri = \"http://127.0.0.1:4140\"\nauth_server_name = \"auth.default.svc\"\n\n\
         [documents]\ndatabase_url = \"postgres://documents@db/documents\"\n\
         page_token_key = \"vault:secret/cloudsec/documents#page_token_key\"\n\n\
         [secrets]\nbackend = \"vault\"\n[secrets.vault]\naddress = \"https://vault.example:8200\"\n\
         auth = { method = \"kubernetes\", role = \"documents\" }\n",
    )
    .unwrap();
    // Good, and no secret was read: Vault at that address does not exist.
    let out = cloudsec()
        .args(["config", "check", "--component", "documents"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("good for documents"));

    // Five mistakes in three sections, each named, two of them in the
    // same section as another.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[tokens]\naccess_ttl = \"soon\"\n\n[gateway]\nlisen = \"127.0.0.1:1\"\nlisten = \"nope\"\n\n\
         [documents]\ndatabase_url = \"sqlite::memory:\"\npage_token_key = \"k\"\nsize = 3\n\
         shutdown_grace = \"later\"\n",
    )
    .unwrap();
    let out = cloudsec()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in [
        "tokens.access_ttl",
        "gateway.lisen",
        "gateway.listen",
        "documents.size",
        "documents.shutdown_grace",
    ] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    assert!(stderr.contains("5 problems"), "{stderr}");

    // A wrong value of a required key is named once, not again as missing
    // once it is taken out to look further; a map key with dots is found.
    let required = dir.path().join("required.toml");
    std::fs::write(
        &required,
        "[gateway.upstreams.\"cloudsec.auth.v1.AuthService\"]\nuri = 5\nserver_name = \"auth.default.svc\"\n",
    )
    .unwrap();
    let out = cloudsec()
        .args(["config", "check"])
        .arg(&required)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(".uri"), "{stderr}");
    assert!(!stderr.contains("missing field"), "{stderr}");
    assert!(stderr.contains("1 problem in"), "{stderr}");

    // What a component needs to start is checked with --component.
    let partial = dir.path().join("partial.toml");
    std::fs::write(
        &partial,
        "[documents]\ndatabase_url = \"sqlite::memory:\"\npage_token_key = \"0123456789abcdef0123456789abcdef\"\n\
         tls = { ca_file = \"/nonexistent/ca.pem\", cert_file = \"/nonexistent/c.pem\", key_file = \"/nonexistent/k.pem\" }\n",
    )
    .unwrap();
    let out = cloudsec()
        .args(["config", "check", "--component", "documents"])
        .arg(&partial)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in [
        "documents.tls",
        "tokens.auth_uri",
        "tokens.auth_server_name",
    ] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    // A variable is checked like the file.
    let out = cloudsec()
        .args(["config", "check"])
        .arg(&good)
        .env("CLOUDSEC__TOKENS__ACCESS_TTL", "never")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokens.access_ttl"));

    // A missing file is EX_NOINPUT with its path.
    let out = cloudsec()
        .args(["config", "check"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(66), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

/// `config check --component audit`: the SQL store needs `database_url`,
/// DynamoDB does not; transit signing needs a Vault `[secrets]`.
#[test]
fn config_check_audit_needs_sql_only_for_the_sql_store() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = "[tokens]\nauth_uri = \"http://127.0.0.1:4140\"\nauth_server_name = \"auth.default.svc\"\n\n";
    let check = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        cloudsec()
            .args(["config", "check", "--component", "audit"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check(
        "dynamo.toml",
        format!(
            "{tokens}[audit.store]\nbackend = \"dynamodb\"\ntable = \"cloudsec-prod-audit-log\"\n\
             inbox_table = \"cloudsec-prod-inbox\"\nprovisioning = \"existing\"\n"
        ),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("good for audit"));

    let out = check("sql.toml", format!("{tokens}[audit]\nqueue = \"audit\"\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("audit.database_url"), "{stderr}");

    let out = check(
        "transit.toml",
        format!(
            "{tokens}[audit]\ndatabase_url = \"sqlite::memory:\"\n\
             [audit.signing]\nbackend = \"transit\"\nkey = \"cloudsec-audit-signing\"\n"
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("secrets") && stderr.contains("transit"),
        "{stderr}"
    );
}
