//! The administration console's own pages: the start page and Cluster Nodes.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_messages::Messages;

use crate::domain::user::Role;
use crate::error::AppResult;
use crate::state::AppState;
use crate::store;

use super::paths;
use super::session::{Admin, SignedIn};
use super::shell::{Shell, format_time, render};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route(paths::NODES, get(nodes))
}

#[derive(Template)]
#[template(path = "pages/console/home.html")]
struct HomePage {
    shell: Shell,
    name: String,
    node_name: String,
    generation: i64,
    version: &'static str,
    glance: Vec<NodeGlance>,
    attention: Vec<Attention>,
}

/// One node at a glance: its engine and its calendar users' presence.
struct NodeGlance {
    name: String,
    engine: &'static str,
    calendar_users: i64,
    /// In a meeting, away, available, unknown.
    counts: [i64; 4],
    requests_per_minute: i64,
}

/// Something an administrator should look at, and where.
struct Attention {
    text: String,
    href: String,
    link: &'static str,
}

/// How recent a gateway's last error must be to ask for attention.
const RECENT_ERROR_SECS: i64 = 15 * 60;
/// A node whose heartbeat is older than this may be down (Control Center
/// uses the same figure).
const HEARTBEAT_STALE_SECS: i64 = 35;

/// The home page's dashboard (EN-7): each node at a glance, then what needs
/// attention, each item linked to the page that deals with it.
/// `key` is the caller's configuration generation and verdict sequence,
/// under which the gateways come from memory, as on their list.
async fn dashboard(
    state: &AppState,
    key: (i64, i64),
) -> AppResult<(Vec<NodeGlance>, Vec<Attention>)> {
    let now = state.now();
    let nodes = store::engine::nodes(&state.pool).await?;
    let health = store::health::gateways(&state.pool).await?;
    let gateways = super::gateways::all_gateways(state, key).await?;
    let mut glance = Vec::with_capacity(nodes.len());
    let mut attention = Vec::new();
    if gateways.is_empty() {
        attention.push(Attention {
            text: "No Presence Gateway is configured: no calendar is read.".to_owned(),
            href: paths::GATEWAY_NEW.to_owned(),
            link: "Add a Presence Gateway",
        });
    }
    for g in gateways.iter() {
        if let Some(verdict) = g
            .last_verdict
            .as_deref()
            .filter(|v| !v.starts_with(crate::troubleshoot::VERIFIED))
        {
            attention.push(Attention {
                text: format!(
                    "{}: the last Troubleshooter run said {verdict}.",
                    g.description
                ),
                href: format!("{}/{}", paths::GATEWAYS, g.id),
                link: "Open the gateway",
            });
        }
    }
    // Failovers first: a node is down and its peer carries its users.
    for lease in store::redundancy::leases(&state.pool)
        .await?
        .iter()
        .filter(|l| l.failed_over())
    {
        attention.push(Attention {
            text: super::redundancy::failed_over_text(lease),
            href: paths::CONTROL_CENTER.to_owned(),
            link: "Control Center",
        });
    }
    for node in &nodes {
        let running = node.state() == store::engine::EngineState::Running;
        let counts = store::health::presence_counts(&state.pool, &node.name).await?;
        let mine: Vec<&store::health::GatewayHealth> =
            health.iter().filter(|h| h.node == node.name).collect();
        glance.push(NodeGlance {
            name: node.name.clone(),
            engine: node.state().label(),
            calendar_users: counts.iter().sum(),
            counts,
            requests_per_minute: mine.iter().map(|h| h.requests_per_minute).sum(),
        });
        if now - node.last_heartbeat > HEARTBEAT_STALE_SECS {
            attention.push(Attention {
                text: format!(
                    "Node {} has sent no heartbeat since {}: its process may be stopped.",
                    node.name,
                    format_time(node.last_heartbeat)
                ),
                href: paths::NODES.to_owned(),
                link: "Cluster Nodes",
            });
        }
        if node.activated && !running {
            attention.push(Attention {
                text: format!(
                    "The Presence Engine on {} is {}{}.",
                    node.name,
                    node.state().label(),
                    node.engine_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                href: paths::CONTROL_CENTER.to_owned(),
                link: "Control Center",
            });
        }
        for h in mine.iter().filter(|_| running) {
            let href = format!("{}/{}", paths::GATEWAYS, h.gateway_id);
            if !h.healthy {
                attention.push(Attention {
                    text: format!(
                        "{} is set aside by the Presence Engine on {} after repeated failures: {}",
                        h.description,
                        node.name,
                        h.last_error.as_deref().unwrap_or("no detail")
                    ),
                    href,
                    link: "Troubleshoot the gateway",
                });
            } else if let Some(until) = h.throttled_until.filter(|&u| u > now) {
                attention.push(Attention {
                    text: format!(
                        "{} asked the Presence Engine on {} to back off until {}.",
                        h.description,
                        node.name,
                        format_time(until)
                    ),
                    href: paths::CONTROL_CENTER.to_owned(),
                    link: "Control Center",
                });
            } else if let (Some(error), Some(at)) = (&h.last_error, h.last_error_at)
                && now - at < RECENT_ERROR_SECS
                && h.last_success.is_none_or(|ok| ok < at)
            {
                attention.push(Attention {
                    text: format!(
                        "{} on {}: {error} ({})",
                        h.description,
                        node.name,
                        format_time(at)
                    ),
                    href,
                    link: "Troubleshoot the gateway",
                });
            }
        }
        if running && counts[3] > 0 {
            attention.push(Attention {
                text: format!(
                    "{} calendar users on {} have unknown presence (the End User page says why).",
                    counts[3], node.name
                ),
                href: paths::END_USERS.to_owned(),
                link: "Find users",
            });
        }
    }
    Ok((glance, attention))
}

/// The console's start page. An end user who opens it (the site's root)
/// is sent to their own page, User Options, rather than refused.
async fn home(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    messages: Messages,
) -> AppResult<Response> {
    if user.role != Role::Admin {
        return Ok(Redirect::to(paths::USER_OPTIONS).into_response());
    }
    if user.row.must_change_password {
        return Ok(Redirect::to(paths::ACCOUNT_PASSWORD).into_response());
    }
    let key = (user.config.generation, user.config.verdicts);
    let (glance, attention) = dashboard(&state, key).await?;
    render(
        StatusCode::OK,
        &HomePage {
            glance,
            attention,
            shell: Shell::new(&state, &user, messages, "Home", "/").await?,
            name: user.row.display_name(),
            node_name: state.settings.node_name.clone(),
            generation: user.config.generation,
            version: env!("CARGO_PKG_VERSION"),
        },
    )
}

struct NodeView {
    name: String,
    address: String,
    activated: bool,
    started: String,
    heartbeat: String,
    /// The Presence Engine's state, with the reason when it failed.
    engine: String,
    is_this: bool,
}

#[derive(Template)]
#[template(path = "pages/console/nodes.html")]
struct NodesPage {
    shell: Shell,
    nodes: Vec<NodeView>,
}

async fn nodes(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let engines = store::engine::nodes(&state.pool).await?;
    let nodes = store::nodes::list(&state.pool)
        .await?
        .into_iter()
        .map(|n| NodeView {
            is_this: n.name == state.settings.node_name,
            engine: engines
                .iter()
                .find(|e| e.name == n.name)
                .map(|e| match &e.engine_reason {
                    Some(reason) => format!("{}: {reason}", e.state().label()),
                    None => e.state().label().to_owned(),
                })
                .unwrap_or_default(),
            name: n.name,
            address: n.address,
            activated: n.activated,
            started: format_time(n.started_at),
            heartbeat: format_time(n.last_heartbeat),
        })
        .collect();
    render(
        StatusCode::OK,
        &NodesPage {
            shell: Shell::new(&state, &user, messages, "Cluster Nodes", paths::NODES).await?,
            nodes,
        },
    )
}
