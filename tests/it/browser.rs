//! Real-browser tests: headless Chromium driven through chromedriver
//! (WebDriver, `fantoccini`) against the real application, with two checks on
//! every page visited:
//!
//! - the Nu HTML Checker (`vnu.jar`, from the `vnu-jar` npm package) on the
//!   raw HTML the server sends, all pages of a test in one JVM run;
//! - axe-core, injected into the page in the browser, failing on `serious`
//!   and `critical` violations.
//!
//! What they need (chromium, chromedriver, java, `node_modules/`) is installed
//! by `scripts/browser-deps.sh`; when something is missing the tests fail and
//! say so, they never skip. They run one at a time (one Chromium at a time on
//! a small machine).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{self, ADMIN, ADMIN_PASSWORD, TestApp};

const CHROMIUM: &str = "/usr/bin/chromium";
const DEPS_HINT: &str = "run scripts/browser-deps.sh (installs chromium, chromium-driver, \
                         a Java runtime, and node_modules/ with vnu-jar and axe-core)";
/// How long chromedriver may take to answer after it starts.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How long a page may take to load, a script to run, a navigation to land.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the Nu HTML Checker may take over one batch.
const VNU_TIMEOUT: Duration = Duration::from_secs(180);

/// One browser test at a time.
static BROWSER: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The tools the checks use, all found before anything starts.
struct Tools {
    chromedriver: PathBuf,
    java: PathBuf,
    vnu_jar: PathBuf,
    axe_source: String,
}

impl Tools {
    fn find() -> Tools {
        let mut missing = Vec::new();
        let chromedriver = on_path("chromedriver");
        if chromedriver.is_none() {
            missing.push("chromedriver (Debian package chromium-driver)".to_owned());
        }
        if !Path::new(CHROMIUM).is_file() {
            missing.push(format!("{CHROMIUM} (Debian package chromium)"));
        }
        let java = on_path("java");
        if java.is_none() {
            missing.push("java (Debian package default-jre-headless)".to_owned());
        }
        let vnu_jar = find_vnu_jar();
        if vnu_jar.is_none() {
            missing.push("vnu.jar under node_modules/vnu-jar (npm ci)".to_owned());
        }
        let axe_path = repo_root().join("node_modules/axe-core/axe.min.js");
        let axe_source = std::fs::read_to_string(&axe_path).ok();
        if axe_source.is_none() {
            missing.push(format!("{} (npm ci)", axe_path.display()));
        }
        match (chromedriver, java, vnu_jar, axe_source) {
            (Some(chromedriver), Some(java), Some(vnu_jar), Some(axe_source))
                if missing.is_empty() =>
            {
                Tools {
                    chromedriver,
                    java,
                    vnu_jar,
                    axe_source,
                }
            }
            _ => panic!(
                "the browser tests cannot run, missing: {}; {DEPS_HINT}",
                missing.join(", ")
            ),
        }
    }
}

/// The jar ships in the npm package at `build/dist/vnu.jar` (the path its
/// own `vnu-jar.js` exports); should a release move it, any `vnu.jar` in the
/// package will do.
fn find_vnu_jar() -> Option<PathBuf> {
    let package = repo_root().join("node_modules/vnu-jar");
    let usual = package.join("build/dist/vnu.jar");
    if usual.is_file() {
        return Some(usual);
    }
    let mut dirs = vec![(package, 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && depth < 4 {
                dirs.push((path, depth + 1));
            } else if path.file_name().is_some_and(|name| name == "vnu.jar") {
                return Some(path);
            }
        }
    }
    None
}

/// A free loopback port (a tiny race with other processes is possible, so
/// starting chromedriver is retried).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A bare HTTP/1.1 request to chromedriver (usable in `Drop`, outside any
/// async context); the whole answer, or `None`.
fn driver_request(port: u16, method: &str, path: &str) -> Option<String> {
    let timeout = Duration::from_secs(10);
    let addr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
    .ok()?;
    // chromedriver keeps the connection open whatever the request says:
    // read the head, then exactly Content-Length bytes.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&answer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                break;
            }
        }
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// chromedriver plus one Chromium session in a fresh profile. Dropping it
/// ends the session (Chromium quits) and kills chromedriver.
struct Browser {
    client: Client,
    driver: Child,
    port: u16,
    session: Option<String>,
    axe_source: String,
    /// Chromium's profile and chromedriver's log; removed after both end.
    _profile: TempDir,
}

impl Browser {
    async fn start(tools: &Tools) -> Browser {
        Self::start_with(tools, &[]).await
    }

    /// Chromium with further command-line switches.
    async fn start_with(tools: &Tools, extra_args: &[String]) -> Browser {
        let profile = crate::support::private_tempdir().expect("browser profile dir");
        let mut failures = Vec::new();
        for _attempt in 0..3 {
            match Self::start_driver(tools, profile.path()).await {
                Ok((driver, port)) => {
                    return Self::connect(tools, driver, port, profile, extra_args).await;
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "chromedriver did not start: {}; if it is not installed properly, {DEPS_HINT}",
            failures.join("; ")
        );
    }

    /// Starts chromedriver and waits (at most `DRIVER_START`) until its
    /// `/status` says it is ready.
    async fn start_driver(tools: &Tools, profile: &Path) -> Result<(Child, u16), String> {
        let port = free_port();
        let log = profile.join(format!("chromedriver-{port}.log"));
        let mut driver = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{} could not be run: {e}", tools.chromedriver.display()))?;
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Ok(Some(status)) = driver.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("chromedriver exited ({status}): {log}"));
            }
            let status =
                tokio::task::spawn_blocking(move || driver_request(port, "GET", "/status"))
                    .await
                    .expect("status check");
            if status.is_some_and(|answer| answer.contains("\"ready\":true")) {
                return Ok((driver, port));
            }
            if Instant::now() > deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(format!(
                    "chromedriver on port {port} not ready within {DRIVER_START:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn connect(
        tools: &Tools,
        mut driver: Child,
        port: u16,
        profile: TempDir,
        extra_args: &[String],
    ) -> Browser {
        let user_data_dir = profile.path().join("chromium");
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", user_data_dir.display()));
        args.extend(extra_args.iter().cloned());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let millis = u64::try_from(PAGE_TIMEOUT.as_millis()).expect("timeout");
        capabilities.insert(
            "timeouts".to_owned(),
            json!({ "implicit": 0, "pageLoad": millis, "script": millis }),
        );
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let webdriver = format!("http://127.0.0.1:{port}");
        let connecting = builder.connect(&webdriver);
        let client = match tokio::time::timeout(Duration::from_secs(60), connecting).await {
            Ok(Ok(client)) => client,
            outcome => {
                let _ = driver.kill();
                let _ = driver.wait();
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no session within 60 s".to_owned(),
                };
                let log = std::fs::read_to_string(
                    profile.path().join(format!("chromedriver-{port}.log")),
                )
                .unwrap_or_default();
                panic!("Chromium did not start through chromedriver: {why}\n{log}\n{DEPS_HINT}");
            }
        };
        let session = client.session_id().await.ok().flatten();
        Browser {
            client,
            driver,
            port,
            session,
            axe_source: tools.axe_source.clone(),
            _profile: profile,
        }
    }

    /// Ends the session cleanly (Chromium quits); `Drop` does the rest.
    async fn close(mut self) {
        if self.session.take().is_some() {
            let client = self.client.clone();
            let _ = tokio::time::timeout(Duration::from_secs(20), client.close()).await;
        }
    }

    async fn goto(&self, app: &TestApp, path: &str) {
        self.goto_url(&app.url(path)).await;
    }

    async fn goto_url(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current URL")
            .path()
            .to_owned()
    }

    /// Waits (at most `PAGE_TIMEOUT`) until the browser shows `path`, fully
    /// loaded.
    async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let mut seen = String::new();
        for _ in 0..3000 {
            if let Ok(url) = self.client.current_url().await {
                seen = url.to_string();
                if url.path() == path {
                    let ready = self
                        .client
                        .execute("return document.readyState", vec![])
                        .await
                        .ok();
                    if ready.as_ref().and_then(Value::as_str) == Some("complete") {
                        return;
                    }
                }
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the browser did not land on {path} within {PAGE_TIMEOUT:?}; it shows {seen}");
    }

    async fn body_text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("body")
            .text()
            .await
            .expect("body text")
    }

    /// Asserts the page shows `text`, waiting (at most `PAGE_TIMEOUT`) for a
    /// navigation a click started: ChromeDriver does not always wait for the
    /// page a form submission loads before the click returns.
    async fn assert_shows(&self, text: &str) {
        self.wait_for_text(text).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("field {css}: {e}"));
        field.clear().await.expect("clear field");
        field.send_keys(text).await.expect("type into field");
    }

