//! The Microsoft 365 face: the identity platform's client-credentials token
//! endpoint and Microsoft Graph's `getSchedule`, on the same TLS listener as
//! EWS, over the same scripted calendars, following the wire contract in
//! the project notes (graph-contract.md). Subscriptions live in
//! graph_subs.rs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::time::Instant;

use crate::Sim;
use crate::graph_subs::Subs;
use crate::service::{percent_decode, read_body};

/// Per-path-mailbox counters are keyed by client text: bound how many.
const MAX_KEYS: usize = 100_000;
pub const JSON: &str = "application/json; charset=utf-8";

/// The flags of the Graph face.
pub struct Config {
    pub tenant: String,
    pub domain: String,
    pub client_id: String,
    /// None: --graph-secret-env not given or unset, so every token request
    /// fails as a wrong secret would.
    pub secret: Option<String>,
    pub token_lifetime: Duration,
    /// --graph-subscription-minutes: the longest subscription granted.
    pub subscription_minutes: Option<i64>,
    /// Lower-cased mailboxes the application may not read (RBAC for
    /// Applications scope).
    pub forbidden: Vec<String>,
    /// --graph-deliver-to: replaces scheme and authority of every URL the
    /// sim POSTs to, as a reverse proxy in front of the receiver would.
    pub deliver_to: Option<url::Url>,
    pub latency: Duration,
    /// One delivery attempt's bound, and the pause between attempts.
    pub push_timeout: Duration,
    pub retry_pause: Duration,
}

/// A token fault set by /sim/graph/faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFault {
    ExpiredSecret,
    ConsentMissing,
}

/// How long a fault lasts: a number of requests, a time, or both.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub remaining: Option<u64>,
    pub until: Option<Instant>,
}

