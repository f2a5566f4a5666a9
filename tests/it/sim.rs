//! exchange-sim over a real port: the binary started as a person starts it,
//! spoken to over TLS with the CA it writes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The Microsoft 365 face.
mod graph;
/// The engine's Microsoft 365 reader against it.
mod graph_engine;
/// The Outbound Proxy between the troubleshooter and the Microsoft 365 face.
mod proxy;

pub(crate) const ACCOUNT: &str = "svc@example.com";
pub(crate) const PASSWORD: &str = "s3cret pass:word";
pub(crate) const PASSWORD_ENV: &str = "EXCHANGE_SIM_TEST_PASSWORD";
const MAILBOX: &str = "user@example.com";

/// A running exchange-sim, killed and reaped on drop.
pub(crate) struct SimProcess {
    child: Child,
    url: String,
    pub(crate) dir: TempDir,
    client: reqwest::Client,
}

impl SimProcess {
    /// Starts exchange-sim on port 0 with `args`, writing its CA into a fresh
    /// temporary directory, and waits (at most 30 s) for the listening line.
    pub(crate) fn start(args: &[&str]) -> SimProcess {
        Self::start_in(
            crate::support::private_tempdir().expect("temp dir"),
            args,
            true,
        )
    }

    fn start_in(dir: TempDir, args: &[&str], write_ca: bool) -> SimProcess {
        let mut command = Command::new(sim_binary());
        command
            .current_dir(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env(PASSWORD_ENV, PASSWORD)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if write_ca {
            command.arg("--write-ca").arg(dir.path().join("ca.pem"));
        }
        let mut child = command.spawn().expect("start exchange-sim");
        let stdout = child.stdout.take().expect("stdout");
        // Owned at once, so a failed start is still killed on drop.
        let mut process = SimProcess {
            child,
            url: String::new(),
            dir,
            // Replaced once the CA is written; trusts nothing until then.
            client: reqwest::Client::builder()
                .use_preconfigured_tls(crate::support::tls_config(rustls::RootCertStore::empty()))
                .build()
                .expect("client"),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("exchange-sim printed its listening line within 30 s");
        let url = line
            .strip_prefix("exchange-sim listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        process.url = url.to_owned();
        if write_ca {
            let ca = process.dir.path().join("ca.pem");
            process.client = client_trusting(&ca);
        }
        process
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub(crate) fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in URL")
    }

    async fn get_folder(&self, credentials: Option<(&str, &str)>, body: String) -> Answer {
        let mut request = self
            .client
            .post(self.url("/EWS/Exchange.asmx"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body);
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        Answer::read(request.send().await.expect("POST to exchange-sim")).await
    }

    async fn propfind(&self, path: &str) -> Answer {
        let method = reqwest::Method::from_bytes(b"PROPFIND").expect("method");
        let response = self
            .client
            .request(method, self.url(path))
            .header("Depth", "0")
            .header("Content-Type", "text/xml")
            .basic_auth(ACCOUNT, Some(PASSWORD))
            .body(PROPFIND_BODY)
            .send()
            .await
            .expect("PROPFIND to exchange-sim");
        Answer::read(response).await
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit status.
    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "exchange-sim did not stop within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The exchange-sim binary: cargo's, unless EXCHANGE_SIM_BIN names another
/// (a target directory shared by several checkouts holds whichever
/// checkout's exchange-sim was built last under that name).
fn sim_binary() -> PathBuf {
    std::env::var_os("EXCHANGE_SIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_exchange-sim")))
}

fn client_trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("CA written");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("CA is PEM")).expect("CA accepted");
    }
    assert!(!roots.is_empty(), "no certificate in {}", ca.display());
    reqwest::Client::builder()
        .use_preconfigured_tls(crate::support::tls_config(roots))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Answer {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn challenges(&self) -> Vec<String> {
        self.headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }
}

fn get_folder_request(impersonate: Option<&str>) -> String {
    let header = impersonate
        .map(|address| {
            format!(
                "<soap:Header><t:ExchangeImpersonation><t:ConnectingSID>\
                 <t:PrimarySmtpAddress>{address}</t:PrimarySmtpAddress>\
                 </t:ConnectingSID></t:ExchangeImpersonation></soap:Header>"
            )
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
    xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  {header}
  <soap:Body>
    <m:GetFolder>
      <m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>
      <m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds>
    </m:GetFolder>
  </soap:Body>
</soap:Envelope>"#
    )
}

const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:displayname/></D:prop></D:propfind>"#;

const RIGHT: Option<(&str, &str)> = Some((ACCOUNT, PASSWORD));

#[tokio::test]
async fn sim_ok_answers_getfolder_propfind_and_challenges_like_iis() {
    let sim = SimProcess::start(&[
        "--account",
        ACCOUNT,
        "--password-env",
        PASSWORD_ENV,
        "--calendar-folder",
        "Kalender",
        "--exchange-version",
        "15.2.1118.7",
    ]);

    // No credentials: the three IIS challenges.
    let answer = sim.get_folder(None, get_folder_request(None)).await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.challenges(),
        ["Negotiate", "NTLM", "Basic realm=\"localhost\""]
    );
    assert_eq!(answer.header("server"), "Microsoft-IIS/10.0");

    // A wrong password, then the account in another case with the right one.
    let answer = sim
        .get_folder(Some((ACCOUNT, "wrong")), get_folder_request(None))
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenges().len(), 3);
    let answer = sim
        .get_folder(
            Some(("SVC@Example.COM", PASSWORD)),
            get_folder_request(None),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The service account's own calendar.
    assert_eq!(answer.header("content-type"), "text/xml; charset=utf-8");
    assert!(
        answer.body.contains(r#"ResponseClass="Success""#),
        "{}",
        answer.body
    );
    assert!(
        answer
            .body
            .contains("<m:ResponseCode>NoError</m:ResponseCode>")
    );
    assert!(
        answer
            .body
            .contains("<t:DisplayName>Kalender</t:DisplayName>")
    );
    assert!(answer.body.contains("<t:TotalCount>"));
    assert!(answer.body.contains("<t:FolderId Id="));
    assert!(
        answer.body.contains(
            r#"ServerVersionInfo MajorVersion="15" MinorVersion="2" MajorBuildNumber="1118" MinorBuildNumber="7""#
        ),
        "{}",
        answer.body
    );

    // An impersonated mailbox's calendar.
    let answer = sim
        .get_folder(RIGHT, get_folder_request(Some(MAILBOX)))
        .await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains(r#"ResponseClass="Success""#));
    assert!(
        answer
            .body
            .contains("<t:DisplayName>Kalender</t:DisplayName>")
    );

    // Operations it does not know, and what is not SOAP at all.
    let answer = sim
        .get_folder(
            RIGHT,
            get_folder_request(None).replace("m:GetFolder>", "m:FindItem>"),
        )
        .await;
    assert_eq!(answer.status, 500);
    assert!(
        answer.body.contains("ErrorInvalidRequest"),
        "{}",
        answer.body
    );
    let answer = sim.get_folder(RIGHT, "<html>".to_owned()).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.contains("ErrorSchemaValidation"));

    // Wrong method, wrong path.
    let response = sim
        .client
        .get(sim.url("/EWS/Exchange.asmx"))
        .basic_auth(ACCOUNT, Some(PASSWORD))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 405);
    let response = sim.client.get(sim.url("/owa/")).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 404);

    // WebDAV: the localized folder name, in any case; another name is 404.
    let answer = sim.propfind("/exchange/user@example.com/Kalender/").await;
    assert_eq!(answer.status, 207, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("<a:displayname>Kalender</a:displayname>")
    );
    assert!(answer.body.contains("HTTP/1.1 200 OK"));
    assert_eq!(
        sim.propfind("/exchange/user@example.com/kalender")
            .await
            .status,
        207
    );
    assert_eq!(
        sim.propfind("/exchange/user@example.com/Calendar/")
            .await
            .status,
        404
    );

    // A 2 MiB body is refused, and the simulator carries on.
    let big = "x".repeat(2 * 1024 * 1024);
    let answer = sim.get_folder(RIGHT, big).await;
    assert_eq!(answer.status, 413);
    let answer = sim.get_folder(RIGHT, get_folder_request(None)).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn sim_behave_modes_answer_with_their_status() {
    let cases = [
        ("unauthorized", 401),
        ("forbidden", 403),
        ("not-found", 404),
        ("server-error", 503),
    ];
    let sims: Vec<_> = cases
        .iter()
        .map(|(behave, _)| SimProcess::start(&["--behave", behave]))
        .collect();
    for (sim, (behave, status)) in sims.iter().zip(cases) {
        // Without --account any Basic credentials do.
        let answer = sim
            .get_folder(Some(("anyone", "anything")), get_folder_request(None))
            .await;
        assert_eq!(answer.status, status, "EWS under --behave {behave}");
        assert_eq!(answer.header("x-exchange-sim-behave"), behave);
        let answer = sim.propfind("/exchange/user@example.com/Calendar/").await;
        assert_eq!(answer.status, status, "WebDAV under --behave {behave}");
        if status == 401 {
            assert_eq!(answer.challenges().len(), 3);
        }
    }
}

#[tokio::test]
async fn sim_fault_mode_sends_impersonation_denied_fault() {
    let sim = SimProcess::start(&["--behave", "fault"]);
    let answer = sim
        .get_folder(Some(("a", "b")), get_folder_request(Some(MAILBOX)))
        .await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.header("content-type"), "text/xml; charset=utf-8");
    assert!(answer.body.contains("<s:Fault>"), "{}", answer.body);
    assert!(
        answer
            .body
            .contains("a:ErrorImpersonateUserDenied</faultcode>")
    );
    assert!(
        answer
            .body
            .contains(">ErrorImpersonateUserDenied</e:ResponseCode>")
    );
    assert!(answer.body.contains("MessageText"));
}

#[tokio::test]
async fn sim_no_mailbox_mode_errors_only_without_impersonation() {
    let sim = SimProcess::start(&["--behave", "no-mailbox"]);
    // Even without --account, some credentials are needed.
    let answer = sim.get_folder(None, get_folder_request(None)).await;
    assert_eq!(answer.status, 401);

    let answer = sim
        .get_folder(Some(("svc", "pw")), get_folder_request(None))
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.body.contains(r#"ResponseClass="Error""#),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("ErrorNonExistentMailbox"));
    assert!(answer.body.contains("ServerVersionInfo"));

    let answer = sim
        .get_folder(Some(("svc", "pw")), get_folder_request(Some(MAILBOX)))
        .await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains(r#"ResponseClass="Success""#));
    assert!(
        answer
            .body
            .contains("<t:DisplayName>Calendar</t:DisplayName>")
    );
}

#[tokio::test]
async fn sim_latency_delays_concurrent_answers_and_sigterm_exits_0() {
    let sim = SimProcess::start(&["--latency-ms", "300"]);
    // Concurrent requests on separate connections; only that each is answered
    // is asserted, never how long it took.
    let request = || sim.get_folder(RIGHT, get_folder_request(None));
    let (a, b, c, d) = tokio::join!(request(), request(), request(), request());
    for answer in [a, b, c, d] {
        assert_eq!(answer.status, 200);
    }

    let status = sim.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test]
async fn sim_serves_the_given_certificate_and_key() {
    let dir = crate::support::private_tempdir().expect("temp dir");
    let (chain, key, ca) = test_chain(dir.path());
    let sim = SimProcess::start_in(
        dir,
        &[
            "--cert",
            chain.to_str().expect("path"),
            "--key",
            key.to_str().expect("path"),
        ],
        false,
    );
    let client = client_trusting(&ca);
    let response = client
        .post(sim.url("/EWS/Exchange.asmx"))
        .basic_auth("a", Some("b"))
        .body(get_folder_request(None))
        .send()
        .await
        .expect("the given chain is trusted through the test's own CA");
    assert_eq!(response.status().as_u16(), 200);
    // The simulator's generated CA is not what is served.
    assert!(!sim.dir.path().join("ca.pem").exists());
    assert!(sim.port() > 0);
}

/// A CA and a leaf for 127.0.0.1 signed by it: (chain.pem, key.pem, ca.pem).
fn test_chain(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sim test suite CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["exch1.example.com".to_owned()]).expect("params");
    leaf_params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let chain = dir.join("chain.pem");
    let key = dir.join("key.pem");
    let ca_path = dir.join("test-ca.pem");
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).expect("write chain");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("write key");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    (chain, key, ca_path)
}

#[test]
fn sim_help_explains_every_flag_and_the_check_example() {
    let output = Command::new(sim_binary())
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--name",
        "--cert",
        "--key",
        "--write-ca",
        "--account",
        "--password-env",
        "--behave",
        "--latency-ms",
        "--exchange-version",
        "--calendar-folder",
        "--no-basic",
        "--no-ntlm",
        "--extended-protection",
        "--tls-offload",
        "--ntlm-challenge",
        "--mailboxes",
        "--calendar",
        "--minute-ms",
        "--push-timeout-ms",
        "--max-subscriptions",
        "/sim/calendars",
        "/sim/faults",
        "/sim/stats",
        "/sim/status",
        "/sim/subscriptions/drop",
        "ErrorServerBusy",
        "BackOffMilliseconds",
        "ErrorInvalidSubscription",
        "presence-gateway check --type ews",
        "--graph-tenant",
        "--graph-domain",
        "--graph-client-id",
        "--graph-secret-env",
        "--graph-token-lifetime-secs",
        "--graph-forbidden",
        "--graph-deliver-to",
        "/sim/graph/faults",
        "/sim/graph/lifecycle",
        "/sim/graph/notify",
        "oauth2/v2.0/token",
        "getSchedule",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// Our GetUserAvailability request and parser against the simulator's
/// scripted calendars: a generated population, rows posted while it runs,
/// an unknown mailbox answered per mailbox, and the 100-mailbox limit.
#[tokio::test]
async fn sim_answers_getuseravailability_from_scripted_calendars() {
    use presence_gateway::domain::presence::{BusyType, Slot};
    use presence_gateway::exchange::availability;

    let sim = SimProcess::start(&[
        "--account",
        ACCOUNT,
        "--password-env",
        PASSWORD_ENV,
        "--mailboxes",
        "250",
    ]);
    let at = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .expect("time")
            .unix_timestamp()
    };
    let rows = "mailbox,start,end,busy_type\n\
                user00007@example.com,2030-01-15T09:00:00Z,2030-01-15T10:00:00Z,Busy\n\
                user00007@example.com,2030-01-15T09:30:00Z,2030-01-15T11:00:00Z,OOF\n";
    let loaded = sim
        .client
        .post(sim.url("/sim/calendars"))
        .body(rows)
        .send()
        .await
        .expect("POST rows");
    assert_eq!(loaded.status().as_u16(), 200);
    let bad = sim
        .client
        .post(sim.url("/sim/calendars"))
        .body("x@example.com,tomorrow,later,Busy")
        .send()
        .await
        .expect("POST rows");
    assert_eq!(bad.status().as_u16(), 400);

    let ask = |mailboxes: Vec<String>| {
        let refs: Vec<&str> = mailboxes.iter().map(String::as_str).collect();
        availability::request(
            &refs,
            at("2030-01-15T00:00:00Z"),
            at("2030-01-16T00:00:00Z"),
        )
        .expect("request")
    };
    let answer = sim
        .get_folder(
            Some((ACCOUNT, PASSWORD)),
            ask(vec![
                "user00007@example.com".to_owned(),
                "nobody@example.com".to_owned(),
                "user00008@example.com".to_owned(),
            ]),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let results = availability::parse(answer.body.as_bytes()).expect("parse");
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0].as_ref().expect("user00007"),
        &vec![
            Slot {
                start: at("2030-01-15T09:00:00Z"),
                end: at("2030-01-15T10:00:00Z"),
                busy: BusyType::Busy
            },
            Slot {
                start: at("2030-01-15T09:30:00Z"),
                end: at("2030-01-15T11:00:00Z"),
                busy: BusyType::OutOfOffice
            },
        ]
    );
    assert_eq!(
        results[1].as_ref().expect_err("nobody").code,
        "ErrorMailRecipientNotFound"
    );
    // Generated mailboxes have no meetings in 2030: known, empty.
    assert_eq!(results[2].as_ref().expect("user00008"), &Vec::<Slot>::new());

