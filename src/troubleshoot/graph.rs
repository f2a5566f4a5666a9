//! The troubleshooter for Microsoft 365 gateways (GR-7): the first six
//! checks against the sign-in host, judged against the system's CA
//! certificates plus the trust store (GR-3), then `auth`: an app-only token
//! (or the AADSTS reason, with what to change in Entra ID) and, with a Test
//! Mailbox, `getSchedule` for it from the Graph host. Also the Graph
//! requests the engine shares: where a URL goes, and the token request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use rustls::pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};

use super::steps::{check, peer, skip};
use super::verdict::{Outcome, headline};
use super::{Check, Clock, NETWORK_ERROR, Proxy, Reached, Report, Status, Target, reach};
use crate::domain::gateway::{GatewayKind, ServerLocation};
use crate::exchange::client;
use crate::exchange::graph::{self, Cloud, Token};

/// What to check for a Microsoft 365 gateway.
pub struct GraphTarget {
    pub cloud: Cloud,
    pub tenant: String,
    pub client_id: String,
    /// None: the six connection checks only (`auth` is skipped).
    pub secret: Option<SecretString>,
    pub mailbox: Option<String>,
    /// The trust store; the system's CA certificates are added to it.
    pub trust: Vec<CertificateDer<'static>>,
    /// The Outbound Proxy of System > Settings, for the sign-in and Graph
    /// hosts alike (GR-3).
    pub proxy: Option<Proxy>,
    pub timeout: Duration,
    pub now: i64,
}

/// Where a request goes: the server and the path on it.
pub struct Place {
    pub host: ServerLocation,
    pub port: u16,
    pub path: String,
}

impl Place {
    /// `host:port`, the key for kept connections.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The cloud a stored Microsoft 365 gateway names: one of Microsoft's, or
/// Custom with its two URLs.
pub fn cloud_of(gateway: &crate::store::gateways::GatewayRow) -> Result<Cloud, String> {
    cloud_named(
        gateway.cloud.as_deref(),
        gateway.signin_url.as_deref(),
        gateway.graph_url.as_deref(),
    )
}

/// The cloud from its stored name (and, for Custom, its URLs).
pub fn cloud_named(
    cloud: Option<&str>,
    signin_url: Option<&str>,
    graph_url: Option<&str>,
) -> Result<Cloud, String> {
    match cloud {
        Some("custom") => match (signin_url, graph_url) {
            (Some(signin), Some(graph)) => Ok(Cloud::Custom {
                signin: signin.to_owned(),
                graph: graph.to_owned(),
            }),
            _ => Err("a Custom cloud without its Sign-in URL and Graph URL".to_owned()),
        },
        Some(name) => Cloud::from_cli(name).map_err(|e| e.to_string()),
        None => Err("no cloud".to_owned()),
    }
}

/// `https://host[:port]/path?query` → its server and its path.
pub fn place(url: &str) -> Result<Place, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?;
    let host = ServerLocation::parse(host).map_err(|e| format!("{url}: {e}"))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let mut path = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok(Place { host, port, path })
}

/// What the connection steps need to reach `place`, trusting `trust`
/// (already the system's CAs plus the trust store), through `proxy` unless
/// its No Proxy For names the host.
pub fn target_for(
    place: &Place,
    trust: Vec<CertificateDer<'static>>,
    proxy: Option<Proxy>,
    timeout: Duration,
    now: i64,
) -> Target {
    Target {
        kind: GatewayKind::Ews,
        host: place.host.clone(),
        port: place.port,
        connect: None,
        dns_configured: true,
        trust,
        credentials: None,
        mailbox: None,
        calendar_folder: super::DEFAULT_CALENDAR_FOLDER.to_owned(),
        auth: client::AuthMode::Basic,
        timeout,
        now,
        proxy,
    }
}

/// The system's CA certificates plus `trust_store`.
pub fn with_system_roots(
    trust_store: Vec<CertificateDer<'static>>,
) -> Vec<CertificateDer<'static>> {
    let mut trust = crate::tls::system::roots().to_vec();
    trust.extend(trust_store);
    trust
}

