//! The troubleshooter against live TLS servers on loopback (TS-1..TS-5):
//! a table of scenarios, each with its own rcgen certificates and a small
//! TLS server that answers one canned HTTP response and records whether
//! credentials reached it. Then `presence-gateway check` as a process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use presence_gateway::domain::gateway::{GatewayKind, ServerLocation};
use presence_gateway::troubleshoot::{self, AuthMode, Credentials, Report, Status, Target};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DAY: i64 = 86_400;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn at(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).expect("time")
}

// ------------------------------------------------------------ certificates

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

fn ca_params(cn: &str, not_before: i64, not_after: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example Test");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = at(not_before);
    params.not_after = at(not_after);
    params
}

fn root(cn: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let cert = ca_params(cn, now() - 400 * DAY, now() + 3000 * DAY)
        .self_signed(&key)
        .expect("root");
    Ca { cert, key }
}

fn intermediate(cn: &str, parent: &Ca) -> Ca {
    let key = KeyPair::generate().expect("key");
    let cert = ca_params(cn, now() - 300 * DAY, now() + 2000 * DAY)
        .signed_by(&key, &parent.cert, &parent.key)
        .expect("intermediate");
    Ca { cert, key }
}

struct LeafSpec {
    cn: Option<&'static str>,
    dns: Vec<&'static str>,
    ips: Vec<IpAddr>,
    not_before: i64,
    not_after: i64,
    is_ca: bool,
    client_auth_only: bool,
}

impl LeafSpec {
    fn named(cn: &'static str) -> LeafSpec {
        LeafSpec {
            cn: Some(cn),
            dns: vec![cn],
            ips: Vec::new(),
            not_before: now() - 10 * DAY,
            not_after: now() + 365 * DAY,
            is_ca: false,
            client_auth_only: false,
        }
    }

    fn cn_only(cn: &'static str) -> LeafSpec {
        LeafSpec {
            dns: Vec::new(),
            ..LeafSpec::named(cn)
        }
    }
}

struct Leaf {
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn leaf(spec: LeafSpec, issuer: Option<&Ca>) -> Leaf {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    if let Some(cn) = spec.cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.subject_alt_names = spec
        .dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().expect("dns SAN")))
        .chain(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)))
        .collect();
    params.not_before = at(spec.not_before);
    params.not_after = at(spec.not_after);
    if spec.is_ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params.extended_key_usages = if spec.client_auth_only {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ServerAuth]
    };
    let cert = match issuer {
        Some(ca) => params.signed_by(&key, &ca.cert, &ca.key),
        None => params.self_signed(&key),
    }
    .expect("leaf");
    Leaf {
        der: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

// ------------------------------------------------------------- TLS server

/// What a test server does once a TLS client connects.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Answer {
    fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    fn ews_ok() -> Answer {
        Answer {
            status: 200,
            headers: vec![("Content-Type", "text/xml; charset=utf-8".to_owned())],
            body: EWS_OK.to_owned(),
        }
    }
}

const EWS_OK: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6"
      xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/>
  </s:Header>
  <s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
    <m:GetFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
        xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
      <m:ResponseMessages>
        <m:GetFolderResponseMessage ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>
          <m:Folders>
            <t:CalendarFolder>
              <t:FolderId Id="AAMkAD" ChangeKey="AgAAAB"/>
              <t:DisplayName>Calendar</t:DisplayName>
            </t:CalendarFolder>
          </m:Folders>
        </m:GetFolderResponseMessage>
      </m:ResponseMessages>
    </m:GetFolderResponse>
  </s:Body>
</s:Envelope>"#;

const EWS_NO_MAILBOX: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Body>
    <m:GetFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
      <m:ResponseMessages>
        <m:GetFolderResponseMessage ResponseClass="Error">
          <m:MessageText>No mailbox with such guid.</m:MessageText>
          <m:ResponseCode>ErrorNonExistentMailbox</m:ResponseCode>
          <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
        </m:GetFolderResponseMessage>
      </m:ResponseMessages>
    </m:GetFolderResponse>
  </s:Body>