    // 101 mailboxes: our request refuses to build it, and the simulator
    // refuses it too, as Exchange does.
    let many: Vec<String> = (0..101)
        .map(|i| format!("user{i:05}@example.com"))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(availability::request(&refs, 0, 60).is_err());
    let hundred = availability::request(&refs[..100], 0, 60).expect("100 mailboxes");
    let too_many = hundred.replacen(
        "<t:MailboxData>",
        "<t:MailboxData><t:Email><t:Address>extra@example.com</t:Address></t:Email><t:AttendeeType>Required</t:AttendeeType><t:ExcludeConflicts>false</t:ExcludeConflicts></t:MailboxData><t:MailboxData>",
        1,
    );
    let answer = sim.get_folder(Some((ACCOUNT, PASSWORD)), too_many).await;
    assert_eq!(answer.status, 500);
    let why = availability::parse(answer.body.as_bytes()).expect_err("a fault");
    assert!(why.contains("101 mailboxes"), "{why}");
    let answer = sim.get_folder(Some((ACCOUNT, PASSWORD)), hundred).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        availability::parse(answer.body.as_bytes())
            .expect("parse")
            .len(),
        100
    );
}

/// An independent client: the exchangelib Python package (installed by the
/// test command) asks exchange-sim for free/busy in America/Los_Angeles;
/// the simulator must read its TimeZone and answer in local times, as
/// Exchange does, for exchangelib to see the meetings at the right instants.
#[test]
fn exchangelib_reads_availability_in_a_daylight_saving_zone() {
    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/exchangelib/availability.py"
    );
    let base = format!("https://localhost:{}", sim.port());
    let ca = sim.dir.path().join("ca.pem");
    let output = Command::new("python3")
        .arg(script)
        .arg(&base)
        .arg(&ca)
        .arg(ACCOUNT)
        .arg(PASSWORD)
        .output()
        .expect("python3 runs (the test command installs exchangelib)");
    assert!(
        output.status.success(),
        "exchangelib against exchange-sim failed (is exchangelib installed? scripts/test.sh \
         installs it):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---- Push subscriptions, faults on demand, /sim/stats -------------------

const CAROL: &str = "carol@example.com";
const TYPES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/types";

/// A Subscribe request for a push subscription on the calendar, as a
/// service account sends it: impersonating `impersonate` (or nobody), the
/// folder id naming `folder_mailbox` (or no mailbox).
fn subscribe_request(
    impersonate: Option<&str>,
    folder_mailbox: Option<&str>,
    frequency: &str,
    url: Option<&str>,
) -> String {
    let header = impersonate
        .map(|address| {
            format!(
                "<soap:Header><t:ExchangeImpersonation><t:ConnectingSID>\
                 <t:PrimarySmtpAddress>{address}</t:PrimarySmtpAddress>\
                 </t:ConnectingSID></t:ExchangeImpersonation></soap:Header>"
            )
        })
        .unwrap_or_default();
    let folder = match folder_mailbox {
        Some(m) => format!(
            "<t:DistinguishedFolderId Id=\"calendar\"><t:Mailbox><t:EmailAddress>{m}</t:EmailAddress>\
             </t:Mailbox></t:DistinguishedFolderId>"
        ),
        None => "<t:DistinguishedFolderId Id=\"calendar\"/>".to_owned(),
    };
    let url = url
        .map(|u| format!("<t:URL>{u}</t:URL>"))
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:t="{TYPES_NS}"
    xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  {header}
  <soap:Body>
    <m:Subscribe>
      <m:PushSubscriptionRequest>
        <t:FolderIds>{folder}</t:FolderIds>
        <t:EventTypes><t:EventType>CreatedEvent</t:EventType><t:EventType>ModifiedEvent</t:EventType><t:EventType>DeletedEvent</t:EventType></t:EventTypes>
        <t:StatusFrequency>{frequency}</t:StatusFrequency>
        {url}
      </m:PushSubscriptionRequest>
    </m:Subscribe>
  </soap:Body>
</soap:Envelope>"#
    )
}

