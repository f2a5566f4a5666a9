//! Test support: `TestApp` serves the real application on a real TCP port
//! (port 0, so tests run in parallel) from a fresh temporary data directory,
//! with a cookie-keeping client that does not follow redirects, so tests
//! assert redirects themselves. `ServeProcess` runs the real binary.

#![allow(dead_code)]

pub mod seed;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_gateway::clock::ManualClock;
use presence_gateway::config::Settings;
use presence_gateway::domain::user::{Role, UserId};
use presence_gateway::state::AppState;
use presence_gateway::store;
use secrecy::SecretString;
use tempfile::TempDir;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "first-console-pass";

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub dir: TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A rustls client configuration on the project's one crypto provider
/// (reqwest is built without an implicit one), trusting `roots`.
pub fn tls_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(rustls::RootCertStore::empty()))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
}

/// A browser-like client: keeps cookies, does not follow redirects.
pub fn client() -> reqwest::Client {
    client_builder()
        .cookie_store(true)
        .build()
        .expect("test client")
}

/// A client without a cookie jar, for sending hand-made Cookie headers.
pub fn bare_client() -> reqwest::Client {
    client_builder().build().expect("test client")
}

/// A temporary directory open to its owner alone (0700): the service
/// refuses a data directory that group or others may open, and here
/// `tempfile` may create them 0755.
pub fn private_tempdir() -> std::io::Result<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

pub fn test_settings(dir: &Path, admin_password: Option<&str>) -> Settings {
    Settings {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().expect("address"),
        node_name: "test-node".to_owned(),
        tls_cert: None,
        tls_key: None,
        admin_password: admin_password.map(|p| SecretString::from(p.to_owned())),
        proxy_env: Default::default(),
        database: store::Location::Sqlite(presence_gateway::config::database_path(dir)),
    }
}

/// The variable the test command sets for its PostgreSQL pass: the URL
/// of a database on a private server, from which each test creates its own.
pub const POSTGRES_SERVER_ENV: &str = "PRESENCE_GATEWAY_TEST_POSTGRES";

