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
    render(
        StatusCode::OK,
        &HomePage {
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