    async fn click_button(&self, label: &str) {
        let xpath = format!("//button[normalize-space()='{label}']");
        let path = self.path().await;
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("button {label:?} on {path}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {label:?}: {e}"));
    }

    /// Waits (at most `PAGE_TIMEOUT`) until the page shows `text`.
    async fn wait_for_text(&self, text: &str) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        for _ in 0..3000 {
            if let Ok(body) = self.client.find(Locator::Css("body")).await
                && let Ok(shown) = body.text().await
                && shown.contains(text)
            {
                return;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let path = self.path().await;
        let body = self.body_text().await;
        panic!("{path} did not show {text:?} within {PAGE_TIMEOUT:?}; it shows:\n{body}");
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("element {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// The current value of a form field.
    async fn value_of(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("field {css}: {e}"))
            .prop("value")
            .await
            .unwrap_or_else(|e| panic!("value of {css}: {e}"))
            .unwrap_or_default()
    }

    /// Signs in through the form on /login and waits for the landing page.
    async fn sign_in(&self, app: &TestApp, user: &str, password: &str, lands_on: &str) {
        self.goto(app, "/login").await;
        self.type_into("#user_id", user).await;
        self.type_into("#password", password).await;
        self.click_button("Sign in").await;
        self.wait_for_path(lands_on).await;
    }

    /// Runs axe-core on the page shown and adds its serious and critical
    /// violations to `problems` (milder ones are printed only).
    async fn axe(&self, page: &str, problems: &mut Vec<String>) {
        let injected = self
            .client
            .execute(
                &format!("{}\n;return typeof window.axe;", self.axe_source),
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("injecting axe-core into {page}: {e}"));
        assert_eq!(
            injected.as_str(),
            Some("object"),
            "axe-core did not load into {page} (Content-Security-Policy?)"
        );
        let outcome = self
            .client
            .execute_async(
                r"
                const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] })
                  .then(results => done({
                    url: results.url,
                    engine: results.testEngine.name + ' ' + results.testEngine.version,
                    violations: results.violations.map(v => ({
                      id: v.id,
                      impact: v.impact,
                      help: v.help,
                      nodes: v.nodes.map(n => ({ target: n.target, summary: n.failureSummary })),
                    })),
                  }))
                  .catch(e => done({ error: String((e && e.stack) || e) }));
                ",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("running axe-core on {page}: {e}"));
        if let Some(error) = outcome.get("error") {
            panic!("axe-core failed on {page}: {error}");
        }
        let violations = outcome["violations"]
            .as_array()
            .unwrap_or_else(|| panic!("axe-core on {page} answered {outcome}"));
        for violation in violations {
            let impact = violation["impact"].as_str().unwrap_or("unknown");
            let mut line = format!(
                "axe {page} [{impact}] {}: {}",
                violation["id"].as_str().unwrap_or("?"),
                violation["help"].as_str().unwrap_or("?"),
            );
            for node in violation["nodes"].as_array().into_iter().flatten() {
                let _ = write!(line, "\n    at {}", node["target"]);
                if let Some(summary) = node["summary"].as_str() {
                    let _ = write!(line, ": {}", summary.replace('\n', " "));
                }
            }
            if matches!(impact, "serious" | "critical") {
                problems.push(line);
            } else {
                eprintln!("note (not failing): {line}");
            }
        }
        eprintln!(
            "axe: {page} checked ({}, {} violation(s))",
            outcome["engine"].as_str().unwrap_or("axe-core"),
            violations.len()
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a panic `close` never ran: end the session by hand, so
        // chromedriver makes Chromium quit instead of orphaning it.
        if let Some(session) = self.session.take() {
            let _ = driver_request(self.port, "DELETE", &format!("/session/{session}"));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A page's HTML as the server sends it, for the Nu HTML Checker.
struct Page {
    name: &'static str,
    html: String,
}

async fn fetch(client: &reqwest::Client, app: &TestApp, path: &str, status: u16) -> String {
    let response = client
        .get(app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(response.status().as_u16(), status, "GET {path}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/html"),
        "GET {path} is {content_type:?}, not HTML"
    );
    response.text().await.expect("page body")
}

/// Runs the Nu HTML Checker once over all `pages` and adds every error it
/// reports to `problems`.
async fn vnu(tools: &Tools, pages: &[Page], problems: &mut Vec<String>) {
    let dir = crate::support::private_tempdir().expect("temp dir for vnu");
    let mut files = Vec::new();
    for page in pages {
        let file = dir.path().join(format!("{}.html", page.name));
        std::fs::write(&file, &page.html).expect("write page for vnu");
        files.push(file);
    }
    let run = tokio::process::Command::new(&tools.java)
        .arg("-jar")
        .arg(&tools.vnu_jar)
        .args(["--format", "json", "--errors-only"])
        .args(&files)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(VNU_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("the Nu HTML Checker took more than {VNU_TIMEOUT:?}"))
        .expect("run java -jar vnu.jar");
    // vnu writes its JSON report to stderr.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stderr.trim())
        .or_else(|_| serde_json::from_str(stdout.trim()))
        .unwrap_or_else(|e| {
            panic!(
                "the Nu HTML Checker gave no JSON report ({e}, {}):\n{stderr}\n{stdout}",
                output.status
            )
        });
    let messages = report["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("the Nu HTML Checker report has no messages: {report}"));
    for message in messages {
        let url = message["url"].as_str().unwrap_or("?");
        let file = url.rsplit('/').next().unwrap_or(url);
        let line = message["lastLine"]
            .as_u64()
            .or_else(|| message["firstLine"].as_u64())
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let mut text = format!(
            "vnu {file}:{line} [{}] {}",
            message["type"].as_str().unwrap_or("?"),
            message["message"].as_str().unwrap_or("?"),
        );
        if let Some(extract) = message["extract"].as_str() {
            let _ = write!(text, "\n    near: {}", extract.replace('\n', "\\n"));
        }
        problems.push(text);
    }
    if messages.is_empty() {
        assert!(
            output.status.success(),
            "the Nu HTML Checker failed ({}) without messages:\n{stderr}\n{stdout}",
            output.status
        );
    }
    eprintln!(
        "vnu: {} page(s) checked ({})",
        pages.len(),
        report["version"].as_str().unwrap_or("?")
    );
}

fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} HTML validation / accessibility problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// The lock is held across awaits on purpose: it keeps the other browser test
// (on its own test thread and runtime) waiting until this one is done.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_admin_pages_pass_validation_and_axe() {
    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();

    browser.goto(&app, "/login").await;
    browser.assert_shows("Sign in").await;
    browser.axe("login", &mut problems).await;

    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;
    browser
        .assert_shows("Presence Gateway Administration")
        .await;
    browser.axe("home", &mut problems).await;

    for (path, name, text) in [
        ("/system/nodes", "system-nodes", "test-node"),
        (
            "/system/service-parameters",
            "service-parameters",
            "Service Parameter Configuration",
        ),
        ("/account/password", "account-password", "password"),
        ("/no-such-page", "not-found", "Page not found"),
    ] {
        browser.goto(&app, path).await;
        browser.wait_for_path(path).await;
        browser.assert_shows(text).await;
        browser.axe(name, &mut problems).await;
    }

    // The error page has no header: sign out from a console page.
    browser.goto(&app, "/").await;
    browser.click_button("Sign out").await;
    browser.wait_for_path("/login").await;
    browser.assert_shows("You have signed out.").await;
    browser.close().await;

    let anonymous = support::client();
    let mut pages = vec![Page {
        name: "login",
        html: fetch(&anonymous, &app, "/login", 200).await,
    }];
    app.sign_in_admin().await;
    for (path, name, status) in [
        ("/", "home", 200),
        ("/system/nodes", "system-nodes", 200),
        ("/system/service-parameters", "service-parameters", 200),
        ("/account/password", "account-password", 200),
        ("/no-such-page", "not-found", 404),
    ] {
        pages.push(Page {
            name,
            html: fetch(&app.client, &app, path, status).await,
        });
    }
    // The service parameters refused, with messages beside their fields.
    let refused = app
        .post_form(
            "/system/service-parameters",
            &[
                ("node", "test-node"),
                ("exchange_timeout", "21"),
                ("notification_host", "http://x/"),
                ("save", "1"),
            ],
        )
        .await;
    assert_eq!(refused.status().as_u16(), 422);
    pages.push(Page {
        name: "service-parameters-refused",
        html: refused.text().await.expect("page body"),
    });
    vnu(&tools, &pages, &mut problems).await;

    assert_no_problems(&problems);
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_end_user_lands_on_user_options() {
    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    app.create_end_user("erin", "ember-lantern-pw-1").await;
    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();

    browser
        .sign_in(&app, "erin", "ember-lantern-pw-1", "/user-options")
        .await;
    assert_eq!(browser.path().await, "/user-options");
    browser.assert_shows("User Options").await;
    browser.axe("user-options", &mut problems).await;

    // The console's home is not theirs: they are sent to User Options.
    browser.goto(&app, "/").await;
    browser.wait_for_path("/user-options").await;
    browser.assert_shows("User Options").await;
    // An administrator's page says no.
    browser.goto(&app, "/presence/gateways").await;
    browser.wait_for_path("/presence/gateways").await;
    browser.assert_shows("Access denied").await;
    browser.axe("forbidden", &mut problems).await;
    browser.close().await;

    let response = app.sign_in("erin", "ember-lantern-pw-1").await;
    assert_eq!(response.status().as_u16(), 303, "end-user sign-in");
    assert_eq!(support::location(&response), "/user-options");
    let home = app.get("/").await;
    assert_eq!(home.status().as_u16(), 303, "an end user at /");
    assert_eq!(support::location(&home), "/user-options");
    let pages = [
        Page {
            name: "user-options",
            html: fetch(&app.client, &app, "/user-options", 200).await,
        },
        Page {
            name: "forbidden",
            html: fetch(&app.client, &app, "/presence/gateways", 403).await,
        },
    ];
    vnu(&tools, &pages, &mut problems).await;

    assert_no_problems(&problems);
}

/// The gateway flow of issue 3, as an administrator clicks through it: add an
/// EWS gateway, add a second and find the account pre-filled, change the
/// shared credentials and see both change, be refused a WebDAV gateway,
/// delete both and be told how many users lose calendar presence.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_gateway_flow() {
    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    let ids: Vec<_> = (0..7)
        .map(|i| presence_gateway::domain::user::UserId::parse(&format!("cal{i}")).expect("id"))
        .collect();
    crate::support::seed::create_many_end_users(&app.state.pool, &ids, "x", true, app.state.now())
        .await
        .expect("users");
    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;

    browser.goto(&app, "/presence/gateways").await;
    browser
        .assert_shows("No presence gateway is configured yet")
        .await;
    browser.axe("gateways-empty", &mut problems).await;
    browser
        .click("a.button[href='/presence/gateways/new']")
        .await;
    browser.wait_for_text("Presence Gateway Type").await;
    browser.axe("gateway-choose-type", &mut problems).await;
    browser.click("#type-ews").await;
    browser.click_button("Next").await;
    browser
        .wait_for_text("Add New Presence Gateway: Exchange - EWS Server")
        .await;

    // A mistake first: the message appears beside the field.
    browser.type_into("#description", "Exchange East").await;
    browser
        .type_into("#server", "https://east.example.com/EWS")
        .await;
    browser
        .type_into("#account_name", "presence@example.com")
        .await;
    browser.type_into("#password", "First-Pa55").await;
    browser.type_into("#confirm", "First-Pa55").await;
    browser.click_button("Add New").await;
    browser.wait_for_text("not a URL").await;
    browser.axe("gateway-form-errors", &mut problems).await;
    assert_eq!(browser.value_of("#description").await, "Exchange East");
    assert_eq!(
        browser.value_of("#password").await,
        "",
        "passwords are not kept"
    );
    browser.type_into("#server", "east.example.com").await;
    browser.type_into("#password", "First-Pa55").await;
    browser.type_into("#confirm", "First-Pa55").await;
    browser.click_button("Add New").await;
    browser.wait_for_text("Add successful.").await;
    browser.assert_shows("Presence Engine restart needed").await;
    browser.axe("gateway-edit", &mut problems).await;
    let first = browser.path().await;

    // The second EWS gateway: the shared account is pre-filled.
    browser.goto(&app, "/presence/gateways/new").await;
    browser.click("#type-ews").await;
    browser.click_button("Next").await;
    browser.wait_for_text("Add New Presence Gateway").await;
    assert_eq!(
        browser.value_of("#account_name").await,
        "presence@example.com"
    );
    browser.type_into("#description", "Exchange West").await;
    browser.type_into("#server", "west.example.com").await;
    browser.click_button("Add New").await;
    browser.wait_for_text("Add successful.").await;
    let second = browser.path().await;
    assert_ne!(first, second);

    // New credentials on the second change them on both.
    browser.type_into("#account_name", "CORP\\presence2").await;
    browser.type_into("#password", "Second-Pa55").await;
    browser.type_into("#confirm", "Second-Pa55").await;
    browser.click_button("Save").await;
    browser
        .wait_for_text("The shared EWS credentials were updated on 2 gateways.")
        .await;
    browser.goto(&app, &first).await;
    browser.wait_for_path(&first).await;
    assert_eq!(browser.value_of("#account_name").await, "CORP\\presence2");

    // WebDAV cannot join EWS gateways.
    browser.goto(&app, "/presence/gateways/new").await;
    browser.click("#type-webdav").await;
    browser.click_button("Next").await;
    browser
        .wait_for_text("A WebDAV gateway must be the only gateway")
        .await;
    browser.axe("gateway-type-refused", &mut problems).await;

    browser.goto(&app, "/presence/gateways").await;
    browser.assert_shows("Exchange East").await;
    browser.assert_shows("Exchange West").await;
    browser.axe("gateways-list", &mut problems).await;

    // Delete both: the first affects nobody, the last tells how many.
    browser.goto(&app, &format!("{first}/delete")).await;
    browser.wait_for_text("Other EWS gateways remain").await;
    browser.axe("gateway-delete", &mut problems).await;
    browser.click_button("Delete").await;
    browser.wait_for_text("Delete successful.").await;
    browser.goto(&app, &format!("{second}/delete")).await;
    browser
        .wait_for_text("7 users will lose calendar presence")
        .await;
    browser.axe("gateway-delete-last", &mut problems).await;
    browser.click_button("Delete").await;
    browser
        .wait_for_text("Calendar presence was switched off for 7 users.")
        .await;
    browser.goto(&app, "/system/audit-log").await;
    browser
        .wait_for_text("gateway deleted: Exchange West")
        .await;
    browser.axe("audit-log", &mut problems).await;
    browser.close().await;

    // The Nu HTML Checker over every gateway page, in each state.
    app.sign_in_admin().await;
    let mut pages = vec![Page {
        name: "gateways-empty",
        html: fetch(&app.client, &app, "/presence/gateways", 200).await,
    }];
    let id = {
        let response = app
            .post_form(
                "/presence/gateways/new",
                &[
                    ("type", "ews"),
                    ("description", "Checked"),
                    ("server", "ex.example.com"),
                    ("account_name", "svc@example.com"),
                    ("password", "pw-123456"),
                    ("confirm", "pw-123456"),
                    ("port", "8443"),
                    ("test_mailbox", ""),
                ],
            )
            .await;
        support::location(&response)
    };
    let invalid = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "ews"),
                ("description", ""),
                ("server", "a_b"),
                ("port", "0"),
            ],
        )
        .await;
    assert_eq!(invalid.status().as_u16(), 422);
    pages.push(Page {
        name: "gateway-form-errors",
        html: invalid.text().await.expect("body"),
    });
    for (path, name, status) in [
        ("/presence/gateways".to_owned(), "gateways-list", 200),
        (
            "/presence/gateways?search=nothing".to_owned(),
            "gateways-search-empty",
            200,
        ),
        (
            "/presence/gateways/new".to_owned(),
            "gateway-choose-type",
            200,
        ),
        (
            "/presence/gateways/new?type=webdav".to_owned(),
            "gateway-type-refused",
            422,
        ),
        (
            "/presence/gateways/new?type=ews".to_owned(),
            "gateway-new-shared",
            200,
        ),
        (id.clone(), "gateway-edit", 200),
        (format!("{id}/delete"), "gateway-delete", 200),
        (format!("{id}/type"), "gateway-change-type", 200),
        ("/system/audit-log".to_owned(), "audit-log", 200),
    ] {
        pages.push(Page {
            name,
            html: fetch(&app.client, &app, &path, status).await,
        });
    }
    vnu(&tools, &pages, &mut problems).await;
    assert_no_problems(&problems);
}

