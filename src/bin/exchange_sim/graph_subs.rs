//! Graph change-notification subscriptions on `users/{mailbox}/events`:
//! created after the validation handshake with the notification and
//! lifecycle URLs, renewed, deleted; fed change notifications when a
//! scripted calendar changes (the trigger EWS push uses) and lifecycle
//! notifications on demand (/sim/graph/lifecycle).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Sim;
use crate::calendars::Change;
use crate::graph::{self, Graph, graph_error, guid, respond};
use crate::service::read_body;

/// Graph's longest subscription on Outlook events: 4230 minutes (under 3
/// days).
pub const MAX_EXPIRY_MINUTES: i64 = 4230;
/// The receiver must answer a validation request within this.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER: usize = 64 * 1024;
const MAX_CLIENT_STATE: usize = 128;
/// Bounds what subscribers can make the sim hold.
const MAX_SUBSCRIPTIONS: usize = 100_000;
/// Attempts per notification before it counts as failed.
const ATTEMPTS: u32 = 3;
const JSON: &str = "application/json; charset=utf-8";

#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: String,
    /// Lower-cased.
    pub mailbox: String,
    pub resource: String,
    pub change_type: String,
    pub client_state: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    /// Unix seconds.
    pub expires: i64,
}

impl Subscription {
    fn json(&self, graph: &Graph) -> Value {
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": expiry_text(self.expires),
            "applicationId": graph.config.client_id,
            "creatorId": graph.config.client_id,
        })
    }
}

/// The live subscriptions, and the pool notifications are sent from.
pub struct Subs {
    map: Mutex<HashMap<String, Subscription>>,
    /// As push.rs: a bounded pool of senders, not one connection per
    /// subscription at once.
    senders: Arc<tokio::sync::Semaphore>,
}

impl Default for Subs {
    fn default() -> Subs {
        Subs {
            map: Mutex::default(),
            senders: Arc::new(tokio::sync::Semaphore::new(crate::push::SENDERS)),
        }
    }
}

impl Subs {
    /// The live subscriptions; expired ones are forgotten, as Graph does.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Subscription>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now();
        map.retain(|_, s| s.expires > now);
        map
    }

    /// How many are live, and a summary of each for /sim/stats.
    pub fn describe(&self) -> (usize, Vec<Value>) {
        let map = self.lock();
        let mut list: Vec<Value> = map
            .values()
            .map(|s| {
                json!({"id": s.id, "mailbox": s.mailbox, "notification_url": s.notification_url,
                       "lifecycle_url": s.lifecycle_url, "expiration": expiry_text(s.expires)})
            })
            .collect();
        list.sort_by_key(|v| v["mailbox"].as_str().unwrap_or_default().to_owned());
        (map.len(), list)
    }

    fn of(&self, mailbox: &str) -> Vec<Subscription> {
        let mailbox = mailbox.to_ascii_lowercase();
        self.lock()
            .values()
            .filter(|s| s.mailbox == mailbox)
            .cloned()
            .collect()
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn expiry_text(unix: i64) -> String {
    format!("{}Z", graph::graph_time(unix))
}

/// /v1.0/subscriptions[/{id}].
pub async fn handle(
    request: Request<Incoming>,
    sim: &Sim,
    method: Method,
    id: Option<String>,
    reauthorize: bool,
) -> Response<Full<Bytes>> {
    let graph = &sim.graph;
    if !graph.authorized(request.headers()) {
        return graph::unauthenticated();
    }
    let Ok(body) = read_body(request).await else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The body could not be read.",
        );
    };
    match (method, id) {
        // The answer to reauthorizationRequired, besides renewing.
        (Method::POST, Some(id)) if reauthorize => {
            if graph.subs.lock().contains_key(&id) {
                let mut response = respond(StatusCode::NO_CONTENT, JSON, String::new());
                response.headers_mut().remove(header::CONTENT_TYPE);
                response
            } else {
                subscription_not_found()
            }
        }
        (_, Some(_)) if reauthorize => graph_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequest",
            "POST /subscriptions/{id}/reauthorize.",
        ),
        (Method::POST, None) => create(sim, &body).await,
        (Method::PATCH, Some(id)) => renew(graph, &id, &body),
        (Method::DELETE, Some(id)) => {
            if graph.subs.lock().remove(&id).is_some() {
                graph.counts().subscriptions_deleted += 1;
                let mut response = respond(StatusCode::NO_CONTENT, JSON, String::new());
                response.headers_mut().remove(header::CONTENT_TYPE);
                response
            } else {
                subscription_not_found()
            }
        }
        (Method::GET, Some(id)) => match graph.subs.lock().get(&id) {
            Some(s) => respond(StatusCode::OK, JSON, s.json(graph).to_string()),
            None => subscription_not_found(),
        },
        _ => graph_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequest",
            "POST /subscriptions, PATCH, GET or DELETE /subscriptions/{id}.",
        ),
    }
}

