//! The engine's requests to an EWS gateway (EN-2, EN-4): each over a
//! connection the troubleshooter's steps verified (the engine trusts exactly
//! the servers the troubleshooter calls Verified), authenticated per
//! *Exchange Server Authentication*, kept open for the next request, and
//! judged into what the engine does next.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use rustls::pki_types::CertificateDer;

use crate::domain::gateway::{GatewayKind, ServerLocation};
use crate::domain::params::ExchangeAuth;
use crate::exchange::availability::{self, MailboxAvailability};
use crate::exchange::client::{self, AuthMode, Credentials};
use crate::exchange::ews;
use crate::exchange::push as ews_push;
use crate::troubleshoot::{self, Target};

/// Answers parsed at once, over every gateway (see [`read`]).
static PARSING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// `ErrorServerBusy` without a `BackOffMilliseconds`: Exchange's usual hint.
pub const DEFAULT_BACK_OFF: Duration = Duration::from_secs(5);

/// One EWS gateway as the engine reaches it.
pub struct Endpoint {
    pub id: i64,
    pub description: String,
    pub host: ServerLocation,
    pub port: u16,
    pub trust: Vec<CertificateDer<'static>>,
    pub credentials: Credentials,
    pub dns_configured: bool,
    pub auth: AuthMode,
    pub timeout: Duration,
    /// Connections kept open between requests, at most Exchange Threads.
    idle: Mutex<Vec<client::Connection>>,
}

impl Endpoint {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        description: String,
        host: ServerLocation,
        port: u16,
        trust: Vec<CertificateDer<'static>>,
        credentials: Credentials,
        dns_configured: bool,
        auth: ExchangeAuth,
        timeout: Duration,
    ) -> Endpoint {
        Endpoint {
            id,
            description,
            host,
            port,
            trust,
            credentials,
            dns_configured,
            auth: match auth {
                ExchangeAuth::Auto => AuthMode::Auto,
                ExchangeAuth::BasicOnly => AuthMode::Basic,
            },
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// What the troubleshooter's connection steps need; certificate dates
    /// are judged at `now`.
    fn target(&self, now: i64) -> Target {
        Target {
            kind: GatewayKind::Ews,
            host: self.host.clone(),
            port: self.port,
            connect: None,
            dns_configured: self.dns_configured,
            trust: self.trust.clone(),
            credentials: None,
            mailbox: None,
            calendar_folder: troubleshoot::DEFAULT_CALENDAR_FOLDER.to_owned(),
            auth: self.auth,
            timeout: self.timeout,
            now,
            // On-premises Exchange is reached directly (GR-3).
            proxy: None,
        }
    }

    fn take_idle(&self) -> Option<client::Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(connection) = idle.pop() {
            if connection.is_open() {
                return Some(connection);
            }
        }
        None
    }

    fn keep(&self, connection: client::Connection, at_most: usize) {
        if !connection.is_open() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < at_most {
            idle.push(connection);
        }
    }
}

/// How one `GetUserAvailability` went.
#[derive(Debug)]
pub enum Answer {
    /// One result per mailbox asked, in order.
    Read(Vec<MailboxAvailability>),
    /// The server asked to be left alone this long (`ErrorServerBusy`).
    Busy { back_off: Duration, text: String },
    /// Nothing read: no verified connection, a timeout, a refusal, a 5xx.
    Failed(String),
}

/// Sends one EWS request through `endpoint`, on a kept connection when
/// one is open, else on a new verified one; `anchor` routes an impersonated
/// request to its mailbox (Exchange 2013 and later). The connection is kept
/// for the next request after a 200.
async fn exchange(
    endpoint: &Endpoint,
    operation: &str,
    body: String,
    anchor: Option<&str>,
    now: i64,
    keep_at_most: usize,
) -> Result<(StatusCode, Bytes), String> {
    let request = client::Request {
        method: "POST",
        path: ews::EWS_PATH.to_owned(),
        content_type: ews::SOAP_CONTENT_TYPE,
        body: Bytes::from(body),
        headers: anchor
            .map(|mailbox| vec![("X-AnchorMailbox", mailbox.to_owned())])
            .unwrap_or_default(),
    };
    // A kept connection the server closed meanwhile fails at once; the
    // request is then sent once more on a new one.
    let mut kept = endpoint.take_idle();
    let (response, connection) = loop {
        let reused = kept.is_some();
        let mut connection = match kept.take() {
            Some(connection) => connection,
            None => troubleshoot::connect(&endpoint.target(now)).await?,
        };
        match connection
            .request(&request, &endpoint.credentials, endpoint.auth)
            .await
        {
            Ok(response) => break (response, connection),
            Err(client::ClientError::Http(_)) if reused => continue,
            Err(e) => return Err(format!("{operation}: {e}")),
        }
    };
    if response.status == StatusCode::OK {
        endpoint.keep(connection, keep_at_most);
    }
    Ok((response.status, response.body.unwrap_or_default()))
}

