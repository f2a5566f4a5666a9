//! The simulator's own control under `/sim/`, for tests and demos: change
//! calendars while it runs, inject faults, read what reached it, and nudge
//! or silently lose push subscriptions. Not Exchange, so no Exchange
//! authentication (the simulator listens on loopback by default).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use crate::Sim;
use crate::service::{read_body, respond};

/// GetUserAvailability requests remembered for /sim/stats, newest last.
const AVAILABILITY_KEPT: usize = 1000;
/// Of each, at most this many mailboxes (Exchange's limit per request), each
/// at most this long (an SMTP address's limit).
const MAX_KEPT_MAILBOXES: usize = 100;
const MAX_ADDRESS: usize = 320;
/// Fault counts and durations beyond these are typing mistakes.
const MAX_FAULT_COUNT: u64 = 1_000_000;
const MAX_FAULT_MS: u64 = 24 * 3600 * 1000;
const DEFAULT_BACK_OFF_MS: u64 = 30_000;

/// How an injected fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAnswer {
    /// `ErrorServerBusy` with `BackOffMilliseconds`: a SOAP fault, or with
    /// `per_mailbox` one error per GetUserAvailability mailbox.
    ServerBusy { back_off_ms: u64, per_mailbox: bool },
    /// An IIS error page with this status (500 or 503).
    Http(StatusCode),
}

impl FaultAnswer {
    fn name(self) -> String {
        match self {
            FaultAnswer::ServerBusy { .. } => "ErrorServerBusy".to_owned(),
            FaultAnswer::Http(status) => format!("http-{}", status.as_u16()),
        }
    }
}

#[derive(Debug)]
struct Fault {
    answer: FaultAnswer,
    /// The EWS operation it applies to (`GetUserAvailability`), or None for all.
    operation: Option<String>,
    remaining: Option<u64>,
    until: Option<Instant>,
    until_unix_ms: Option<u64>,
}

/// The fault set by `POST /sim/faults`, at most one at a time.
#[derive(Default)]
pub struct Faults(Mutex<Option<Fault>>);

impl Faults {
    /// The fault answering a request for `operation`, if one applies now;
    /// counts it against the fault's remaining requests.
    pub fn take(&self, operation: &str) -> Option<FaultAnswer> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let fault = slot.as_mut()?;
        if fault.until.is_some_and(|until| Instant::now() >= until) {
            *slot = None;
            return None;
        }
        if fault.operation.as_deref().is_some_and(|o| o != operation) {
            return None;
        }
        let answer = fault.answer;
        if let Some(remaining) = fault.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                *slot = None;
            }
        }
        Some(answer)
    }

    fn describe(&self) -> serde_json::Value {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            None => serde_json::Value::Null,
            Some(f) => {
                let (back_off_ms, shape) = match f.answer {
                    FaultAnswer::ServerBusy {
                        back_off_ms,
                        per_mailbox,
                    } => (
                        Some(back_off_ms),
                        Some(if per_mailbox { "mailbox" } else { "fault" }),
                    ),
                    FaultAnswer::Http(_) => (None, None),
                };
                json!({
                    "kind": f.answer.name(),
                    "operation": f.operation.as_deref().unwrap_or("any"),
                    "remaining": f.remaining,
                    "until_unix_ms": f.until_unix_ms,
                    "back_off_ms": back_off_ms,
                    "shape": shape,
                })
            }
        }
    }
}

#[derive(Serialize)]
struct AvailabilityRequest {
    at_unix_ms: u64,
    mailboxes: Vec<String>,
    /// The injected fault that answered it, if any (`ErrorServerBusy`,
    /// `http-503`, ...).
    fault: Option<String>,
}

#[derive(Default)]
struct Counts {
    operations: BTreeMap<String, u64>,
    availability: VecDeque<AvailabilityRequest>,
}

/// What reached the simulator's EWS (after authentication), for /sim/stats.
#[derive(Default)]
pub struct Stats(Mutex<Counts>);

impl Stats {
    pub fn record(&self, operation: &str, mailboxes: Vec<String>, fault: Option<FaultAnswer>) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Operation names come from the request: bound how many are kept.
        if counts.operations.len() < 256 || counts.operations.contains_key(operation) {
            *counts.operations.entry(operation.to_owned()).or_default() += 1;
        }
        if operation == "GetUserAvailability" {
            if counts.availability.len() == AVAILABILITY_KEPT {
                counts.availability.pop_front();
            }
            // A request may name more (it is refused) and addresses are
            // the client's text: keep what a real request can hold.
            let mailboxes = mailboxes
                .into_iter()
                .take(MAX_KEPT_MAILBOXES)
                .map(|m| m.chars().take(MAX_ADDRESS).collect())
                .collect();
            counts.availability.push_back(AvailabilityRequest {
                at_unix_ms: unix_ms(),
                mailboxes,
                fault: fault.map(FaultAnswer::name),
            });
        }
    }
}