</s:Envelope>"#;

const EWS_FAULT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Body>
    <s:Fault>
      <faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorImpersonateUserDenied</faultcode>
      <faultstring xml:lang="en-US">The account does not have permission to impersonate the requested user.</faultstring>
      <detail>
        <e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorImpersonateUserDenied</e:ResponseCode>
        <e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The account does not have permission to impersonate the requested user.</e:Message>
      </detail>
    </s:Fault>
  </s:Body>
</s:Envelope>"#;

enum ServerKind {
    Tls {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        answer: Answer,
    },
    /// Speaks plain HTTP: no TLS at all.
    PlainHttp,
    /// Accepts and never says anything.
    Silent,
}

struct TestServer {
    addr: SocketAddr,
    credentials_seen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(kind: ServerKind) -> TestServer {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicBool::new(false));
    let credentials_seen = seen.clone();
    let acceptor = match &kind {
        ServerKind::Tls { chain, key, .. } => {
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .expect("server certificate");
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
        _ => None,
    };
    let answer = match &kind {
        ServerKind::Tls { answer, .. } => Some(answer.clone()),
        _ => None,
    };
    let plain = matches!(kind, ServerKind::PlainHttp);
    let task = tokio::spawn(async move {
        // At most a few connections per scenario.
        for _ in 0..16 {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let answer = answer.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                if plain {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
                let (Some(acceptor), Some(answer)) = (acceptor, answer) else {
                    // Silent: hold the connection open, say nothing.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(tcp);
                    return;
                };
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // Like IIS: a request without credentials gets the challenge
                // on a kept-alive connection; one with them, the answer.
                for _ in 0..4 {
                    let Some(authorized) = read_request(&mut tls).await else {
                        return;
                    };
                    if !authorized {
                        let challenge = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\
                             WWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM\r\n\
                             WWW-Authenticate: Basic realm=\"exch1.example.com\"\r\n\r\n";
                        if tls.write_all(challenge.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    seen.store(true, Ordering::SeqCst);
                    let mut response = format!(
                        "HTTP/1.1 {} Test\r\nContent-Length: {}\r\nConnection: close\r\n",
                        answer.status,
                        answer.body.len()
                    );
                    for (name, value) in &answer.headers {
                        response.push_str(&format!("{name}: {value}\r\n"));
                    }
                    response.push_str("\r\n");
                    response.push_str(&answer.body);
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                    return;
                }
            });
        }
    });
    TestServer {
        addr,
        credentials_seen,
        task,
    }
}

/// Reads one HTTP request (head and Content-Length body, at most 256 KiB,
/// 5 s per read); returns whether it carried credentials, None at the end.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<bool> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while request.len() < 256 * 1024 {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buf[..n]),
            _ => return None,
        }
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return Some(head.contains("\r\nauthorization:"));
            }
        }
    }
    None
}

fn tls(chain: Vec<CertificateDer<'static>>, leaf: &Leaf, answer: Answer) -> ServerKind {
    ServerKind::Tls {
        chain,
        key: leaf.key.clone_key(),
        answer,
    }
}

// ------------------------------------------------------------- running

struct Run {
    host: &'static str,
    trust: Vec<CertificateDer<'static>>,
    dns: bool,
    credentials: bool,
    mailbox: Option<&'static str>,
    timeout: Duration,
}

impl Run {
    fn host(host: &'static str, trust: Vec<CertificateDer<'static>>) -> Run {
        Run {
            host,
            trust,
            dns: true,
            credentials: true,
            mailbox: None,
            timeout: Duration::from_secs(3),
        }
    }
}

