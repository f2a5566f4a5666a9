//! `GET /metrics` (EN-8): the engine's figures in the Prometheus text
//! format (`crate::telemetry`), with what the database and this process
//! know at the moment of the scrape: each node's calendar users by state
//! and the open event streams. Readable with an API token, or from a
//! loopback address without one (a Prometheus beside the service); anyone
//! else gets 401. No label names a user or a mailbox.

use std::fmt::Write;
use std::net::IpAddr;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::net::Peer;
use crate::state::{AppState, StreamPermits};
use crate::store;

use super::paths;

pub fn router() -> Router<AppState> {
    Router::new().route(paths::METRICS, get(metrics))
}

/// Whether a caller without a token may read the figures: only from a
/// loopback address (never judged by a forwarded-for header, which anyone
/// can send).
pub fn anonymous_may_read(from: Option<IpAddr>) -> bool {
    from.is_some_and(|ip| ip.to_canonical().is_loopback())
}

/// A label value in the text format: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(
    State(state): State<AppState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    // A request that sends a token is judged by it alone, as on the API.
    match super::api::bearer(&headers, &state).await {
        Ok(Some(_)) => {}
        Ok(None) if anonymous_may_read(peer.map(|Extension(Peer(addr))| addr.ip())) => {}
        Ok(None) => return super::api::unauthorized(),
        Err(refused) => return refused,
    }
    let mut body = crate::telemetry::render()
        .unwrap_or_else(|| "# the metrics recorder could not be installed\n".to_owned());
    body.push_str(
        "# HELP presence_gateway_calendar_users Calendar users by published state, per node.\n\
         # TYPE presence_gateway_calendar_users gauge\n",
    );
    match node_counts(&state).await {
        Ok(rows) => {
            for (node, counts) in rows {
                let states = ["in_a_meeting", "away", "available", "unknown"];
                for (state, n) in states.iter().zip(counts) {
                    let _ = writeln!(
                        body,
                        "presence_gateway_calendar_users{{node=\"{}\",state=\"{state}\"}} {n}",
                        label(&node)
                    );
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: calendar users could not be counted");
            body.push_str("# calendar users: the database is unavailable\n");
        }
    }
    let open = StreamPermits::MAX.saturating_sub(state.streams.0.available_permits());
    let _ = write!(
        body,
        "# HELP presence_gateway_streams Open presence event streams on this node.\n\
         # TYPE presence_gateway_streams gauge\n\
         presence_gateway_streams{{node=\"{}\"}} {open}\n",
        label(&state.settings.node_name)
    );
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn node_counts(state: &AppState) -> crate::error::AppResult<Vec<(String, [i64; 4])>> {
    let mut rows = Vec::new();
    for node in store::engine::nodes(&state.pool).await? {
        let counts = store::health::presence_counts(&state.pool, &node.name).await?;
        rows.push((node.name, counts));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_reads_without_a_token() {
        for ip in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            assert!(anonymous_may_read(Some(ip.parse().unwrap())), "{ip}");
        }
        for ip in ["192.0.2.10", "10.0.0.1", "2001:db8::1", "::ffff:192.0.2.1"] {
            assert!(!anonymous_may_read(Some(ip.parse().unwrap())), "{ip}");
        }
        assert!(!anonymous_may_read(None));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("x\ny"), "x\\ny");
    }
}