/// The simulator's wall clock, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Answers a request under `/sim/`.
pub async fn handle(request: Request<Incoming>, sim: &Sim) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let Ok(body) = read_body(request).await else {
        return text(
            StatusCode::BAD_REQUEST,
            "the body could not be read (at most 1 MiB)",
        );
    };
    // Parameters from the query string, then from a form body.
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if is_form {
        params.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    let param = |name: &str| param(&params, name);

    match (method, path.as_str()) {
        (Method::POST, "/sim/calendars") => match std::str::from_utf8(&body) {
            Ok(rows) => load_calendars(sim, rows),
            Err(e) => text(StatusCode::BAD_REQUEST, &format!("not UTF-8: {e}")),
        },
        (Method::DELETE, "/sim/calendars") => match param("mailbox") {
            // The load format's way of emptying one calendar.
            Some(mailbox) if !mailbox.contains([',', '\n', '\r']) => {
                load_calendars(sim, &format!("{mailbox},,,\n"))
            }
            _ => text(
                StatusCode::BAD_REQUEST,
                "name the mailbox to empty: DELETE /sim/calendars?mailbox=ADDRESS",
            ),
        },
        (Method::POST, "/sim/faults") => set_fault(sim, &params),
        (Method::DELETE, "/sim/faults") => {
            *sim.faults.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
            json_answer(StatusCode::OK, &json!({ "fault": null }))
        }
        (Method::GET, "/sim/stats") => stats(sim),
        (Method::POST, "/sim/status") => {
            let asked = sim.push.status_now(param("mailbox"));
            json_answer(StatusCode::OK, &json!({ "asked": asked }))
        }
        (Method::POST, "/sim/subscriptions/drop") => {
            let (mailbox, id) = (param("mailbox"), param("id"));
            if mailbox.is_none() && id.is_none() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "name what to drop: ?mailbox=ADDRESS or ?id=SUBSCRIPTION_ID",
                );
            }
            let dropped = sim.push.drop_silently(mailbox, id);
            json_answer(StatusCode::OK, &json!({ "dropped": dropped }))
        }
        (method, path) if path.starts_with("/sim/graph/") => {
            crate::graph_control::handle(&method, path, &params, sim)
        }
        (
            _,
            "/sim/calendars"
            | "/sim/faults"
            | "/sim/stats"
            | "/sim/status"
            | "/sim/subscriptions/drop",
        ) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "see exchange-sim --help for the methods of /sim/ endpoints",
        ),
        _ => text(StatusCode::NOT_FOUND, "no such /sim/ endpoint"),
    }
}

/// Loads rows, then tells the changed mailboxes' push subscribers.
fn load_calendars(sim: &Sim, rows: &str) -> Response<Full<Bytes>> {
    match sim.calendars.load(rows) {
        Ok(changed) => {
            sim.push.changed(&changed);
            crate::graph_subs::changed(&sim.graph, &changed);
            text(
                StatusCode::OK,
                &format!("{} calendars changed", changed.len()),
            )
        }
        Err(why) => text(StatusCode::BAD_REQUEST, &why),
    }
}

/// The first value of parameter `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn set_fault(sim: &Sim, params: &[(String, String)]) -> Response<Full<Bytes>> {
    let param = |name: &str| param(params, name);
    let number = |name: &str, max: u64| -> Result<Option<u64>, String> {
        param(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or(format!("{name} must be a whole number from 1 to {max}"))
            })
            .transpose()
    };
    let parsed = (|| -> Result<Fault, String> {
        let back_off_ms = number("back_off_ms", MAX_FAULT_MS)?.unwrap_or(DEFAULT_BACK_OFF_MS);
        let per_mailbox = match param("shape").unwrap_or("fault") {
            "fault" => false,
            "mailbox" => true,
            other => return Err(format!("shape {other:?}: fault or mailbox")),
        };
        let answer = match param("kind") {
            Some("server-busy") => FaultAnswer::ServerBusy {
                back_off_ms,
                per_mailbox,
            },
            Some("http-500") => FaultAnswer::Http(StatusCode::INTERNAL_SERVER_ERROR),
            Some("http-503") => FaultAnswer::Http(StatusCode::SERVICE_UNAVAILABLE),
            other => {
                return Err(format!("kind {other:?}: server-busy, http-500 or http-503"));
            }
        };
        let count = number("count", MAX_FAULT_COUNT)?;
        let for_ms = number("for_ms", MAX_FAULT_MS)?;
        let operation = match param("operation").unwrap_or("GetUserAvailability") {
            "any" => None,
            name if !name.is_empty() && name.len() <= 64 => Some(name.to_owned()),
            _ => return Err("operation: an EWS operation name or any".to_owned()),
        };
        Ok(Fault {
            answer,
            operation,
            // Neither bound given: the next request only.
            remaining: if count.is_none() && for_ms.is_none() {
                Some(1)
            } else {
                count
            },
            until: for_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
            until_unix_ms: for_ms.map(|ms| unix_ms().saturating_add(ms)),
        })
    })();
    match parsed {
        Ok(fault) => {
            *sim.faults.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(fault);
            json_answer(StatusCode::OK, &json!({ "fault": sim.faults.describe() }))
        }
        Err(why) => text(StatusCode::BAD_REQUEST, &why),
    }
}

fn stats(sim: &Sim) -> Response<Full<Bytes>> {
    let counts = sim.stats.0.lock().unwrap_or_else(PoisonError::into_inner);
    let body = json!({
        "now_unix_ms": unix_ms(),
        "operations": counts.operations,
        "availability_requests": counts.availability,
        "subscriptions": sim.push.list(),
        "fault": sim.faults.describe(),
        "graph": sim.graph.stats_json(),
    });
    drop(counts);
    json_answer(StatusCode::OK, &body)
}

pub fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

pub fn json_answer(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_counts_down_and_matches_its_operation() {
        let faults = Faults::default();
        *faults.0.lock().expect("lock") = Some(Fault {
            answer: FaultAnswer::Http(StatusCode::SERVICE_UNAVAILABLE),
            operation: Some("GetUserAvailability".to_owned()),
            remaining: Some(2),
            until: None,
            until_unix_ms: None,
        });
        assert_eq!(faults.take("GetFolder"), None);
        assert!(faults.take("GetUserAvailability").is_some());
        assert!(faults.take("GetUserAvailability").is_some());
        assert_eq!(faults.take("GetUserAvailability"), None);
    }
}