impl Budget {
    /// Whether the fault applies to this request (and counts it); false
    /// once it is spent or past its time.
    fn spend(&mut self) -> bool {
        if self.until.is_some_and(|u| Instant::now() >= u) {
            return false;
        }
        match self.remaining.as_mut() {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub status: StatusCode,
    /// None: the answer carries no Retry-After header.
    pub retry_after: Option<u64>,
    pub budget: Budget,
}

/// Counts for /sim/stats' `graph` object.
#[derive(Default)]
pub struct Counts {
    pub token_requests: u64,
    pub tokens_issued: u64,
    pub get_schedule_requests: u64,
    pub get_schedule_by_mailbox: BTreeMap<String, u64>,
    pub max_concurrency: BTreeMap<String, usize>,
    inflight: HashMap<String, usize>,
    pub throttled: u64,
    pub subscriptions_created: u64,
    pub subscriptions_renewed: u64,
    pub subscriptions_deleted: u64,
    pub notifications_sent: u64,
    pub notifications_failed: u64,
    pub lifecycle_sent: u64,
    pub validations_ok: u64,
    pub validations_failed: u64,
}

pub struct Graph {
    pub config: Config,
    /// Access tokens issued, with when they expire.
    tokens: Mutex<HashMap<String, Instant>>,
    token_fault: Mutex<Option<(TokenFault, Budget)>>,
    /// By lower-cased path mailbox.
    throttles: Mutex<HashMap<String, Throttle>>,
    counts: Mutex<Counts>,
    pub subs: Subs,
}

impl Graph {
    pub fn new(config: Config) -> Graph {
        Graph {
            config,
            tokens: Mutex::default(),
            token_fault: Mutex::default(),
            throttles: Mutex::default(),
            counts: Mutex::default(),
            subs: Subs::default(),
        }
    }

    pub fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_token_fault(&self, fault: Option<(TokenFault, Budget)>) {
        *self
            .token_fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
    }

    pub fn set_throttle(&self, mailbox: &str, throttle: Throttle) {
        self.throttles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(mailbox.to_ascii_lowercase(), throttle);
    }

    pub fn clear_faults(&self) {
        self.set_token_fault(None);
        self.throttles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn take_token_fault(&self) -> Option<TokenFault> {
        let mut slot = self
            .token_fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (fault, budget) = slot.as_mut()?;
        if budget.spend() {
            Some(*fault)
        } else {
            *slot = None;
            None
        }
    }

    pub fn take_throttle(&self, mailbox: &str) -> Option<Throttle> {
        let mut throttles = self
            .throttles
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let throttle = throttles.get_mut(mailbox)?;
        if throttle.budget.spend() {
            Some(*throttle)
        } else {
            throttles.remove(mailbox);
            None
        }
    }

    /// Whether `Authorization: Bearer` carries a live token of ours.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
        else {
            return false;
        };
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // Expired tokens go, so the map holds only live ones.
        tokens.retain(|_, expires| *expires > now);
        tokens.contains_key(token)
    }

    pub fn forbidden(&self, mailbox: &str) -> bool {
        let mailbox = mailbox.to_ascii_lowercase();
        self.config.forbidden.contains(&mailbox)
    }

    pub fn stats_json(&self) -> Value {
        let (active, list) = self.subs.describe();
        let c = self.counts();
        json!({
            "token_requests": c.token_requests,
            "tokens_issued": c.tokens_issued,
            "get_schedule_requests": c.get_schedule_requests,
            "get_schedule_by_mailbox": c.get_schedule_by_mailbox,
            "max_concurrency": c.max_concurrency,
            "throttled": c.throttled,
            "subscriptions_active": active,
            "subscriptions_created": c.subscriptions_created,
            "subscriptions_renewed": c.subscriptions_renewed,
            "subscriptions_deleted": c.subscriptions_deleted,
            "subscriptions": list,
            "notifications_sent": c.notifications_sent,
            "notifications_failed": c.notifications_failed,
            "lifecycle_sent": c.lifecycle_sent,
            "validations_ok": c.validations_ok,
            "validations_failed": c.validations_failed,
        })
    }
}

/// Counts a request in flight on one path mailbox while it lives, keeping
/// the highest number seen (the client must keep it at 4 or fewer).
pub struct InFlight<'a> {
    graph: &'a Graph,
    mailbox: String,
}

impl<'a> InFlight<'a> {
    pub fn enter(graph: &'a Graph, mailbox: &str) -> InFlight<'a> {
        let mut c = graph.counts();
        let known = c.max_concurrency.contains_key(mailbox);
        if known || c.max_concurrency.len() < MAX_KEYS {
            let n = {
                let n = c.inflight.entry(mailbox.to_owned()).or_default();
                *n += 1;
                *n
            };
            let max = c.max_concurrency.entry(mailbox.to_owned()).or_default();
            *max = (*max).max(n);
            *c.get_schedule_by_mailbox
                .entry(mailbox.to_owned())
                .or_default() += 1;
        }
        c.get_schedule_requests += 1;
        InFlight {
            graph,
            mailbox: mailbox.to_owned(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut c = self.graph.counts();
        if let Some(n) = c.inflight.get_mut(&self.mailbox) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.inflight.remove(&self.mailbox);
            }
        }
    }
}

/// Whether a path belongs to the Graph face (token endpoint or /v1.0/).
pub fn is_graph_path(path: &str) -> bool {
    path.starts_with("/v1.0/") || token_tenant(path).is_some()
}

/// `{tenant}` of `/{tenant}/oauth2/v2.0/token`.
fn token_tenant(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (tenant, tail) = rest.split_once('/')?;
    (tail == "oauth2/v2.0/token" && !tenant.is_empty()).then_some(tenant)
}

/// Answers a Graph-face request (is_graph_path was true).
pub async fn handle(request: Request<Incoming>, sim: &Sim) -> Response<Full<Bytes>> {
    let graph = &sim.graph;
    let path = request.uri().path().to_owned();
    if let Some(tenant) = token_tenant(&path) {
        let tenant = tenant.to_owned();
        if !graph.config.latency.is_zero() {
            tokio::time::sleep(graph.config.latency).await;
        }
        if request.method() != Method::POST {
            return aad_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                900561,
                "The endpoint only accepts POST requests.",
            );
        }
        let body = read_body(request).await.unwrap_or_default();
        return token(graph, &tenant, &body);
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::POST, ["v1.0", users, mailbox, calendar, get])
            if users.eq_ignore_ascii_case("users")
                && calendar.eq_ignore_ascii_case("calendar")
                && get.eq_ignore_ascii_case("getSchedule") =>
        {
            let Some(mailbox) = percent_decode(mailbox) else {
                return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Malformed user id.");
            };
            crate::graph_schedule::get_schedule(request, sim, &mailbox.to_ascii_lowercase()).await
        }
        (_, ["v1.0", subscriptions, ..]) if subscriptions.eq_ignore_ascii_case("subscriptions") => {
            if !graph.config.latency.is_zero() {
                tokio::time::sleep(graph.config.latency).await;
            }
            let id = segments.get(2).map(|s| (*s).to_owned());
            // Only {id}/reauthorize lies below a subscription.
            let reauthorize = match segments.get(3) {
                None => false,
                Some(s) if s.eq_ignore_ascii_case("reauthorize") && segments.len() == 4 => true,
                Some(_) => return not_found(),
            };
            crate::graph_subs::handle(request, sim, method, id, reauthorize).await
        }
        _ => not_found(),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    graph_error(
        StatusCode::NOT_FOUND,
        "UnknownError",
        "exchange-sim's Graph face serves getSchedule and subscriptions only.",
    )
}

/// POST /{tenant}/oauth2/v2.0/token, client credentials.
fn token(graph: &Graph, tenant: &str, body: &[u8]) -> Response<Full<Bytes>> {
    graph.counts().token_requests += 1;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let config = &graph.config;
    if !tenant.eq_ignore_ascii_case(&config.tenant) && !tenant.eq_ignore_ascii_case(&config.domain)
    {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and \
             are signing into the correct cloud."
            ),
        );
    }
    if field("grant_type") != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if !field("client_id").eq_ignore_ascii_case(&config.client_id) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{}' was not found in the directory '{tenant}'.",
                field("client_id")
            ),
        );
    }
    if !field("scope").ends_with("/.default") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a \
             scope value with /.default suffixed to the resource identifier.",
        );
    }
    let secret_ok = config
        .secret
        .as_deref()
        .is_some_and(|s| !s.is_empty() && s == field("client_secret"));
    if !secret_ok {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the \
             client secret value, not the client secret ID.",
        );
    }
    match graph.take_token_fault() {
        Some(TokenFault::ExpiredSecret) => {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000222,
                "The provided client secret keys for app are expired. Visit the Azure portal to \
                 create new keys for your app.",
            );
        }
        Some(TokenFault::ConsentMissing) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                65001,
                "The user or administrator has not consented to use the application. Send an \
                 interactive authorization request for this user and resource.",
            );
        }
        None => {}
    }
    let access_token = format!("sim.{}", hex(&rand::random::<[u8; 32]>()));
    let lifetime = config.token_lifetime;
    {
        let mut tokens = graph.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        // A client asking for tokens in a loop must not grow the map
        // without end: expired ones go first, then any.
        if tokens.len() >= MAX_KEYS {
            let now = Instant::now();
            tokens.retain(|_, expires| *expires > now);
            if let Some(any) = tokens.keys().next().cloned() {
                tokens.remove(&any);
            }
        }
        tokens.insert(access_token.clone(), Instant::now() + lifetime);
    }
    graph.counts().tokens_issued += 1;
    let secs = lifetime.as_secs();
    respond(
        StatusCode::OK,
        JSON,
        json!({
            "token_type": "Bearer",
            "expires_in": secs,
            "ext_expires_in": secs,
            "access_token": access_token,
        })
        .to_string(),
    )
}

