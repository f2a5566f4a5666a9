//! EWS notification subscriptions, as Exchange keeps them: push
//! subscriptions that POST `SendNotification` to the subscriber's URL when a
//! scripted calendar changes and a `StatusEvent` every StatusFrequency
//! minutes when nothing does; and pull subscriptions, kept only so that
//! `Unsubscribe` has something to end.
//!
//! Each push subscription is one task holding the receiving end of a small
//! channel; the registry holds the sending end. Forgetting a subscription
//! (Unsubscribe answered, deliveries failed, or `/sim/subscriptions/drop`)
//! drops the sender, and the task ends at its next wake-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use quick_xml::escape::escape;
use quick_xml::events::Event;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::calendars::Change;

const MESSAGES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const TYPES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// A subscriber's answer is a few hundred bytes; more is not read.
const MAX_ANSWER: usize = 64 * 1024;
/// Changes queued for one subscription beyond this are coalesced: the
/// notification already on its way tells the subscriber to re-read.
const QUEUE: usize = 64;
/// Events in one notification at most (the rest wait for the next one).
const MAX_EVENTS: usize = 50;
/// Attempts at delivering one notification before the subscription is
/// dropped, as Exchange gives up on a subscriber that does not answer.
pub const DELIVERY_ATTEMPTS: u32 = 3;

/// The event types a subscription may ask for (EWS's NotificationEventType).
pub const EVENT_TYPES: &[&str] = &[
    "CopiedEvent",
    "CreatedEvent",
    "DeletedEvent",
    "ModifiedEvent",
    "MovedEvent",
    "NewMailEvent",
    "FreeBusyChangedEvent",
];

/// What the sim reports about a subscription in `/sim/stats`.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    pub id: String,
    /// The impersonated mailbox, lower-cased.
    pub mailbox: String,
    /// `push` or `pull`.
    pub kind: &'static str,
    /// Push only: where notifications go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Push only, in minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_frequency: Option<u32>,
    pub event_types: Vec<String>,
    /// Push only: notifications the subscriber acknowledged.
    pub delivered: u64,
}

enum Wake {
    Changed(&'static str),
    Status,
}

struct Entry {
    info: Info,
    /// None for pull subscriptions, which nothing wakes.
    wake: Option<mpsc::Sender<Wake>>,
}

/// Why `Unsubscribe` refused, as its ResponseCode and MessageText.
pub type Refusal = (&'static str, &'static str);

/// A push subscription's delivery target: `http://host:port/path`.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` for connecting (an IPv6 host keeps its brackets).
    authority: String,
    path_and_query: String,
    url: String,
}

impl Target {
    /// The URL, if the sim can deliver to it: plain `http` with a host.
    pub fn parse(text: &str) -> Result<Target, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| format!("{text:?}: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "{text:?}: exchange-sim delivers notifications over plain http only"
            ));
        }
        let (authority, path_and_query) = split(text, &url, &url)?;
        Ok(Target {
            authority,
            path_and_query,
            url: url.to_string(),
        })
    }
}

/// A push subscription's fixed facts, owned by its task.
struct Subscriber {
    id: String,
    /// The address as the subscriber impersonated it, for folder ids.
    owner: String,
    target: Target,
    period: Duration,
    event_types: Vec<String>,
}

/// Every live subscription, and how notifications are paced.
pub struct Push {
    /// How long the sim's minute lasts (--minute-ms), for StatusFrequency.
    minute: Duration,
    /// --max-subscriptions: beyond it Subscribe is refused, which also
    /// bounds the memory and tasks subscribers can make the sim hold.
    max: usize,
    /// Bounds one delivery: connecting, sending, and reading the answer.
    timeout: Duration,
    subscriptions: Mutex<HashMap<String, Entry>>,
    /// Deliveries under way at once: Exchange sends notifications from a
    /// bounded pool, not one connection per subscription at the same
    /// instant (thousands of calendars changed at once would otherwise
    /// open thousands of connections to the subscriber together).
    senders: tokio::sync::Semaphore,
}

/// How many notifications the sim delivers at once, over all subscriptions.
pub const SENDERS: usize = 64;