/// Certificate Management and the Import Tool (issue 5), as an administrator
/// clicks through them: a refused upload with its message beside the field,
/// a PEM bundle uploaded through the file input and listed with its
/// fingerprints, the Import Tool fetching exchange-sim's chain and accepting
/// the ticked CA, and a delete.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_cert_flow() {
    use crate::certs::TestCert;
    use crate::support::multipart;

    let _one = one_at_a_time();
    let tools = Tools::find();
    let sim = crate::sim::SimProcess::start(&[]);
    let port = sim.port().to_string();
    let app = TestApp::spawn().await;
    let files = crate::support::private_tempdir().expect("temp dir for uploads");
    let root = TestCert::ca("Browser Root CA", 3650);
    let issuing = TestCert::ca("Browser Issuing CA", 20);
    let bundle = files.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{}{}", root.pem(), issuing.pem())).expect("bundle");
    let garbage = files.path().join("notes.txt");
    std::fs::write(&garbage, "not a certificate").expect("garbage");

    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;
    browser.click("nav a[href='/system/certificates']").await;
    browser.wait_for_path("/system/certificates").await;
    browser.assert_shows("No certificate is trusted yet").await;
    browser.axe("certs-empty", &mut problems).await;

    // A file that is not a certificate: refused beside the field.
    let input = browser
        .client
        .find(Locator::Css("#file"))
        .await
        .expect("file input");
    input
        .send_keys(&garbage.display().to_string())
        .await
        .expect("choose file");
    browser.click_button("Upload").await;
    browser
        .wait_for_text("neither PEM certificates nor a DER certificate")
        .await;
    browser.axe("certs-upload-refused", &mut problems).await;

    // The PEM bundle: both listed, with fingerprints and the expiry warning.
    let input = browser
        .client
        .find(Locator::Css("#file"))
        .await
        .expect("file input");
    input
        .send_keys(&bundle.display().to_string())
        .await
        .expect("choose file");
    browser.click_button("Upload").await;
    browser.wait_for_text("2 certificates imported").await;
    browser.assert_shows(&root.fingerprint()).await;
    browser.assert_shows(&issuing.fingerprint()).await;
    browser.assert_shows("Warning: Expires in").await;
    browser.assert_shows("Presence Engine restart needed").await;
    browser.axe("certs-list", &mut problems).await;

    // The Import Tool against exchange-sim.
    browser
        .click("a.button[href='/system/certificates/import']")
        .await;
    browser.wait_for_path("/system/certificates/import").await;
    browser.axe("certs-import", &mut problems).await;
    assert_eq!(browser.value_of("#port").await, "443");
    browser.type_into("#host", "127.0.0.1").await;
    browser.type_into("#port", &port).await;
    browser.click_button("Fetch Certificate Chain").await;
    browser
        .wait_for_text(&format!("Chain presented by 127.0.0.1:{port}"))
        .await;
    browser.axe("certs-import-chain", &mut problems).await;
    browser.click_button("Accept Certificate Chain").await;
    browser.wait_for_text("1 certificate imported").await;
    browser.wait_for_path("/system/certificates").await;
    assert_eq!(
        presence_gateway::store::trust::anchors(&app.state.pool)
            .await
            .expect("anchors")
            .len(),
        3
    );

    // Delete the root, after the confirmation page.
    browser
        .click("a[aria-label='Delete CN=Browser Root CA']")
        .await;
    browser.wait_for_text("Delete Trusted Certificate").await;
    browser.axe("certs-delete", &mut problems).await;
    browser.click_button("Delete").await;
    browser
        .wait_for_text("Deleted certificate CN=Browser Root CA")
        .await;
    browser.close().await;

    // The Nu HTML Checker over every certificate page, in each state.
    app.sign_in_admin().await;
    let mut pages = vec![Page {
        name: "certs-list",
        html: fetch(&app.client, &app, "/system/certificates", 200).await,
    }];
    pages.push(Page {
        name: "certs-import",
        html: fetch(&app.client, &app, "/system/certificates/import", 200).await,
    });
    let id: i64 = sqlx::query_scalar("SELECT MIN(id) FROM trusted_certificates")
        .fetch_one(&app.state.pool)
        .await
        .expect("a certificate id");
    pages.push(Page {
        name: "certs-delete",
        html: fetch(
            &app.client,
            &app,
            &format!("/system/certificates/{id}/delete"),
            200,
        )
        .await,
    });
    let refused = app
        .client
        .post(app.url("/system/certificates"))
        .header("Origin", &app.base)
        .header("Sec-Fetch-Site", "same-origin")
        .header(
            "Content-Type",
            "multipart/form-data; boundary=pg-test-boundary-2f9c1e",
        )
        .body(multipart(&[
            ("file", Some("key.pem"), root.key.serialize_pem().as_bytes()),
            ("pem", None, b"garbage"),
        ]))
        .send()
        .await
        .expect("upload");
    assert_eq!(refused.status().as_u16(), 422);
    pages.push(Page {
        name: "certs-upload-refused",
        html: refused.text().await.expect("body"),
    });
    for (name, form, status) in [
        (
            "certs-import-chain",
            vec![("host", "127.0.0.1"), ("port", port.as_str())],
            200,
        ),
        (
            "certs-import-host-error",
            vec![("host", "https://x.example/"), ("port", "0")],
            422,
        ),
    ] {
        let response = app.post_form("/system/certificates/import", &form).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        pages.push(Page {
            name,
            html: response.text().await.expect("body"),
        });
    }
    let stale = app
        .post_form(
            "/system/certificates/import/accept",
            &[
                ("host", "127.0.0.1"),
                ("port", port.as_str()),
                ("accept", &"0".repeat(64)),
            ],
        )
        .await;
    assert_eq!(stale.status().as_u16(), 422);
    pages.push(Page {
        name: "certs-import-refused",
        html: stale.text().await.expect("body"),
    });
    vnu(&tools, &pages, &mut problems).await;
    assert_no_problems(&problems);
}

