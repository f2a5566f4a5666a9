//! One HTTP request: latency, routing, authentication as IIS challenges for
//! it, the scripted behaviour, then EWS or WebDAV.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use presence_gateway::exchange::ntlm;
use quick_xml::escape::escape;

use crate::control::{self, FaultAnswer};
use crate::{Behave, NtlmChallenge, Sim, ews};

/// Largest request body answered (SOAP requests are a few KiB).
pub const MAX_BODY: u64 = 1024 * 1024;
/// A body over MAX_BODY but under this is read and discarded before the 413,
/// so the client gets to read the answer instead of a reset connection.
const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

const EWS_PATH: &str = "/EWS/Exchange.asmx";
/// The simulator's control endpoints (control.rs).
const SIM_PREFIX: &str = "/sim/";
const WEBDAV_PREFIX: &str = "/exchange/";
const XML: &str = "text/xml; charset=utf-8";
const HTML: &str = "text/html";

/// The NTLM challenge outstanding on one connection, if any.
#[derive(Clone, Default)]
pub struct NtlmState(Arc<Mutex<Option<[u8; 8]>>>);

impl NtlmState {
    fn issue(&self) -> [u8; 8] {
        let challenge: [u8; 8] = rand::random();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(challenge);
        challenge
    }

    /// The outstanding challenge, answerable once.
    fn take(&self) -> Option<[u8; 8]> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

pub async fn handle(
    request: Request<Incoming>,
    sim: &Sim,
    ntlm: &NtlmState,
) -> Response<Full<Bytes>> {
    // The Graph face applies the latency itself, inside its count of
    // concurrent requests per mailbox.
    let path = request.uri().path();
    let mut response = if crate::graph::is_graph_path(path) {
        crate::graph::handle(request, sim).await
    } else {
        if !sim.latency.is_zero() {
            tokio::time::sleep(sim.latency).await;
        }
        route(request, sim, ntlm).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::SERVER,
        HeaderValue::from_static("Microsoft-IIS/10.0"),
    );
    headers.insert("x-powered-by", HeaderValue::from_static("ASP.NET"));
    headers.insert(
        "x-exchange-sim-behave",
        HeaderValue::from_static(sim.behave.name()),
    );
    response
}

async fn route(request: Request<Incoming>, sim: &Sim, ntlm: &NtlmState) -> Response<Full<Bytes>> {
    // IIS matches paths case-insensitively.
    let path = request.uri().path().to_owned();
    let webdav_rest = strip_prefix_ignore_case(&path, WEBDAV_PREFIX).map(str::to_owned);
    let is_ews = path.eq_ignore_ascii_case(EWS_PATH);
    // The simulator's own control, for tests and demos: not Exchange, so
    // no Exchange authentication.
    if path.starts_with(SIM_PREFIX) {
        return control::handle(request, sim).await;
    }
    if !is_ews && webdav_rest.is_none() {
        return page(StatusCode::NOT_FOUND, "404 - File or directory not found.");
    }

    match authorize(request.headers(), sim, ntlm) {
        Auth::Granted if sim.behave != Behave::Unauthorized => {}
        Auth::Granted | Auth::Refused => return challenge(sim, None),
        Auth::NtlmChallenge(token) => return challenge(sim, Some(token)),
    }
    match sim.behave {
        Behave::Forbidden => {
            return page(StatusCode::FORBIDDEN, "403 - Forbidden: Access is denied.");
        }
        Behave::NotFound => {
            return page(StatusCode::NOT_FOUND, "404 - File or directory not found.");
        }
        Behave::ServerError => {
            return page(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        Behave::Ok | Behave::Fault | Behave::NoMailbox | Behave::Unauthorized => {}
    }

    let expected = if is_ews { "POST" } else { "PROPFIND" };
    if request.method().as_str() != expected {
        let mut response = page(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 - HTTP verb used to access this page is not allowed.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(expected));
        return response;
    }

    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let mut response = page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 - Request entity too large.",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(BodyError::Failed) => {
            return page(StatusCode::BAD_REQUEST, "400 - Bad Request.");
        }
        Err(BodyError::TimedOut) => {
            return page(StatusCode::REQUEST_TIMEOUT, "408 - Request Timeout.");
        }
    };

    match webdav_rest {
        None => ews_answer(&body, sim),
        Some(rest) => propfind(&rest, &path, &host, sim),
    }
}

/// An EWS request: counted for /sim/stats, answered by an injected fault
/// when one applies, else by ews.rs.
fn ews_answer(body: &[u8], sim: &Sim) -> Response<Full<Bytes>> {
    let request = ews::parse(body);
    let operation = ews::operation_name(&request).to_owned();
    let mailboxes = match &request {
        Ok(r) if operation == "GetUserAvailability" => ews::availability_mailboxes(r),
        _ => Vec::new(),
    };
    let fault = sim.faults.take(&operation);
    sim.stats.record(&operation, mailboxes.clone(), fault);
    match fault {
        None => {
            let (status, xml) = ews::answer(request, sim);
            respond(status, XML, xml)
        }
        Some(FaultAnswer::ServerBusy {
            back_off_ms,
            per_mailbox,
        }) => {
            if per_mailbox && operation == "GetUserAvailability" {
                respond(
                    StatusCode::OK,
                    XML,
                    ews::server_busy_per_mailbox(&mailboxes, back_off_ms, sim),
                )
            } else {
                let (status, xml) = ews::server_busy(back_off_ms);
                respond(status, XML, xml)
            }
        }
        Some(FaultAnswer::Http(StatusCode::SERVICE_UNAVAILABLE)) => {
            page(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Some(FaultAnswer::Http(status)) => page(status, "500 - Internal server error."),
    }
}

fn strip_prefix_ignore_case<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let head = path.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &path[prefix.len()..])
}

enum Auth {
    Granted,
    Refused,
    /// The base64 CHALLENGE answering an NTLM NEGOTIATE.
    NtlmChallenge(String),
}

/// Basic or NTLM credentials checked against --account (case-insensitive)
/// and its password (exact); without --account any Basic credentials pass,
/// and any well-formed NTLM answer to this connection's challenge.
fn authorize(headers: &HeaderMap, sim: &Sim, ntlm: &NtlmState) -> Auth {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Auth::Refused;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Auth::Refused;
    };
    let Ok(decoded) = STANDARD.decode(token.trim()) else {
        return Auth::Refused;
    };
    if scheme.eq_ignore_ascii_case("ntlm") && sim.ntlm {
        ntlm_step(&decoded, sim, ntlm)
    } else if scheme.eq_ignore_ascii_case("basic") && sim.basic && basic_matches(&decoded, sim) {
        Auth::Granted
    } else {
        // Negotiate is offered, like IIS does, but not spoken.
        Auth::Refused
    }
}