async fn check(server: &TestServer, run: Run) -> Report {
    let host = ServerLocation::parse(run.host).expect("host");
    let connect = if host.is_ip() {
        None
    } else {
        Some(server.addr.ip())
    };
    let target = Target {
        kind: GatewayKind::Ews,
        host,
        port: server.addr.port(),
        connect,
        dns_configured: run.dns,
        trust: run.trust,
        credentials: run.credentials.then(|| Credentials {
            account: "svc@example.com".to_owned(),
            password: SecretString::from("Sim-Pa55word".to_owned()),
        }),
        mailbox: run.mailbox.map(str::to_owned),
        calendar_folder: "Calendar".to_owned(),
        auth: AuthMode::Basic,
        timeout: run.timeout,
        now: now(),
        proxy: None,
    };
    troubleshoot::run(&target).await
}

/// "tcp=pass tls=pass chain=fail ..." for the checks named.
fn statuses(report: &Report) -> String {
    report
        .checks
        .iter()
        .map(|c| format!("{}={}", c.id, c.status.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn get<'a>(report: &'a Report, id: &str) -> &'a troubleshoot::Check {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no {id} check"))
}

fn expect(report: &Report, wanted: &str, headline: &str) {
    let got = statuses(report);
    for part in wanted.split_whitespace() {
        assert!(
            got.contains(part),
            "wanted {part} in [{got}]\n{}",
            report.to_text()
        );
    }
    assert_eq!(report.verdict, headline, "{}", report.to_text());
    let ids: Vec<&str> = report.checks.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        ["dns", "tcp", "tls", "chain", "validity", "name", "auth"],
        "all seven, in order"
    );
    assert_eq!(
        report.ok,
        !report.checks.iter().any(|c| c.status == Status::Fail)
    );
}

fn detail<'a>(report: &'a Report, id: &str) -> &'a str {
    &get(report, id).detail
}

const ALL_GOOD: &str = "dns=skip tcp=pass tls=pass chain=pass validity=pass name=pass auth=pass";

// ------------------------------------------------------------- scenarios

#[tokio::test]
async fn valid_chain_with_root_in_the_store_authenticates() {
    let root = root("Example Root CA");
    let inter = intermediate("Example Issuing CA", &root);
    let leaf = leaf(LeafSpec::named("exch1.example.com"), Some(&inter));
    let server = serve(tls(
        vec![leaf.der.clone(), inter.der()],
        &leaf,
        Answer::ews_ok(),
    ))
    .await;
    let report = check(&server, Run::host("exch1.example.com", vec![root.der()])).await;
    expect(&report, ALL_GOOD, "Verified");
    assert!(report.ok);
    assert_eq!(report.matched_name.as_deref(), Some("exch1.example.com"));
    assert_eq!(report.address, Some(server.addr));
    assert!(server.credentials_seen.load(Ordering::SeqCst));
    assert!(detail(&report, "chain").contains("Revocation is not checked"));
    assert!(
        detail(&report, "auth").contains("Exchange 2016"),
        "{}",
        detail(&report, "auth")
    );
    assert!(
        detail(&report, "auth").contains("Schemes offered: Negotiate, NTLM, Basic."),
        "{}",
        detail(&report, "auth")
    );
    let statuses: Vec<&str> = report.chain.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(statuses, ["presented", "presented", "trusted"]);
    let json = report.to_json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["checks"].as_array().map(Vec::len), Some(7));
    assert_eq!(json["chain"][0]["sha256"].as_str().map(str::len), Some(64));
}

#[tokio::test]
async fn leaf_only_names_the_missing_intermediate() {
    let root = root("Example Root CA");
    let inter = intermediate("Example Issuing CA", &root);
    let leaf = leaf(LeafSpec::named("exch1.example.com"), Some(&inter));
    let server = serve(tls(vec![leaf.der.clone()], &leaf, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![root.der()])).await;
    expect(
        &report,
        "chain=fail validity=pass name=pass auth=skip",
        "Failed - Certificate Missing From Chain",
    );
    assert!(
        detail(&report, "chain").contains("Example Issuing CA"),
        "{}",
        detail(&report, "chain")
    );
    assert!(
        report
            .chain
            .iter()
            .any(|e| e.status.as_str() == "missing" && e.subject.contains("Example Issuing CA"))
    );
    assert!(
        !server.credentials_seen.load(Ordering::SeqCst),
        "no credentials to an unverified server"
    );
    assert!(detail(&report, "auth").contains("only sent"));
}