fn unsubscribe_request(impersonate: &str, id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="{TYPES_NS}"
    xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header><t:ExchangeImpersonation><t:ConnectingSID>
    <t:PrimarySmtpAddress>{impersonate}</t:PrimarySmtpAddress>
  </t:ConnectingSID></t:ExchangeImpersonation></soap:Header>
  <soap:Body><m:Unsubscribe><m:SubscriptionId>{id}</m:SubscriptionId></m:Unsubscribe></soap:Body>
</soap:Envelope>"#
    )
}

/// The text between the first `open` and the next `close` in `text`.
fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text
        .find(open)
        .unwrap_or_else(|| panic!("{open} in {text}"))
        + open.len();
    let end = text[start..]
        .find(close)
        .unwrap_or_else(|| panic!("{close} in {text}"));
    &text[start..start + end]
}

/// Bounds every wait on the simulator or a notification.
const WAIT: Duration = Duration::from_secs(15);

/// A push subscriber on loopback: every POST's body goes to `notes`, and
/// is answered with a SendNotificationResult carrying `answer` (`OK`,
/// `Unsubscribe`), or HTTP 500 when `answer` is `500`.
struct Subscriber {
    url: String,
    notes: tokio::sync::mpsc::UnboundedReceiver<String>,
    answer: std::sync::Arc<std::sync::Mutex<&'static str>>,
}

