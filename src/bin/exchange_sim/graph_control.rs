//! The simulator's control of its Graph face, under `/sim/graph/`:
//! throttling and token faults, lifecycle and change notifications on
//! demand. Counts are in /sim/stats' `graph` object.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use crate::Sim;
use crate::control::{json_answer, param, text};
use crate::graph::{Budget, Throttle, TokenFault};
use crate::graph_subs;

/// Counts and durations beyond these are typing mistakes.
const MAX_COUNT: u64 = 1_000_000;
const MAX_MS: u64 = 24 * 3600 * 1000;
const DEFAULT_RETRY_AFTER: u64 = 10;

pub fn handle(
    method: &Method,
    path: &str,
    params: &[(String, String)],
    sim: &Sim,
) -> Response<Full<Bytes>> {
    let param = |name: &str| param(params, name);
    match (method, path) {
        (&Method::POST, "/sim/graph/faults") => match set_fault(sim, params) {
            Ok(described) => json_answer(StatusCode::OK, &json!({ "fault": described })),
            Err(why) => text(StatusCode::BAD_REQUEST, &why),
        },
        (&Method::DELETE, "/sim/graph/faults") => {
            sim.graph.clear_faults();
            json_answer(StatusCode::OK, &json!({ "fault": null }))
        }
        (&Method::POST, "/sim/graph/lifecycle") => {
            let (Some(mailbox), Some(event)) = (param("mailbox"), param("event")) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "mailbox=ADDRESS&event=subscriptionRemoved|missed|reauthorizationRequired",
                );
            };
            if !["subscriptionRemoved", "missed", "reauthorizationRequired"].contains(&event) {
                return text(
                    StatusCode::BAD_REQUEST,
                    "event: subscriptionRemoved, missed or reauthorizationRequired",
                );
            }
            let sent = graph_subs::lifecycle(&sim.graph, mailbox, event);
            json_answer(StatusCode::OK, &json!({ "sent": sent }))
        }
        (&Method::POST, "/sim/graph/notify") => {
            let Some(mailbox) = param("mailbox") else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "mailbox=ADDRESS[&client_state=TEXT]",
                );
            };
            let sent = graph_subs::notify(&sim.graph, mailbox, param("client_state"));
            json_answer(StatusCode::OK, &json!({ "sent": sent }))
        }
        (_, "/sim/graph/faults" | "/sim/graph/lifecycle" | "/sim/graph/notify") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "see exchange-sim --help for the methods of /sim/graph/ endpoints",
        ),
        _ => text(StatusCode::NOT_FOUND, "no such /sim/graph/ endpoint"),
    }
}

/// kind=throttle (mailbox, status 429|503, retry_after=N|none) or
/// kind=expired-secret|consent-missing; count=K and/or for_ms=D (neither:
/// the next request only).
fn set_fault(sim: &Sim, params: &[(String, String)]) -> Result<serde_json::Value, String> {
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
    let count = number("count", MAX_COUNT)?;
    let for_ms = number("for_ms", MAX_MS)?;
    let budget = Budget {
        remaining: if count.is_none() && for_ms.is_none() {
            Some(1)
        } else {
            count
        },
        until: for_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
    };
    let bounds = json!({ "count": budget.remaining, "for_ms": for_ms });
    match param("kind") {
        Some("throttle") => {
            let mailbox = param("mailbox")
                .filter(|m| m.contains('@'))
                .ok_or("throttle: name the path mailbox, mailbox=ADDRESS")?;
            let status = match param("status").unwrap_or("429") {
                "429" => StatusCode::TOO_MANY_REQUESTS,
                "503" => StatusCode::SERVICE_UNAVAILABLE,
                other => return Err(format!("status {other:?}: 429 or 503")),
            };
            let retry_after = match param("retry_after") {
                Some("none") => None,
                Some(_) => number("retry_after", 86_400)?,
                None => Some(DEFAULT_RETRY_AFTER),
            };
            sim.graph.set_throttle(
                mailbox,
                Throttle {
                    status,
                    retry_after,
                    budget,
                },
            );
            Ok(
                json!({"kind": "throttle", "mailbox": mailbox, "status": status.as_u16(),
                      "retry_after": retry_after, "bounds": bounds}),
            )
        }
        Some(kind @ ("expired-secret" | "consent-missing")) => {
            let fault = if kind == "expired-secret" {
                TokenFault::ExpiredSecret
            } else {
                TokenFault::ConsentMissing
            };
            sim.graph.set_token_fault(Some((fault, budget)));
            Ok(json!({"kind": kind, "bounds": bounds}))
        }
        other => Err(format!(
            "kind {other:?}: throttle, expired-secret or consent-missing"
        )),
    }
}