/// Issue 5's flow: a gateway on exchange-sim is Verified by the
/// Troubleshooter; with only a wrong CA in the store the chain is missing its
/// anchor; the Import Tool accepts the presented chain; Verified again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_troubleshooter_flow() {
    use crate::certs::TestCert;
    use crate::sim::{ACCOUNT, PASSWORD, PASSWORD_ENV, SimProcess};
    use presence_gateway::store;

    let _one = one_at_a_time();
    let tools = Tools::find();
    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let port = sim.port().to_string();
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let response = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "ews"),
                ("description", "Simulated Exchange"),
                ("server", "127.0.0.1"),
                ("account_name", ACCOUNT),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
                ("port", &port),
                ("test_mailbox", "user@example.com"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let gateway = support::location(&response);
    let trust = |der: Vec<u8>| {
        let app = &app;
        async move {
            let info = presence_gateway::tls::certinfo::parse(&der).expect("certificate");
            store::trust::insert(&app.state.pool, &der, &info, "admin", app.state.now())
                .await
                .expect("trust");
        }
    };
    let sim_ca = std::fs::read(sim.dir.path().join("ca.pem")).expect("ca.pem");
    for der in rustls_pemfile::certs(&mut sim_ca.as_slice()) {
        trust(der.expect("PEM").to_vec()).await;
    }

    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;
    browser.goto(&app, &gateway).await;
    browser.wait_for_path(&gateway).await;
    browser.click_button("Run Troubleshooter").await;
    browser.wait_for_text("Exchange authentication").await;
    browser
        .assert_shows("GetFolder of the calendar of user@example.com")
        .await;
    assert_eq!(headline(&browser).await, "Verified");
    browser.axe("troubleshooter-verified", &mut problems).await;

    // Only a wrong CA in the store.
    for row in store::trust::list(&app.state.pool).await.expect("list") {
        store::trust::delete(&app.state.pool, row.id, "admin", app.state.now())
            .await
            .expect("delete");
    }
    trust(TestCert::ca("Some Other CA", 365).der()).await;
    browser.goto(&app, &gateway).await;
    browser.wait_for_path(&gateway).await;
    browser.click_button("Run Troubleshooter").await;
    browser.wait_for_text("Exchange authentication").await;
    assert_eq!(
        headline(&browser).await,
        "Failed - Certificate Missing From Chain"
    );
    browser
        .assert_shows("only sent to a server whose chain")
        .await;
    browser.axe("troubleshooter-missing", &mut problems).await;

    // The Import Tool accepts the presented chain.
    browser.goto(&app, "/system/certificates/import").await;
    browser.wait_for_path("/system/certificates/import").await;
    browser.type_into("#host", "127.0.0.1").await;
    browser.type_into("#port", &port).await;
    browser.click_button("Fetch Certificate Chain").await;
    browser
        .wait_for_text(&format!("Chain presented by 127.0.0.1:{port}"))
        .await;
    browser.click_button("Accept Certificate Chain").await;
    browser.wait_for_text("1 certificate imported").await;

    browser.goto(&app, &gateway).await;
    browser.wait_for_path(&gateway).await;
    browser.click_button("Run Troubleshooter").await;
    browser.wait_for_text("Exchange authentication").await;
    assert_eq!(headline(&browser).await, "Verified");

    // All gateways at once, from Find and List.
    browser.goto(&app, "/presence/gateways").await;
    browser.wait_for_path("/presence/gateways").await;
    browser.assert_shows("Verified (").await;
    browser
        .click_button("Run Troubleshooter on all gateways")
        .await;
    browser.wait_for_text("1 gateway checked at once").await;
    browser.axe("troubleshooter-all", &mut problems).await;
    browser.close().await;

    let mut pages = Vec::new();
    for (path, name) in [
        (format!("{gateway}/troubleshoot"), "troubleshooter-panel"),
        (
            "/presence/gateways/troubleshoot".to_owned(),
            "troubleshooter-all",
        ),
    ] {
        let response = app.post_form(&path, &[]).await;
        assert_eq!(response.status().as_u16(), 200, "POST {path}");
        pages.push(Page {
            name,
            html: response.text().await.expect("page"),
        });
    }
    pages.push(Page {
        name: "gateways-with-verdict",
        html: fetch(&app.client, &app, "/presence/gateways", 200).await,
    });
    vnu(&tools, &pages, &mut problems).await;
    assert_no_problems(&problems);
}