fn subscription_not_found() -> Response<Full<Bytes>> {
    graph_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        "The object was not found.",
    )
}

/// The expiry granted for one asked: shortened to --graph-subscription-
/// minutes from now when that is sooner.
fn granted(graph: &Graph, asked: i64) -> i64 {
    match graph.config.subscription_minutes {
        Some(minutes) => asked.min(now() + minutes * 60),
        None => asked,
    }
}

/// An expirationDateTime within Graph's limit for events, as Unix seconds.
pub fn expiry(value: Option<&Value>, now: i64) -> Result<i64, String> {
    let text = value
        .and_then(Value::as_str)
        .ok_or("expirationDateTime is required.")?;
    let at = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| {
            format!("expirationDateTime {text:?} is not an ISO 8601 time with an offset.")
        })?
        .unix_timestamp();
    if at <= now {
        return Err("Subscription expiration can only be in the future.".to_owned());
    }
    if at > now + MAX_EXPIRY_MINUTES * 60 {
        return Err(format!(
            "Subscription expiration can only be {MAX_EXPIRY_MINUTES} minutes in the future."
        ));
    }
    Ok(at)
}

/// The mailbox of `users/{mailbox}/events` (case-insensitive, leading slash allowed).
pub fn resource_mailbox(resource: &str) -> Option<String> {
    let parts: Vec<&str> = resource.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [users, mailbox, events]
            if users.eq_ignore_ascii_case("users")
                && events.eq_ignore_ascii_case("events")
                && mailbox.contains('@') =>
        {
            Some(crate::service::percent_decode(mailbox)?.to_ascii_lowercase())
        }
        _ => None,
    }
}

async fn create(sim: &Sim, body: &[u8]) -> Response<Full<Bytes>> {
    let graph = sim.graph.clone();
    let invalid = |why: &str| graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", why);
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return invalid("The body is not JSON.");
    };
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let Some(change_type) = text("changeType").filter(|c| {
        !c.is_empty()
            && c.split(',')
                .all(|t| ["created", "updated", "deleted"].contains(&t.trim()))
    }) else {
        return invalid("changeType: created, updated and/or deleted, comma-separated.");
    };
    let Some(resource) = text("resource") else {
        return invalid("resource is required.");
    };
    let Some(mailbox) = resource_mailbox(&resource) else {
        return invalid("exchange-sim serves subscriptions on users/{mailbox}/events only.");
    };
    if graph.forbidden(&mailbox) {
        return graph::access_denied();
    }
    if !sim.calendars.knows(&mailbox) {
        return graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("The mailbox {mailbox} could not be found."),
        );
    }
    let expires = match expiry(value.get("expirationDateTime"), now()) {
        Ok(at) => granted(&graph, at),
        Err(why) => return graph_error(StatusCode::BAD_REQUEST, "ExtensionError", &why),
    };
    let client_state = text("clientState").unwrap_or_default();
    if client_state.chars().count() > MAX_CLIENT_STATE {
        return invalid("clientState: at most 128 characters.");
    }
    let Some(notification_url) = text("notificationUrl") else {
        return invalid("notificationUrl is required.");
    };
    let lifecycle_url = text("lifecycleNotificationUrl");
    // Graph validates every URL it will POST to before answering.
    for url in std::iter::once(&notification_url).chain(lifecycle_url.as_ref()) {
        let validated = validate(&graph, url).await;
        let mut counts = graph.counts();
        if let Err(why) = validated {
            counts.validations_failed += 1;
            drop(counts);
            tracing::info!(%url, %why, "Graph subscription validation failed");
            return graph_error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "Subscription validation request failed. Notification endpoint must respond \
                 with 200 OK to validation request.",
            );
        }
        counts.validations_ok += 1;
    }
    let subscription = Subscription {
        id: guid(),
        mailbox,
        resource,
        change_type,
        client_state,
        notification_url,
        lifecycle_url,
        expires,
    };
    {
        let mut map = graph.subs.lock();
        if map.len() >= MAX_SUBSCRIPTIONS {
            return graph_error(
                StatusCode::FORBIDDEN,
                "ExtensionError",
                "The maximum number of subscriptions has been reached.",
            );
        }
        map.insert(subscription.id.clone(), subscription.clone());
    }
    graph.counts().subscriptions_created += 1;
    respond(
        StatusCode::CREATED,
        JSON,
        subscription.json(&graph).to_string(),
    )
}