#[tokio::test]
async fn an_intermediate_in_the_store_is_an_anchor() {
    let root = root("Example Root CA");
    let inter = intermediate("Example Issuing CA", &root);
    let leaf = leaf(LeafSpec::named("exch1.example.com"), Some(&inter));
    let server = serve(tls(vec![leaf.der.clone()], &leaf, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![inter.der()])).await;
    expect(&report, ALL_GOOD, "Verified");
}

#[tokio::test]
async fn a_self_signed_leaf_in_the_store_is_its_own_anchor() {
    let leaf = leaf(LeafSpec::named("exch1.example.com"), None);
    let server = serve(tls(vec![leaf.der.clone()], &leaf, Answer::ews_ok())).await;
    let report = check(
        &server,
        Run::host("exch1.example.com", vec![leaf.der.clone()]),
    )
    .await;
    expect(&report, ALL_GOOD, "Verified");
    // Not in the store: the chain ends at it.
    let report = check(&server, Run::host("exch1.example.com", Vec::new())).await;
    expect(
        &report,
        "chain=fail auth=skip",
        "Failed - Certificate Missing From Chain",
    );
}

#[tokio::test]
async fn a_root_sent_by_the_server_but_not_trusted_is_missing() {
    let root = root("Example Root CA");
    let other = root_named("Other Root CA");
    let leaf = leaf(LeafSpec::named("exch1.example.com"), Some(&root));
    let server = serve(tls(
        vec![leaf.der.clone(), root.der()],
        &leaf,
        Answer::ews_ok(),
    ))
    .await;
    let report = check(&server, Run::host("exch1.example.com", vec![other.der()])).await;
    expect(
        &report,
        "chain=fail",
        "Failed - Certificate Missing From Chain",
    );
    assert!(detail(&report, "chain").contains("Example Root CA"));
}

fn root_named(cn: &str) -> Ca {
    root(cn)
}

#[tokio::test]
async fn a_regenerated_issuer_with_the_same_subject_is_bad_certificates() {
    let old = root("Exchange Self-Signed Root");
    let new = root("Exchange Self-Signed Root");
    let leaf = leaf(LeafSpec::named("exch1.example.com"), Some(&new));
    let server = serve(tls(vec![leaf.der.clone()], &leaf, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![old.der()])).await;
    expect(&report, "chain=fail auth=skip", "Failed - Bad Certificates");
    assert!(report.chain.iter().any(|e| e.status.as_str() == "bad"));
    assert!(detail(&report, "chain").contains("regenerated"));
}

#[tokio::test]
async fn a_regenerated_self_signed_server_certificate_is_bad_certificates() {
    let old = leaf(LeafSpec::named("exch1.example.com"), None);
    let new = leaf(LeafSpec::named("exch1.example.com"), None);
    let server = serve(tls(vec![new.der.clone()], &new, Answer::ews_ok())).await;
    let report = check(
        &server,
        Run::host("exch1.example.com", vec![old.der.clone()]),
    )
    .await;
    expect(&report, "chain=fail", "Failed - Bad Certificates");
}