fn basic_matches(decoded: &[u8], sim: &Sim) -> bool {
    let Ok(text) = std::str::from_utf8(decoded) else {
        return false;
    };
    let Some((account, password)) = text.split_once(':') else {
        return false;
    };
    match &sim.credentials {
        None => true,
        Some(expected) => {
            account.to_lowercase() == expected.account.to_lowercase()
                && password == expected.password
        }
    }
}

/// A NEGOTIATE gets a fresh challenge for this connection; an AUTHENTICATE
/// must answer it, bound to this TLS connection when it carries bindings
/// (and always with --extended-protection).
fn ntlm_step(decoded: &[u8], sim: &Sim, state: &NtlmState) -> Auth {
    if ntlm::is_negotiate(decoded) {
        match sim.ntlm_challenge {
            NtlmChallenge::Normal => {}
            NtlmChallenge::Missing => return Auth::Refused,
            NtlmChallenge::Garbled => {
                return Auth::NtlmChallenge(STANDARD.encode(b"NTLMSSP\0 not a challenge"));
            }
        }
        let message = ntlm::challenge_message(
            state.issue(),
            "EXAMPLE",
            &[
                (ntlm::AV_NB_DOMAIN_NAME, "EXAMPLE"),
                (ntlm::AV_NB_COMPUTER_NAME, "EXCHANGE-SIM"),
                (ntlm::AV_DNS_COMPUTER_NAME, "exchange-sim.example.com"),
            ],
            ntlm::filetime(time::OffsetDateTime::now_utc().unix_timestamp()),
        );
        return Auth::NtlmChallenge(STANDARD.encode(message));
    }
    let Some(server_challenge) = state.take() else {
        return Auth::Refused;
    };
    let (account, password) = match &sim.credentials {
        Some(c) => (c.account.as_str(), c.password.as_str()),
        None => return Auth::Granted,
    };
    match ntlm::verify(
        decoded,
        &server_challenge,
        account,
        password,
        Some(sim.channel_bindings),
        sim.extended_protection,
    ) {
        Ok(()) => Auth::Granted,
        Err(refusal) => {
            tracing::info!(?refusal, "NTLM authentication refused");
            Auth::Refused
        }
    }
}