/// Reads `mailboxes`' free/busy over `[start, end)` through `endpoint`.
pub async fn read(
    endpoint: &Endpoint,
    mailboxes: &[String],
    start: i64,
    end: i64,
    now: i64,
    keep_at_most: usize,
) -> Answer {
    let refs: Vec<&str> = mailboxes.iter().map(String::as_str).collect();
    let body = match availability::request(&refs, start, end) {
        Ok(body) => body,
        Err(e) => return Answer::Failed(e),
    };
    match exchange(
        endpoint,
        "GetUserAvailability",
        body,
        None,
        now,
        keep_at_most,
    )
    .await
    {
        Ok((status, body)) => {
            // Parsed a few at a time: parsing is CPU-bound, and each parse
            // of a 100-mailbox answer holds several times the answer's size,
            // so sixty at once would only raise the peak memory.
            let Ok(_parsing) = PARSING.acquire().await else {
                return Answer::Failed("the engine is stopping".to_owned());
            };
            judge(status, &body)
        }
        Err(reason) => Answer::Failed(reason),
    }
}

/// How one push `Subscribe` went.
#[derive(Debug)]
pub enum SubAnswer {
    Made(ews_push::Subscribed),
    Busy {
        back_off: Duration,
        text: String,
    },
    /// Exchange refused this one (rights, too many subscriptions, ...).
    Refused(String),
    /// Nothing learnt: no verified connection, a timeout, a 5xx.
    Failed(String),
}

/// Subscribes to `mailbox`'s calendar as that mailbox, with call-backs to
/// `url`.
pub async fn subscribe(
    endpoint: &Endpoint,
    mailbox: &str,
    url: &str,
    status_minutes: u32,
    now: i64,
    keep_at_most: usize,
) -> SubAnswer {
    let body = ews_push::subscribe_request(mailbox, url, status_minutes);
    match exchange(
        endpoint,
        "Subscribe",
        body,
        Some(mailbox),
        now,
        keep_at_most,
    )
    .await
    {
        Err(reason) => SubAnswer::Failed(reason),
        Ok((status, body)) => match ews_push::parse_subscribe(&body) {
            Ok(made) if status == StatusCode::OK => SubAnswer::Made(made),
            Ok(_) => SubAnswer::Failed(format!("Subscribe: HTTP {}", status.as_u16())),
            Err(e) if e.code == "ErrorServerBusy" => SubAnswer::Busy {
                back_off: e
                    .back_off_ms
                    .map_or(DEFAULT_BACK_OFF, Duration::from_millis),
                text: format!("ErrorServerBusy: {}", e.message),
            },
            Err(e)
                if e.code == "ErrorInvalidResponse"
                    || status.is_server_error() && e.code == "SOAP fault" =>
            {
                SubAnswer::Failed(format!(
                    "Subscribe: HTTP {}: {}",
                    status.as_u16(),
                    e.message
                ))
            }
            Err(e) => SubAnswer::Refused(format!("{}: {}", e.code, e.message)),
        },
    }
}

/// An answer's meaning: its status and body.
pub fn judge(status: StatusCode, body: &[u8]) -> Answer {
    if status == StatusCode::OK {
        return match availability::parse(body) {
            Ok(results) => Answer::Read(results),
            Err(e) => Answer::Failed(format!("GetUserAvailability answer unreadable: {e}")),
        };
    }
    if let Some(fault) = availability::fault(body) {
        if fault.code == "ErrorServerBusy" {
            return Answer::Busy {
                back_off: fault
                    .back_off_ms
                    .map_or(DEFAULT_BACK_OFF, Duration::from_millis),
                text: format!("ErrorServerBusy: {}", fault.message),
            };
        }
        return Answer::Failed(format!(
            "HTTP {}: {}: {}",
            status.as_u16(),
            fault.code,
            fault.message
        ));
    }
    Answer::Failed(match status {
        StatusCode::UNAUTHORIZED => {
            "HTTP 401: the service account's credentials were refused".to_owned()
        }
        other => format!(
            "HTTP {} {}",
            other.as_u16(),
            other.canonical_reason().unwrap_or("")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_status_and_fault() {
        let busy = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>a:ErrorServerBusy</faultcode><faultstring>Try again later.</faultstring><detail><e:ResponseCode xmlns:e="e">ErrorServerBusy</e:ResponseCode><t:MessageXml xmlns:t="t"><t:Value Name="BackOffMilliseconds">1500</t:Value></t:MessageXml></detail></s:Fault></s:Body></s:Envelope>"#;
        match judge(StatusCode::INTERNAL_SERVER_ERROR, busy) {
            Answer::Busy { back_off, text } => {
                assert_eq!(back_off, Duration::from_millis(1500));
                assert!(text.starts_with("ErrorServerBusy"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        match judge(StatusCode::SERVICE_UNAVAILABLE, b"") {
            Answer::Failed(why) => assert_eq!(why, "HTTP 503 Service Unavailable"),
            other => panic!("{other:?}"),
        }
        match judge(StatusCode::UNAUTHORIZED, b"") {
            Answer::Failed(why) => assert!(why.contains("credentials were refused"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(StatusCode::OK, b"<html/>"),
            Answer::Failed(_)
        ));
    }
}