fn renew(graph: &Graph, id: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The body is not JSON.",
        );
    };
    let expires = match expiry(value.get("expirationDateTime"), now()) {
        Ok(at) => granted(graph, at),
        Err(why) => return graph_error(StatusCode::BAD_REQUEST, "ExtensionError", &why),
    };
    let mut map = graph.subs.lock();
    let Some(s) = map.get_mut(id) else {
        return subscription_not_found();
    };
    s.expires = expires;
    let answer = s.json(graph).to_string();
    drop(map);
    graph.counts().subscriptions_renewed += 1;
    respond(StatusCode::OK, JSON, answer)
}

/// Where the sim POSTs for a URL a subscriber gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path_and_query: String,
}

/// With --graph-deliver-to, its scheme and authority replace the URL's
/// (path and query kept), as a reverse proxy in front of the receiver
/// would; without it only plain http URLs are reachable (the sim speaks
/// no TLS as a client).
pub fn resolve(given: &str, deliver_to: Option<&url::Url>) -> Result<Target, String> {
    let url = url::Url::parse(given.trim()).map_err(|e| format!("{given:?}: {e}"))?;
    let via = match deliver_to {
        Some(base) => base,
        None if url.scheme() == "http" => &url,
        None => {
            return Err(format!(
                "{given:?}: exchange-sim delivers over plain http only (see --graph-deliver-to)"
            ));
        }
    };
    let (authority, path_and_query) = crate::push::split(given, via, &url)?;
    Ok(Target {
        authority,
        path_and_query,
    })
}

/// The validation handshake: POST `{url}?validationToken=...` (empty
/// text/plain body); the answer must be 200 text/plain echoing the token.
async fn validate(graph: &Graph, url: &str) -> Result<(), String> {
    let mut target = resolve(url, graph.config.deliver_to.as_ref())?;
    // Like Graph's: spaces and colons, so a receiver must decode it.
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        guid()
    );
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let separator = if target.path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    target.path_and_query = format!(
        "{}{separator}validationToken={encoded}",
        target.path_and_query
    );
    let (status, content_type, body) = tokio::time::timeout(
        VALIDATION_TIMEOUT,
        post(&target, "text/plain; charset=utf-8", Bytes::new()),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_owned())??;
    if status != StatusCode::OK {
        return Err(format!("HTTP {status}"));
    }
    if !content_type.to_ascii_lowercase().starts_with("text/plain") {
        return Err(format!("Content-Type {content_type:?}, not text/plain"));
    }
    if body.as_ref() != token.as_bytes() {
        return Err("the answer does not echo the validation token".to_owned());
    }
    Ok(())
}

/// One POST over a fresh HTTP/1.1 connection: status, Content-Type and
/// body (at most MAX_ANSWER bytes). Callers bound it in time.
async fn post(
    target: &Target,
    content_type: &'static str,
    body: Bytes,
) -> Result<(StatusCode, String, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect(&target.authority)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let _driver = crate::push::AbortOnDrop(tokio::spawn(connection));
    let request = Request::post(target.path_and_query.as_str())
        .header(
            header::HOST,
            HeaderValue::from_str(&target.authority).map_err(|e| e.to_string())?,
        )
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, content_type, body))
}

/// Sends one notification body to `url` from the pool, retrying; counts it.
fn send(graph: Arc<Graph>, url: String, body: String, lifecycle: bool) {
    tokio::spawn(async move {
        let target = match resolve(&url, graph.config.deliver_to.as_ref()) {
            Ok(t) => t,
            Err(why) => {
                tracing::info!(%url, %why, "Graph notification not deliverable");
                graph.counts().notifications_failed += 1;
                return;
            }
        };
        let body = Bytes::from(body);
        for attempt in 1..=ATTEMPTS {
            let outcome = {
                let Ok(_sender) = graph.subs.senders.acquire().await else {
                    return;
                };
                tokio::time::timeout(graph.config.push_timeout, post(&target, JSON, body.clone()))
                    .await
            };
            match outcome {
                Ok(Ok((status, _, _))) if status.is_success() => {
                    let mut counts = graph.counts();
                    if lifecycle {
                        counts.lifecycle_sent += 1;
                    } else {
                        counts.notifications_sent += 1;
                    }
                    return;
                }
                Ok(Ok((status, _, _))) => {
                    tracing::info!(%url, attempt, %status, "Graph notification refused")
                }
                Ok(Err(why)) => tracing::info!(%url, attempt, %why, "Graph notification failed"),
                Err(_) => tracing::info!(%url, attempt, "Graph notification timed out"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(graph.config.retry_pause).await;
            }
        }
        graph.counts().notifications_failed += 1;
    });
}

/// A change notification, as the contract shows.
pub fn change_notification(
    s: &Subscription,
    change: &str,
    client_state: &str,
    tenant: &str,
) -> String {
    let id = format!("AAMk{}", graph::hex(&rand::random::<[u8; 24]>()));
    let resource = format!("Users/{}/Events/{id}", s.mailbox);
    json!({"value": [{
        "subscriptionId": s.id,
        "subscriptionExpirationDateTime": expiry_text(s.expires),
        "changeType": change,
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Event",
            "@odata.id": resource,
            "id": id,
        },
        "clientState": client_state,
        "tenantId": tenant,
    }]})
    .to_string()
}