impl Push {
    pub fn new(minute: Duration, timeout: Duration, max: usize) -> Push {
        Push {
            minute,
            max,
            timeout,
            subscriptions: Mutex::new(HashMap::new()),
            senders: tokio::sync::Semaphore::new(SENDERS),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh subscription id: random, so a subscriber cannot guess
    /// another's, and as long as Exchange's.
    fn new_id() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    /// Whether another subscription may be made (EWS answers
    /// ErrorExceededSubscriptionCount when not).
    pub fn has_room(&self) -> bool {
        self.lock().len() < self.max
    }

    /// Creates a push subscription on `owner`'s calendar and starts
    /// notifying `target`; returns its id and first watermark.
    pub fn subscribe_push(
        self: &Arc<Self>,
        owner: &str,
        target: Target,
        status_frequency: u32,
        event_types: Vec<String>,
    ) -> (String, String) {
        let id = Self::new_id();
        let (sender, receiver) = mpsc::channel(QUEUE);
        let info = Info {
            id: id.clone(),
            mailbox: owner.to_ascii_lowercase(),
            kind: "push",
            url: Some(target.url.clone()),
            status_frequency: Some(status_frequency),
            event_types: event_types.clone(),
            delivered: 0,
        };
        self.lock().insert(
            id.clone(),
            Entry {
                info,
                wake: Some(sender),
            },
        );
        let subscriber = Subscriber {
            id: id.clone(),
            owner: owner.to_owned(),
            target,
            period: self.minute.saturating_mul(status_frequency),
            event_types,
        };
        let watermark = watermark(&id, 0);
        tokio::spawn(run(self.clone(), subscriber, receiver));
        (id, watermark)
    }

    /// Creates a pull subscription: remembered for Unsubscribe, never fed
    /// (the sim does not implement GetEvents).
    pub fn subscribe_pull(&self, owner: &str, event_types: Vec<String>) -> (String, String) {
        let id = Self::new_id();
        let info = Info {
            id: id.clone(),
            mailbox: owner.to_ascii_lowercase(),
            kind: "pull",
            url: None,
            status_frequency: None,
            event_types,
            delivered: 0,
        };
        self.lock().insert(id.clone(), Entry { info, wake: None });
        let watermark = watermark(&id, 0);
        (id, watermark)
    }

    /// EWS Unsubscribe, as Exchange answers it: a pull subscription of the
    /// caller's ends; a push subscription cannot be ended this way (its
    /// subscriber answers a notification with Unsubscribe instead).
    pub fn unsubscribe(&self, id: &str, caller: Option<&str>) -> Result<(), Refusal> {
        let mut subscriptions = self.lock();
        let Some(entry) = subscriptions.get(id) else {
            return Err((
                "ErrorSubscriptionNotFound",
                "The specified subscription was not found.",
            ));
        };
        if caller.map(str::to_ascii_lowercase).as_deref() != Some(entry.info.mailbox.as_str()) {
            return Err((
                "ErrorSubscriptionAccessDenied",
                "You aren't allowed to access this subscription.",
            ));
        }
        if entry.wake.is_some() {
            return Err((
                "ErrorInvalidSubscription",
                "The subscription is not valid for this operation: Unsubscribe ends pull and \
                 streaming subscriptions only.",
            ));
        }
        subscriptions.remove(id);
        Ok(())
    }

    /// Wakes the push subscriptions of each changed mailbox with the event
    /// Exchange would raise for its calendar.
    pub fn changed(&self, changes: &[Change]) {
        let events: HashMap<&str, &'static str> = changes
            .iter()
            .map(|change| {
                let event = match (change.had_events, change.has_events) {
                    (false, true) => "CreatedEvent",
                    (true, false) => "DeletedEvent",
                    _ => "ModifiedEvent",
                };
                (change.mailbox.as_str(), event)
            })
            .collect();
        for entry in self.lock().values() {
            if let (Some(wake), Some(event)) =
                (&entry.wake, events.get(entry.info.mailbox.as_str()))
            {
                // A full queue means a notification is due anyway.
                let _ = wake.try_send(Wake::Changed(event));
            }
        }
    }

    /// Asks push subscriptions (of `mailbox`, or all) to send their status
    /// notification now; returns how many were asked.
    pub fn status_now(&self, mailbox: Option<&str>) -> usize {
        let mailbox = mailbox.map(str::to_ascii_lowercase);
        self.lock()
            .values()
            .filter(|e| mailbox.as_ref().is_none_or(|m| *m == e.info.mailbox))
            .filter_map(|e| e.wake.as_ref())
            .filter(|wake| wake.try_send(Wake::Status).is_ok())
            .count()
    }

    /// Forgets subscriptions (of `mailbox`, or the one `id`) without telling
    /// their subscribers, who then hear nothing more; returns how many.
    pub fn drop_silently(&self, mailbox: Option<&str>, id: Option<&str>) -> usize {
        let mailbox = mailbox.map(str::to_ascii_lowercase);
        let mut subscriptions = self.lock();
        let before = subscriptions.len();
        subscriptions.retain(|key, e| {
            let chosen = mailbox.as_ref().is_some_and(|m| *m == e.info.mailbox)
                || id.is_some_and(|id| id == key);
            !chosen
        });
        before - subscriptions.len()
    }

    /// The live subscriptions, by mailbox.
    pub fn list(&self) -> Vec<Info> {
        let mut infos: Vec<Info> = self.lock().values().map(|e| e.info.clone()).collect();
        infos.sort_by(|a, b| a.mailbox.cmp(&b.mailbox).then(a.id.cmp(&b.id)));
        infos
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn acknowledged(&self, id: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.info.delivered += 1;
        }
    }
}

/// An opaque watermark: the subscription and the event's number in it.
fn watermark(id: &str, n: u64) -> String {
    STANDARD.encode(format!("exchange-sim-watermark:{id}:{n}"))
}

/// What a subscriber answered to one SendNotification.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Ok,
    Unsubscribe,
}

/// One push subscription's life: wait for a change, a status request or the
/// end of the status period; notify; act on the answer.
async fn run(push: Arc<Push>, subscriber: Subscriber, mut wake: mpsc::Receiver<Wake>) {
    let mut last_watermark = watermark(&subscriber.id, 0);
    let mut next_status = Instant::now() + subscriber.period;
    let mut number: u64 = 0;
    loop {
        let mut changed: Vec<&'static str> = Vec::new();
        let mut status = false;
        tokio::select! {
            // A forgotten subscription (sender dropped) ends before any
            // status falls due.
            biased;
            woken = wake.recv() => match woken {
                None => return,
                Some(Wake::Changed(event)) => changed.push(event),
                Some(Wake::Status) => status = true,
            },
            () = tokio::time::sleep_until(next_status) => status = true,
        }
        // Changes queued meanwhile go in the same notification.
        while changed.len() < MAX_EVENTS {
            match wake.try_recv() {
                Ok(Wake::Changed(event)) => changed.push(event),
                Ok(Wake::Status) => status = true,
                Err(_) => break,
            }
        }
        let events: Vec<&'static str> = changed
            .into_iter()
            .filter_map(|event| wanted(event, &subscriber.event_types))
            .collect();
        let events = if events.is_empty() {
            if !status {
                continue;
            }
            vec!["StatusEvent"]
        } else {
            events
        };
        let previous = last_watermark.clone();
        let mut body_events = String::new();
        for event in &events {
            number += 1;
            last_watermark = watermark(&subscriber.id, number);
            body_events.push_str(&event_xml(event, &last_watermark, &subscriber, number));
        }
        let body = notification(&subscriber.id, &previous, &body_events);
        match deliver(&push, &subscriber, body).await {
            Some(Answer::Ok) => {
                push.acknowledged(&subscriber.id);
                next_status = Instant::now() + subscriber.period;
            }
            Some(Answer::Unsubscribe) => {
                tracing::info!(id = %subscriber.id, "the subscriber unsubscribed");
                push.forget(&subscriber.id);
                return;
            }
            None => {
                tracing::info!(id = %subscriber.id, url = %subscriber.target.url,
                    "notifications failed {DELIVERY_ATTEMPTS} times: subscription dropped");
                push.forget(&subscriber.id);
                return;
            }
        }
    }
}

/// The event to send for a calendar change, if the subscription asked for
/// it: the change's own kind, else FreeBusyChangedEvent when asked for.
fn wanted(event: &'static str, asked: &[String]) -> Option<&'static str> {
    if asked.iter().any(|a| a == event) {
        Some(event)
    } else if asked.iter().any(|a| a == "FreeBusyChangedEvent") {
        Some("FreeBusyChangedEvent")
    } else {
        None
    }
}

fn event_xml(event: &str, watermark: &str, subscriber: &Subscriber, number: u64) -> String {
    if event == "StatusEvent" {
        return format!(
            "            <t:StatusEvent>\n\
             \x20             <t:Watermark>{watermark}</t:Watermark>\n\
             \x20           </t:StatusEvent>\n"
        );
    }
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let folder = crate::ews::folder_id(&subscriber.owner, "calendar");
    let item = STANDARD.encode(format!(
        "exchange-sim-item:{}:calendar:{number}",
        subscriber.owner
    ));
    let change_key = STANDARD.encode(format!("ck:{number}"));
    format!(
        "            <t:{event}>\n\
         \x20             <t:Watermark>{watermark}</t:Watermark>\n\
         \x20             <t:TimeStamp>{now}</t:TimeStamp>\n\
         \x20             <t:ItemId Id=\"{item}\" ChangeKey=\"{change_key}\" />\n\
         \x20             <t:ParentFolderId Id=\"{folder}\" ChangeKey=\"{ck_folder}\" />\n\
         \x20           </t:{event}>\n",
        ck_folder = STANDARD.encode("ck:calendar"),
    )
}

/// The SendNotification request Exchange POSTs to a push subscriber.
fn notification(id: &str, previous: &str, events: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <soap:Envelope xmlns:soap=\"{SOAP_NS}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\n\
         \x20 <soap:Header>\n\
         \x20   <t:RequestServerVersion xmlns:t=\"{TYPES_NS}\" Version=\"Exchange2013\" />\n\
         \x20 </soap:Header>\n\
         \x20 <soap:Body>\n\
         \x20   <m:SendNotification xmlns:m=\"{MESSAGES_NS}\" xmlns:t=\"{TYPES_NS}\">\n\
         \x20     <m:ResponseMessages>\n\
         \x20       <m:SendNotificationResponseMessage ResponseClass=\"Success\">\n\
         \x20         <m:ResponseCode>NoError</m:ResponseCode>\n\
         \x20         <m:Notification>\n\
         \x20           <t:SubscriptionId>{id}</t:SubscriptionId>\n\
         \x20           <t:PreviousWatermark>{previous}</t:PreviousWatermark>\n\
         \x20           <t:MoreEvents>false</t:MoreEvents>\n\
         {events}\
         \x20         </m:Notification>\n\
         \x20       </m:SendNotificationResponseMessage>\n\
         \x20     </m:ResponseMessages>\n\
         \x20   </m:SendNotification>\n\
         \x20 </soap:Body>\n\
         </soap:Envelope>\n",
        id = escape(id),
        previous = escape(previous),
    )
}

/// Delivers one notification, retrying a failed delivery after a twelfth
/// of the sim's minute (5 s by default); None when every attempt failed.
async fn deliver(push: &Push, subscriber: &Subscriber, body: String) -> Option<Answer> {
    let body = Bytes::from(body);
    for attempt in 1..=DELIVERY_ATTEMPTS {
        // The timeout counts from the send, not from the wait for a
        // sender; the sender is free again before any pause between tries.
        let outcome = {
            let Ok(_sender) = push.senders.acquire().await else {
                return None;
            };
            tokio::time::timeout(push.timeout, post(&subscriber.target, body.clone())).await
        };
        match outcome {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(why)) => {
                tracing::info!(url = %subscriber.target.url, attempt, %why, "notification failed");
            }
            Err(_) => {
                tracing::info!(url = %subscriber.target.url, attempt, "notification timed out");
            }
        }
        if attempt < DELIVERY_ATTEMPTS {
            tokio::time::sleep(push.minute / 12).await;
        }
    }
    None
}