#[tokio::test]
async fn names_cn_san_and_wildcards() {
    let root = root("Example Root CA");
    let cases: Vec<(LeafSpec, &str, &str, Option<&str>)> = vec![
        // (certificate, Presence Gateway, name status + verdict, matched name)
        (
            LeafSpec::cn_only("exch1.example.com"),
            "EXCH1.example.com",
            "Verified",
            Some("exch1.example.com"),
        ),
        (
            LeafSpec::cn_only("exch1.example.com"),
            "exch2.example.com",
            "Failed - Subject CN Mismatch",
            None,
        ),
        (
            LeafSpec {
                cn: Some("legacy-name"),
                dns: vec!["exch1.example.com"],
                ..LeafSpec::named("x")
            },
            "exch1.example.com",
            "Verified",
            Some("exch1.example.com"),
        ),
        (
            LeafSpec::named("exch1.example.com"),
            "exch9.example.com",
            "Failed - SAN Mismatch",
            None,
        ),
        (
            LeafSpec {
                cn: Some("*.cup.example.com"),
                dns: vec!["*.cup.example.com"],
                ..LeafSpec::named("x")
            },
            "exch1.cup.example.com",
            "Verified",
            Some("*.cup.example.com"),
        ),
        (
            LeafSpec {
                cn: Some("*.cup.example.com"),
                dns: vec!["*.cup.example.com"],
                ..LeafSpec::named("x")
            },
            "cup.example.com",
            "Failed - SAN Mismatch",
            None,
        ),
        (
            LeafSpec {
                cn: Some("*.cup.example.com"),
                dns: vec!["*.cup.example.com"],
                ..LeafSpec::named("x")
            },
            "a.exch1.cup.example.com",
            "Failed - SAN Mismatch",
            None,
        ),
        (
            LeafSpec {
                cn: Some("ex*.example.com"),
                dns: vec!["ex*.example.com"],
                ..LeafSpec::named("x")
            },
            "exch1.example.com",
            "Failed - SAN Mismatch",
            None,
        ),
    ];
    for (spec, host, verdict, matched) in cases {
        let leaf = leaf(spec, Some(&root));
        let server = serve(tls(vec![leaf.der.clone()], &leaf, Answer::ews_ok())).await;
        let report = check(&server, Run::host(host, vec![root.der()])).await;
        let name = get(&report, "name");
        assert_eq!(name.verdict, verdict, "{host}: {}", name.detail);
        assert_eq!(report.matched_name.as_deref(), matched, "{host}");
        if verdict == "Verified" {
            expect(&report, ALL_GOOD, "Verified");
        } else {
            expect(&report, "chain=pass name=fail auth=skip", verdict);
            assert!(!server.credentials_seen.load(Ordering::SeqCst));
        }
        if host == "exch1.example.com" && verdict != "Verified" {
            assert!(
                name.detail.to_lowercase().contains("unsupported"),
                "{}",
                name.detail
            );
        }
    }
}

#[tokio::test]
async fn ip_addresses_and_dns_off() {
    let root = root("Example Root CA");
    // DNS off, an IPv4 address as Presence Gateway and as the CN: verified.
    let by_ip = leaf(
        LeafSpec {
            cn: Some("127.0.0.1"),
            dns: vec![],
            ..LeafSpec::named("x")
        },
        Some(&root),
    );
    let server = serve(tls(vec![by_ip.der.clone()], &by_ip, Answer::ews_ok())).await;
    let mut run = Run::host("127.0.0.1", vec![root.der()]);
    run.dns = false;
    let report = check(&server, run).await;
    expect(&report, ALL_GOOD, "Verified");
    assert_eq!(report.matched_name.as_deref(), Some("127.0.0.1"));

    // DNS off, a host name: refused by name, with advice.
    let named = leaf(LeafSpec::cn_only("exch1.example.com"), Some(&root));
    let server = serve(tls(vec![named.der.clone()], &named, Answer::ews_ok())).await;
    let mut run = Run::host("exch1.example.com", vec![root.der()]);
    run.dns = false;
    let report = check(&server, run).await;
    expect(
        &report,
        "name=fail auth=skip",
        "Failed - Subject CN Mismatch",
    );
    assert!(
        detail(&report, "name").contains("IP address"),
        "{}",
        detail(&report, "name")
    );

    // IPv6 in a SAN (served on IPv4 loopback, dialled by address).
    let v6: IpAddr = "2001:db8::10".parse().expect("v6");
    let six = leaf(
        LeafSpec {
            cn: Some("exch6"),
            dns: vec![],
            ips: vec![v6],
            ..LeafSpec::named("x")
        },
        Some(&root),
    );
    let server = serve(tls(vec![six.der.clone()], &six, Answer::ews_ok())).await;
    let report = check_connect(&server, "2001:db8::10", vec![root.der()]).await;
    assert_eq!(
        get(&report, "name").verdict,
        "Verified",
        "{}",
        report.to_text()
    );
    assert_eq!(report.matched_name.as_deref(), Some("2001:db8::10"));
}

