//! System > Presence Redundancy Groups (CL-4): pair two cluster nodes so
//! each takes over the other's calendar users when it goes silent.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_messages::Messages;
use serde::Deserialize;

use crate::domain::redundancy::{FAILOVER_AFTER_DEFAULT, GroupForm};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;
use crate::store::redundancy::{Group, Lease};

use super::forms::FieldErrors;
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, format_time, render};

const LIST: &str = paths::REDUNDANCY_GROUPS;
const TITLE: &str = "Presence Redundancy Groups";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(LIST, get(list))
        .route(paths::REDUNDANCY_GROUP_NEW, get(new).post(create))
        .route(paths::REDUNDANCY_GROUP, get(edit).post(update))
        .route(
            paths::REDUNDANCY_GROUP_DELETE,
            get(confirm_delete).post(delete),
        )
}

/// "Failed over: bob-node's users are served by alice-node since ..." (the
/// words of SPEC CL-4), for this page, Control Center and the home page.
pub fn failed_over_text(lease: &Lease) -> String {
    format!(
        "Failed over: {}'s users are served by {} since {}.",
        lease.node,
        lease.served_by,
        format_time(lease.served_since)
    )
}

/// Who serves a group's nodes now, in words.
fn standing(group: &Group, leases: &[Lease], now: i64) -> Vec<String> {
    if !group.high_availability {
        return vec!["High Availability is off: each node serves its own users.".to_owned()];
    }
    [&group.node_a, &group.node_b]
        .into_iter()
        .map(|node| match leases.iter().find(|l| &l.node == node) {
            None => format!("{node}: no lease yet (its Presence Engine has not run since)."),
            Some(l) if l.failed_over() => failed_over_text(l),
            Some(l) if l.expires_at <= now => format!(
                "{node} serves its own users; its lease ran out at {} (its peer takes them \
                 over at its next renewal).",
                format_time(l.expires_at)
            ),
            Some(l) => format!(
                "{node} serves its own users (lease renewed {}).",
                format_time(l.renewed_at)
            ),
        })
        .collect()
}

struct Row {
    id: i64,
    name: String,
    node_a: String,
    node_b: String,
    high_availability: bool,
    failover_after: i64,
    standing: Vec<String>,
    updated: String,
}

#[derive(Template)]
#[template(path = "pages/redundancy/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<Row>,
}

async fn list(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let now = state.now();
    let leases = store::redundancy::leases(&state.pool).await?;
    let rows = store::redundancy::groups(&state.pool)
        .await?
        .into_iter()
        .map(|g| Row {
            standing: standing(&g, &leases, now),
            updated: format!("{} by {}", format_time(g.updated_at), g.updated_by),
            id: g.id,
            name: g.name,
            node_a: g.node_a,
            node_b: g.node_b,
            high_availability: g.high_availability,
            failover_after: g.failover_after,
        })
        .collect();
    render(
        StatusCode::OK,
        &ListPage {
            shell: Shell::new(&state, &user, messages, TITLE, LIST).await?,
            rows,
        },
    )
}

// --------------------------------------------------------------- add, edit

/// A node in a select, and whether it is chosen.
struct Choice {
    name: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "pages/redundancy/form.html")]
struct FormPage {
    shell: Shell,
    /// None for a new group.
    id: Option<i64>,
    heading: String,
    name: String,
    nodes_a: Vec<Choice>,
    nodes_b: Vec<Choice>,
    high_availability: bool,
    failover_after: String,
    errors: FieldErrors,
}