/// One POST over a fresh HTTP/1.1 connection; the subscriber's answer read
/// up to MAX_ANSWER bytes. The caller bounds it in time.
async fn post(target: &Target, body: Bytes) -> Result<Answer, String> {
    let tcp = tokio::net::TcpStream::connect(&target.authority)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // The connection's task ends with this exchange, or when the caller's
    // timeout drops this future (and with it the guard).
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let request = Request::post(target.path_and_query.as_str())
        .header(
            header::HOST,
            HeaderValue::from_str(&target.authority).map_err(|e| e.to_string())?,
        )
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .header(
            "SOAPAction",
            "\"http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification\"",
        )
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let answer = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    subscription_status(&answer)
}

/// Aborts a spawned task when dropped, so no connection outlives its
/// delivery attempt.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The SubscriptionStatus of a SendNotificationResult.
fn subscription_status(body: &[u8]) -> Result<Answer, String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut inside = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == b"SubscriptionStatus" => {
                inside = true;
            }
            Ok(Event::Text(t)) if inside => {
                let text = t.decode().map_err(|e| e.to_string())?;
                return match text.trim() {
                    "OK" => Ok(Answer::Ok),
                    "Unsubscribe" => Ok(Answer::Unsubscribe),
                    other => Err(format!("SubscriptionStatus {other:?}")),
                };
            }
            Ok(Event::Eof) => return Err("the answer holds no SubscriptionStatus".to_owned()),
            Err(e) => return Err(format!("the answer is not XML: {e}")),
            Ok(_) => inside = false,
        }
    }
}