/// The Troubleshooter panel's headline verdict as shown.
async fn headline(browser: &Browser) -> String {
    browser
        .client
        .find(Locator::Css(".panel .verdict strong"))
        .await
        .expect("headline verdict")
        .text()
        .await
        .expect("headline text")
}

/// An end user's User Options as clicked through (US-2, LO-2): switch
/// calendar presence on, change the User Locale to German and get the page
/// back in German; then the administrator's Locale Installation page. Every
/// page passes vnu and axe.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_user_options_flow() {
    use crate::user_options::{ERIN, ERIN_PASSWORD, add_gateway, signed_in};

    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    app.create_end_user(ERIN, ERIN_PASSWORD).await;
    add_gateway(&app).await;
    app.install_locale("test-node", "de-DE").await;
    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();

    browser
        .sign_in(&app, ERIN, ERIN_PASSWORD, "/user-options")
        .await;
    browser.assert_shows("Calendar Settings").await;
    browser.axe("user-options-en", &mut problems).await;

    browser.click("#calendar-on").await;
    browser.click("#save-calendar").await;
    browser
        .wait_for_text("Update successful: calendar information is now included")
        .await;
    let checked = browser
        .client
        .find(Locator::Css("#calendar-on"))
        .await
        .expect("On")
        .prop("checked")
        .await
        .expect("checked");
    assert_eq!(checked.as_deref(), Some("true"));
    browser
        .assert_shows("the presence engine has not read your calendar")
        .await;

    browser
        .client
        .find(Locator::Css("#locale"))
        .await
        .expect("User Locale")
        .select_by_value("de-DE")
        .await
        .expect("choose German");
    browser.click("#save-locale").await;
    browser
        .wait_for_text("Aktualisierung erfolgreich: Ihr Benutzergebietsschema ist jetzt")
        .await;
    browser.assert_shows("Kalendereinstellungen").await;
    browser
        .assert_shows("Kalenderinformationen in meinen Präsenzstatus aufnehmen")
        .await;
    let lang = browser
        .client
        .execute("return document.documentElement.lang", vec![])
        .await
        .expect("lang");
    assert_eq!(lang.as_str(), Some("de-DE"));
    assert_eq!(browser.value_of("#locale").await, "de-DE");
    browser.axe("user-options-de", &mut problems).await;

    browser.click_button("Sign out").await;
    browser.wait_for_path("/login").await;
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;
    browser.goto(&app, "/system/locales").await;
    browser.wait_for_path("/system/locales").await;
    browser.assert_shows("Locale Installation").await;
    browser.axe("locales", &mut problems).await;
    browser.close().await;

    let erin = signed_in(&app, ERIN, ERIN_PASSWORD).await;
    app.sign_in_admin().await;
    // The refusals too: their messages sit beside the fields.
    let refused_locale =
        crate::user_options::post(&app, &erin, "/user-options/locale", &[("locale", "xx-XX")])
            .await;
    assert_eq!(refused_locale.status().as_u16(), 422);
    let refused_install = app
        .post_form(
            "/system/locales",
            &[
                ("node", "test-node"),
                ("locale", "de-DE"),
                ("action", "install"),
            ],
        )
        .await;
    assert_eq!(refused_install.status().as_u16(), 422);
    let pages = [
        Page {
            name: "user-options-de",
            html: fetch(&erin, &app, "/user-options", 200).await,
        },
        Page {
            name: "user-options-refused",
            html: refused_locale.text().await.expect("page"),
        },
        Page {
            name: "locales",
            html: fetch(&app.client, &app, "/system/locales", 200).await,
        },
        Page {
            name: "locales-refused",
            html: refused_install.text().await.expect("page"),
        },
    ];
    vnu(&tools, &pages, &mut problems).await;
    assert_no_problems(&problems);
}

