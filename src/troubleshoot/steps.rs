//! The troubleshooter's network steps: each bounded in time, each reporting
//! through the pure wording of `verdict`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::domain::gateway::{GatewayKind, ServerLocation};
use crate::domain::names::{self, NameCheck};
use crate::exchange::client::{self, Credentials};
use crate::exchange::{ews, webdav};
use crate::tls::capture::CapturingVerifier;
use crate::tls::chain::{self, ChainEntry, ChainVerdict, ValidityStatus};
use rustls::pki_types::CertificateDer;

use super::verdict::{self, Outcome};
use super::{Check, NETWORK_ERROR, SKIPPED, Status, Target, VERIFIED};

pub(super) struct Clock {
    pub(super) deadline: Instant,
    pub(super) step: Duration,
}

impl Clock {
    /// A step's bound: the Exchange Timeout, or what is left of the run.
    pub(super) fn bound(&self) -> Duration {
        self.step
            .min(self.deadline.saturating_duration_since(Instant::now()))
    }
}

/// A step's outcome, timed from `started`.
pub(super) fn check(id: &'static str, started: Instant, outcome: Outcome) -> Check {
    Check {
        id,
        status: outcome.status,
        verdict: outcome.verdict,
        detail: outcome.detail,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

pub(super) fn skip(id: &'static str, why: &str) -> Check {
    Check {
        id,
        status: Status::Skip,
        verdict: SKIPPED.to_owned(),
        detail: why.to_owned(),
        elapsed_ms: 0,
    }
}

pub(super) async fn handshake(
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

/// `dns`: resolves the server location (skipped for an IP address or a
/// given address; failed when DNS is not configured on this server, SY-2).
pub(super) async fn dns(
    target: &Target,
    clock: &Clock,
    checks: &mut Vec<Check>,
) -> Vec<SocketAddr> {
    let started = Instant::now();
    // Through a proxy the proxy resolves the destination: this server
    // resolves only the proxy (GR-3).
    if let Some(proxy) = target.via() {
        return resolve(
            &proxy.server.host,
            proxy.server.port,
            &format!("The outbound proxy {}", proxy.server),
            &format!("; the outbound proxy resolves {} itself", target.host),
            target.dns_configured,
            clock,
            checks,
            started,
        )
        .await;
    }
    match (&target.connect, &target.host) {
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
        (None, ServerLocation::Name(_)) => {
            resolve(
                &target.host,
                target.port,
                "The Presence Gateway",
                "",
                target.dns_configured,
                clock,
                checks,
                started,
            )
            .await
        }
    }
}

/// Resolves `host` (a name, or an IP address given as is), saying `via`
/// after the addresses found.
#[allow(clippy::too_many_arguments)]
async fn resolve(
    host: &ServerLocation,
    port: u16,
    what: &str,
    via: &str,
    dns_configured: bool,
    clock: &Clock,
    checks: &mut Vec<Check>,
    started: Instant,
) -> Vec<SocketAddr> {
    let name = match host {
        ServerLocation::Ip(ip) => {
            checks.push(skip(
                "dns",
                &format!("{what} is an IP address: nothing to resolve{via}."),
            ));
            return vec![SocketAddr::new(*ip, port)];
        }
        ServerLocation::Name(name) => name,
    };
    if !dns_configured {
        checks.push(check(
            "dns",
            started,
            Outcome::new(
                Status::Fail,
                NETWORK_ERROR,
                format!(
                    "DNS is not configured on this server, so {name} cannot be resolved: use an \
                     IP address as {}.",
                    if via.is_empty() {
                        "the Presence Gateway"
                    } else {
                        "the proxy"
                    }
                ),
            ),
        ));
        Vec::new()
    } else {
        match tokio::time::timeout(
            clock.bound(),
            tokio::net::lookup_host((name.as_str(), port)),
        )
        .await
        {
            Ok(Ok(found)) => {
                let found: Vec<SocketAddr> = found.take(16).collect();
                if found.is_empty() {
                    checks.push(check(
                        "dns",
                        started,
                        Outcome::new(
                            Status::Fail,
                            NETWORK_ERROR,
                            format!("{name} resolved to no address."),
                        ),
                    ));
                } else {
                    let list: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                    checks.push(check(
                        "dns",
                        started,
                        Outcome::new(
                            Status::Pass,
                            "Resolved",
                            format!("{name} resolves to {}{via}.", list.join(", ")),
                        ),
                    ));
                }
                found
            }
            Ok(Err(e)) => {
                checks.push(check(
                    "dns",
                    started,
                    Outcome::new(
                        Status::Fail,
                        NETWORK_ERROR,
                        format!("{name} does not resolve: {e}."),
                    ),
                ));
                Vec::new()
            }
            Err(_) => {
                checks.push(check(
                    "dns",
                    started,
                    Outcome::new(
                        Status::Fail,
                        NETWORK_ERROR,
                        format!(
                            "No answer resolving {name} within {} s.",
                            clock.step.as_secs()
                        ),
                    ),
                ));
                Vec::new()
            }
        }
    }
}

/// `tcp`: connects to the first address that answers, each try bounded;
/// through a proxy, then asks it for a tunnel to the destination.
pub(super) async fn tcp(
    target: &Target,
    addresses: &[SocketAddr],
    clock: &Clock,
    checks: &mut Vec<Check>,
) -> Option<(TcpStream, SocketAddr)> {
    let started = Instant::now();
    let mut stream = None;
    let mut address = None;
    if addresses.is_empty() {
        checks.push(skip(
            "tcp",
            "Not attempted: the server's address is unknown.",
        ));
    } else {
        let mut failures = Vec::new();
        for candidate in addresses {
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
        // The tunnel, bounded like any step: a proxy that accepts the
        // connection but never answers must not hold the run.
        if let (Some(proxy), Some(s), Some(a)) = (target.via(), stream.as_mut(), address) {
            let opened = tokio::time::timeout(
                clock.bound(),
                super::tunnel::open(s, &target.host, target.port, proxy.credentials.as_ref()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "The proxy accepted the connection but answered no tunnel request within {} s.",
                    clock.step.as_secs()
                ))
            });
            let outcome = match opened {
                Ok(()) => Outcome::new(
                    Status::Pass,
                    "Connected",
                    format!(
                        "Connected through the outbound proxy {} ({a}), which opened a tunnel to \
                         {}.",
                        proxy.server,
                        super::tunnel::authority(&target.host, target.port)
                    ),
                ),
                Err(why) => {
                    stream = None;
                    Outcome::new(Status::Fail, NETWORK_ERROR, why)
                }
            };
            checks.push(check("tcp", started, outcome));
            return stream.zip(address);
        }
        match (&stream, address) {
            (Some(_), Some(a)) => checks.push(check(
                "tcp",
                started,
                Outcome::new(Status::Pass, "Connected", format!("Connected to {a}.")),
            )),
            _ => checks.push(check(
                "tcp",
                started,
                Outcome::new(
                    Status::Fail,
                    NETWORK_ERROR,
                    match target.via() {
                        Some(proxy) => format!(
                            "Cannot connect to the outbound proxy {}: {}.",
                            proxy.server,
                            failures.join("; ")
                        ),
                        None => format!("Cannot connect: {}.", failures.join("; ")),
                    },
                ),
            )),
        }
    }
    stream.zip(address)
}

/// `tls`: the handshake, capturing the chain whatever its validity.
pub(super) async fn tls(
    target: &Target,
    stream: Option<TcpStream>,
    verifier: &Arc<CapturingVerifier>,
    clock: &Clock,
    checks: &mut Vec<Check>,
) -> Option<TlsStream<TcpStream>> {
    let started = Instant::now();
    let mut tls = None;
    match stream {
        None => checks.push(skip("tls", "Not attempted: no TCP connection.")),
        Some(tcp) => match handshake(target, tcp, verifier.clone(), clock.bound()).await {
            Ok((s, detail)) => {
                tls = Some(s);
                checks.push(check(
                    "tls",
                    started,
                    Outcome::new(Status::Pass, "Connected", detail),
                ));
            }
            Err(detail) => checks.push(check(
                "tls",
                started,
                Outcome::new(Status::Fail, NETWORK_ERROR, detail),
            )),
        },
    }
    tls
}

/// What `chain`, `validity` and `name` found.
pub(super) struct Judged {
    pub(super) entries: Vec<ChainEntry>,
    pub(super) matched_name: Option<String>,
    /// Credentials may be sent: the chain, its validity and the name passed.
    pub(super) trusted_path: bool,
}

/// `chain`, `validity`, `name`: judged on the captured chain, even when the
/// handshake failed after the chain arrived.
pub(super) fn judge(
    target: &Target,
    presented: &[CertificateDer<'static>],
    checks: &mut Vec<Check>,
) -> Judged {
    // chain, validity, name: judged on the captured chain, even when the
    // handshake failed after the chain arrived.
    let mut trusted_path = false;
    let mut entries = Vec::new();
    let mut matched_name = None;
    if presented.is_empty() {
        let why = "Not judged: the server presented no certificate.";
        checks.push(skip("chain", why));
        checks.push(skip("validity", why));
        checks.push(skip("name", why));
    } else {
        let started = Instant::now();
        let judged = chain::judge(presented, &target.trust, target.now);
        entries = judged.entries.clone();
        let chain_ok = judged.chain == ChainVerdict::Verified;
        checks.push(check(
            "chain",
            started,
            Outcome::new(
                if chain_ok { Status::Pass } else { Status::Fail },
                judged.chain.verdict(),
                judged.chain_detail.clone(),
            ),
        ));
        let validity_status = match judged.validity {
            ValidityStatus::Valid => Status::Pass,
            ValidityStatus::ExpiringSoon => Status::Warn,
            ValidityStatus::Expired => Status::Fail,
        };
        checks.push(check(
            "validity",
            started,
            Outcome::new(
                validity_status,
                judged.validity.verdict(),
                judged.validity_detail.clone(),
            ),
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
                    checks.push(check(
                        "name",
                        started,
                        Outcome::new(Status::Pass, VERIFIED, detail),
                    ));
                    trusted_path = chain_ok && validity_status != Status::Fail;
                }
                NameCheck::Mismatch { kind, detail } => {
                    checks.push(check(
                        "name",
                        started,
                        Outcome::new(Status::Fail, kind.verdict(), detail),
                    ));
                }
            },
        }
    }
    Judged {
        entries,
        matched_name,
        trusted_path,
    }
}

/// Who the verified connection `stream` reaches, for the `Host` header and
/// NTLM's target name and channel bindings.
pub(super) fn peer(target: &Target, stream: &TlsStream<TcpStream>) -> client::Peer {
    let host_header = match target.port {
        443 => target.host.to_string(),
        port => match &target.host {
            ServerLocation::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            other => format!("{other}:{port}"),
        },
    };
    // Extended Protection binds NTLM to this TLS connection's certificate.
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.as_ref().to_vec());
    client::Peer {
        host_header,
        host: target.host.to_string(),
        leaf,
    }
}

/// The `auth` check: one request over the verified connection.
pub(super) async fn authenticate(
    target: &Target,
    credentials: &Credentials,
    stream: TlsStream<TcpStream>,
    clock: &Clock,
    started: Instant,
) -> Check {
    let fail = |verdict: &str, detail: String| {
        check("auth", started, Outcome::new(Status::Fail, verdict, detail))
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
                .unwrap_or_else(|| verdict::mailbox_of(&credentials.account));
            (
                "PROPFIND",
                webdav::calendar_path(&mailbox, &target.calendar_folder),
                webdav::PROPFIND_BODY.to_owned(),
                "text/xml; charset=utf-8",
            )
        }
        // Microsoft 365 gateways are checked by `graph::run`; Exchange's
        // requests mean nothing to Graph.
        GatewayKind::Graph => {
            return fail(
                NETWORK_ERROR,
                "A Microsoft 365 gateway is checked with a token and getSchedule, not with an \
                 Exchange account."
                    .to_owned(),
            );
        }
    };
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
    let peer = peer(target, &stream);
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
    check(
        "auth",
        started,
        verdict::auth(
            &verdict::AuthFacts {
                kind: target.kind,
                auth: target.auth,
                account: &credentials.account,
                mailbox: target.mailbox.as_deref(),
                method,
                path: &path,
            },
            exchanged,
        ),
    )
}