/// 401 with the challenges IIS sends for Exchange's virtual directories, or
/// with the NTLM challenge answering a client's NEGOTIATE.
fn challenge(sim: &Sim, ntlm: Option<String>) -> Response<Full<Bytes>> {
    let mut response = page(
        StatusCode::UNAUTHORIZED,
        "401 - Unauthorized: Access is denied due to invalid credentials.",
    );
    let headers = response.headers_mut();
    if let Some(token) = ntlm {
        if let Ok(value) = HeaderValue::from_str(&format!("NTLM {token}")) {
            headers.append(header::WWW_AUTHENTICATE, value);
        }
        return response;
    }
    if sim.ntlm {
        headers.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Negotiate"),
        );
        headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
    }
    if sim.basic {
        headers.append(header::WWW_AUTHENTICATE, sim.basic_challenge.clone());
    }
    response
}

pub enum BodyError {
    TooLarge,
    Failed,
    TimedOut,
}

/// Reads at most MAX_BODY bytes, within BODY_READ_TIMEOUT.
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(BodyError::TooLarge);
    }
    let mut body = request.into_body();
    let read = async {
        let mut buffer = BytesMut::new();
        let mut seen: u64 = 0;
        // Ends with the body, or at DRAIN_LIMIT bytes.
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Failed)?;
            if let Ok(data) = frame.into_data() {
                seen = seen.saturating_add(data.len() as u64);
                if seen > DRAIN_LIMIT {
                    return Err(BodyError::TooLarge);
                }
                if seen <= MAX_BODY {
                    buffer.extend_from_slice(&data);
                }
            }
        }
        if seen > MAX_BODY {
            Err(BodyError::TooLarge)
        } else {
            Ok(buffer.freeze())
        }
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

/// PROPFIND on /exchange/<mailbox>/<folder>/: the folder's display name when
/// it is the calendar folder (compared case-insensitively, as IIS does),
/// else 404. Any Depth gets the folder alone: the calendar is empty.
fn propfind(rest: &str, path: &str, host: &str, sim: &Sim) -> Response<Full<Bytes>> {
    if sim.behave == Behave::Fault {
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 - Internal server error.",
        );
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let [mailbox, folder] = segments.as_slice() else {
        return page(StatusCode::NOT_FOUND, "404 - File or directory not found.");
    };
    let (Some(_mailbox), Some(folder)) = (percent_decode(mailbox), percent_decode(folder)) else {
        return page(StatusCode::BAD_REQUEST, "400 - Bad Request.");
    };
    if folder.to_lowercase() != sim.calendar_folder.to_lowercase() {
        return page(StatusCode::NOT_FOUND, "404 - File or directory not found.");
    }
    let href = format!("https://{host}{path}");
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <a:multistatus xmlns:a=\"DAV:\">\n\
         \x20 <a:response>\n\
         \x20   <a:href>{href}</a:href>\n\
         \x20   <a:propstat>\n\
         \x20     <a:status>HTTP/1.1 200 OK</a:status>\n\
         \x20     <a:prop>\n\
         \x20       <a:displayname>{name}</a:displayname>\n\
         \x20       <a:resourcetype><a:collection /></a:resourcetype>\n\
         \x20       <a:iscollection>1</a:iscollection>\n\
         \x20       <a:contentclass>urn:content-classes:calendarfolder</a:contentclass>\n\
         \x20     </a:prop>\n\
         \x20   </a:propstat>\n\
         \x20 </a:response>\n\
         </a:multistatus>\n",
        href = escape(href.as_str()),
        name = escape(sim.calendar_folder.as_str()),
    );
    respond(StatusCode::MULTI_STATUS, XML, xml)
}

/// %XX-decodes a path segment; None when it is malformed or not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An IIS-style error page.
fn page(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>{text}</title></head>\
         <body><h1>Server Error</h1><h2>{text}</h2></body></html>\n"
    );
    respond(status, HTML, html)
}

/// An answer with a body of `content_type` (every face of the sim).
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("Kalender").as_deref(), Some("Kalender"));
        assert_eq!(percent_decode("Bo%C3%AEte").as_deref(), Some("Boîte"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn prefix_ignores_case() {
        assert_eq!(
            strip_prefix_ignore_case("/Exchange/a/b/", WEBDAV_PREFIX),
            Some("a/b/")
        );
        assert_eq!(strip_prefix_ignore_case("/ex", WEBDAV_PREFIX), None);
        assert_eq!(strip_prefix_ignore_case("/exchangé/", WEBDAV_PREFIX), None);
    }
}
