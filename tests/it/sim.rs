//! exchange-sim over a real port: the binary started as a person starts it,
//! spoken to over TLS with the CA it writes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

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
        Self::start_in(tempfile::tempdir().expect("temp dir"), args, true)
    }

    fn start_in(dir: TempDir, args: &[&str], write_ca: bool) -> SimProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_exchange-sim"));
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
    let dir = tempfile::tempdir().expect("temp dir");
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
    let output = Command::new(env!("CARGO_BIN_EXE_exchange-sim"))
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
        "/sim/calendars",
        "presence-gateway check --type ews",
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