/// Runs against an IP Presence Gateway while dialling the test server.
async fn check_connect(
    server: &TestServer,
    host: &'static str,
    trust: Vec<CertificateDer<'static>>,
) -> Report {
    let target = Target {
        kind: GatewayKind::Ews,
        host: ServerLocation::parse(host).expect("host"),
        port: server.addr.port(),
        connect: Some(server.addr.ip()),
        dns_configured: true,
        trust,
        credentials: None,
        mailbox: None,
        calendar_folder: "Calendar".to_owned(),
        auth: AuthMode::Auto,
        timeout: Duration::from_secs(3),
        now: now(),
        proxy: None,
    };
    troubleshoot::run(&target).await
}

#[tokio::test]
async fn validity_expired_not_yet_valid_and_expiring_soon() {
    let root = root("Example Root CA");
    let expired = leaf(
        LeafSpec {
            not_before: now() - 400 * DAY,
            not_after: now() - 2 * DAY,
            ..LeafSpec::named("exch1.example.com")
        },
        Some(&root),
    );
    let server = serve(tls(vec![expired.der.clone()], &expired, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![root.der()])).await;
    expect(
        &report,
        "chain=pass validity=fail name=pass auth=skip",
        "Failed - Certificate Expired",
    );
    assert!(detail(&report, "validity").contains("expired on"));

    let future = leaf(
        LeafSpec {
            not_before: now() + 5 * DAY,
            not_after: now() + 400 * DAY,
            ..LeafSpec::named("exch1.example.com")
        },
        Some(&root),
    );
    let server = serve(tls(vec![future.der.clone()], &future, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![root.der()])).await;
    expect(
        &report,
        "validity=fail auth=skip",
        "Failed - Certificate Expired",
    );
    assert!(detail(&report, "validity").contains("not valid until"));

    let soon = leaf(
        LeafSpec {
            not_after: now() + 10 * DAY,
            ..LeafSpec::named("exch1.example.com")
        },
        Some(&root),
    );
    let server = serve(tls(vec![soon.der.clone()], &soon, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![root.der()])).await;
    expect(&report, "validity=warn auth=pass", "Verified");
    assert!(report.ok, "a warning is not a failure");
}

#[tokio::test]
async fn an_expired_leaf_does_not_hide_a_missing_issuer() {
    let root = root("Example Root CA");
    let inter = intermediate("Example Issuing CA", &root);
    let expired = leaf(
        LeafSpec {
            not_before: now() - 400 * DAY,
            not_after: now() - 2 * DAY,
            ..LeafSpec::named("exch1.example.com")
        },
        Some(&inter),
    );
    let server = serve(tls(vec![expired.der.clone()], &expired, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![root.der()])).await;
    expect(
        &report,
        "chain=fail validity=fail",
        "Failed - Certificate Missing From Chain",
    );
    assert!(detail(&report, "chain").contains("Example Issuing CA"));
}

#[tokio::test]
async fn unsupported_certificates_are_named() {
    let root = root("Example Root CA");
    // A CA flag on the server certificate.
    let ca_leaf = leaf(
        LeafSpec {
            is_ca: true,
            ..LeafSpec::named("exch1.example.com")
        },
        Some(&root),
    );
    let server = serve(tls(vec![ca_leaf.der.clone()], &ca_leaf, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![root.der()])).await;
    expect(
        &report,
        "chain=fail auth=skip",
        "Failed - Unsupported Certificate",
    );
    // No serverAuth usage.
    let client = leaf(
        LeafSpec {
            client_auth_only: true,
            ..LeafSpec::named("exch1.example.com")
        },
        Some(&root),
    );
    let server = serve(tls(vec![client.der.clone()], &client, Answer::ews_ok())).await;
    let report = check(&server, Run::host("exch1.example.com", vec![root.der()])).await;
    expect(
        &report,
        "chain=fail auth=skip",
        "Failed - Unsupported Certificate",
    );
}