/// The PostgreSQL server of this pass, or `None` when the tests run on
/// SQLite.
pub fn postgres_server() -> Option<String> {
    std::env::var(POSTGRES_SERVER_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Which database this pass runs the TestApp tests on, for messages.
pub fn database_kind() -> &'static str {
    if postgres_server().is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

/// A new, empty database on `server` for one test, as its URL.
pub async fn fresh_postgres_database(server: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("pgt_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::AnyConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_SERVER_ENV}={server}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let _ = conn.close().await;
    let mut url = url::Url::parse(server).expect("server URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

impl TestApp {
    /// The app with the first administrator's password given in settings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Some(ADMIN_PASSWORD)).await
    }

    pub async fn spawn_with(admin_password: Option<&str>) -> TestApp {
        let dir = private_tempdir().expect("temp dir");
        Self::spawn_in(dir, admin_password).await
    }

    pub async fn spawn_in(dir: TempDir, admin_password: Option<&str>) -> TestApp {
        Self::spawn_limited(
            dir,
            admin_password,
            presence_gateway::net::Limits::console(),
        )
        .await
    }

    /// Stops serving, closes the database and hands back the data
    /// directory, as a stopped service leaves it.
    pub async fn stop(mut self) -> TempDir {
        self.server.abort();
        self.state.pool.close().await;
        std::mem::replace(&mut self.dir, private_tempdir().expect("temp dir"))
    }

    /// The app on SQLite in either pass (a single-host installation).
    pub async fn spawn_sqlite() -> TestApp {
        let dir = private_tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let settings = test_settings(dir.path(), Some(ADMIN_PASSWORD));
        Self::serve(
            settings,
            dir,
            clock,
            presence_gateway::net::Limits::console(),
        )
        .await
    }

    /// The app on `database`, with `dir` as its data directory (and so its
    /// secrets key).
    pub async fn spawn_at(dir: TempDir, database: store::Location) -> TestApp {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let mut settings = test_settings(dir.path(), Some(ADMIN_PASSWORD));
        settings.database = database;
        Self::serve(
            settings,
            dir,
            clock,
            presence_gateway::net::Limits::console(),
        )
        .await
    }

    /// Served as `serve` serves the console, within `limits`.
    pub async fn spawn_limited(
        dir: TempDir,
        admin_password: Option<&str>,
        limits: presence_gateway::net::Limits,
    ) -> TestApp {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let mut settings = test_settings(dir.path(), admin_password);
        if let Some(server) = postgres_server() {
            settings.database = store::Location::Postgres(fresh_postgres_database(&server).await);
        }
        Self::serve(settings, dir, clock, limits).await
    }

    /// Another node of the same cluster: its own process state (session
    /// cache included) and port, on this node's data directory and database,
    /// and on the same clock. `keep` only holds an empty directory alive.
    pub async fn second_node(&self, name: &str) -> TestApp {
        let mut settings = test_settings(self.dir.path(), Some(ADMIN_PASSWORD));
        settings.node_name = name.to_owned();
        settings.database = self.state.settings.database.clone();
        let keep = private_tempdir().expect("temp dir");
        let limits = presence_gateway::net::Limits::console();
        Self::serve(settings, keep, self.clock.clone(), limits).await
    }

    async fn serve(
        settings: Settings,
        dir: TempDir,
        clock: Arc<ManualClock>,
        limits: presence_gateway::net::Limits,
    ) -> TestApp {
        // The service's errors in the failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("presence_gateway=error")
                }),
            )
            .with_test_writer()
            .try_init();
        let prepared = presence_gateway::cmd::serve::prepare(settings, clock.clone())
            .await
            .expect("prepare");
        let state = prepared.state;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = presence_gateway::app(state.clone());
        let server = tokio::spawn(async move {
            let forever = std::future::pending::<()>();
            let _ = presence_gateway::net::serve(listener, None, app, limits, forever).await;
        });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: client(),
            state,
            clock,
            dir,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// A same-origin form POST, as a browser sends it.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("Origin", &self.base)
            .header("Sec-Fetch-Site", "same-origin")
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// A same-origin form POST; its status and page.
    pub async fn post_text(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let response = self.post_form(path, form).await;
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// A same-origin multipart POST, as a browser uploads a file.
    pub async fn post_multipart(&self, path: &str, parts: &[Part<'_>]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("Origin", &self.base)
            .header("Sec-Fetch-Site", "same-origin")
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(multipart(parts))
            .send()
            .await
            .expect("POST multipart")
    }

    /// The environment that points a shell command at this app's database
    /// (none on SQLite: the data directory names it).
    pub fn database_env(&self) -> Vec<(&'static str, String)> {
        match &self.state.settings.database {
            store::Location::Postgres(url) => vec![("PRESENCE_GATEWAY_DATABASE_URL", url.clone())],
            store::Location::Sqlite(_) => Vec::new(),
        }
    }

    /// One number from the database, e.g. `SELECT COUNT(*) FROM users`.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.state.pool)
            .await
            .expect("count")
    }

    pub async fn sign_in(&self, user: &str, password: &str) -> reqwest::Response {
        self.post_form(
            "/login",
            &[("user_id", user), ("password", password), ("next", "")],
        )
        .await
    }

    pub async fn sign_in_admin(&self) {
        let response = self.sign_in(ADMIN, ADMIN_PASSWORD).await;
        assert_eq!(response.status().as_u16(), 303, "admin sign-in");
        assert_eq!(location(&response), "/");
    }

    /// Creates an end user directly in the store (the End User pages come later).
    pub async fn create_end_user(&self, user_id: &str, password: &str) -> i64 {
        let hash =
            presence_gateway::secrets::password::hash(SecretString::from(password.to_owned()))
                .await
                .expect("hash");
        let id = UserId::parse(user_id).expect("user id");
        store::users::create(
            &self.state.pool,
            store::users::NewUser {
                user_id: &id,
                role: Role::EndUser,
                first_name: "Erin",
                last_name: "Enduser",
                password_hash: &hash,
                must_change_password: false,
            },
            self.state.now(),
        )
        .await
        .expect("create end user")
    }

    /// A second browser: its own cookie jar.
    pub fn other_client(&self) -> reqwest::Client {
        client()
    }

    /// Registers another cluster node, as its `serve` process would.
    pub async fn add_node(&self, name: &str) {
        store::nodes::register(&self.state.pool, name, "127.0.0.2:8443", 0)
            .await
            .expect("register node");
    }

    /// Installs a catalogue locale on a node, as Locale Installation does.
    pub async fn install_locale(&self, node: &str, tag: &str) {
        let locale =
            presence_gateway::domain::locale::Locale::parse(tag).expect("catalogue locale");
        store::locales::install(&self.state.pool, node, &locale, "admin", self.state.now())
            .await
            .expect("install locale");
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The real binary, started as a person would start it.
pub struct ServeProcess {
    pub child: Child,
    pub url: String,
    pub stdout_lines: Vec<String>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_presence-gateway"))
}

impl ServeProcess {
    /// Starts `presence-gateway serve` and waits (at most 30 s) for the line
    /// announcing the listening address.
    pub fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> ServeProcess {
        Self::start_with_stderr(data_dir, args, envs, Stdio::inherit())
    }

    /// As `start`, with standard error sent to `stderr` (a file, to read the
    /// log the service writes when it is not at a terminal).
    pub fn start_with_stderr(
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        stderr: Stdio,
    ) -> ServeProcess {
        let mut command = Command::new(binary());
        command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("serve")
            .args(args)
            .env_remove("PRESENCE_GATEWAY_ADMIN_PASSWORD")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in envs {
            command.env(k, v);
        }
        // Owned by a ServeProcess at once, so a failed start is killed and reaped on drop.
        let mut process = ServeProcess {
            child: command.spawn().expect("start presence-gateway"),
            url: String::new(),
            stdout_lines: Vec::new(),
        };
        let stdout = process.child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let lines = &process.stdout_lines;
            assert!(!left.is_zero(), "no listening line within 30 s: {lines:?}");
            let Ok(line) = rx.recv_timeout(left) else {
                panic!("the service ended or said nothing: {lines:?}");
            };
            let url = line
                .split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
            process.stdout_lines.push(line);
            if let Some(url) = url {
                process.url = url;
                return process;
            }
        }
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the service did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port the service listens on, from its announced URL.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in URL")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The app with the first administrator signed in.
pub async fn admin_app() -> TestApp {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    app
}

/// The message beside `field` in a rendered form, if any.
pub fn field_error(page: &str, field: &str) -> Option<String> {
    let marker = format!("id=\"{field}-error\">");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find("</p>")? + start;
    Some(page[start..end].to_owned())
}

/// A finished command's exit status.
pub fn code(output: &std::process::Output) -> i32 {
    output.status.code().expect("exit code")
}

pub const BOUNDARY: &str = "pg-test-boundary-2f9c1e";

/// One part of a multipart form: name, file name (for a file), content.
pub type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A multipart/form-data body with `BOUNDARY`.
pub fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some(file) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A PostgreSQL server of one test's own (`scripts/postgres.sh`), for the
/// tests that stop and start it under a running node (CL-5); stopped and
/// removed on drop.
pub struct PrivatePostgres {
    _dir: TempDir,
    /// The cluster's folder (the script's DIR).
    pg: PathBuf,
    /// Its administrator's `postgres` database.
    pub url: String,
}

impl PrivatePostgres {
    fn script(verb: &str, pg: &Path) -> Result<std::process::Output, String> {
        let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
            .arg(verb)
            .arg(pg)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Three tries at most: beside the rest of the suite a start can lose
    /// its freshly picked port to another test.
    fn retried(verb: &str, pg: impl Fn(usize) -> PathBuf) -> (PathBuf, std::process::Output) {
        let mut failures = Vec::new();
        for attempt in 0..3 {
            let target = pg(attempt);
            match Self::script(verb, &target) {
                Ok(output) => return (target, output),
                Err(e) => failures.push(e),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("postgres.sh {verb} failed three times: {failures:?}");
    }

    pub fn start() -> PrivatePostgres {
        let dir = private_tempdir().expect("dir");
        let (pg, output) = Self::retried("start", |i| dir.path().join(format!("pg{i}")));
        let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        PrivatePostgres { _dir: dir, pg, url }
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn pause(&self) {
        Self::retried("stop", |_| self.pg.clone());
    }

    /// Starts it again on the same port with the same data.
    pub fn resume(&self) {
        Self::retried("resume", |_| self.pg.clone());
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Self::script("stop", &self.pg);
    }
}