/// An identity platform error, shaped as the contract shows.
fn aad_error(status: StatusCode, error: &str, code: u32, text: &str) -> Response<Full<Bytes>> {
    let now = OffsetDateTime::now_utc();
    let timestamp = now
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    let (trace, correlation) = (guid(), guid());
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}"),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    respond(status, JSON, body.to_string())
}

/// A Graph error: `{"error":{"code":..,"message":..}}`.
pub fn graph_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": {
        "code": code,
        "message": message,
        "innerError": {"date": graph_time(OffsetDateTime::now_utc().unix_timestamp()) , "request-id": guid()},
    }});
    respond(status, JSON, body.to_string())
}

pub fn unauthenticated() -> Response<Full<Bytes>> {
    graph_error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        "Access token validation failure. Invalid audience, or the token is unknown or expired.",
    )
}

pub fn access_denied() -> Response<Full<Bytes>> {
    graph_error(
        StatusCode::FORBIDDEN,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    )
}

/// Graph's dateTime: seconds with seven fractional digits, no offset.
pub fn graph_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].0000000"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// A random GUID, as Graph and the identity platform name things.
pub fn guid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use crate::service::respond;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_paths_name_their_tenant() {
        assert_eq!(
            token_tenant("/example.com/oauth2/v2.0/token"),
            Some("example.com")
        );
        assert_eq!(token_tenant("/oauth2/v2.0/token"), None);
        assert_eq!(token_tenant("/a/b/oauth2/v2.0/token"), None);
        assert!(is_graph_path("/v1.0/subscriptions"));
        assert!(!is_graph_path("/EWS/Exchange.asmx"));
    }

    #[test]
    fn budgets_run_out() {
        let mut b = Budget {
            remaining: Some(2),
            until: None,
        };
        assert!(b.spend());
        assert!(b.spend());
        assert!(!b.spend());
    }
}