/// Issue 6 end to end: an administrator changes a service parameter, sees the
/// restart banner, restarts the Presence Engine from Control Center and
/// sees the banner gone.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_engine_restart_flow() {
    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    let (_engine, _port) = crate::engine::with_engine(&app).await;
    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;

    browser.goto(&app, "/system/service-parameters").await;
    browser.assert_shows("Exchange Timeout").await;
    browser.type_into("#exchange_timeout", "21").await;
    browser.click_button("Save").await;
    browser
        .assert_shows("Exchange Timeout must be a whole number from 1 to 20")
        .await;
    browser
        .axe("service-parameters-refused", &mut problems)
        .await;
    browser.type_into("#exchange_timeout", "5").await;
    browser.click_button("Save").await;
    browser.wait_for_text("Update successful").await;
    browser.assert_shows("Presence Engine restart needed").await;
    browser
        .assert_shows("Service parameter Exchange Timeout on test-node")
        .await;
    browser.axe("service-parameters", &mut problems).await;

    browser
        .click("a[href='/serviceability/control-center']")
        .await;
    browser
        .wait_for_path("/serviceability/control-center")
        .await;
    browser
        .assert_shows("restart to apply the pending changes")
        .await;
    browser.axe("control-center", &mut problems).await;
    browser.click_button("Restart").await;
    browser
        .wait_for_text("Presence Engine on test-node: Running on configuration generation")
        .await;
    let text = browser.body_text().await;
    assert!(!text.contains("Presence Engine restart needed"), "{text}");
    assert!(!text.contains("restart to apply"), "{text}");

    for (path, name) in [
        ("/serviceability/service-activation", "service-activation"),
        ("/system/settings", "settings"),
        ("/system/nodes", "cluster-nodes"),
    ] {
        browser.goto(&app, path).await;
        browser.wait_for_path(path).await;
        browser.axe(name, &mut problems).await;
    }
    browser.close().await;

    app.sign_in_admin().await;
    let mut pages = Vec::new();
    for (path, name) in [
        ("/serviceability/control-center", "control-center"),
        ("/serviceability/service-activation", "service-activation"),
        ("/system/settings", "settings"),
        ("/system/nodes", "cluster-nodes"),
    ] {
        pages.push(Page {
            name,
            html: fetch(&app.client, &app, path, 200).await,
        });
    }
    vnu(&tools, &pages, &mut problems).await;
    assert_no_problems(&problems);
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_bulk_import_flow() {
    use crate::support::multipart;

    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    let files = crate::support::private_tempdir().expect("temp dir for uploads");
    let good = files.path().join("users.csv");
    std::fs::write(
        &good,
        "user_id,first_name,last_name,mailbox,node,locale,calendar\r\n\
         alice,Alice,\"Archer, PhD\",alice@example.com,test-node,,on\r\n\
         bob,Bob,Baker,,,,off\r\n",
    )
    .expect("good csv");
    let bad = files.path().join("bad.csv");
    std::fs::write(
        &bad,
        "user_id,first_name,last_name,mailbox,node,locale,calendar\n\
         carol,Carol,Cook,not-a-mailbox,,,on\n",
    )
    .expect("bad csv");

    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;
    browser.click("nav a[href='/bulk']").await;
    browser.wait_for_path("/bulk").await;
    browser.assert_shows("Import users").await;
    browser.axe("bulk", &mut problems).await;

    // A file with a bad row: the report names it, no Apply.
    browser
        .client
        .find(Locator::Css("#file"))
        .await
        .expect("file input")
        .send_keys(&bad.display().to_string())
        .await
        .expect("choose file");
    browser.click_button("Check File").await;
    browser.wait_for_text("Import Validation Report").await;
    browser
        .assert_shows("mailbox: Enter the test mailbox")
        .await;
    browser.assert_shows("nothing was written").await;
    browser.axe("bulk-report-errors", &mut problems).await;

    // A good file: the report, then Apply.
    browser.goto(&app, "/bulk").await;
    browser
        .client
        .find(Locator::Css("#file"))
        .await
        .expect("file input")
        .send_keys(&good.display().to_string())
        .await
        .expect("choose file");
    browser.click_button("Check File").await;
    browser.wait_for_text("Every row is good").await;
    browser.assert_shows("users.csv").await;
    browser.axe("bulk-report", &mut problems).await;
    browser.click_button("Apply").await;
    browser
        .wait_for_text("Import applied: 2 created, 0 updated.")
        .await;
    browser.wait_for_path("/bulk").await;
    browser.assert_shows("All 2 end users").await;
    browser.axe("bulk-applied", &mut problems).await;
    browser.close().await;
    let alice = presence_gateway::store::users::find_by_user_id(&app.state.pool, "alice")
        .await
        .expect("find alice")
        .expect("alice imported");
    assert_eq!(alice.last_name, "Archer, PhD");

    // The Nu HTML Checker over the page and both reports.
    app.sign_in_admin().await;
    let mut pages = vec![Page {
        name: "bulk",
        html: fetch(&app.client, &app, "/bulk", 200).await,
    }];
    for (name, file, status) in [
        ("bulk-report", &good, 200),
        ("bulk-report-errors", &bad, 422),
    ] {
        let content = std::fs::read(file).expect("csv");
        let response = app
            .client
            .post(app.url("/bulk/import"))
            .header("Origin", &app.base)
            .header("Sec-Fetch-Site", "same-origin")
            .header(
                "Content-Type",
                "multipart/form-data; boundary=pg-test-boundary-2f9c1e",
            )
            .body(multipart(&[("file", Some("users.csv"), &content)]))
            .send()
            .await
            .expect("POST import");
        assert_eq!(response.status().as_u16(), status, "{name}");
        pages.push(Page {
            name,
            html: response.text().await.expect("report"),
        });
    }
    vnu(&tools, &pages, &mut problems).await;

    assert_no_problems(&problems);
}

/// End User (US-1) as an administrator clicks through it: Add New with the
/// form, a refused duplicate, then Find and List with *contains* on the last
/// name, the user's page from the result; axe on each page, the Nu HTML
/// Checker over the list, search results and detail pages.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_end_user_flow() {
    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;
    browser.click("nav a[href='/users/end-users']").await;
    browser.wait_for_path("/users/end-users").await;
    browser.assert_shows("No end user exists yet").await;
    browser.axe("end-users-empty", &mut problems).await;

    browser.click("a[href='/users/end-users/new']").await;
    browser.wait_for_path("/users/end-users/new").await;
    browser.axe("end-user-new", &mut problems).await;
    browser.type_into("#user_id", "quinn.fabray").await;
    browser.type_into("#first_name", "Quinn").await;
    browser.type_into("#last_name", "Fabray-Whitfield").await;
    browser.type_into("#mailbox", "quinn@example.com").await;
    browser.click("#calendar_enabled").await;
    browser.type_into("#password", "quartz-lantern-pw-1").await;
    browser.type_into("#confirm", "quartz-lantern-pw-2").await;
    browser.click_button("Add New").await;
    browser
        .wait_for_text("The password and its confirmation do not match.")
        .await;
    browser.axe("end-user-refused", &mut problems).await;
    assert_eq!(browser.value_of("#user_id").await, "quinn.fabray");
    browser.type_into("#password", "quartz-lantern-pw-1").await;
    browser.type_into("#confirm", "quartz-lantern-pw-1").await;
    browser.click_button("Add New").await;
    browser.wait_for_text("Add successful").await;
    let detail = browser.path().await;
    assert!(detail.starts_with("/users/end-users/"), "{detail}");
    browser.axe("end-user-detail", &mut problems).await;

    // Find and List: contains on the last name.
    browser.goto(&app, "/users/end-users").await;
    browser.wait_for_path("/users/end-users").await;
    let select = |id: &'static str, value: &'static str| {
        let client = browser.client.clone();
        async move {
            client
                .find(Locator::Css(id))
                .await
                .unwrap_or_else(|e| panic!("{id}: {e}"))
                .select_by_value(value)
                .await
                .unwrap_or_else(|e| panic!("choosing {value} in {id}: {e}"));
        }
    };
    select("#field", "last_name").await;
    select("#match", "contains").await;
    browser.type_into("#text", "wh").await;
    browser.click_button("Find").await;
    browser
        .wait_for_text("Enter at least 3 characters to search within names.")
        .await;
    browser.axe("end-users-too-short", &mut problems).await;
    browser.type_into("#text", "whit").await;
    browser.click_button("Find").await;
    browser.wait_for_text("Showing 1\u{2013}1 of 1").await;
    browser.assert_shows("quinn.fabray").await;
    browser.axe("end-users-found", &mut problems).await;
    browser.click("th a[href^='/users/end-users/']").await;
    browser.wait_for_path(&detail).await;
    assert_eq!(browser.value_of("#last_name").await, "Fabray-Whitfield");
    browser.close().await;

    app.sign_in_admin().await;
    let id = detail.trim_start_matches("/users/end-users/").to_owned();
    let mut pages = Vec::new();
    for (path, name) in [
        ("/users/end-users".to_owned(), "end-users-list"),
        (
            "/users/end-users?field=last_name&match=contains&text=whit".to_owned(),
            "end-users-found",
        ),
        (
            "/users/end-users?field=first_name&match=contains&text=q".to_owned(),
            "end-users-too-short",
        ),
        (format!("/users/end-users/{id}"), "end-user-detail"),
        ("/users/end-users/new".to_owned(), "end-user-new"),
        (format!("/users/end-users/{id}/delete"), "end-user-delete"),
        (
            format!("/users/end-users/{id}/password"),
            "end-user-password",
        ),
        ("/users/application-users".to_owned(), "app-users-list"),
        ("/users/application-users/new".to_owned(), "app-user-new"),
    ] {
        pages.push(Page {
            name,
            html: fetch(&app.client, &app, &path, 200).await,
        });
    }
    let refused = app
        .post_form(
            "/users/end-users/new",
            &[("user_id", "quinn.fabray"), ("mailbox", "nope")],
        )
        .await;
    assert_eq!(refused.status().as_u16(), 422);
    pages.push(Page {
        name: "end-user-refused",
        html: refused.text().await.expect("page"),
    });
    vnu(&tools, &pages, &mut problems).await;
    assert_no_problems(&problems);
}