/// Where to POST for `url` when `via` names the server (itself, or the
/// --graph-deliver-to base a reverse proxy would be): `host:port` and the
/// path with its query.
pub fn split(given: &str, via: &url::Url, url: &url::Url) -> Result<(String, String), String> {
    let host = via.host_str().ok_or(format!("{given:?} names no host"))?;
    let port = via.port_or_known_default().unwrap_or(80);
    let mut path_and_query = url.path().to_owned();
    if let Some(query) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    Ok((format!("{host}:{port}"), path_and_query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subscribers_answer() {
        let ok = br#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
            <m:SendNotificationResult xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
            <m:SubscriptionStatus> OK </m:SubscriptionStatus></m:SendNotificationResult></s:Body></s:Envelope>"#;
        assert_eq!(subscription_status(ok), Ok(Answer::Ok));
        let text = String::from_utf8_lossy(ok).replace(" OK ", "Unsubscribe");
        assert_eq!(
            subscription_status(text.as_bytes()),
            Ok(Answer::Unsubscribe)
        );
        assert!(subscription_status(b"<html>hello</html>").is_err());
        assert!(subscription_status(b"").is_err());
        let maybe = String::from_utf8_lossy(ok).replace(" OK ", "Maybe");
        assert!(subscription_status(maybe.as_bytes()).is_err());
    }

    #[test]
    fn targets_are_plain_http_urls() {
        let t = Target::parse("http://127.0.0.1:8080/ews/abc?x=1").expect("ok");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/ews/abc?x=1");
        assert_eq!(
            Target::parse("http://[::1]/n").expect("ok").authority,
            "[::1]:80"
        );
        assert!(Target::parse("https://example.com/").is_err());
        assert!(Target::parse("not a url").is_err());
        assert!(Target::parse("").is_err());
    }

    #[test]
    fn events_follow_what_was_asked() {
        let asked = vec!["ModifiedEvent".to_owned(), "CreatedEvent".to_owned()];
        assert_eq!(wanted("CreatedEvent", &asked), Some("CreatedEvent"));
        assert_eq!(wanted("DeletedEvent", &asked), None);
        let fb = vec!["FreeBusyChangedEvent".to_owned()];
        assert_eq!(wanted("DeletedEvent", &fb), Some("FreeBusyChangedEvent"));
    }
}