/// Calendar changes: each subscription of a changed mailbox that asked for
/// the change's type gets a notification.
pub fn changed(graph: &Arc<Graph>, changes: &[Change]) {
    for change in changes {
        let kind = match (change.had_events, change.has_events) {
            (false, true) => "created",
            (true, false) => "deleted",
            _ => "updated",
        };
        for s in graph.subs.of(&change.mailbox) {
            if !s.change_type.split(',').any(|t| t.trim() == kind) {
                continue;
            }
            let body = change_notification(&s, kind, &s.client_state, &graph.config.tenant);
            send(graph.clone(), s.notification_url.clone(), body, false);
        }
    }
}

/// /sim/graph/notify: a change notification now, with a chosen clientState.
pub fn notify(graph: &Arc<Graph>, mailbox: &str, client_state: Option<&str>) -> usize {
    let subs = graph.subs.of(mailbox);
    for s in &subs {
        let state = client_state.unwrap_or(&s.client_state);
        let body = change_notification(s, "updated", state, &graph.config.tenant);
        send(graph.clone(), s.notification_url.clone(), body, false);
    }
    subs.len()
}

/// /sim/graph/lifecycle: a lifecycle event to each subscription of
/// `mailbox` with a lifecycle URL; subscriptionRemoved also ends them.
pub fn lifecycle(graph: &Arc<Graph>, mailbox: &str, event: &str) -> usize {
    let subs = graph.subs.of(mailbox);
    if event == "subscriptionRemoved" {
        let mut map = graph.subs.lock();
        for s in &subs {
            map.remove(&s.id);
        }
    }
    let mut sent = 0;
    for s in &subs {
        let Some(url) = &s.lifecycle_url else {
            continue;
        };
        let body = json!({"value": [{
            "subscriptionId": s.id,
            "subscriptionExpirationDateTime": expiry_text(s.expires),
            "tenantId": graph.config.tenant,
            "clientState": s.client_state,
            "lifecycleEvent": event,
        }]})
        .to_string();
        send(graph.clone(), url.clone(), body, true);
        sent += 1;
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_through_deliver_to() {
        let proxy = url::Url::parse("http://127.0.0.1:9000").expect("url");
        assert_eq!(
            resolve("https://pg.example.com/graph/notify?a=1", Some(&proxy)),
            Ok(Target {
                authority: "127.0.0.1:9000".to_owned(),
                path_and_query: "/graph/notify?a=1".to_owned()
            })
        );
        assert!(resolve("https://pg.example.com/graph/notify", None).is_err());
        assert_eq!(
            resolve("http://localhost/n", None).map(|t| t.authority),
            Ok("localhost:80".to_owned())
        );
    }

    #[test]
    fn expiry_is_bounded() {
        let now = 1_800_000_000;
        let at = |secs: i64| {
            Value::String(
                OffsetDateTime::from_unix_timestamp(now + secs)
                    .expect("time")
                    .format(&Rfc3339)
                    .expect("format"),
            )
        };
        assert_eq!(expiry(Some(&at(3600)), now), Ok(now + 3600));
        assert!(expiry(Some(&at(MAX_EXPIRY_MINUTES * 60)), now).is_ok());
        assert!(expiry(Some(&at(MAX_EXPIRY_MINUTES * 60 + 1)), now).is_err());
        assert!(expiry(Some(&at(-1)), now).is_err());
        assert!(expiry(None, now).is_err());
        let seven = Value::String("2027-01-15T09:00:00.0000000Z".to_owned());
        assert!(expiry(Some(&seven), 1_800_000_000).is_ok());
    }

    #[test]
    fn resources_name_a_mailboxs_events() {
        assert_eq!(
            resource_mailbox("users/A@x.com/events").as_deref(),
            Some("a@x.com")
        );
        assert_eq!(
            resource_mailbox("/Users/a@x.com/Events").as_deref(),
            Some("a@x.com")
        );
        assert_eq!(resource_mailbox("users/a@x.com/messages"), None);
        assert_eq!(resource_mailbox("me/events"), None);
    }
}