/// The console over HTTPS in a real browser: Chromium offers HTTP/2 first,
/// so a server that advertised h2 and spoke only HTTP/1.1 showed no page at
/// all. The self-signed certificate is trusted by its key for this browser
/// alone (`--ignore-certificate-errors-spki-list`).
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_console_over_https() {
    use base64::Engine as _;
    use sha2::Digest as _;

    let _one = one_at_a_time();
    let tools = Tools::find();
    let dir = crate::support::private_tempdir().expect("temp dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let cert_path = dir.path().join("console.pem");
    let key_path = dir.path().join("console.key");
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let spki = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(key.public_key_der()));

    let password = "https-console-password-1";
    let server = support::ServeProcess::start(
        &dir.path().join("data"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().expect("path"),
            "--tls-key",
            key_path.to_str().expect("path"),
        ],
        &[("PRESENCE_GATEWAY_ADMIN_PASSWORD", password)],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let browser = Browser::start_with(
        &tools,
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    )
    .await;
    let mut problems = Vec::new();
    browser.goto_url(&format!("{}/login", server.url)).await;
    browser.wait_for_path("/login").await;
    browser.type_into("#user_id", ADMIN).await;
    browser.type_into("#password", password).await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;
    browser.assert_shows("Sign out").await;
    let protocol = browser
        .client
        .execute(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
            vec![],
        )
        .await
        .expect("navigation timing");
    assert_eq!(protocol.as_str(), Some("http/1.1"), "{protocol}");
    browser.axe("https-home", &mut problems).await;
    browser.close().await;
    drop(server);
    assert_no_problems(&problems);
}

/// System > API Tokens as an administrator uses it (EN-5): a refused name,
/// a token created and shown once, working against the API, gone from the
/// page when it is reloaded, then revoked after the confirmation page and
/// refused by the API.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_api_tokens_flow() {
    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    app.create_end_user("erin", "ember-lantern-pw-1").await;
    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;

    browser.click("nav a[href='/system/api-tokens']").await;
    browser.wait_for_path("/system/api-tokens").await;
    browser.assert_shows("No token has been created yet.").await;
    browser.axe("tokens-empty", &mut problems).await;

    // No name: refused beside the field.
    browser.click_button("Create").await;
    browser
        .wait_for_text("Enter a name that says who uses the token.")
        .await;
    browser.axe("tokens-refused", &mut problems).await;

    browser.type_into("#name", "Presence server").await;
    browser.click_button("Create").await;
    browser
        .wait_for_text("Copy it now; it will not be shown again.")
        .await;
    let token = browser.value_of("#new-token").await;
    assert!(token.starts_with("pgw_"), "{token}");
    browser.axe("tokens-created", &mut problems).await;
    let api = support::bare_client();
    let presence = |authorization: String| {
        api.get(app.url("/api/v1/presence/erin"))
            .header("Authorization", authorization)
            .send()
    };
    let answer = presence(format!("Bearer {token}")).await.expect("API call");
    assert_eq!(
        answer.status().as_u16(),
        200,
        "the new token reads presence"
    );

    // Shown once: the list again has it nowhere.
    browser.goto(&app, "/system/api-tokens").await;
    browser.wait_for_path("/system/api-tokens").await;
    browser.assert_shows("Presence server").await;
    let html = browser.client.source().await.expect("page source");
    assert!(!html.contains(&token), "the token was shown again");

    // Revoke, after the confirmation page.
    browser.click("a[href$='/revoke']").await;
    browser
        .wait_for_text("You are about to revoke the token")
        .await;
    browser.axe("tokens-revoke", &mut problems).await;
    browser.click_button("Revoke").await;
    browser.wait_for_text("Revoke successful").await;
    browser.wait_for_path("/system/api-tokens").await;
    browser.assert_shows("Revoked ").await;
    browser.axe("tokens-revoked", &mut problems).await;
    browser.close().await;
    let answer = presence(format!("Bearer {token}")).await.expect("API call");
    assert_eq!(
        answer.status().as_u16(),
        401,
        "the revoked token is refused"
    );

    // The Nu HTML Checker over each state of the pages.
    app.sign_in_admin().await;
    let mut pages = vec![Page {
        name: "tokens-list",
        html: fetch(&app.client, &app, "/system/api-tokens", 200).await,
    }];
    let created = app
        .post_form("/system/api-tokens", &[("name", "Dashboard")])
        .await;
    assert_eq!(created.status().as_u16(), 200);
    pages.push(Page {
        name: "tokens-created",
        html: created.text().await.expect("page body"),
    });
    let refused = app.post_form("/system/api-tokens", &[("name", "")]).await;
    assert_eq!(refused.status().as_u16(), 422);
    pages.push(Page {
        name: "tokens-refused",
        html: refused.text().await.expect("page body"),
    });
    let id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM api_tokens")
        .fetch_one(&app.state.pool)
        .await
        .expect("token id");
    pages.push(Page {
        name: "tokens-revoke",
        html: fetch(
            &app.client,
            &app,
            &format!("/system/api-tokens/{id}/revoke"),
            200,
        )
        .await,
    });
    vnu(&tools, &pages, &mut problems).await;

    assert_no_problems(&problems);
}

/// EN-7 in a browser: a user's presence read from exchange-sim shows in the
/// home page's glance and Control Center's figures and chart; a gateway
/// that cannot be reached is listed under "Needs attention" with a link.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_presence_dashboard_flow() {
    let _one = one_at_a_time();
    let tools = Tools::find();
    let rig = crate::presence_engine::Rig::new(&[]).await;
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let dead_id = rig.add_gateway("Unreachable", dead).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let now = rig.app.state.now();
    rig.add_user("dana", "dana@example.com").await;
    rig.script(&[("dana@example.com", now - 120, now + 3600, "Busy")])
        .await;
    let _engine = rig.start_engine().await;
    rig.wait_presence_moving("dana", "in_a_meeting", 40).await;

    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&rig.app, ADMIN, ADMIN_PASSWORD, "/").await;
    browser.assert_shows("Presence at a glance").await;
    browser.assert_shows("Needs attention").await;
    browser.axe("home-dashboard", &mut problems).await;
    let text = browser.body_text().await;
    assert!(text.contains("Unreachable"), "{text}");
    browser
        .click(&format!("a[href='/presence/gateways/{dead_id}']"))
        .await;
    browser
        .wait_for_path(&format!("/presence/gateways/{dead_id}"))
        .await;

    browser
        .goto(&rig.app, "/serviceability/control-center")
        .await;
    browser
        .wait_for_path("/serviceability/control-center")
        .await;
    browser
        .assert_shows("Exchange gateways as the Presence Engine on test-node reaches them")
        .await;
    browser.axe("control-center-figures", &mut problems).await;
    browser.close().await;

    rig.app.sign_in_admin().await;
    let mut pages = Vec::new();
    for (path, name) in [
        ("/", "home-dashboard"),
        ("/serviceability/control-center", "control-center-figures"),
    ] {
        pages.push(Page {
            name,
            html: fetch(&rig.app.client, &rig.app, path, 200).await,
        });
    }
    let center = &pages[1].html;
    assert!(
        center.contains("<svg class=\"chart\""),
        "the chart is drawn"
    );
    assert!(
        center.contains(r#"<tr class="presence-counts" data-node="test-node"><td>1</td><td>0</td><td>0</td><td>0</td></tr>"#),
        "one user in a meeting"
    );
    vnu(&tools, &pages, &mut problems).await;
    assert_no_problems(&problems);
}

