//! The engine's requests to a Microsoft 365 gateway (GR-3..GR-6): each over
//! a connection made by the troubleshooter's steps (so the engine trusts
//! exactly what the troubleshooter calls Verified), judged against the
//! system's CA certificates plus the trust store, with an app-only token
//! from the gateway's cache. Calendars are read with `getSchedule`, at most
//! 20 mailboxes a request, each request addressed through one of its own
//! mailboxes: Graph budgets requests per mailbox in the path, so the path
//! mailbox rotates through the batch, at most 4 requests are in flight per
//! path mailbox, and a 429 or 503 stops only that mailbox's path until its
//! `Retry-After` (or a back-off) has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use rustls::pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};

use super::ews::Answer;
use super::tokens::TokenCache;
use crate::clock::SharedClock;
use crate::exchange::availability::{MailboxAvailability, MailboxError};
use crate::exchange::client;
use crate::exchange::graph::{self, Cloud, Token};
use crate::troubleshoot::{self, Proxy, graph as tgraph};

/// At most this many requests in flight per path mailbox (GR-6).
pub const PER_MAILBOX: u8 = 4;
/// Other path mailboxes tried after a 429/503 before the batch waits.
const PATH_TRIES: usize = 3;

/// A path mailbox's budget as this engine sees it.
#[derive(Default)]
struct PathState {
    in_flight: u8,
    /// Throttled until then (429/503), and the 429s in a row.
    not_before: Option<Instant>,
    refusals: u32,
}

/// One Microsoft 365 gateway as the engine reaches it.
pub struct GraphEndpoint {
    pub id: i64,
    pub description: String,
    pub cloud: Cloud,
    pub tenant: String,
    pub client_id: String,
    secret: SecretString,
    /// The system's CA certificates plus the trust store.
    trust: Vec<CertificateDer<'static>>,
    /// The Outbound Proxy of System > Settings (GR-3).
    proxy: Option<Proxy>,
    pub timeout: Duration,
    tokens: TokenCache,
    /// Kept connections, per server (`host:port`).
    idle: Mutex<HashMap<String, Vec<client::Connection>>>,
    paths: Mutex<HashMap<String, PathState>>,
    /// Rotates the path mailbox through each batch.
    turn: std::sync::atomic::AtomicUsize,
}