#[tokio::test]
async fn a_sha1_signed_certificate_is_unsupported() {
    let dir = crate::support::private_tempdir().expect("dir");
    let sha1 = openssl_sha1_chain(dir.path());
    let server = serve(ServerKind::Tls {
        chain: vec![sha1.leaf.clone()],
        key: sha1.key.clone_key(),
        answer: Answer::ews_ok(),
    })
    .await;
    let report = check(
        &server,
        Run::host("exch1.example.com", vec![sha1.root.clone()]),
    )
    .await;
    expect(
        &report,
        "tls=pass chain=fail auth=skip",
        "Failed - Unsupported Certificate",
    );
    assert!(
        detail(&report, "chain").contains("SHA-1"),
        "{}",
        detail(&report, "chain")
    );
}

struct Sha1Chain {
    root: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// rcgen cannot sign with SHA-1; openssl (installed by the test command)
/// makes a root and a leaf it signs with SHA-1.
fn openssl_sha1_chain(dir: &std::path::Path) -> Sha1Chain {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:exch1.example.com\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-days",
        "30",
        "-subj",
        "/CN=SHA1 Test Root",
        "-sha256",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=exch1.example.com",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "30",
        "-sha1",
        "-extfile",
        "leaf.ext",
    ]);
    let pem = |name: &str| std::fs::read(dir.join(name)).expect("pem");
    let cert = |name: &str| {
        rustls_pemfile::certs(&mut pem(name).as_slice())
            .next()
            .expect("a certificate")
            .expect("PEM")
    };
    let key = rustls_pemfile::private_key(&mut pem("leaf.key").as_slice())
        .expect("PEM")
        .expect("a key");
    Sha1Chain {
        root: cert("root.pem"),
        leaf: cert("leaf.pem"),
        key,
    }
}

#[tokio::test]
async fn network_failures_are_network_errors_within_the_timeout() {
    // Not TLS.
    let server = serve(ServerKind::PlainHttp).await;
    let report = check(&server, Run::host("exch1.example.com", Vec::new())).await;
    expect(
        &report,
        "tcp=pass tls=fail chain=skip validity=skip name=skip auth=skip",
        "Failed - Network Error",
    );
    assert!(
        detail(&report, "tls").contains("TLS"),
        "{}",
        detail(&report, "tls")
    );

    // Accepts and never answers: the run ends within the timeout.
    let server = serve(ServerKind::Silent).await;
    let mut run = Run::host("exch1.example.com", Vec::new());
    run.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let report = check(&server, run).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "bounded by the timeout"
    );
    expect(&report, "tcp=pass tls=fail", "Failed - Network Error");
    assert!(
        detail(&report, "tls").contains("within"),
        "{}",
        detail(&report, "tls")
    );

    // A closed port.
    let closed = {
        let listener = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
        listener.local_addr().expect("addr")
    };
    let target = Target {
        kind: GatewayKind::Ews,
        host: ServerLocation::parse("127.0.0.1").expect("host"),
        port: closed.port(),
        connect: None,
        dns_configured: true,
        trust: Vec::new(),
        credentials: None,
        mailbox: None,
        calendar_folder: "Calendar".to_owned(),
        auth: AuthMode::Auto,
        timeout: Duration::from_secs(2),
        now: now(),
        proxy: None,
    };
    let report = troubleshoot::run(&target).await;
    expect(
        &report,
        "dns=skip tcp=fail tls=skip",
        "Failed - Network Error",
    );
    assert!(
        detail(&report, "tcp").contains("refused"),
        "{}",
        detail(&report, "tcp")
    );
    assert!(!report.ok);
}

