//! The real binary: first start, data kept across restarts, HTTPS off
//! loopback, graceful shutdown, and `admin set-password`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::support::{ADMIN, ServeProcess, binary, client, location};

const ENV_PASSWORD: &str = "process-console-pass";

/// Starts the binary with an info-level log written to `log` (a file: not a
/// terminal, like the journal or a pipe).
fn start_logging(data: &std::path::Path, log: &std::path::Path) -> ServeProcess {
    let file = std::fs::File::create(log).unwrap();
    ServeProcess::start_with_stderr(
        data,
        &["--listen", "127.0.0.1:0"],
        &[
            ("PRESENCE_GATEWAY_ADMIN_PASSWORD", ENV_PASSWORD),
            ("RUST_LOG", "presence_gateway=info"),
        ],
        Stdio::from(file),
    )
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/login"))
        .form(&[("user_id", user), ("password", password)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn first_start_generates_the_admin_password_once() {
    let dir = crate::support::private_tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServeProcess::start(
        &data,
        &["--listen", "127.0.0.1:0", "--node-name", "n1"],
        &[],
    );
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let announced = server
        .stdout_lines
        .iter()
        .find(|l| l.contains("Created the administrator"))
        .expect("password announced")
        .clone();
    let password = std::fs::read_to_string(data.join("initial-admin-password"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(announced.contains(&password), "printed once: {announced}");
    assert_eq!(mode(&data.join("initial-admin-password")), 0o600);
    assert_eq!(mode(&data.join("secrets.key")), 0o600);
    assert_eq!(std::fs::read(data.join("secrets.key")).unwrap().len(), 32);
    assert_eq!(mode(&data.join("presence-gateway.db")), 0o600);
    assert_eq!(mode(&data), 0o700);

    let http = client();
    let response = sign_in(&http, &server.url, ADMIN, &password).await;
    assert_eq!(location(&response), "/account/password");
    assert_eq!(server.terminate().code(), Some(0));

    // The second start creates nothing new and prints no password.
    let server = ServeProcess::start(
        &data,
        &["--listen", "127.0.0.1:0", "--node-name", "n1"],
        &[],
    );
    assert!(
        !server
            .stdout_lines
            .iter()
            .any(|l| l.contains("Created the administrator"))
    );
    let response = sign_in(&client(), &server.url, ADMIN, &password).await;
    assert_eq!(location(&response), "/account/password");
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test]
async fn data_survives_a_restart_and_ctrl_c_exits_cleanly() {
    let dir = crate::support::private_tempdir().unwrap();
    let data = dir.path().join("data");
    let envs = [("PRESENCE_GATEWAY_ADMIN_PASSWORD", ENV_PASSWORD)];
    let server = ServeProcess::start(&data, &["--listen", "127.0.0.1:0"], &envs);
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.contains("with the password from PRESENCE_GATEWAY_ADMIN_PASSWORD"))
    );
    assert!(!data.join("initial-admin-password").exists());
    let http = client();
    let response = sign_in(&http, &server.url, ADMIN, ENV_PASSWORD).await;
    assert_eq!(location(&response), "/");
    let response = http
        .post(format!("{}/account/password", server.url))
        .form(&[
            ("current", ENV_PASSWORD),
            ("new", "kept-password-1"),
            ("confirm", "kept-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/");
    let key = std::fs::read(data.join("secrets.key")).unwrap();

    // Ctrl-C (SIGINT) stops it gracefully too.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut server = server;
    let status = (0..300)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            server.child.try_wait().unwrap()
        })
        .expect("stopped within 15 s of SIGINT");
    assert_eq!(status.code(), Some(0));

    // Restarted with a different env password: the stored one still rules.
    let server = ServeProcess::start(&data, &["--listen", "127.0.0.1:0"], &envs);
    assert_eq!(
        std::fs::read(data.join("secrets.key")).unwrap(),
        key,
        "key reused"
    );
    let http = client();
    assert_eq!(
        sign_in(&http, &server.url, ADMIN, ENV_PASSWORD)
            .await
            .status()
            .as_u16(),
        401
    );
    let response = sign_in(&http, &server.url, ADMIN, "kept-password-1").await;
    assert_eq!(location(&response), "/");
    let body = http
        .get(format!("{}/system/nodes", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status().as_u16(), 200);
    assert_eq!(server.terminate().code(), Some(0));
}

fn tls_client(ca_pem: &[u8]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    reqwest::Client::builder()
        .use_preconfigured_tls(crate::support::tls_config(roots))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn off_loopback_the_console_serves_https_with_a_generated_certificate() {
    let dir = crate::support::private_tempdir().unwrap();
    let data = dir.path().join("data");
    let envs = [("PRESENCE_GATEWAY_ADMIN_PASSWORD", ENV_PASSWORD)];
    // Listening on every interface; the test only talks to it over loopback.
    let server = ServeProcess::start(&data, &["--listen", "0.0.0.0:0"], &envs);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.contains("Generated a self-signed console certificate"))
    );
    let cert = std::fs::read(data.join("console-tls/cert.pem")).unwrap();
    assert_eq!(mode(&data.join("console-tls/key.pem")), 0o600);
    let base = format!("https://127.0.0.1:{}", server.port());
    let https = tls_client(&cert);
    let response = https.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // SY-5: every HTTPS answer asks browsers to keep to HTTPS.
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let response = sign_in(&https, &base, ADMIN, ENV_PASSWORD).await;
    assert_eq!(location(&response), "/");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    let response = https.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    // Plain HTTP on that port gets nowhere.
    let plain = client()
        .get(format!("http://127.0.0.1:{}/healthz", server.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert_eq!(server.terminate().code(), Some(0));

    // The same certificate is reused on the next start, and given ones are used on loopback.
    let server = ServeProcess::start(&data, &["--listen", "0.0.0.0:0"], &envs);
    assert!(!server.stdout_lines.iter().any(|l| l.contains("Generated")));
    assert_eq!(
        std::fs::read(data.join("console-tls/cert.pem")).unwrap(),
        cert
    );
    assert_eq!(server.terminate().code(), Some(0));
    // A client that offers HTTP/2 first, as browsers and curl do, gets the
    // page over what the console speaks.
    let server = ServeProcess::start(&data, &["--listen", "0.0.0.0:0"], &envs);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &cert[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut offers_h2 = crate::support::tls_config(roots);
    offers_h2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let response = reqwest::Client::builder()
        .use_preconfigured_tls(offers_h2)
        .build()
        .unwrap()
        .get(format!("https://127.0.0.1:{}/login", server.port()))
        .send()
        .await
        .expect("an HTTPS answer to a client offering h2");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(server.terminate().code(), Some(0));
    let cert_path = data.join("console-tls/cert.pem");
    let key_path = data.join("console-tls/key.pem");
    let server = ServeProcess::start(
        &data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &envs,
    );
    assert!(server.url.starts_with("https://127.0.0.1:"));
    let response = tls_client(&cert)
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test]
async fn admin_set_password_resets_and_ends_sessions() {
    let dir = crate::support::private_tempdir().unwrap();
    let data = dir.path().join("data");
    let envs = [("PRESENCE_GATEWAY_ADMIN_PASSWORD", ENV_PASSWORD)];
    let server = ServeProcess::start(&data, &["--listen", "127.0.0.1:0"], &envs);
    let http = client();
    assert_eq!(
        location(&sign_in(&http, &server.url, ADMIN, ENV_PASSWORD).await),
        "/"
    );
    // Lock the ID out, then reset from the shell: the lockout lifts.
    let other = client();
    for _ in 0..5 {
        sign_in(&other, &server.url, ADMIN, "wrong").await;
    }
    assert_eq!(
        sign_in(&other, &server.url, ADMIN, ENV_PASSWORD)
            .await
            .status()
            .as_u16(),
        429
    );

    let mut child = Command::new(binary())
        .arg("--data-dir")
        .arg(&data)
        .args(["admin", "set-password", "admin", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-the-shell-1\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Their sessions have ended."));

    let response = http.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(location(&response), "/login?ended=1", "the session ended");
    assert_eq!(
        location(&sign_in(&other, &server.url, ADMIN, "from-the-shell-1").await),
        "/"
    );

    // Without --stdin a password is generated and must be changed.
    let output = Command::new(binary())
        .arg("--data-dir")
        .arg(&data)
        .args(["admin", "set-password", "ADMIN"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let generated = stdout
        .split("is now ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .expect("generated password printed")
        .to_owned();
    assert_eq!(
        location(&sign_in(&client(), &server.url, ADMIN, &generated).await),
        "/account/password"
    );

    // Mistakes are explained.
    let output = Command::new(binary())
        .arg("--data-dir")
        .arg(&data)
        .args(["admin", "set-password", "nobody"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no user with the User ID \"nobody\"")
    );
    let output = Command::new(binary())
        .arg("--data-dir")
        .arg(dir.path().join("elsewhere"))
        .args(["admin", "set-password", "admin"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no database"));
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn bad_flags_are_refused_with_usage() {
    let output = Command::new(binary())
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
    let output = Command::new(binary())
        .args(["serve", "--tls-cert", "/tmp/x.pem"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "--tls-cert needs --tls-key");
}

/// A typed User ID is logged with its control characters escaped: a line
/// break in it cannot start a forged log line (ASVS 7.3.1).
#[tokio::test]
async fn a_line_break_in_a_user_id_cannot_forge_a_log_line() {
    let dir = crate::support::private_tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let server = start_logging(&data, &log);
    let forged = "mallory\nFORGED INFO presence_gateway: signed in user_id=admin";
    let response = sign_in(&client(), &server.url, forged, "guess").await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(server.terminate().code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("sign-in failed"), "{text}");
    assert!(
        // The key is the lower-cased ID.
        !text.lines().any(|l| l.to_lowercase().starts_with("forged")),
        "a forged line: {text}"
    );
    assert!(text.contains(r"mallory\nforged"), "escaped: {text}");
}

/// The log carries no colour codes when standard error is not a terminal.
#[tokio::test]
async fn the_log_has_no_colour_codes_outside_a_terminal() {
    let dir = crate::support::private_tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let server = start_logging(&data, &log);
    let response = sign_in(&client(), &server.url, "nobody", "guess").await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(server.terminate().code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("sign-in failed"), "{text}");
    assert!(!text.contains("\x1b["), "colour codes: {text:?}");
}

/// Runs `serve` on `data` until it exits (at most 30 s); returns its exit
/// code and standard error.
fn serve_until_exit(data: &std::path::Path, dir: &std::path::Path) -> (Option<i32>, String) {
    let log = dir.join("refused.log");
    let mut child = Command::new(binary())
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("PRESENCE_GATEWAY_ADMIN_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

/// Like OpenSSH with private keys: a secrets key or data directory that
/// group or others may open stops the start, naming the chmod that fixes it.
#[tokio::test]
async fn a_key_or_data_directory_open_to_others_is_refused_with_the_chmod() {
    let dir = crate::support::private_tempdir().unwrap();
    let data = dir.path().join("data");
    let key = data.join("secrets.key");
    let envs = [("PRESENCE_GATEWAY_ADMIN_PASSWORD", ENV_PASSWORD)];
    let server = ServeProcess::start(&data, &["--listen", "127.0.0.1:0"], &envs);
    assert_eq!(server.terminate().code(), Some(0));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&key), 0o600);

    let set = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set(&key, 0o644);
    let (code, stderr) = serve_until_exit(&data, dir.path());
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "{stderr}"
    );
    set(&key, 0o600);
    let server = ServeProcess::start(&data, &["--listen", "127.0.0.1:0"], &[]);
    assert_eq!(server.terminate().code(), Some(0));

    set(&data, 0o755);
    let (code, stderr) = serve_until_exit(&data, dir.path());
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 700 {}", data.display())),
        "{stderr}"
    );
    set(&data, 0o700);
    let server = ServeProcess::start(&data, &["--listen", "127.0.0.1:0"], &[]);
    assert_eq!(server.terminate().code(), Some(0));
}