/// A POST whose path is filled in from its URL by whoever sends it.
pub fn post(
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
) -> client::Request {
    client::Request {
        method: "POST",
        path: String::new(),
        content_type,
        body: Bytes::from(body),
        headers,
    }
}

/// Why no token came: the advice (GR-4) and the AADSTS code, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFailure {
    pub code: Option<u32>,
    pub advice: String,
}

/// Asks the sign-in service for an app-only token over `connection` (to
/// the sign-in host). Err(None) is a network failure, with its text.
pub async fn request_token(
    connection: &mut client::Connection,
    cloud: &Cloud,
    tenant: &str,
    client_id: &str,
    secret: &SecretString,
) -> Result<Token, Result<SignInFailure, String>> {
    let url = graph::token_url(cloud, tenant).map_err(|e| Err(e.to_string()))?;
    let mut request = post(
        "application/x-www-form-urlencoded",
        graph::token_body(cloud, client_id, secret.expose_secret()),
        Vec::new(),
    );
    request.path = place(&url).map_err(Err)?.path;
    let response = connection
        .send(&request, None)
        .await
        .map_err(|e| Err(e.to_string()))?;
    let body = response.body.unwrap_or_default();
    graph::parse_token(&body).map_err(|e| {
        Ok(SignInFailure {
            code: e.code,
            advice: graph::advice(&e),
        })
    })
}

/// Runs the seven checks for a Microsoft 365 gateway, bounded as the EWS
/// run is: each network step by `timeout`, the whole by four of them (plus
/// the Graph host's connection, when it is another server).
pub async fn run(target: &GraphTarget) -> Report {
    let clock = Clock {
        deadline: Instant::now() + target.timeout * 4,
        step: target.timeout,
    };
    let trust = with_system_roots(target.trust.clone());
    let mut checks = Vec::with_capacity(7);
    let signin = match graph::token_url(&target.cloud, &target.tenant)
        .map_err(|e| e.to_string())
        .and_then(|url| place(&url))
    {
        Ok(place) => place,
        Err(e) => {
            checks.push(Check {
                id: "dns",
                status: Status::Fail,
                verdict: NETWORK_ERROR.to_owned(),
                detail: format!("The sign-in URL cannot be used: {e}."),
                elapsed_ms: 0,
            });
            return report(None, None, checks, Vec::new());
        }
    };
    let signin_target = target_for(
        &signin,
        trust.clone(),
        target.proxy.clone(),
        target.timeout,
        target.now,
    );
    let Reached {
        address,
        tls,
        judged,
    } = reach(&signin_target, &clock, &mut checks).await;
    let started = Instant::now();
    let auth = match (&target.secret, tls, judged.trusted_path) {
        (None, _, _) => skip("auth", "No client secret given (--secret-env)."),
        (Some(_), None, _) => skip("auth", "Not attempted: no TLS connection."),
        (Some(_), Some(_), false) => skip(
            "auth",
            "Not attempted: the client secret is only sent to a sign-in server whose chain, \
             validity and name were verified.",
        ),
        (Some(secret), Some(stream), true) => {
            let peer = peer(&signin_target, &stream);
            let outcome = async {
                let mut connection = client::Connection::handshake(stream, peer, clock.step)
                    .await
                    .map_err(|e| network(format!("{e}")))?;
                auth(target, secret, &signin, &mut connection, &trust).await
            };
            // The run's bound, plus the Graph host's own connection steps.
            let limit = clock.bound() + target.timeout * 3;
            let outcome = match tokio::time::timeout(limit, outcome).await {
                Ok(Ok(outcome)) | Ok(Err(outcome)) => outcome,
                Err(_) => network(format!("No answer within {} s.", limit.as_secs())),
            };
            check("auth", started, outcome)
        }
    };
    checks.push(auth);
    report(address, judged.matched_name, checks, judged.entries)
}

fn report(
    address: Option<std::net::SocketAddr>,
    matched_name: Option<String>,
    checks: Vec<Check>,
    chain: Vec<crate::tls::chain::ChainEntry>,
) -> Report {
    Report {
        ok: !checks.iter().any(|c| c.status == Status::Fail),
        verdict: headline(&checks),
        address,
        matched_name,
        checks,
        chain,
    }
}

