//! System > Service Parameters (SPEC section 3): the Presence Engine's
//! parameters per cluster node, chosen with the Server and Service menus.
//! Every field is parsed with the catalogue's rules; a notification port
//! another program holds is refused; the store saves only what changed,
//! with its audit entries and restart records, in one transaction.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_messages::Messages;
use serde::Deserialize;

use crate::domain::params::{
    AfterChange, CALENDAR_SPREAD, CATALOGUE, Kind, NOTIFICATION_PORT, Param, suggested_spread,
};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;
use crate::store::nodes::NodeRow;
use crate::store::params::Change;

use super::forms::{FORM, FieldErrors};
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, render};

const PAGE: &str = paths::SERVICE_PARAMETERS;
const TITLE: &str = "Service Parameter Configuration";

pub fn router() -> Router<AppState> {
    Router::new().route(PAGE, get(show).post(save))
}

// ------------------------------------------------------------------ the page

struct NodeOption {
    name: String,
    selected: bool,
}

struct ChoiceOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// One parameter's row: its value (as stored, or as typed when refused) and
/// what the catalogue says about it.
struct Field {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    help: &'static str,
    /// "number", "text" or "select".
    input: &'static str,
    value: String,
    min: i64,
    max: i64,
    choices: Vec<ChoiceOption>,
    range: String,
    default: String,
    after: &'static str,
    /// The suggested Calendar Spread for this node.
    note: Option<String>,
    error: Option<String>,
}

impl Field {
    fn new(param: &'static Param, value: String, node: &str, users_assigned: i64) -> Field {
        let (input, min, max, choices) = match param.kind {
            // A value typed as something other than a number is kept as
            // typed, which a number input cannot hold.
            Kind::Integer { min, max } if value.trim().parse::<i64>().is_ok() => {
                ("number", min, max, Vec::new())
            }
            Kind::Integer { min, max } => ("text", min, max, Vec::new()),
            Kind::Host => ("text", 0, 0, Vec::new()),
            Kind::HttpsUrl => ("text", 0, 0, Vec::new()),
            Kind::Choice(choices) => (
                "select",
                0,
                0,
                choices
                    .iter()
                    .map(|(v, label)| ChoiceOption {
                        value: v,
                        label,
                        selected: *v == value,
                    })
                    .collect(),
            ),
        };
        let default = param.default_value(node);
        let default = match param.kind {
            Kind::Choice(choices) => choices
                .iter()
                .find(|(v, _)| *v == default)
                .map_or(default.clone(), |(_, label)| (*label).to_owned()),
            Kind::Host => format!("{default} (this node's name)"),
            Kind::HttpsUrl => "empty (calendars are polled)".to_owned(),
            Kind::Integer { .. } => default,
        };
        let note = (param.key == CALENDAR_SPREAD).then(|| {
            let suggested = suggested_spread(users_assigned);
            format!(
                "Suggested for this node: {} ({} assigned / 100, at most 59)",
                crate::domain::count(suggested, "second"),
                thousands_count(users_assigned, "user"),
            )
        });
        Field {
            key: param.key,
            label: param.label,
            unit: param.unit,
            help: param.help,
            input,
            value,
            min,
            max,
            choices,
            range: param.range().unwrap_or_else(|| "—".to_owned()),
            default,
            after: after_label(param.after),
            note,
            error: None,
        }
    }

    /// The ids the input is described by: help, suggestion, message.
    fn described_by(&self) -> String {
        let mut ids = format!("{}-help", self.key);
        if self.note.is_some() {
            ids.push_str(&format!(" {}-note", self.key));
        }
        if self.error.is_some() {
            ids.push_str(&format!(" {}-error", self.key));
        }
        ids
    }
}

fn after_label(after: AfterChange) -> &'static str {
    match after {
        AfterChange::Live => "Applies incrementally",
        AfterChange::RestartRecommended => "Restart recommended",
        AfterChange::RestartRequired => "Restart required",
    }
}

/// "1,000 users": counts of users run to tens of thousands.
fn thousands_count(n: i64, noun: &str) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if n < 0 { "-" } else { "" };
    let plural = if n == 1 { "" } else { "s" };
    format!("{sign}{grouped} {noun}{plural}")
}

struct Section {
    title: &'static str,
    id: &'static str,
    /// SP-1: under the caution against changing them.
    caution: bool,
    fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "pages/params/index.html")]
struct ParamsPage {
    shell: Shell,
    nodes: Vec<NodeOption>,
    node: String,
    service: &'static str,
    sections: Vec<Section>,
    /// The message for no field (`FORM`); each parameter's own message is
    /// on its row (`Field::error`).
    errors: FieldErrors,
    /// On a refusal, every field error again at the top, linking to its
    /// field: the page is long and the field may be far below the fold.
    summary: Vec<SummaryItem>,
}

struct SummaryItem {
    key: &'static str,
    message: String,
}