impl Subscriber {
    async fn start() -> Subscriber {
        use http_body_util::BodyExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/presence/ews/token123",
            listener.local_addr().expect("addr")
        );
        let (tx, notes) = tokio::sync::mpsc::unbounded_channel();
        let answer = std::sync::Arc::new(std::sync::Mutex::new("OK"));
        let chosen = answer.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                let chosen = chosen.clone();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        let chosen = chosen.clone();
                        async move {
                            assert_eq!(request.uri().path(), "/presence/ews/token123");
                            let body = http_body_util::Limited::new(request.into_body(), 1 << 20)
                                .collect()
                                .await
                                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                                .unwrap_or_default();
                            let _ = tx.send(body);
                            let status = *chosen.lock().expect("answer");
                            let mut response = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(format!(
                                    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
                                 <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
                                 <SendNotificationResult xmlns=\"http://schemas.microsoft.com/exchange/services/2006/messages\">\
                                 <SubscriptionStatus>{status}</SubscriptionStatus></SendNotificationResult>\
                                 </soap:Body></soap:Envelope>"
                                )),
                            ));
                            if status == "500" {
                                *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
                );
            }
        });
        Subscriber { url, notes, answer }
    }

    fn answer_with(&self, status: &'static str) {
        *self.answer.lock().expect("answer") = status;
    }

    /// The next SendNotification, within WAIT.
    async fn next(&mut self) -> String {
        tokio::time::timeout(WAIT, self.notes.recv())
            .await
            .expect("a SendNotification within 15 s")
            .expect("the listener runs")
    }

    /// Nothing arrives for `quiet`.
    async fn nothing_for(&mut self, quiet: Duration) {
        if let Ok(Some(body)) = tokio::time::timeout(quiet, self.notes.recv()).await {
            panic!("expected silence, got {body}");
        }
    }
}