impl FormPage {
    fn action(&self) -> String {
        match self.id {
            Some(id) => paths::with_id(paths::REDUNDANCY_GROUP, id),
            None => paths::REDUNDANCY_GROUP_NEW.to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    node_a: String,
    #[serde(default)]
    node_b: String,
    high_availability: Option<String>,
    #[serde(default)]
    failover_after: String,
}

impl RawGroup {
    fn of(group: &Group) -> RawGroup {
        RawGroup {
            name: group.name.clone(),
            node_a: group.node_a.clone(),
            node_b: group.node_b.clone(),
            high_availability: group.high_availability.then(|| "on".to_owned()),
            failover_after: group.failover_after.to_string(),
        }
    }
}

async fn form_page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    id: Option<i64>,
    raw: RawGroup,
    errors: FieldErrors,
) -> AppResult<FormPage> {
    let nodes = store::engine::nodes(&state.pool).await?;
    let choices = |chosen: &str| -> Vec<Choice> {
        nodes
            .iter()
            .map(|n| Choice {
                name: n.name.clone(),
                selected: n.name == chosen.trim(),
            })
            .collect()
    };
    let heading = match id {
        Some(_) => format!("Presence Redundancy Group: {}", raw.name.trim()),
        None => "Add a Presence Redundancy Group".to_owned(),
    };
    Ok(FormPage {
        shell: Shell::new(state, user, messages, &heading, LIST).await?,
        id,
        heading,
        nodes_a: choices(&raw.node_a),
        nodes_b: choices(&raw.node_b),
        name: raw.name.trim().to_owned(),
        high_availability: raw.high_availability.is_some(),
        failover_after: raw.failover_after.trim().to_owned(),
        errors,
    })
}

async fn new(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let raw = RawGroup {
        failover_after: FAILOVER_AFTER_DEFAULT.to_string(),
        ..RawGroup::default()
    };
    let page = form_page(&state, &user, messages, None, raw, FieldErrors::default()).await?;
    render(StatusCode::OK, &page)
}

async fn edit(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let group = store::redundancy::group(&state.pool, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let page = form_page(
        &state,
        &user,
        messages,
        Some(id),
        RawGroup::of(&group),
        FieldErrors::default(),
    )
    .await?;
    render(StatusCode::OK, &page)
}

async fn create(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(raw): Form<RawGroup>,
) -> AppResult<Response> {
    save(state, user, messages, None, raw).await
}

async fn update(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
    Form(raw): Form<RawGroup>,
) -> AppResult<Response> {
    save(state, user, messages, Some(id), raw).await
}

async fn save(
    state: AppState,
    user: CurrentUser,
    messages: Messages,
    id: Option<i64>,
    raw: RawGroup,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    match GroupForm::parse(
        &raw.name,
        &raw.node_a,
        &raw.node_b,
        raw.high_availability.is_some(),
        &raw.failover_after,
    ) {
        Ok(form) => {
            match store::redundancy::save(&state.pool, id, &form, &user.row.user_id, state.now())
                .await
            {
                Ok(_) => {
                    messages.success(format!(
                        "Save successful: {} pairs {} and {}{}.",
                        form.name,
                        form.node_a,
                        form.node_b,
                        if form.high_availability {
                            format!(
                                "; each takes over the other's users after {} seconds of \
                                 silence",
                                form.failover_after
                            )
                        } else {
                            "; High Availability is off, so neither takes over the other's users"
                                .to_owned()
                        }
                    ));
                    return Ok(Redirect::to(LIST).into_response());
                }
                Err(AppError::Refused(refusal)) => super::refusals::place(&mut errors, &refusal),
                Err(other) => return Err(other),
            }
        }
        Err(problems) => {
            for (field, message) in problems {
                errors.set(field, message);
            }
        }
    }
    let page = form_page(&state, &user, messages, id, raw, errors).await?;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

// ------------------------------------------------------------------ delete

#[derive(Template)]
#[template(path = "pages/redundancy/delete.html")]
struct DeletePage {
    shell: Shell,
    group: Group,
}

async fn confirm_delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let group = store::redundancy::group(&state.pool, id)
        .await?
        .ok_or(AppError::NotFound)?;
    render(
        StatusCode::OK,
        &DeletePage {
            shell: Shell::new(
                &state,
                &user,
                messages,
                "Delete Presence Redundancy Group",
                LIST,
            )
            .await?,
            group,
        },
    )
}

async fn delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let group = store::redundancy::delete(&state.pool, id, &user.row.user_id, state.now()).await?;
    messages.success(format!(
        "Delete successful: {} and {} no longer take over each other's users.",
        group.node_a, group.node_b
    ));
    Ok(Redirect::to(LIST).into_response())
}
