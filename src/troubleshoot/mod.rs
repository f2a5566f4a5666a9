//! The troubleshooter (SPEC section 2): seven checks against an Exchange
//! server, always all seven and in order — `dns`, `tcp`, `tls`, `chain`,
//! `validity`, `name`, `auth`. Used by `presence-gateway check` and, later,
//! the console's Troubleshooter panel.
//!
//! One connection carries everything: the TLS handshake captures the chain
//! whatever its validity, the chain is judged, and only when chain, validity
//! and name passed are credentials sent, over that same connection (TS-5).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::domain::gateway::{GatewayKind, ServerLocation};
use crate::domain::names::{self, NameCheck};
use crate::exchange::client::{self, Scheme};
use crate::exchange::{ews, webdav};
use crate::tls::capture::CapturingVerifier;
use crate::tls::chain::{self, ChainEntry, ChainVerdict, ValidityStatus};

pub const DEFAULT_CALENDAR_FOLDER: &str = "Calendar";

pub use crate::exchange::client::{AuthMode, Credentials};

/// What to check, parsed and validated by the caller.
pub struct Target {
    pub kind: GatewayKind,
    pub host: ServerLocation,
    pub port: u16,
    /// Dial this address instead of resolving `host` (names are still
    /// checked against `host`).
    pub connect: Option<IpAddr>,
    pub dns_configured: bool,
    pub trust: Vec<CertificateDer<'static>>,
    pub credentials: Option<Credentials>,
    pub mailbox: Option<String>,
    pub calendar_folder: String,
    pub auth: AuthMode,
    /// Each network step's bound (the Exchange Timeout parameter).
    pub timeout: Duration,
    /// Unix seconds, for certificate dates.
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub verdict: String,
    pub detail: String,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub ok: bool,
    pub verdict: String,
    pub address: Option<SocketAddr>,
    pub matched_name: Option<String>,
    pub checks: Vec<Check>,
    pub chain: Vec<ChainEntry>,
}

pub const NETWORK_ERROR: &str = "Failed - Network Error";
pub const VERIFIED: &str = "Verified";
const SKIPPED: &str = "Skipped";