impl GraphEndpoint {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        description: String,
        cloud: Cloud,
        tenant: String,
        client_id: String,
        secret: SecretString,
        trust_store: Vec<CertificateDer<'static>>,
        proxy: Option<Proxy>,
        timeout: Duration,
        clock: SharedClock,
    ) -> GraphEndpoint {
        let trust = tgraph::with_system_roots(trust_store);
        GraphEndpoint {
            id,
            description,
            cloud,
            tenant,
            client_id,
            secret,
            trust,
            proxy,
            timeout,
            tokens: TokenCache::new(clock),
            idle: Mutex::new(HashMap::new()),
            paths: Mutex::new(HashMap::new()),
            turn: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Sends one request to `url`, on a kept connection to its server when
    /// one is open; the connection is kept after any complete answer.
    async fn send(
        &self,
        url: &str,
        mut request: client::Request,
        bearer: Option<&SecretString>,
        now: i64,
    ) -> Result<client::Response, String> {
        let place = tgraph::place(url)?;
        let server = place.server();
        request.path = place.path.clone();
        let authorization = bearer.map(|t| format!("Bearer {}", t.expose_secret()));
        let mut kept = self.take_idle(&server);
        loop {
            let reused = kept.is_some();
            let mut connection = match kept.take() {
                Some(connection) => connection,
                None => {
                    let target = tgraph::target_for(
                        &place,
                        self.trust.clone(),
                        self.proxy.clone(),
                        self.timeout,
                        now,
                    );
                    troubleshoot::connect(&target).await?
                }
            };
            match connection.send(&request, authorization.as_deref()).await {
                Ok(response) => {
                    self.keep(server, connection);
                    return Ok(response);
                }
                // A kept connection the server closed meanwhile: once more
                // on a new one.
                Err(client::ClientError::Http(_)) if reused => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn take_idle(&self, server: &str) -> Option<client::Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let kept = idle.get_mut(server)?;
        while let Some(connection) = kept.pop() {
            if connection.is_open() {
                return Some(connection);
            }
        }
        None
    }

    fn keep(&self, server: String, connection: client::Connection) {
        if !connection.is_open() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let kept = idle.entry(server).or_default();
        // As many as could be in flight at once; beyond that they idle.
        if kept.len() < 100 {
            kept.push(connection);
        }
    }

    /// A token from the cache, renewed from the sign-in service when due.
    /// Err is advice for the administrator (GR-4).
    pub async fn token(&self, now: i64) -> Result<SecretString, String> {
        self.tokens.get(|| self.fetch_token(now)).await
    }

    async fn fetch_token(&self, now: i64) -> Result<Token, String> {
        let url = graph::token_url(&self.cloud, &self.tenant).map_err(|e| e.to_string())?;
        let place = tgraph::place(&url)?;
        let server = place.server();
        let mut connection = match self.take_idle(&server) {
            Some(connection) => connection,
            None => {
                let target = tgraph::target_for(
                    &place,
                    self.trust.clone(),
                    self.proxy.clone(),
                    self.timeout,
                    now,
                );
                troubleshoot::connect(&target)
                    .await
                    .map_err(|e| format!("Microsoft 365 sign-in: {e}"))?
            }
        };
        let token = tgraph::request_token(
            &mut connection,
            &self.cloud,
            &self.tenant,
            &self.client_id,
            &self.secret,
        )
        .await;
        self.keep(server, connection);
        token.map_err(|failure| match failure {
            Ok(refused) => format!("Microsoft 365 sign-in failed: {}", refused.advice),
            Err(e) => format!("Microsoft 365 sign-in: {e}"),
        })
    }

    /// A path mailbox from `batch` with budget left, starting at this
    /// batch's turn; or how long until one has.
    fn choose_path(&self, batch: &[String]) -> Result<String, Duration> {
        let start = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut soonest: Option<Duration> = None;
        for i in 0..batch.len() {
            let mailbox = &batch[(start + i) % batch.len()];
            let state = paths.entry(mailbox.to_ascii_lowercase()).or_default();
            if let Some(until) = state.not_before {
                if until > now {
                    let wait = until - now;
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                    continue;
                }
                state.not_before = None;
            }
            if state.in_flight < PER_MAILBOX {
                state.in_flight += 1;
                return Ok(mailbox.clone());
            }
        }
        // All busy (not throttled): a moment, as a full queue waits.
        Err(soonest.unwrap_or(Duration::from_millis(200)))
    }

    /// Ends a request through `mailbox`'s path; `throttled` is how long
    /// Graph asked it to wait (None: no refusal).
    fn done(&self, mailbox: &str, throttled: Option<Option<Duration>>) {
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let state = paths.entry(mailbox.to_ascii_lowercase()).or_default();
        state.in_flight = state.in_flight.saturating_sub(1);
        match throttled {
            None => state.refusals = 0,
            Some(retry_after) => {
                state.refusals = state.refusals.saturating_add(1);
                let wait = retry_after.unwrap_or_else(|| graph::backoff(state.refusals));
                state.not_before = Some(Instant::now() + wait);
            }
        }
        // Keep the map to the mailboxes with state worth keeping.
        if state.in_flight == 0 && state.not_before.is_none() && state.refusals == 0 {
            paths.remove(&mailbox.to_ascii_lowercase());
        }
    }

    /// Whether `mailbox`'s path may be used now (for tests and health).
    pub fn path_throttled(&self, mailbox: &str) -> bool {
        let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths
            .get(&mailbox.to_ascii_lowercase())
            .and_then(|s| s.not_before)
            .is_some_and(|until| until > Instant::now())
    }
}

impl GraphEndpoint {
    /// One authorized request to Graph; the token is dropped after a 401.
    async fn call(
        &self,
        method: &'static str,
        url: &str,
        body: Option<String>,
        now: i64,
    ) -> Result<(StatusCode, bytes::Bytes), String> {
        let token = self.token(now).await?;
        let mut request = tgraph::post("application/json", body.unwrap_or_default(), Vec::new());
        request.method = method;
        let response = self.send(url, request, Some(&token), now).await?;
        if response.status == StatusCode::UNAUTHORIZED {
            self.tokens.forget().await;
        }
        Ok((response.status, response.body.unwrap_or_default()))
    }

    /// Subscribes to `mailbox`'s events (GR-5): Graph validates the
    /// notification URLs under `base` (the listener echoes its token)
    /// before it answers. Err says why not, for health and the log.
    pub async fn subscribe(
        &self,
        mailbox: &str,
        base: &str,
        client_state: &str,
        now: i64,
    ) -> Result<graph::Subscription, String> {
        let url = graph::subscriptions_url(&self.cloud).map_err(|e| e.to_string())?;
        let body = graph::subscription_request(base, mailbox, graph::max_expiry(now), client_state)
            .map_err(|e| e.to_string())?;
        let (status, answer) = self.call("POST", &url, Some(body), now).await?;
        match status.as_u16() {
            200 | 201 => graph::parse_subscription(&answer).map_err(|e| e.to_string()),
            s => Err(format!(
                "subscription for {mailbox}: HTTP {s}{}",
                service_text(&answer)
            )),
        }
    }

    /// Renews subscription `id` to the longest lifetime; Err(None) when
    /// Graph no longer has it (to be made again).
    pub async fn renew(&self, id: &str, now: i64) -> Result<graph::Subscription, Option<String>> {
        let url = graph::subscription_url(&self.cloud, id).map_err(|e| Some(e.to_string()))?;
        let body = graph::renew_request(graph::max_expiry(now)).map_err(|e| Some(e.to_string()))?;
        let (status, answer) = self
            .call("PATCH", &url, Some(body), now)
            .await
            .map_err(Some)?;
        match status.as_u16() {
            200 => graph::parse_subscription(&answer).map_err(|e| Some(e.to_string())),
            404 => Err(None),
            s => Err(Some(format!("renewal: HTTP {s}{}", service_text(&answer)))),
        }
    }

    /// Deletes subscription `id` (a user's calendar switched off, the
    /// engine stopping); one Graph no longer has is as good as deleted.
    pub async fn unsubscribe(&self, id: &str, now: i64) -> Result<(), String> {
        let url = graph::subscription_url(&self.cloud, id).map_err(|e| e.to_string())?;
        let (status, answer) = self.call("DELETE", &url, None, now).await?;
        match status.as_u16() {
            200 | 202 | 204 | 404 => Ok(()),
            s => Err(format!(
                "deleting subscription {id}: HTTP {s}{}",
                service_text(&answer)
            )),
        }
    }
}

/// Reads `mailboxes`' schedules over `[start, end)` (at most
/// [`graph::MAX_SCHEDULES`]), one result per mailbox in order, as EWS's
/// reads answer, so the engine treats both alike.
pub async fn read(
    endpoint: &GraphEndpoint,
    mailboxes: &[String],
    start: i64,
    end: i64,
    now: i64,
) -> Answer {
    let refs: Vec<&str> = mailboxes.iter().map(String::as_str).collect();
    let body = match graph::schedule_request(&refs, start, end, 60) {
        Ok(body) => body,
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let token = match endpoint.token(now).await {
        Ok(token) => token,
        Err(advice) => return Answer::Failed(advice),
    };
    for _ in 0..PATH_TRIES {
        let path_mailbox = match endpoint.choose_path(mailboxes) {
            Ok(mailbox) => mailbox,
            Err(wait) => {
                return Answer::Busy {
                    back_off: wait,
                    text: "every mailbox of the batch is throttled by Microsoft Graph".to_owned(),
                };
            }
        };
        let sent = match graph::schedule_url(&endpoint.cloud, &path_mailbox) {
            Ok(url) => {
                let headers = vec![("Prefer", graph::PREFER_UTC.to_owned())];
                let request = tgraph::post("application/json", body.clone(), headers);
                endpoint.send(&url, request, Some(&token), now).await
            }
            Err(e) => Err(e.to_string()),
        };
        // The path's budget is given back once, whatever came of it; a
        // 429 or 503 stops that path for its Retry-After.
        let throttled = sent.as_ref().ok().and_then(|r| {
            matches!(
                r.status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
            .then(|| {
                r.headers
                    .get(hyper::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(graph::retry_after)
            })
        });
        endpoint.done(&path_mailbox, throttled);
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Answer::Failed(format!("getSchedule: {e}")),
        };
        let status = response.status;
        let answer_body = response.body.unwrap_or_default();
        return match status {
            StatusCode::OK => match graph::parse_schedule(&answer_body) {
                Ok(schedules) => Answer::Read(in_order(mailboxes, schedules)),
                Err(e) => Answer::Failed(format!("getSchedule: {e}")),
            },
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                tracing::debug!(mailbox = path_mailbox, ?throttled, %status, "getSchedule throttled");
                continue;
            }
            StatusCode::UNAUTHORIZED => {
                endpoint.tokens.forget().await;
                Answer::Failed(format!(
                    "getSchedule: 401, the token was refused{}",
                    service_text(&answer_body)
                ))
            }
            StatusCode::FORBIDDEN => Answer::Failed(format!(
                "getSchedule: 403{}: grant the Calendars.Read application permission with admin \
                 consent, and include {path_mailbox} in the application's RBAC for Applications \
                 scope",
                service_text(&answer_body)
            )),
            status => Answer::Failed(format!(
                "getSchedule: HTTP {status}{}",
                service_text(&answer_body)
            )),
        };
    }
    Answer::Busy {
        back_off: Duration::from_secs(1),
        text: "Microsoft Graph throttled getSchedule (429)".to_owned(),
    }
}

fn service_text(body: &[u8]) -> String {
    graph::parse_error(body)
        .map(|e| format!(" ({}: {})", e.code, e.message))
        .unwrap_or_default()
}

/// One result per asked mailbox, in the order asked: Graph answers by
/// `scheduleId`; a mailbox it left out is an error for that mailbox.
fn in_order(asked: &[String], answered: Vec<graph::MailboxSchedule>) -> Vec<MailboxAvailability> {
    let mut by_mailbox: HashMap<String, graph::MailboxSchedule> = answered
        .into_iter()
        .map(|s| (s.mailbox.to_ascii_lowercase(), s))
        .collect();
    asked
        .iter()
        .map(
            |mailbox| match by_mailbox.remove(&mailbox.to_ascii_lowercase()) {
                Some(schedule) => schedule.slots.map_err(|e| MailboxError {
                    code: e.code,
                    message: e.message,
                    back_off_ms: None,
                }),
                None => Err(MailboxError {
                    code: "NoAnswer".to_owned(),
                    message: "getSchedule gave no answer for this mailbox".to_owned(),
                    back_off_ms: None,
                }),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_follow_the_order_asked_whatever_graph_answers() {
        let asked = vec![
            "A@x.com".to_owned(),
            "b@x.com".to_owned(),
            "c@x.com".to_owned(),
        ];
        let answered = vec![
            graph::MailboxSchedule {
                mailbox: "b@x.com".to_owned(),
                slots: Ok(Vec::new()),
            },
            graph::MailboxSchedule {
                mailbox: "a@x.com".to_owned(),
                slots: Err(graph::ScheduleError {
                    code: "ErrorMailRecipientNotFound".to_owned(),
                    message: "no".to_owned(),
                }),
            },
        ];
        let results = in_order(&asked, answered);
        assert_eq!(results.len(), 3);
        assert_eq!(
            results[0].as_ref().unwrap_err().code,
            "ErrorMailRecipientNotFound"
        );
        assert!(results[1].is_ok());
        assert_eq!(results[2].as_ref().unwrap_err().code, "NoAnswer");
    }
}