fn network(detail: String) -> Outcome {
    Outcome::new(Status::Fail, NETWORK_ERROR, detail)
}

/// The token, then the Test Mailbox's schedule. Err short-cuts a failure.
async fn auth(
    target: &GraphTarget,
    secret: &SecretString,
    signin: &Place,
    connection: &mut client::Connection,
    trust: &[CertificateDer<'static>],
) -> Result<Outcome, Outcome> {
    let token = match request_token(
        connection,
        &target.cloud,
        &target.tenant,
        &target.client_id,
        secret,
    )
    .await
    {
        Ok(token) => token,
        Err(Ok(failure)) => return Err(sign_in_refused(&failure)),
        Err(Err(e)) => return Err(network(format!("The token request failed: {e}."))),
    };
    let Some(mailbox) = &target.mailbox else {
        return Ok(Outcome::new(
            Status::Pass,
            super::VERIFIED,
            format!(
                "The application {} signed in to tenant {} and got a token. No Test Mailbox: \
                 enter one to prove that calendars can be read.",
                target.client_id, target.tenant
            ),
        ));
    };
    let url = graph::schedule_url(&target.cloud, mailbox).map_err(|e| network(e.to_string()))?;
    let graph_place = place(&url).map_err(network)?;
    // The Graph host is another server, except in exchange-sim and some
    // proxies: connect to it by the same steps, or reuse the connection.
    let mut other;
    let graph_connection = if graph_place.server() == signin.server() {
        connection
    } else {
        other = super::connect(&target_for(
            &graph_place,
            trust.to_vec(),
            target.proxy.clone(),
            target.timeout,
            target.now,
        ))
        .await
        .map_err(|e| network(format!("The Graph host {}: {e}", graph_place.server())))?;
        &mut other
    };
    let start = target.now - target.now.rem_euclid(86_400);
    let body = graph::schedule_request(&[mailbox.as_str()], start, start + 86_400, 60)
        .map_err(|e| network(e.to_string()))?;
    let mut request = post(
        "application/json",
        body,
        vec![("Prefer", graph::PREFER_UTC.to_owned())],
    );
    request.path = graph_place.path.clone();
    let bearer = format!("Bearer {}", token.access_token);
    let response = graph_connection
        .send(&request, Some(&bearer))
        .await
        .map_err(|e| network(format!("getSchedule: {e}")))?;
    let body = response.body.unwrap_or_default();
    Ok(schedule_verdict(target, mailbox, response.status, &body))
}

/// The `auth` verdict for a refused sign-in (GR-4's advice).
pub fn sign_in_refused(failure: &SignInFailure) -> Outcome {
    let code = failure
        .code
        .map(|c| format!(" (AADSTS{c})"))
        .unwrap_or_default();
    Outcome::new(
        Status::Fail,
        "Failed - Authentication Rejected",
        format!(
            "Microsoft's sign-in refused the application{code}. {}",
            failure.advice
        ),
    )
}

/// The `auth` verdict from `getSchedule`'s answer for the Test Mailbox.
pub fn schedule_verdict(
    target: &GraphTarget,
    mailbox: &str,
    status: StatusCode,
    body: &[u8],
) -> Outcome {
    let fail = |verdict: &str, detail: String| Outcome::new(Status::Fail, verdict, detail);
    let service = graph::parse_error(body)
        .map(|e| format!(" ({}: {})", e.code, e.message))
        .unwrap_or_default();
    match status.as_u16() {
        200 => match graph::parse_schedule(body) {
            Ok(schedules) => match schedules.into_iter().next().map(|s| s.slots) {
                Some(Ok(slots)) => Outcome::new(
                    Status::Pass,
                    super::VERIFIED,
                    format!(
                        "The application {} signed in to tenant {} and read {mailbox}'s \
                         schedule with getSchedule ({} item{} today, UTC).",
                        target.client_id,
                        target.tenant,
                        slots.len(),
                        if slots.len() == 1 { "" } else { "s" }
                    ),
                ),
                Some(Err(e)) if e.code == "ErrorMailRecipientNotFound" => fail(
                    "Failed - Not Found",
                    format!(
                        "Microsoft 365 has no mailbox {mailbox} ({}): check the Test Mailbox.",
                        e.code
                    ),
                ),
                Some(Err(e)) => fail(
                    "Failed - Access Denied",
                    format!(
                        "getSchedule gave no schedule for {mailbox}: {} ({}). Check that the \
                         mailbox is in the application's RBAC for Applications scope.",
                        e.message, e.code
                    ),
                ),
                None => fail(
                    "Failed - Server Error",
                    format!("getSchedule answered no schedule for {mailbox}."),
                ),
            },
            Err(e) => fail(
                "Failed - Server Error",
                format!("getSchedule: unreadable answer: {e}."),
            ),
        },
        401 => fail(
            "Failed - Authentication Rejected",
            format!(
                "Microsoft Graph refused the token (401){service}: check that the Cloud matches \
                 the tenant's."
            ),
        ),
        403 => fail(
            "Failed - Access Denied",
            format!(
                "Microsoft Graph refused to read {mailbox}'s calendar (403){service}. In \
                 Microsoft Entra ID, grant the application the Calendars.Read application \
                 permission with admin consent, and include {mailbox} in the application's \
                 RBAC for Applications scope."
            ),
        ),
        429 | 503 => Outcome::new(
            Status::Warn,
            "Throttled",
            format!(
                "Microsoft Graph asked to wait ({status}){service}: the sign-in worked; try \
                 again in a minute to read {mailbox}'s calendar."
            ),
        ),
        s => fail(
            "Failed - Server Error",
            format!("getSchedule for {mailbox} answered {s}{service}."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> GraphTarget {
        GraphTarget {
            cloud: Cloud::Global,
            tenant: "contoso.onmicrosoft.com".to_owned(),
            client_id: "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57".to_owned(),
            secret: None,
            mailbox: Some("alice@contoso.com".to_owned()),
            trust: Vec::new(),
            proxy: None,
            timeout: Duration::from_secs(3),
            now: 0,
        }
    }

    #[test]
    fn urls_split_into_server_and_path() {
        let p =
            place("https://graph.example.com:8443/v1.0/users/a%40x/calendar/getSchedule").unwrap();
        assert_eq!(p.server(), "graph.example.com:8443");
        assert_eq!(p.path, "/v1.0/users/a%40x/calendar/getSchedule");
        let p = place("https://login.microsoftonline.com/t/oauth2/v2.0/token?x=1").unwrap();
        assert_eq!(p.port, 443);
        assert_eq!(p.path, "/t/oauth2/v2.0/token?x=1");
    }

    #[test]
    fn a_403_says_what_to_change_in_entra_id() {
        let body = br#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied. Check credentials and try again."}}"#;
        let o = schedule_verdict(&target(), "alice@contoso.com", StatusCode::FORBIDDEN, body);
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.verdict, "Failed - Access Denied");
        for needed in [
            "Calendars.Read",
            "admin consent",
            "RBAC for Applications",
            "ErrorAccessDenied",
        ] {
            assert!(o.detail.contains(needed), "{needed}: {}", o.detail);
        }
    }

    #[test]
    fn a_refused_sign_in_names_its_code_and_advice() {
        let o = sign_in_refused(&SignInFailure {
            code: Some(65_001),
            advice: "Grant admin consent.".to_owned(),
        });
        assert_eq!(o.status, Status::Fail);
        assert!(o.detail.contains("AADSTS65001") && o.detail.ends_with("Grant admin consent."));
    }

    #[test]
    fn an_unknown_test_mailbox_and_throttling() {
        let body = br#"{"value":[{"scheduleId":"alice@contoso.com","availabilityView":"","error":{"message":"not found","responseCode":"ErrorMailRecipientNotFound"}}]}"#;
        let o = schedule_verdict(&target(), "alice@contoso.com", StatusCode::OK, body);
        assert_eq!(o.verdict, "Failed - Not Found");
        let o = schedule_verdict(
            &target(),
            "alice@contoso.com",
            StatusCode::TOO_MANY_REQUESTS,
            b"",
        );
        assert_eq!(o.status, Status::Warn);
    }
}