impl SimProcess {
    async fn ews(&self, body: String) -> Answer {
        self.get_folder(RIGHT, body).await
    }

    pub(crate) async fn control(
        &self,
        method: &str,
        path_and_query: &str,
        body: &str,
    ) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .client
            .request(method, self.url(path_and_query))
            // As curl -d sends it; /sim/calendars reads its rows all the same.
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .expect("the simulator's control answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn stats(&self) -> serde_json::Value {
        let (status, body) = self.control("GET", "/sim/stats", "").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("stats are JSON")
    }

    async fn subscription_ids(&self) -> Vec<String> {
        self.stats().await["subscriptions"]
            .as_array()
            .expect("subscriptions")
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits (at most WAIT) until the simulator no longer lists `id`.
    async fn until_gone(&self, id: &str) {
        let deadline = Instant::now() + WAIT;
        while self.subscription_ids().await.iter().any(|s| s == id) {
            assert!(Instant::now() < deadline, "subscription {id} still listed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Subscribes as `CAROL` and returns (SubscriptionId, Watermark).
    async fn subscribe(&self, url: &str, frequency: &str) -> (String, String) {
        let answer = self
            .ews(subscribe_request(Some(CAROL), None, frequency, Some(url)))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            answer
                .body
                .contains(r#"<m:SubscribeResponseMessage ResponseClass="Success">"#),
            "{}",
            answer.body
        );
        (
            between(&answer.body, "<m:SubscriptionId>", "</m:SubscriptionId>").to_owned(),
            between(&answer.body, "<m:Watermark>", "</m:Watermark>").to_owned(),
        )
    }
}

fn carol_row(hour: u32) -> String {
    format!(
        "{CAROL},2030-01-15T{hour:02}:00:00Z,2030-01-15T{:02}:00:00Z,Busy\n",
        hour + 1
    )
}

#[tokio::test]
async fn sim_push_subscribe_only_under_impersonation_and_validated_as_exchange() {
    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let (status, _) = sim
        .control("POST", "/sim/calendars", &format!("{CAROL},,,\n"))
        .await;
    assert_eq!(status, 200);
    let url = "http://127.0.0.1:9/presence/ews/x";
    let response_code = |answer: &Answer| between(&answer.body, "ResponseCode>", "<").to_owned();

    // The service account has no mailbox: its own calendar cannot be watched,
    // and naming Carol's mailbox in the folder id is delegate access.
    let answer = sim.ews(subscribe_request(None, None, "1", Some(url))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains(r#"ResponseClass="Error""#),
        "{}",
        answer.body
    );
    assert_eq!(response_code(&answer), "ErrorMissingEmailAddress");
    let answer = sim
        .ews(subscribe_request(None, Some(CAROL), "1", Some(url)))
        .await;
    assert_eq!(
        response_code(&answer),
        "ErrorSubscriptionDelegateAccessNotSupported"
    );
    // Impersonating Carol but naming someone else's calendar: delegate access too.
    let answer = sim
        .ews(subscribe_request(
            Some(CAROL),
            Some("dave@example.com"),
            "1",
            Some(url),
        ))
        .await;
    assert_eq!(
        response_code(&answer),
        "ErrorSubscriptionDelegateAccessNotSupported"
    );
    // Impersonating a mailbox that does not exist: a fault.
    let answer = sim
        .ews(subscribe_request(
            Some("nobody@example.com"),
            None,
            "1",
            Some(url),
        ))
        .await;
    assert_eq!(answer.status, 500);
    assert!(
        answer
            .body
            .contains(">ErrorNonExistentMailbox</e:ResponseCode>"),
        "{}",
        answer.body
    );

    // Schema: StatusFrequency 1-1440, a URL; then a URL the sim can call.
    for bad in ["0", "1441", "often", ""] {
        let answer = sim
            .ews(subscribe_request(Some(CAROL), None, bad, Some(url)))
            .await;
        assert_eq!(answer.status, 500, "StatusFrequency {bad:?}");
        assert!(
            answer.body.contains("a:ErrorSchemaValidation</faultcode>"),
            "{}",
            answer.body
        );
    }
    let answer = sim
        .ews(subscribe_request(Some(CAROL), None, "1", None))
        .await;
    assert_eq!(answer.status, 500);
    assert!(
        answer.body.contains("ErrorSchemaValidation"),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("no URL"), "{}", answer.body);
    let answer = sim
        .ews(subscribe_request(
            Some(CAROL),
            None,
            "1",
            Some("ftp://127.0.0.1/x"),
        ))
        .await;
    assert_eq!(response_code(&answer), "ErrorInvalidPushSubscriptionUrl");
    assert!(sim.subscription_ids().await.is_empty());

    // Impersonating Carol, on her calendar (named or not): accepted.
    let (id, watermark) = sim.subscribe(url, "1440").await;
    assert!(id.len() >= 40, "an unguessable id: {id}");
    assert!(!watermark.is_empty());
    let answer = sim
        .ews(subscribe_request(
            Some("CAROL@example.com"),
            Some(CAROL),
            "30",
            Some(url),
        ))
        .await;
    assert!(
        answer.body.contains(r#"ResponseClass="Success""#),
        "{}",
        answer.body
    );
    let other = between(&answer.body, "<m:SubscriptionId>", "</m:SubscriptionId>").to_owned();
    assert_ne!(id, other);
    let stats = sim.stats().await;
    let listed = stats["subscriptions"].as_array().expect("list");
    assert_eq!(listed.len(), 2, "{stats}");
    let ours = listed
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("listed");
    assert_eq!(ours["mailbox"], CAROL);
    assert_eq!(ours["url"], url);
    assert_eq!(ours["status_frequency"], 1440);
    assert_eq!(ours["kind"], "push");
    assert_eq!(stats["operations"]["Subscribe"], 12, "{stats}");

    // Unsubscribe does not end a push subscription, as in Exchange; an
    // unknown id is not found.
    let answer = sim.ews(unsubscribe_request(CAROL, &id)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(response_code(&answer), "ErrorInvalidSubscription");
    let answer = sim.ews(unsubscribe_request(CAROL, "bm90IGFuIGlk")).await;
    assert_eq!(response_code(&answer), "ErrorSubscriptionNotFound");
    assert_eq!(sim.subscription_ids().await.len(), 2);
}

#[tokio::test]
async fn sim_push_notifies_a_calendar_change_ok_keeps_unsubscribe_ends() {
    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let mut subscriber = Subscriber::start().await;
    sim.control("POST", "/sim/calendars", &format!("{CAROL},,,\n"))
        .await;
    let (id, watermark) = sim.subscribe(&subscriber.url, "1440").await;

    // A meeting appears: a CreatedEvent, from the subscription's watermark on.
    let (status, body) = sim.control("POST", "/sim/calendars", &carol_row(9)).await;
    assert_eq!((status, body.as_str()), (200, "1 calendars changed\n"));
    let note = subscriber.next().await;
    assert!(note.contains("<m:SendNotification "), "{note}");
    assert!(note.contains(r#"<m:SendNotificationResponseMessage ResponseClass="Success">"#));
    assert_eq!(between(&note, "<t:SubscriptionId>", "<"), id);
    assert_eq!(between(&note, "<t:PreviousWatermark>", "<"), watermark);
    assert!(note.contains("<t:MoreEvents>false</t:MoreEvents>"));
    let created = between(&note, "<t:CreatedEvent>", "</t:CreatedEvent>");
    assert!(created.contains("<t:TimeStamp>"), "{created}");
    assert!(created.contains("<t:ItemId Id="), "{created}");
    assert!(created.contains("<t:ParentFolderId Id="), "{created}");
    let first_watermark = between(created, "<t:Watermark>", "<").to_owned();
    assert_ne!(first_watermark, watermark);

    // Answered OK: kept, and the next change is a ModifiedEvent.
    sim.control("POST", "/sim/calendars", &(carol_row(9) + &carol_row(13)))
        .await;
    let note = subscriber.next().await;
    assert_eq!(
        between(&note, "<t:PreviousWatermark>", "<"),
        first_watermark
    );
    assert!(note.contains("<t:ModifiedEvent>"), "{note}");
    assert_eq!(sim.subscription_ids().await, vec![id.clone()]);
    let stats = sim.stats().await;
    assert_eq!(stats["subscriptions"][0]["delivered"], 2, "{stats}");

    // Another mailbox's change is not Carol's subscriber's business.
    sim.control("POST", "/sim/calendars", "dave@example.com,,,\n")
        .await;

    // The calendar emptied: a DeletedEvent, answered Unsubscribe: gone.
    subscriber.answer_with("Unsubscribe");
    let (status, _) = sim
        .control("DELETE", &format!("/sim/calendars?mailbox={CAROL}"), "")
        .await;
    assert_eq!(status, 200);
    let note = subscriber.next().await;
    assert!(note.contains("<t:DeletedEvent>"), "{note}");
    sim.until_gone(&id).await;
    sim.control("POST", "/sim/calendars", &carol_row(9)).await;
    subscriber.nothing_for(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn sim_push_status_events_every_minute_ms_and_lost_subscriptions() {
    // A simulated minute of 300 ms: StatusFrequency 1 is a status every 300 ms.
    let sim = SimProcess::start(&[
        "--account",
        ACCOUNT,
        "--password-env",
        PASSWORD_ENV,
        "--minute-ms",
        "300",
        "--push-timeout-ms",
        "300",
    ]);
    let mut subscriber = Subscriber::start().await;
    sim.control("POST", "/sim/calendars", &format!("{CAROL},,,\n"))
        .await;
    let (id, watermark) = sim.subscribe(&subscriber.url, "1").await;

    // Status events on their own, each watermark following the last.
    let first = subscriber.next().await;
    let status = between(&first, "<t:StatusEvent>", "</t:StatusEvent>");
    assert_eq!(between(&first, "<t:PreviousWatermark>", "<"), watermark);
    let first_watermark = between(status, "<t:Watermark>", "<").to_owned();
    let second = subscriber.next().await;
    assert!(second.contains("<t:StatusEvent>"), "{second}");
    assert_eq!(
        between(&second, "<t:PreviousWatermark>", "<"),
        first_watermark
    );

    // Dropped silently: listed no more, and nothing more arrives.
    let (status, body) = sim
        .control(
            "POST",
            &format!("/sim/subscriptions/drop?mailbox={CAROL}"),
            "",
        )
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"dropped":1}"#));
    assert!(sim.subscription_ids().await.is_empty());
    // A notification already on its way may still land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while subscriber.notes.try_recv().is_ok() {}
    subscriber.nothing_for(Duration::from_millis(1200)).await;
    let (status, _) = sim.control("POST", "/sim/subscriptions/drop", "").await;
    assert_eq!(status, 400);
    assert_ne!(id, "");

    // A subscriber that answers 500, or never answers, is tried three
    // times, then its subscription is dropped.
    subscriber.answer_with("500");
    let (failing, _) = sim.subscribe(&subscriber.url, "1440").await;
    let (status, body) = sim.control("POST", "/sim/status", "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"asked":1}"#));
    for _ in 0..3 {
        subscriber.next().await;
    }
    sim.until_gone(&failing).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("http://{}/x", silent.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        // Accepts and holds connections without a word.
        let mut connections = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            connections.push(tcp);
        }
    });
    let (mute, _) = sim.subscribe(&silent_url, "1440").await;
    sim.control("POST", &format!("/sim/status?mailbox={CAROL}"), "")
        .await;
    sim.until_gone(&mute).await;
    held.abort();
}

#[tokio::test]
async fn sim_faults_on_demand_server_busy_back_off_and_503_with_stats() {
    use presence_gateway::exchange::availability;

    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    sim.control("POST", "/sim/calendars", &carol_row(9)).await;
    let ask = || availability::request(&[CAROL], 1_894_665_600, 1_894_752_000).expect("request");

    // The next two GetUserAvailability requests: ErrorServerBusy with its back-off.
    let (status, body) = sim
        .control(
            "POST",
            "/sim/faults",
            "kind=server-busy&count=2&back_off_ms=1500",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""remaining":2"#), "{body}");
    // Only GetUserAvailability is affected by default.
    assert_eq!(sim.ews(get_folder_request(Some(CAROL))).await.status, 200);
    for _ in 0..2 {
        let answer = sim.ews(ask()).await;
        assert_eq!(answer.status, 500);
        assert!(
            answer.body.contains("a:ErrorServerBusy</faultcode>"),
            "{}",
            answer.body
        );
        assert!(
            answer
                .body
                .contains(r#"<t:Value Name="BackOffMilliseconds">1500</t:Value>"#),
            "{}",
            answer.body
        );
        let why = availability::parse(answer.body.as_bytes()).expect_err("a fault");
        assert!(why.starts_with("ErrorServerBusy"), "{why}");
    }
    let answer = sim.ews(ask()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        availability::parse(answer.body.as_bytes()).expect("parse")[0]
            .as_ref()
            .expect("carol")
            .len(),
        1
    );

    // The per-mailbox form, as our parser reads a back-off.
    sim.control(
        "POST",
        "/sim/faults?kind=server-busy&shape=mailbox&back_off_ms=2500",
        "",
    )
    .await;
    let answer = sim.ews(ask()).await;
    assert_eq!(answer.status, 200);
    let results = availability::parse(answer.body.as_bytes()).expect("parse");
    let busy = results[0].as_ref().expect_err("busy");
    assert_eq!(
        (busy.code.as_str(), busy.back_off_ms),
        ("ErrorServerBusy", Some(2500))
    );

    // 503 for every EWS request during 400 ms, then answers again.
    let (status, _) = sim
        .control(
            "POST",
            "/sim/faults?kind=http-503&for_ms=400&operation=any",
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sim.ews(ask()).await.status, 503);
    assert_eq!(sim.ews(get_folder_request(Some(CAROL))).await.status, 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.ews(ask()).await.status, 200);

    // A 500 cleared before it was used.
    sim.control("POST", "/sim/faults?kind=http-500&count=5", "")
        .await;
    assert_eq!(sim.ews(ask()).await.status, 500);
    let (status, _) = sim.control("DELETE", "/sim/faults", "").await;
    assert_eq!(status, 200);
    assert_eq!(sim.ews(ask()).await.status, 200);
    let (status, _) = sim.control("POST", "/sim/faults?kind=sometimes", "").await;
    assert_eq!(status, 400);

    // What reached the simulator, in order, with the fault that answered.
    let stats = sim.stats().await;
    let requests = stats["availability_requests"].as_array().expect("list");
    let faults: Vec<Option<&str>> = requests.iter().map(|r| r["fault"].as_str()).collect();
    assert_eq!(
        faults,
        [
            Some("ErrorServerBusy"),
            Some("ErrorServerBusy"),
            None,
            Some("ErrorServerBusy"),
            Some("http-503"),
            None,
            Some("http-500"),
            None,
        ],
        "{stats}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r["mailboxes"] == serde_json::json!([CAROL]))
    );
    let times: Vec<u64> = requests
        .iter()
        .filter_map(|r| r["at_unix_ms"].as_u64())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // The 503 period: the request after it came at least 400 ms after the first 503.
    assert!(times[5] >= times[4] + 400, "{times:?}");
    assert_eq!(stats["operations"]["GetUserAvailability"], 8);
    assert_eq!(stats["operations"]["GetFolder"], 2);
    assert_eq!(stats["fault"], serde_json::Value::Null);
}

/// An independent client for push: exchangelib subscribes to an
/// impersonated mailbox's calendar, parses the simulator's SendNotification
/// with its own parser and answers with its own OK and Unsubscribe payloads
/// (tests/exchangelib/push.py).
#[test]
fn exchangelib_subscribes_to_push_and_parses_sendnotification() {
    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/exchangelib/push.py");
    let base = format!("https://localhost:{}", sim.port());
    let ca = sim.dir.path().join("ca.pem");
    let output = Command::new("timeout")
        .arg("120")
        .arg("python3")
        .arg(script)
        .arg(&base)
        .arg(&ca)
        .arg(ACCOUNT)
        .arg(PASSWORD)
        .output()
        .expect("python3 runs (the test command installs exchangelib)");
    assert!(
        output.status.success(),
        "exchangelib push against exchange-sim failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn sim_push_subscriptions_are_bounded_by_max_subscriptions() {
    let sim = SimProcess::start(&[
        "--account",
        ACCOUNT,
        "--password-env",
        PASSWORD_ENV,
        "--max-subscriptions",
        "1",
    ]);
    sim.control("POST", "/sim/calendars", &format!("{CAROL},,,\n"))
        .await;
    let url = "http://127.0.0.1:9/x";
    let (id, _) = sim.subscribe(url, "5").await;
    let answer = sim
        .ews(subscribe_request(Some(CAROL), None, "5", Some(url)))
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .body
            .contains("<m:ResponseCode>ErrorExceededSubscriptionCount</m:ResponseCode>"),
        "{}",
        answer.body
    );
    // Room again once the first is gone (ids are base64: encoded here).
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let (status, body) = sim
        .control("POST", &format!("/sim/subscriptions/drop?id={id}"), "")
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"dropped":1}"#));
    sim.subscribe(url, "5").await;
}