/// The page for `node` with `values` (key -> value) and `errors` beside
/// their fields.
async fn render_page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    status: StatusCode,
    chosen: &Chosen,
    values: &HashMap<&'static str, String>,
    mut errors: HashMap<&'static str, String>,
) -> AppResult<Response> {
    let Chosen { nodes, node } = chosen;
    let users_assigned = store::params::users_assigned(&state.pool, &node.name).await?;
    let mut general = Vec::new();
    let mut caution = Vec::new();
    let mut summary = Vec::new();
    for param in CATALOGUE {
        let value = values.get(param.key).cloned().unwrap_or_default();
        let mut field = Field::new(param, value, &node.name, users_assigned);
        field.error = errors.remove(param.key);
        if let Some(message) = &field.error {
            summary.push(SummaryItem {
                key: param.key,
                message: message.clone(),
            });
        }
        if param.caution {
            caution.push(field);
        } else {
            general.push(field);
        }
    }
    // Messages for no field (an unknown parameter to reset).
    let mut top = FieldErrors::default();
    if let Some(message) = errors.into_values().next() {
        top.set(FORM, message);
    }
    render(
        status,
        &ParamsPage {
            shell: Shell::new(state, user, messages, TITLE, PAGE).await?,
            nodes: nodes
                .iter()
                .map(|n| NodeOption {
                    name: n.name.clone(),
                    selected: n.name == node.name,
                })
                .collect(),
            node: node.name.clone(),
            service: if node.activated {
                "Presence Engine (Active)"
            } else {
                "Presence Engine (Inactive)"
            },
            sections: vec![
                Section {
                    title: "Presence Engine Configuration",
                    id: "engine-configuration",
                    caution: false,
                    fields: general,
                },
                Section {
                    title: "Other Microsoft Exchange Parameters",
                    id: "exchange-parameters",
                    caution: true,
                    fields: caution,
                },
            ],
            errors: top,
            summary,
        },
    )
}

/// The cluster's nodes and the one whose parameters the page shows.
struct Chosen {
    nodes: Vec<NodeRow>,
    node: NodeRow,
}

/// The cluster's nodes and the one asked for (this node by default).
async fn node_named(state: &AppState, name: Option<&str>) -> AppResult<Chosen> {
    let nodes = store::nodes::list(&state.pool).await?;
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&state.settings.node_name);
    let node = nodes
        .iter()
        .find(|n| n.name == name)
        .cloned()
        .ok_or(AppError::NotFound)?;
    Ok(Chosen { nodes, node })
}

async fn stored_values(state: &AppState, node: &str) -> AppResult<HashMap<String, String>> {
    let mut conn = state.pool.acquire().await?;
    store::params::stored_values(&mut conn, node).await
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    node: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    Admin(user): Admin,
    Query(query): Query<PageQuery>,
    messages: Messages,
) -> AppResult<Response> {
    let chosen = node_named(&state, query.node.as_deref()).await?;
    let node = chosen.node.name.as_str();
    let stored = stored_values(&state, node).await?;
    let values = CATALOGUE
        .iter()
        .map(|p| (p.key, store::params::effective(&stored, p, node)))
        .collect();
    render_page(
        &state,
        &user,
        messages,
        StatusCode::OK,
        &chosen,
        &values,
        HashMap::new(),
    )
    .await
}

// ------------------------------------------------------------------- saving

/// What the form asks for: every parameter as typed (Save), one parameter
/// back to its default (its Set to Default), or all of them (Set All to
/// Default). A reset leaves the other parameters as stored.
fn wanted(
    fields: &[(String, String)],
    node: &str,
) -> Result<Vec<(&'static Param, String)>, HashMap<&'static str, String>> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("reset_all").is_some() {
        return Ok(CATALOGUE
            .iter()
            .map(|p| (p, p.default_value(node)))
            .collect());
    }
    if let Some(key) = field("reset") {
        return match Param::by_key(key) {
            Some(param) => Ok(vec![(param, param.default_value(node))]),
            None => Err(HashMap::from([(
                "",
                "There is no such parameter to set to its default.".to_owned(),
            )])),
        };
    }
    let mut wanted = Vec::new();
    let mut errors = HashMap::new();
    for param in CATALOGUE {
        match param.parse(field(param.key).unwrap_or_default()) {
            Ok(value) => wanted.push((param, value)),
            Err(message) => {
                errors.insert(param.key, message);
            }
        }
    }
    if errors.is_empty() {
        Ok(wanted)
    } else {
        Err(errors)
    }
}

/// A new notification port must be free on this host, unless it is the one
/// the node's own engine holds.
async fn check_port(
    state: &AppState,
    node: &str,
    changes: &[Change],
) -> AppResult<Result<(), String>> {
    let Some(change) = changes.iter().find(|c| c.param.key == NOTIFICATION_PORT) else {
        return Ok(Ok(()));
    };
    // Parsed by the catalogue: 1024 to 65535.
    let Ok(port) = change.after.parse::<u16>() else {
        return Ok(Ok(()));
    };
    if store::params::engine_port(&state.pool, node).await? == Some(i64::from(port)) {
        return Ok(Ok(()));
    }
    Ok(crate::engine::netport::check_free(port))
}