fn rfc3339(t: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

impl Report {
    /// The object `check --json` prints (TS-9).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "ok": self.ok,
            "verdict": self.verdict,
            "address": self.address.map(|a| a.to_string()),
            "matched_name": self.matched_name,
            "checks": self.checks.iter().map(|c| json!({
                "id": c.id,
                "status": c.status.as_str(),
                "verdict": c.verdict,
                "detail": c.detail,
                "elapsed_ms": c.elapsed_ms,
            })).collect::<Vec<_>>(),
            "chain": self.chain.iter().map(|e| json!({
                "subject": e.subject,
                "issuer": e.issuer,
                "not_before": e.not_before.and_then(rfc3339),
                "not_after": e.not_after.and_then(rfc3339),
                "sha256": e.sha256,
                "status": e.status.as_str(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The human-readable report `check` prints without --json.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.verdict);
        if let Some(address) = self.address {
            out.push_str(&format!("address: {address}\n"));
        }
        if let Some(name) = &self.matched_name {
            out.push_str(&format!("matched name: {name}\n"));
        }
        for c in &self.checks {
            out.push_str(&format!(
                "{:<9}{:<5} {} ({} ms)\n         {}\n",
                c.id,
                c.status.as_str(),
                c.verdict,
                c.elapsed_ms,
                c.detail
            ));
        }
        if !self.chain.is_empty() {
            out.push_str("chain:\n");
            for e in &self.chain {
                out.push_str(&format!("  [{}] {}\n", e.status.as_str(), e.subject));
                if let Some(issuer) = &e.issuer {
                    out.push_str(&format!("      issuer: {issuer}\n"));
                }
                if let (Some(nb), Some(na)) = (
                    e.not_before.and_then(rfc3339),
                    e.not_after.and_then(rfc3339),
                ) {
                    out.push_str(&format!("      valid: {nb} to {na}\n"));
                }
                if let Some(fp) = &e.sha256 {
                    out.push_str(&format!("      sha256: {fp}\n"));
                }
            }
        }
        out
    }
}

struct Clock {
    deadline: Instant,
    step: Duration,
}

impl Clock {
    /// A step's bound: the Exchange Timeout, or what is left of the run.
    fn bound(&self) -> Duration {
        self.step
            .min(self.deadline.saturating_duration_since(Instant::now()))
    }
}

fn check(
    id: &'static str,
    status: Status,
    verdict: &str,
    detail: String,
    started: Instant,
) -> Check {
    Check {
        id,
        status,
        verdict: verdict.to_owned(),
        detail,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

fn skip(id: &'static str, why: &str) -> Check {
    Check {
        id,
        status: Status::Skip,
        verdict: SKIPPED.to_owned(),
        detail: why.to_owned(),
        elapsed_ms: 0,
    }
}

/// Runs the seven checks. Each network step is bounded by `target.timeout`,
/// the whole run by four of them.
pub async fn run(target: &Target) -> Report {
    let clock = Clock {
        deadline: Instant::now() + target.timeout * 4,
        step: target.timeout,
    };
    let mut checks = Vec::with_capacity(7);
    let mut address = None;
    let mut matched_name = None;
    let mut entries = Vec::new();

    // dns
    let started = Instant::now();
    let addresses: Vec<SocketAddr> = match (&target.connect, &target.host) {
        (Some(ip), _) => {
            checks.push(skip(
                "dns",
                &format!(
                    "Not resolved: dialing {ip} as given by --connect; names are still checked \
                     against {}.",
                    target.host
                ),
            ));
            vec![SocketAddr::new(*ip, target.port)]
        }
        (None, ServerLocation::Ip(ip)) => {
            checks.push(skip(
                "dns",
                "The Presence Gateway is an IP address: nothing to resolve.",
            ));
            vec![SocketAddr::new(*ip, target.port)]
        }
        (None, ServerLocation::Name(name)) if !target.dns_configured => {
            checks.push(check(
                "dns",
                Status::Fail,
                NETWORK_ERROR,
                format!(
                    "DNS is not configured on this server, so {name} cannot be resolved: use an \
                     IP address as the Presence Gateway."
                ),
                started,
            ));
            Vec::new()
        }
        (None, ServerLocation::Name(name)) => {
            match tokio::time::timeout(
                clock.bound(),
                tokio::net::lookup_host((name.as_str(), target.port)),
            )
            .await
            {
                Ok(Ok(found)) => {
                    let found: Vec<SocketAddr> = found.take(16).collect();
                    if found.is_empty() {
                        checks.push(check(
                            "dns",
                            Status::Fail,
                            NETWORK_ERROR,
                            format!("{name} resolved to no address."),
                            started,
                        ));
                    } else {
                        let list: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                        checks.push(check(
                            "dns",
                            Status::Pass,
                            "Resolved",
                            format!("{name} resolves to {}.", list.join(", ")),
                            started,
                        ));
                    }
                    found
                }
                Ok(Err(e)) => {
                    checks.push(check(
                        "dns",
                        Status::Fail,
                        NETWORK_ERROR,
                        format!("{name} does not resolve: {e}."),
                        started,
                    ));
                    Vec::new()
                }
                Err(_) => {
                    checks.push(check(
                        "dns",
                        Status::Fail,
                        NETWORK_ERROR,
                        format!(
                            "No answer resolving {name} within {} s.",
                            clock.step.as_secs()
                        ),
                        started,
                    ));
                    Vec::new()
                }
            }
        }
    };

    // tcp
    let started = Instant::now();
    let mut stream = None;
    if addresses.is_empty() {
        checks.push(skip(
            "tcp",
            "Not attempted: the server's address is unknown.",
        ));
    } else {
        let mut failures = Vec::new();
        for candidate in &addresses {
            let bound = clock.bound();
            if bound.is_zero() {
                failures.push(format!("{candidate}: the run's deadline passed"));
                break;
            }
            match tokio::time::timeout(bound, TcpStream::connect(candidate)).await {
                Ok(Ok(s)) => {
                    address = Some(*candidate);
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => failures.push(format!(
                    "{candidate}: {}",
                    crate::tls::capture::describe_io(&e)
                )),
                Err(_) => failures.push(format!(
                    "{candidate}: no answer within {} s (timeout)",
                    bound.as_secs_f32().ceil()
                )),
            }
        }
        match (&stream, address) {
            (Some(_), Some(a)) => checks.push(check(
                "tcp",
                Status::Pass,
                "Connected",
                format!("Connected to {a}."),
                started,
            )),
            _ => checks.push(check(
                "tcp",
                Status::Fail,
                NETWORK_ERROR,
                format!("Cannot connect: {}.", failures.join("; ")),
                started,
            )),
        }
    }

    // tls
    let started = Instant::now();
    let verifier = CapturingVerifier::new(crate::tls::provider());
    let mut tls = None;
    match stream {
        None => checks.push(skip("tls", "Not attempted: no TCP connection.")),
        Some(tcp) => match handshake(target, tcp, verifier.clone(), clock.bound()).await {
            Ok((s, detail)) => {
                tls = Some(s);
                checks.push(check("tls", Status::Pass, "Connected", detail, started));
            }
            Err(detail) => checks.push(check("tls", Status::Fail, NETWORK_ERROR, detail, started)),
        },
    }

    // chain, validity, name: judged on the captured chain, even when the
    // handshake failed after the chain arrived.
    let presented = verifier.chain();
    let mut trusted_path = false;
    if presented.is_empty() {
        let why = "Not judged: the server presented no certificate.";
        checks.push(skip("chain", why));
        checks.push(skip("validity", why));
        checks.push(skip("name", why));
    } else {
        let started = Instant::now();
        let judged = chain::judge(&presented, &target.trust, target.now);
        entries = judged.entries.clone();
        let chain_ok = judged.chain == ChainVerdict::Verified;
        checks.push(check(
            "chain",
            if chain_ok { Status::Pass } else { Status::Fail },
            judged.chain.verdict(),
            judged.chain_detail.clone(),
            started,
        ));
        let validity_status = match judged.validity {
            ValidityStatus::Valid => Status::Pass,
            ValidityStatus::ExpiringSoon => Status::Warn,
            ValidityStatus::Expired => Status::Fail,
        };
        checks.push(check(
            "validity",
            validity_status,
            judged.validity.verdict(),
            judged.validity_detail.clone(),
            started,
        ));
        let started = Instant::now();
        match &judged.leaf {
            None => checks.push(skip(
                "name",
                "Not judged: the server's certificate cannot be read.",
            )),
            Some(leaf) => match names::check_name(&target.host, &leaf.names, target.dns_configured)
            {
                NameCheck::Verified {
                    matched_name: m,
                    detail,
                } => {
                    matched_name = Some(m);
                    checks.push(check("name", Status::Pass, VERIFIED, detail, started));
                    trusted_path = chain_ok && validity_status != Status::Fail;
                }
                NameCheck::Mismatch { kind, detail } => {
                    checks.push(check("name", Status::Fail, kind.verdict(), detail, started));
                }
            },
        }
    }

    // auth
    let started = Instant::now();
    let auth_check = match (&target.credentials, tls, trusted_path) {
        (None, _, _) => skip(
            "auth",
            "No credentials given (--account and --password-env).",
        ),
        (Some(_), None, _) => skip("auth", "Not attempted: no TLS connection."),
        (Some(_), Some(_), false) => skip(
            "auth",
            "Not attempted: credentials are only sent to a server whose chain, validity and \
             name were verified.",
        ),
        (Some(credentials), Some(stream), true) => {
            authenticate(target, credentials, stream, &clock, started).await
        }
    };
    checks.push(auth_check);

    let verdict = headline(&checks);
    Report {
        ok: !checks.iter().any(|c| c.status == Status::Fail),
        verdict,
        address,
        matched_name,
        checks,
        chain: entries,
    }
}

/// The panel's one headline (TS-2): the first failing of the network
/// checks, chain, validity and name, in that order, else Verified.
fn headline(checks: &[Check]) -> String {
    for id in ["dns", "tcp", "tls", "chain", "validity", "name"] {
        if let Some(c) = checks
            .iter()
            .find(|c| c.id == id && c.status == Status::Fail)
        {
            return c.verdict.clone();
        }
    }
    VERIFIED.to_owned()
}

async fn handshake(
    target: &Target,
    tcp: TcpStream,
    verifier: Arc<CapturingVerifier>,
    bound: Duration,
) -> Result<(TlsStream<TcpStream>, String), String> {
    let config = crate::tls::capture::client_config(verifier)?;
    let name = crate::tls::capture::server_name(&target.host)?;
    let connector = TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(bound, connector.connect(name, tcp)).await {
        Err(_) => Err(format!(
            "The server accepted the connection but completed no TLS handshake within {} s.",
            bound.as_secs_f32().ceil()
        )),
        Ok(Err(e)) => Err(describe_tls_error(&e)),
        Ok(Ok(stream)) => {
            let (_, session) = stream.get_ref();
            let version = match session.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
                _ => "TLS",
            };
            let suite = session
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default();
            Ok((stream, format!("{version} handshake completed ({suite}).")))
        }
    }
}

fn describe_tls_error(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidMessage(_)) => {
            "The server does not speak TLS on this port (its answer is not a TLS handshake)."
                .to_owned()
        }
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion))
        | Some(rustls::Error::PeerIncompatible(_)) => {
            "The server offers no TLS version this service speaks: only TLS 1.2 and 1.3 are \
             supported, and the server appears to offer only TLS 1.0/1.1. Enable TLS 1.2 on \
             the Exchange server."
                .to_owned()
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("The server ended the handshake with the alert {alert:?}.")
        }
        Some(other) => format!("The TLS handshake failed: {other}."),
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                "The server closed the connection during the TLS handshake (it may not speak TLS \
                 on this port, or only TLS 1.0/1.1)."
                    .to_owned()
            }
            std::io::ErrorKind::ConnectionReset => {
                "The server reset the connection during the TLS handshake.".to_owned()
            }
            _ => format!("The TLS handshake failed: {e}."),
        },
    }
}