#[tokio::test]
async fn auth_answers_are_explained() {
    let root = root("Example Root CA");
    let leaf = leaf(LeafSpec::named("exch1.example.com"), Some(&root));
    let cases: Vec<(Answer, Option<&str>, &str, &str, &str)> = vec![
        (
            Answer {
                headers: vec![
                    ("WWW-Authenticate", "Negotiate".to_owned()),
                    ("WWW-Authenticate", "NTLM".to_owned()),
                    (
                        "WWW-Authenticate",
                        "Basic realm=\"exch1.example.com\"".to_owned(),
                    ),
                ],
                ..Answer::status(401)
            },
            None,
            "fail",
            "Failed - Authentication Rejected",
            "NTLM",
        ),
        (
            Answer::status(403),
            None,
            "fail",
            "Failed - Access Denied",
            "ApplicationImpersonation",
        ),
        (
            Answer::status(404),
            None,
            "fail",
            "Failed - Not Found",
            "404",
        ),
        (
            Answer {
                status: 500,
                headers: vec![],
                body: EWS_FAULT.to_owned(),
            },
            Some("someone@example.com"),
            "fail",
            "Failed - EWS Error",
            "ErrorImpersonateUserDenied",
        ),
        (
            Answer {
                status: 200,
                headers: vec![],
                body: EWS_NO_MAILBOX.to_owned(),
            },
            None,
            "warn",
            "Credentials Accepted",
            "Test Mailbox",
        ),
        (
            Answer::status(503),
            None,
            "fail",
            "Failed - Server Error",
            "503",
        ),
        (
            Answer::ews_ok(),
            Some("someone@example.com"),
            "pass",
            "Verified",
            "impersonated",
        ),
    ];
    for (answer, mailbox, status, verdict, needle) in cases {
        let server = serve(tls(vec![leaf.der.clone()], &leaf, answer)).await;
        let mut run = Run::host("exch1.example.com", vec![root.der()]);
        run.mailbox = mailbox;
        let report = check(&server, run).await;
        let auth = get(&report, "auth");
        assert_eq!(auth.status.as_str(), status, "{verdict}: {}", auth.detail);
        assert_eq!(auth.verdict, verdict, "{}", auth.detail);
        assert!(
            auth.detail.contains(needle),
            "{verdict}: {needle:?} in {}",
            auth.detail
        );
        assert!(
            server.credentials_seen.load(Ordering::SeqCst),
            "credentials sent once verified"
        );
        // The headline is about the connection and the certificate only.
        assert_eq!(report.verdict, "Verified");
        assert_eq!(report.ok, status != "fail");
    }
}

#[tokio::test]
async fn a_server_offering_only_tls_1_0_or_1_1_is_reported_as_such() {
    // rustls speaks only TLS 1.2 and 1.3, so the old server is openssl's.
    let dir = crate::support::private_tempdir().expect("dir");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
        ])
        .args(["-days", "2", "-subj", "/CN=old.example.com"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(status.success());
    let port = {
        let probe = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let mut server = tokio::process::Command::new("openssl")
        .args([
            "s_server",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-cert",
            "c.pem",
        ])
        .args([
            "-key",
            "k.pem",
            "-www",
            "-accept",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_server");
    // Wait (at most 10 s) until it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect((LOCALHOST, port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let target = Target {
        kind: GatewayKind::Ews,
        host: ServerLocation::parse("127.0.0.1").expect("host"),
        port,
        connect: None,
        dns_configured: true,
        trust: Vec::new(),
        credentials: None,
        mailbox: None,
        calendar_folder: "Calendar".to_owned(),
        auth: AuthMode::Auto,
        timeout: Duration::from_secs(3),
        now: now(),
        proxy: None,
    };
    let report = troubleshoot::run(&target).await;
    let _ = server.kill().await;
    expect(
        &report,
        "tcp=pass tls=fail chain=skip",
        "Failed - Network Error",
    );
    assert!(
        detail(&report, "tls").contains("only TLS 1.0/1.1"),
        "{}",
        detail(&report, "tls")
    );
}