/// The confirmation: what the saved changes need before everyone runs them.
fn confirmation(node: &str, changes: &[Change]) -> String {
    let labels = |after: AfterChange| -> Vec<&str> {
        changes
            .iter()
            .filter(|c| c.param.after == after)
            .map(|c| c.param.label)
            .collect()
    };
    let mut text = "Update successful.".to_owned();
    let required = labels(AfterChange::RestartRequired);
    if !required.is_empty() {
        text.push_str(&format!(
            " Restart required: restart the Presence Engine on {node} for {} to take effect.",
            required.join(", ")
        ));
    }
    let recommended = labels(AfterChange::RestartRecommended);
    if !recommended.is_empty() {
        text.push_str(&format!(
            " Restart recommended: {} applies as subscriptions renew; a Presence Engine \
             restart on {node} applies it for every user at once.",
            recommended.join(", ")
        ));
    }
    let live = labels(AfterChange::Live);
    if !live.is_empty() {
        text.push_str(&format!(
            " Applies incrementally: {}, no restart needed.",
            live.join(", ")
        ));
    }
    text
}

fn page_of(node: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("node", node)
        .finish();
    format!("{PAGE}?{query}")
}

/// The form's values as typed, so nothing typed is lost when it is refused;
/// a field the form lacks shows what the node has.
fn typed_values(
    fields: &[(String, String)],
    stored: &HashMap<String, String>,
    node: &str,
) -> HashMap<&'static str, String> {
    CATALOGUE
        .iter()
        .map(|p| {
            let value = fields
                .iter()
                .find(|(k, _)| k == p.key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| store::params::effective(stored, p, node));
            (p.key, value)
        })
        .collect()
}

async fn save(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(fields): Form<Vec<(String, String)>>,
) -> AppResult<Response> {
    let asked = fields
        .iter()
        .find(|(k, _)| k == "node")
        .map(|(_, v)| v.as_str());
    let chosen = node_named(&state, asked).await?;
    let node = chosen.node.name.as_str();
    let stored = stored_values(&state, node).await?;
    let checked = match wanted(&fields, node) {
        Ok(wanted) => {
            let changes = store::params::diff(&stored, node, &wanted);
            match check_port(&state, node, &changes).await? {
                Ok(()) => Ok((wanted, changes)),
                Err(message) => Err(HashMap::from([(NOTIFICATION_PORT, message)])),
            }
        }
        Err(errors) => Err(errors),
    };
    let (wanted, changes) = match checked {
        Ok(checked) => checked,
        Err(errors) => {
            let typed = typed_values(&fields, &stored, node);
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return render_page(&state, &user, messages, status, &chosen, &typed, errors).await;
        }
    };
    // The store compares again inside its transaction.
    let saved = if changes.is_empty() {
        Vec::new()
    } else {
        store::params::save(&state.pool, node, &wanted, &user.row.user_id, state.now()).await?
    };
    if saved.is_empty() {
        messages.info("No changes.");
    } else {
        messages.success(confirmation(node, &saved));
    }
    Ok(Redirect::to(&page_of(node)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands_count(0, "user"), "0 users");
        assert_eq!(thousands_count(1, "user"), "1 user");
        assert_eq!(thousands_count(999, "user"), "999 users");
        assert_eq!(thousands_count(1000, "user"), "1,000 users");
        assert_eq!(thousands_count(45_000, "user"), "45,000 users");
        assert_eq!(thousands_count(1_234_567, "user"), "1,234,567 users");
    }

    #[test]
    fn a_reset_asks_for_that_parameter_only() {
        let fields = vec![
            ("node".to_owned(), "n".to_owned()),
            ("exchange_timeout".to_owned(), "9".to_owned()),
            ("reset".to_owned(), "exchange_queue".to_owned()),
        ];
        let wanted = wanted(&fields, "n").unwrap();
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].0.key, "exchange_queue");
        assert_eq!(wanted[0].1, "2200");
    }

    #[test]
    fn save_collects_every_message() {
        let fields = vec![
            ("exchange_timeout".to_owned(), "21".to_owned()),
            ("exchange_queue".to_owned(), "0".to_owned()),
        ];
        let errors = wanted(&fields, "n").unwrap_err();
        // All were missing or wrong, so every field that cannot be empty
        // has its message (the Notification URL may be: empty is "none").
        let may_be_empty = CATALOGUE.iter().filter(|p| p.parse("").is_ok()).count();
        assert_eq!(may_be_empty, 1);
        assert_eq!(errors.len(), CATALOGUE.len() - may_be_empty);
        assert!(errors["exchange_timeout"].contains("from 1 to 20"));
    }
}