/// The `auth` check: one request over the verified connection.
async fn authenticate(
    target: &Target,
    credentials: &Credentials,
    stream: TlsStream<TcpStream>,
    clock: &Clock,
    started: Instant,
) -> Check {
    let fail =
        |verdict: &str, detail: String| check("auth", Status::Fail, verdict, detail, started);
    let host = match target.port {
        443 => target.host.to_string(),
        port => match &target.host {
            ServerLocation::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            other => format!("{other}:{port}"),
        },
    };
    let (method, path, body, content_type) = match target.kind {
        GatewayKind::Ews => (
            "POST",
            ews::EWS_PATH.to_owned(),
            ews::get_calendar_folder_request(target.mailbox.as_deref()),
            ews::SOAP_CONTENT_TYPE,
        ),
        GatewayKind::WebDav => {
            let mailbox = target
                .mailbox
                .clone()
                .unwrap_or_else(|| mailbox_of(&credentials.account));
            (
                "PROPFIND",
                webdav::calendar_path(&mailbox, &target.calendar_folder),
                webdav::PROPFIND_BODY.to_owned(),
                "text/xml; charset=utf-8",
            )
        }
    };
    // Extended Protection binds NTLM to this TLS connection's certificate.
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.as_ref().to_vec());
    let mut headers = Vec::new();
    if target.kind == GatewayKind::WebDav {
        headers.push(("Depth", "0".to_owned()));
    }
    // Exchange 2013 and later route an impersonated request by this header.
    if let (Some(mailbox), GatewayKind::Ews) = (&target.mailbox, target.kind) {
        headers.push(("X-AnchorMailbox", mailbox.clone()));
    }
    let request = client::Request {
        method,
        path: path.clone(),
        content_type,
        body: Bytes::from(body),
        headers,
    };
    let peer = client::Peer {
        host_header: host,
        host: target.host.to_string(),
        leaf,
    };
    // Credentials go only over this verified connection (TS-5).
    let exchange = async {
        let mut connection = client::Connection::handshake(stream, peer, clock.step).await?;
        connection
            .authenticated(&request, credentials, target.auth)
            .await
    };
    let exchanged = match tokio::time::timeout(clock.bound(), exchange).await {
        Err(_) | Ok(Err(client::ClientError::Timeout(_))) => {
            return fail(
                NETWORK_ERROR,
                format!(
                    "No answer to {method} {path} within {} s.",
                    clock.step.as_secs()
                ),
            );
        }
        Ok(Err(client::ClientError::Request(e))) => {
            return fail(NETWORK_ERROR, format!("Cannot build the request: {e}"));
        }
        Ok(Err(client::ClientError::Http(e))) => {
            return fail(
                NETWORK_ERROR,
                format!(
                    "{method} {path} failed: {e}. (Credentials are only sent over the \
                     verified connection: a server that closes it after its challenge \
                     cannot be authenticated.)"
                ),
            );
        }
        Ok(Ok(exchanged)) => exchanged,
    };
    let client::Exchanged {
        response,
        offered: schemes,
        challenged,
        scheme,
        ntlm_failed,
    } = exchanged;
    if let (Some(failure), Some(Scheme::Ntlm)) = (&ntlm_failed, scheme)
        && *failure != client::NtlmFailure::Refused
    {
        return fail(
            "Failed - Authentication Rejected",
            format!(
                "NTLMv2 authentication could not complete: {failure}. The server does not \
                 offer Basic, so nothing else was tried."
            ),
        );
    }
    let mode_note = auth_note(scheme, target.auth, ntlm_failed.as_ref(), response.status);
    let body = match response.body.clone() {
        Some(b) => b,
        None => {
            return fail(
                NETWORK_ERROR,
                format!("The answer to {method} {path} is larger than 1 MiB or was cut off."),
            );
        }
    };
    let parts = response;
    if challenged && scheme.is_none() {
        let offered = if schemes.is_empty() {
            "no authentication scheme".to_owned()
        } else {
            schemes.join(", ")
        };
        let advice = match target.auth {
            AuthMode::Basic => {
                "Exchange Server Authentication is Basic Only: choose Auto (NTLMv2, then Basic), \
                 or enable Basic authentication on the virtual directory."
            }
            AuthMode::Auto => {
                "Enable Windows (NTLM) or Basic authentication on the virtual directory."
            }
        };
        return fail(
            "Failed - Authentication Rejected",
            format!(
                "The server offers {offered}, and the troubleshooter speaks NTLMv2 and Basic \
                 only: no credentials were sent. {advice}"
            ),
        );
    }
    if !challenged && parts.status.is_success() {
        return fail(
            "Failed - Server Error",
            format!(
                "{method} {path} answered {} without asking for credentials: this is not how \
                 Exchange behaves; check the Presence Gateway and port.",
                parts.status.as_u16()
            ),
        );
    }
    let offered = if schemes.is_empty() {
        String::new()
    } else {
        format!(" Schemes offered: {}.", schemes.join(", "))
    };
    let status = parts.status.as_u16();
    let account = &credentials.account;
    match (target.kind, status) {
        (_, 401) => {
            let advice = if account.contains('\\') || account.contains('@') {
                ""
            } else {
                " The account has no domain: try domain\\user."
            };
            fail(
                "Failed - Authentication Rejected",
                format!(
                    "Exchange rejected the credentials of {account} (401). Check the account \
                     name and password; a down-level name needs its domain\\ prefix.{advice}{offered}{mode_note}"
                ),
            )
        }
        (GatewayKind::Ews, 403) => fail(
            "Failed - Access Denied",
            format!(
                "Exchange refused {account} (403): the account lacks the ApplicationImpersonation \
                 right.{offered}"
            ),
        ),
        (GatewayKind::WebDav, 403) => fail(
            "Failed - Access Denied",
            format!(
                "Exchange refused {account} (403): the account lacks Receive-As rights on the \
                 mailbox store.{offered}"
            ),
        ),
        (_, 404) => fail(
            "Failed - Not Found",
            format!(
                "{method} {path} answered 404: check the path, the mailbox{}.",
                if target.kind == GatewayKind::WebDav {
                    " and the localized calendar folder name"
                } else {
                    ""
                }
            ),
        ),
        (GatewayKind::Ews, _) => ews_outcome(target, status, &body, &offered, &mode_note, started),
        (GatewayKind::WebDav, 207) => match webdav::parse_multistatus(&body) {
            Ok(statuses) if statuses.iter().any(|s| s.status == 200) => check(
                "auth",
                Status::Pass,
                VERIFIED,
                format!(
                    "PROPFIND {path} answered 207 with the calendar folder.{offered}{mode_note}"
                ),
                started,
            ),
            Ok(statuses) => fail(
                "Failed - Not Found",
                format!(
                    "PROPFIND {path} found no calendar folder ({}): check the mailbox and the \
                     localized calendar folder name.",
                    statuses
                        .iter()
                        .map(|s| s.status.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Err(e) => fail(
                "Failed - Server Error",
                format!("PROPFIND {path}: unreadable answer: {e}."),
            ),
        },
        (_, s) if s >= 500 => fail(
            "Failed - Server Error",
            format!("{method} {path} answered {s}.{offered}"),
        ),
        (_, s) => fail(
            "Failed - Server Error",
            format!(
                "{method} {path} answered {s}, which the troubleshooter does not expect.{offered}"
            ),
        ),
    }
}

/// How the credentials were sent, for the `auth` detail: the scheme, and
/// when NTLMv2 could not complete, why and how Basic then fared.
fn auth_note(
    scheme: Option<Scheme>,
    mode: AuthMode,
    ntlm_failed: Option<&client::NtlmFailure>,
    status: hyper::StatusCode,
) -> String {
    match (scheme, ntlm_failed) {
        (Some(Scheme::Basic), Some(failure)) => {
            let outcome = if status == hyper::StatusCode::UNAUTHORIZED {
                "Basic was tried next and was rejected too"
            } else {
                "Basic was tried next and Exchange accepted it"
            };
            let proxy = if *failure == client::NtlmFailure::Refused {
                " If a load balancer or proxy terminates TLS in front of Exchange, Extended \
                 Protection refuses NTLM through it."
            } else {
                ""
            };
            format!(" Authentication: NTLMv2 failed ({failure}); {outcome}.{proxy}")
        }
        (Some(Scheme::Ntlm), Some(failure)) => {
            format!(" Authentication: NTLMv2 failed ({failure}); the server does not offer Basic.")
        }
        (Some(Scheme::Ntlm), None) => {
            " Authentication: NTLMv2, bound to this TLS connection.".to_owned()
        }
        (_, _) if mode == AuthMode::Basic => " Authentication: Basic.".to_owned(),
        (_, _) => " Authentication: Basic (the server does not offer NTLM).".to_owned(),
    }
}

/// A WebDAV mailbox from the account: `DOMAIN\user` or `user@domain` -> `user`.
fn mailbox_of(account: &str) -> String {
    let user = account.rsplit('\\').next().unwrap_or(account);
    user.split('@').next().unwrap_or(user).to_owned()
}

fn ews_outcome(
    target: &Target,
    status: u16,
    body: &[u8],
    offered: &str,
    mode_note: &str,
    started: Instant,
) -> Check {
    let parsed = match ews::parse_response(body) {
        Ok(p) => p,
        Err(e) => {
            return check(
                "auth",
                Status::Fail,
                "Failed - Server Error",
                format!(
                    "POST {} answered {status} without a readable EWS response: {e}.",
                    ews::EWS_PATH
                ),
                started,
            );
        }
    };
    let version = parsed
        .version
        .as_ref()
        .map(|v| format!(" Exchange version: {}.", v.describe()))
        .unwrap_or_default();
    let whose = match &target.mailbox {
        Some(m) => format!("the calendar of {m} (impersonated)"),
        None => "the service account's own calendar".to_owned(),
    };
    match parsed.outcome {
        ews::EwsOutcome::Folder { .. } if status == 200 => check(
            "auth",
            Status::Pass,
            VERIFIED,
            format!("GetFolder of {whose} succeeded.{version}{offered}{mode_note}"),
            started,
        ),
        ews::EwsOutcome::Error { response_code, .. }
            if target.mailbox.is_none() && ews::is_no_mailbox(&response_code) =>
        {
            check(
                "auth",
                Status::Warn,
                "Credentials Accepted",
                format!(
                    "The credentials were accepted, but the service account has no mailbox of \
                     its own ({response_code}). Give a Test Mailbox to prove impersonation.{version}{mode_note}"
                ),
                started,
            )
        }
        ews::EwsOutcome::Error {
            response_code,
            message,
        }
        | ews::EwsOutcome::Fault {
            response_code: Some(response_code),
            fault_string: message,
            ..
        } => {
            let advice = if ews::is_impersonation_denied(&response_code) {
                " The account lacks the ApplicationImpersonation right on that mailbox."
            } else if ews::is_no_mailbox(&response_code) {
                " Check the Test Mailbox address."
            } else {
                ""
            };
            check(
                "auth",
                Status::Fail,
                "Failed - EWS Error",
                format!(
                    "GetFolder of {whose} failed with {response_code}: {message}.{advice}{version}"
                ),
                started,
            )
        }
        ews::EwsOutcome::Fault {
            fault_code,
            fault_string,
            response_code: None,
        } => check(
            "auth",
            Status::Fail,
            "Failed - EWS Error",
            format!("EWS answered a SOAP fault ({fault_code}): {fault_string}.{version}"),
            started,
        ),
        ews::EwsOutcome::OtherSuccess { response } => check(
            "auth",
            Status::Fail,
            "Failed - Server Error",
            format!("EWS answered {response} instead of a GetFolder response.{version}"),
            started,
        ),
        ews::EwsOutcome::Folder { .. } => check(
            "auth",
            Status::Fail,
            "Failed - Server Error",
            format!("EWS answered {status} with a folder, which is unexpected.{version}"),
            started,
        ),
    }
}