/// A Microsoft 365 gateway as an administrator adds it (GR-1, GR-7):
/// Presence > Gateways > Add New > Microsoft 365 - Graph, the Entra ID
/// fields filled for exchange-sim playing the tenant (Cloud Custom, both
/// URLs the sim's base), saved, then its troubleshooter panel shows
/// Verified with the Test Mailbox's schedule read. Every page passes vnu
/// and axe.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_m365_gateway_flow() {
    use crate::sim::{PASSWORD, PASSWORD_ENV, SimProcess};
    use presence_gateway::store;

    const DOMAIN: &str = "contoso.onmicrosoft.com";
    const CLIENT: &str = "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57";
    const MAILBOX: &str = "room@contoso.com";

    let _one = one_at_a_time();
    let tools = Tools::find();
    let sim = SimProcess::start(&[
        "--graph-secret-env",
        PASSWORD_ENV,
        "--graph-domain",
        DOMAIN,
        "--graph-client-id",
        CLIENT,
    ]);
    let (status, body) = sim
        .control(
            "POST",
            "/sim/calendars",
            &format!("{MAILBOX},2030-01-15T10:00:00Z,2030-01-15T11:00:00Z,Busy\n"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let base = format!("https://localhost:{}", sim.port());
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    // The sim's CA is trusted as an administrator would import it
    // (Certificates), so the chain check passes on the sign-in host.
    let sim_ca = std::fs::read(sim.dir.path().join("ca.pem")).expect("ca.pem");
    for der in rustls_pemfile::certs(&mut sim_ca.as_slice()) {
        let der = der.expect("PEM");
        let info = presence_gateway::tls::certinfo::parse(&der).expect("certificate");
        store::trust::insert(&app.state.pool, &der, &info, "admin", app.state.now())
            .await
            .expect("trust");
    }

    // The empty form for vnu now: a Microsoft 365 gateway must be the only
    // gateway, so once one is saved Add New refuses the type (422).
    let new_form = Page {
        name: "m365-new",
        html: fetch(&app.client, &app, "/presence/gateways/new?type=graph", 200).await,
    };

    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;
    browser.goto(&app, "/presence/gateways").await;
    browser.wait_for_path("/presence/gateways").await;
    browser
        .click("a.button[href='/presence/gateways/new']")
        .await;
    browser.wait_for_text("Presence Gateway Type").await;
    browser.assert_shows("Microsoft 365 - Graph").await;
    browser.click("#type-graph").await;
    browser.click_button("Next").await;
    browser
        .wait_for_text("Add New Presence Gateway: Microsoft 365 - Graph")
        .await;
    browser.axe("m365-gateway-new", &mut problems).await;

    browser.type_into("#description", "Exchange Online").await;
    browser.type_into("#tenant", DOMAIN).await;
    browser.type_into("#client_id", CLIENT).await;
    browser.type_into("#client_secret", PASSWORD).await;
    browser.type_into("#confirm_client_secret", PASSWORD).await;
    browser
        .client
        .find(Locator::Css("#cloud"))
        .await
        .expect("Cloud")
        .select_by_value("custom")
        .await
        .expect("choose Custom");
    browser.type_into("#signin_url", &base).await;
    browser.type_into("#graph_url", &base).await;
    browser.type_into("#test_mailbox", MAILBOX).await;
    browser.click_button("Add New").await;
    browser.wait_for_text("Add successful.").await;
    browser.axe("m365-gateway-edit", &mut problems).await;
    let gateway = browser.path().await;
    assert_eq!(browser.value_of("#tenant").await, DOMAIN);
    assert_eq!(browser.value_of("#signin_url").await, base);
    assert_eq!(
        browser.value_of("#client_secret").await,
        "",
        "secrets are not shown again"
    );

    // Open it from Find and List, then run its troubleshooter.
    browser.goto(&app, "/presence/gateways").await;
    browser.wait_for_path("/presence/gateways").await;
    browser.assert_shows("Exchange Online").await;
    browser.axe("m365-gateways-list", &mut problems).await;
    browser.goto(&app, &gateway).await;
    browser.wait_for_path(&gateway).await;
    browser.click_button("Run Troubleshooter").await;
    browser.wait_for_text("Exchange authentication").await;
    assert_eq!(headline(&browser).await, "Verified");
    browser.assert_shows(MAILBOX).await;
    browser
        .axe("m365-troubleshooter-verified", &mut problems)
        .await;
    browser.close().await;

    let mut pages = vec![new_form];
    for (path, name) in [
        (gateway.clone(), "m365-edit"),
        ("/presence/gateways".to_owned(), "m365-list"),
    ] {
        pages.push(Page {
            name,
            html: fetch(&app.client, &app, &path, 200).await,
        });
    }
    let response = app.post_form(&format!("{gateway}/troubleshoot"), &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    pages.push(Page {
        name: "m365-troubleshooter-panel",
        html: response.text().await.expect("page"),
    });
    vnu(&tools, &pages, &mut problems).await;
    assert_no_problems(&problems);
}

/// System > Presence Redundancy Groups in a browser (CL-4): from the menu,
/// a group refused with the message beside Node 2, then saved with High
/// Availability; a failover (renewals as the engines make them) shows on
/// the list, Control Center and the home page; the group is deleted after
/// its confirmation page.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_redundancy_groups_flow() {
    use presence_gateway::store::redundancy;
    let _one = one_at_a_time();
    let tools = Tools::find();
    let app = TestApp::spawn().await;
    app.add_node("alice-node").await;
    app.add_node("bob-node").await;
    let browser = Browser::start(&tools).await;
    let mut problems = Vec::new();
    browser.sign_in(&app, ADMIN, ADMIN_PASSWORD, "/").await;

    let list = "/system/presence-redundancy-groups";
    browser.click(&format!("nav a[href='{list}']")).await;
    browser.wait_for_path(list).await;
    browser
        .assert_shows("No Presence Redundancy Group is configured")
        .await;
    browser.axe("redundancy-empty", &mut problems).await;
    browser.click(&format!("a[href='{list}/new']")).await;
    browser
        .wait_for_text("Add a Presence Redundancy Group")
        .await;
    browser.axe("redundancy-new", &mut problems).await;

    // The same node twice: refused beside Node 2.
    browser.type_into("#name", "Pair 1").await;
    browser.click("#node_a option[value='alice-node']").await;
    browser.click("#node_b option[value='alice-node']").await;
    browser.click("#high_availability").await;
    browser.click_button("Save").await;
    browser
        .wait_for_text("Choose a node other than the first")
        .await;
    browser.axe("redundancy-refused", &mut problems).await;
    browser.click("#node_b option[value='bob-node']").await;
    browser.type_into("#failover_after", "20").await;
    browser.click_button("Save").await;
    browser
        .wait_for_text("Save successful: Pair 1 pairs alice-node and bob-node")
        .await;
    browser.wait_for_path(list).await;
    browser.assert_shows("20 seconds").await;

    // bob-node falls silent; alice-node renews on.
    let pool = &app.state.pool;
    let now = app.state.now();
    for (node, at) in [
        ("alice-node", now),
        ("bob-node", now),
        ("alice-node", now + 15),
        ("alice-node", now + 21),
    ] {
        redundancy::renew(pool, node, at).await.expect("renew");
    }
    let said = "Failed over: bob-node's users are served by alice-node since";
    browser.goto(&app, list).await;
    browser.wait_for_text(said).await;
    browser.axe("redundancy-failed-over", &mut problems).await;
    browser.goto(&app, "/serviceability/control-center").await;
    browser.wait_for_text(said).await;
    browser
        .assert_shows(
            "Pair 1, with bob-node (High Availability enabled, Failover After 20 seconds)",
        )
        .await;
    browser
        .axe("control-center-failed-over", &mut problems)
        .await;
    browser.goto(&app, "/").await;
    browser.wait_for_text(said).await;

    browser.goto(&app, list).await;
    browser.click("a[href$='/delete']").await;
    browser
        .wait_for_text("You are about to delete the group")
        .await;
    browser.axe("redundancy-delete", &mut problems).await;
    browser.click_button("Delete").await;
    browser.wait_for_text("Delete successful").await;
    browser.close().await;

    // The Nu HTML Checker over each state of the pages.
    app.sign_in_admin().await;
    let id = redundancy::save(
        pool,
        None,
        &presence_gateway::domain::redundancy::GroupForm::parse(
            "Pair 2",
            "alice-node",
            "bob-node",
            true,
            "30",
        )
        .expect("form"),
        "admin",
        now + 30,
    )
    .await
    .expect("save");
    redundancy::renew(pool, "alice-node", now + 30)
        .await
        .expect("renew");
    redundancy::renew(pool, "alice-node", now + 50)
        .await
        .expect("renew");
    redundancy::renew(pool, "alice-node", now + 61)
        .await
        .expect("renew");
    let mut pages = Vec::new();
    for (name, path) in [
        ("redundancy-list", list.to_owned()),
        ("redundancy-new", format!("{list}/new")),
        ("redundancy-edit", format!("{list}/{id}")),
        ("redundancy-delete", format!("{list}/{id}/delete")),
        (
            "control-center",
            "/serviceability/control-center".to_owned(),
        ),
        ("home", "/".to_owned()),
    ] {
        pages.push(Page {
            name,
            html: fetch(&app.client, &app, &path, 200).await,
        });
    }
    let refused = app
        .post_form(
            &format!("{list}/new"),
            &[
                ("name", ""),
                ("node_a", "alice-node"),
                ("node_b", "alice-node"),
                ("failover_after", "5"),
            ],
        )
        .await;
    assert_eq!(refused.status().as_u16(), 422);
    pages.push(Page {
        name: "redundancy-refused",
        html: refused.text().await.expect("page body"),
    });
    vnu(&tools, &pages, &mut problems).await;

    assert_no_problems(&problems);
}
