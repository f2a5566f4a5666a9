//! System > Locale Installation (LO-1): which locale is installed on which
//! node of the cluster, and installing or uninstalling one on a node. Each
//! install or uninstall needs a Presence Engine restart on that node.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_messages::Messages;
use serde::Deserialize;

use crate::domain::locale::{CATALOGUE, Locale};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;

use super::forms::{FORM, FieldErrors};
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, render};

const PAGE: &str = paths::LOCALES;

pub fn router() -> Router<AppState> {
    Router::new().route(PAGE, get(index).post(change))
}

/// One catalogue locale across the cluster.
struct Row {
    tag: &'static str,
    label: String,
    builtin: bool,
    /// Installed or not, per node, in the order of the table's columns.
    cells: Vec<bool>,
    /// The nodes that lack it, comma-separated; empty when none does.
    missing: String,
    users: i64,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Debug, Default, Deserialize)]
struct RawChange {
    #[serde(default)]
    node: String,
    #[serde(default)]
    locale: String,
    #[serde(default)]
    action: String,
}

#[derive(Template)]
#[template(path = "pages/locales/index.html")]
struct IndexPage {
    shell: Shell,
    nodes: Vec<String>,
    rows: Vec<Row>,
    node_choices: Vec<Choice>,
    locale_choices: Vec<Choice>,
    errors: FieldErrors,
}

async fn index(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    page(
        &state,
        &user,
        messages,
        StatusCode::OK,
        &RawChange::default(),
        FieldErrors::default(),
    )
    .await
}

async fn page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    status: StatusCode,
    typed: &RawChange,
    errors: FieldErrors,
) -> AppResult<Response> {
    let nodes: Vec<String> = store::nodes::list(&state.pool)
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let installed = store::locales::installations(&state.pool).await?;
    let users = store::locales::users_per_locale(&state.pool).await?;
    let rows = CATALOGUE
        .iter()
        .map(|l| {
            let builtin = l.is_builtin();
            let cells: Vec<bool> = nodes
                .iter()
                .map(|node| builtin || installed.iter().any(|(n, t)| n == node && t == l.tag))
                .collect();
            let missing: Vec<&str> = nodes
                .iter()
                .zip(&cells)
                .filter(|(_, on)| !**on)
                .map(|(node, _)| node.as_str())
                .collect();
            Row {
                tag: l.tag,
                label: l.label(),
                builtin,
                cells,
                missing: missing.join(", "),
                users: users
                    .iter()
                    .find(|(t, _)| t == l.tag)
                    .map_or(0, |(_, n)| *n),
            }
        })
        .collect();
    let chosen_node = if typed.node.is_empty() {
        state.settings.node_name.as_str()
    } else {
        typed.node.as_str()
    };
    let node_choices = nodes
        .iter()
        .map(|n| Choice {
            value: n.clone(),
            label: n.clone(),
            selected: n == chosen_node,
        })
        .collect();
    let locale_choices = CATALOGUE
        .iter()
        .filter(|l| !l.is_builtin())
        .map(|l| Choice {
            value: l.tag.to_owned(),
            label: l.label(),
            selected: l.tag.eq_ignore_ascii_case(typed.locale.trim()),
        })
        .collect();
    render(
        status,
        &IndexPage {
            shell: Shell::new(state, user, messages, "Locale Installation", PAGE).await?,
            nodes,
            rows,
            node_choices,
            locale_choices,
            errors,
        },
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Install,
    Uninstall,
}

async fn change(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(raw): Form<RawChange>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    let action = match raw.action.as_str() {
        "install" => Some(Action::Install),
        "uninstall" => Some(Action::Uninstall),
        _ => {
            errors.set(FORM, "Choose Install or Uninstall.");
            None
        }
    };
    let node = raw.node.trim();
    if node.is_empty() {
        errors.set("node", "Choose a node.");
    }
    let locale = Locale::parse(&raw.locale)
        .map_err(|e| errors.set("locale", e))
        .ok();
    let (Some(action), Some(locale), false) = (action, locale, node.is_empty()) else {
        return refuse(&state, &user, messages, &raw, errors).await;
    };
    let actor = user.row.user_id.as_str();
    let now = state.now();
    let done = match action {
        Action::Install => store::locales::install(&state.pool, node, &locale, actor, now).await,
        Action::Uninstall => {
            store::locales::uninstall(&state.pool, node, &locale, actor, now).await
        }
    };
    match done {
        Ok(()) => {
            let verb = match action {
                Action::Install => "installed on",
                Action::Uninstall => "uninstalled from",
            };
            let _ = messages.success(format!(
                "{} {verb} {node}. The Presence Engine on {node} must restart for this to take \
                 effect.",
                locale.label()
            ));
            Ok(Redirect::to(PAGE).into_response())
        }
        Err(AppError::Refused(refusal)) => {
            super::refusals::place(&mut errors, &refusal);
            refuse(&state, &user, messages, &raw, errors).await
        }
        Err(other) => Err(other),
    }
}

async fn refuse(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    raw: &RawChange,
    errors: FieldErrors,
) -> AppResult<Response> {
    page(
        state,
        user,
        messages,
        StatusCode::UNPROCESSABLE_ENTITY,
        raw,
        errors,
    )
    .await
}
