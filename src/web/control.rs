//! Serviceability (SV-1, SV-2) and the nodes' system settings (SY-2):
//! Control Center - Feature Services starts, stops and restarts the
//! Presence Engine of any node from any node's console; Service Activation
//! activates or deactivates it per node; Settings says whether DNS is
//! configured on each node's server, and sets the Outbound Proxy that
//! Microsoft 365 connections go through (GR-3).

use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_messages::Messages;
use serde::Deserialize;

use crate::domain::proxy::{self, NoProxy};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;
use crate::store::engine::{Action, EngineState, NodeEngine, NodeSwitch};
use crate::store::proxy::ProxyInput;

use super::forms::FieldErrors;
use super::paths;
use super::session::Admin;
use super::shell::{Shell, format_time, render};

const CONTROL_CENTER: &str = paths::CONTROL_CENTER;
const ACTIVATION: &str = paths::SERVICE_ACTIVATION;
const SETTINGS: &str = paths::SETTINGS;

/// How long Control Center waits for a node to carry out a command before
/// answering "requested": long enough for a restart, short for a page.
const COMMAND_WAIT: Duration = Duration::from_secs(8);
const COMMAND_POLL: Duration = Duration::from_millis(100);
/// A node whose heartbeat is older than this is shown as not responding
/// (the heartbeat runs every 10 seconds).
const HEARTBEAT_STALE_SECS: i64 = 35;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(CONTROL_CENTER, get(control_center).post(command))
        .route(ACTIVATION, get(activation).post(save_activation))
        .route(SETTINGS, get(settings).post(save_settings))
}

struct GatewayHealth {
    description: String,
    kind: &'static str,
    health: String,
}

/// A gateway as the running engine sees it (EN-4, EN-7).
struct EngineGateway {
    id: i64,
    description: String,
    users: i64,
    subscriptions: i64,
    health: &'static str,
    last_success: String,
    last_error: Option<String>,
    throttled_until: Option<String>,
    requests_per_minute: i64,
}

impl EngineGateway {
    fn from_row(row: &store::health::GatewayHealth, now: i64) -> EngineGateway {
        EngineGateway {
            id: row.gateway_id,
            description: row.description.clone(),
            users: row.users,
            subscriptions: row.subscriptions,
            health: if row.healthy {
                "Healthy"
            } else {
                "Set aside after repeated failures; its users moved"
            },
            last_success: row.last_success.map_or("Never".to_owned(), format_time),
            last_error: match (&row.last_error, row.last_error_at) {
                (Some(text), Some(at)) => Some(format!("{} ({})", text, format_time(at))),
                _ => None,
            },
            throttled_until: row
                .throttled_until
                .filter(|&until| until > now)
                .map(format_time),
            requests_per_minute: row.requests_per_minute,
        }
    }
}

struct NodePanel {
    name: String,
    slug: String,
    is_this: bool,
    activated: bool,
    state: &'static str,
    reason: Option<String>,
    since: String,
    generation: i64,
    behind: bool,
    heartbeat: String,
    stale: bool,
    calendar_users: i64,
    live: Option<String>,
    gateways: Vec<GatewayHealth>,
    requested: Vec<String>,
    /// Published calendar presence: in a meeting, away, available, unknown.
    counts: [i64; 4],
    engine_gateways: Vec<EngineGateway>,
    /// Push subscriptions the engine holds, over all gateways.
    subscriptions: i64,
    /// The last hour's chart, SVG (numbers only).
    chart: String,
    /// Its Presence Redundancy Group, in words (CL-4).
    redundancy: String,
    /// Failovers that concern it: its users served by its peer, or its
    /// peer's served by it.
    failed_over: Vec<String>,
}

#[derive(Template)]
#[template(path = "pages/control/center.html")]
struct CenterPage {
    shell: Shell,
    nodes: Vec<NodePanel>,
    current_generation: i64,
}

async fn control_center(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let now = state.now();
    let current_generation = user.config.generation;
    let rows = store::engine::nodes(&state.pool).await?;
    let gateways = store::gateways::list(&state.pool, None).await?;
    let open = store::engine::open_commands(&state.pool).await?;
    let health = store::health::gateways(&state.pool).await?;
    let groups = store::redundancy::groups(&state.pool).await?;
    let leases = store::redundancy::leases(&state.pool).await?;
    let mut nodes = Vec::with_capacity(rows.len());
    for row in rows {
        let minutes =
            store::health::minutes(&state.pool, &row.name, now - super::chart::MINUTES * 60)
                .await?;
        let snapshot = store::engine::stored_snapshot(&state.pool, &row.name).await?;
        let running = row.state() == EngineState::Running;
        // The gateways the engine runs with, each with its last verdict;
        // those changed since its start are marked.
        let gateways = match (&snapshot, running) {
            (Some(snapshot), true) => snapshot
                .gateways
                .iter()
                .map(|g| {
                    let now_row = gateways.iter().find(|c| c.id == g.id);
                    GatewayHealth {
                        description: g.description.clone(),
                        kind: if g.kind == "ews" { "EWS" } else { "WebDAV" },
                        health: match now_row {
                            None => "removed since the engine started; restart to apply".to_owned(),
                            Some(c) => match (&c.last_verdict, c.last_checked_at) {
                                (Some(v), Some(at)) => format!("{v} ({})", format_time(at)),
                                _ => "not checked yet (run the Troubleshooter)".to_owned(),
                            },
                        },
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        let live = row.live();
        let calendar_users = match &live {
            Some(l) => l.calendar_users,
            None => {
                store::engine::read_live(&state.pool, &row.name)
                    .await?
                    .calendar_users
            }
        };
        nodes.push(NodePanel {
            slug: slug(&row.name),
            is_this: row.name == state.settings.node_name,
            activated: row.activated,
            state: row.state().label(),
            reason: row.engine_reason.clone(),
            since: format_time(row.engine_since),
            generation: row.engine_generation,
            behind: row.engine_generation < current_generation,
            heartbeat: format_time(row.last_heartbeat),
            stale: now - row.last_heartbeat > HEARTBEAT_STALE_SECS,
            calendar_users,
            live: live.map(|l| {
                format!(
                    "Calendar Spread {} seconds, EWS Status Frequency {} minutes, Out of \
                     Office {}",
                    l.calendar_spread_seconds,
                    l.ews_status_frequency_minutes,
                    if l.display_out_of_office {
                        "displayed"
                    } else {
                        "not displayed"
                    }
                )
            }),
            gateways,
            counts: store::health::presence_counts(&state.pool, &row.name).await?,
            subscriptions: health
                .iter()
                .filter(|h| running && h.node == row.name)
                .map(|h| h.subscriptions)
                .sum(),
            engine_gateways: if running {
                health
                    .iter()
                    .filter(|h| h.node == row.name)
                    .map(|h| EngineGateway::from_row(h, now))
                    .collect()
            } else {
                Vec::new()
            },
            chart: super::chart::svg(&super::chart::series(&minutes, now), &row.name),
            redundancy: match groups.iter().find(|g| g.peer_of(&row.name).is_some()) {
                None => "None: no other node takes over this node's users".to_owned(),
                Some(g) => format!(
                    "{}, with {} (High Availability {}, Failover After {} seconds)",
                    g.name,
                    g.peer_of(&row.name).unwrap_or_default(),
                    if g.high_availability {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    g.failover_after
                ),
            },
            failed_over: leases
                .iter()
                .filter(|l| l.failed_over() && (l.node == row.name || l.served_by == row.name))
                .map(super::redundancy::failed_over_text)
                .collect(),
            requested: open
                .iter()
                .filter(|c| c.node == row.name)
                .map(|c| {
                    format!(
                        "{} requested by {}, {}: waiting for the node",
                        c.action().map_or("Command", Action::label),
                        c.actor,
                        format_time(c.requested_at)
                    )
                })
                .collect(),
            name: row.name,
        });
    }
    render(
        StatusCode::OK,
        &CenterPage {
            shell: Shell::new(
                &state,
                &user,
                messages,
                "Control Center - Feature Services",
                CONTROL_CENTER,
            )
            .await?,
            nodes,
            current_generation,
        },
    )
}

/// An id-safe form of a node name, for element ids.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[derive(Deserialize)]
struct CommandForm {
    node: String,
    action: String,
}

async fn command(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(form): Form<CommandForm>,
) -> AppResult<Response> {
    let Some(action) = Action::parse(&form.action) else {
        messages.error(format!("Unknown action {:?}.", form.action));
        return Ok(Redirect::to(CONTROL_CENTER).into_response());
    };
    let id = match store::engine::request(
        &state.pool,
        &form.node,
        action,
        &user.row.user_id,
        state.now(),
    )
    .await
    {
        Ok(id) => id,
        Err(AppError::NotFound) => {
            messages.error(format!("There is no node named {:?}.", form.node));
            return Ok(Redirect::to(CONTROL_CENTER).into_response());
        }
        Err(e) => return Err(e),
    };
    if form.node == state.settings.node_name {
        state.engine_wake.now();
    }
    // Wait, boundedly, for the node to act, so the page shows the outcome;
    // a node that is down or busy leaves the command waiting for it.
    let mut outcome = None;
    for _ in 0..(COMMAND_WAIT.as_millis() / COMMAND_POLL.as_millis()) {
        if let Some(done) = store::engine::command(&state.pool, id).await?
            && done.done_at.is_some()
        {
            outcome = done.outcome;
            break;
        }
        tokio::time::sleep(COMMAND_POLL).await;
    }
    match outcome {
        Some(text) if text.starts_with("Failed") || text.starts_with("Refused") => {
            messages.error(format!("Presence Engine on {}: {text}", form.node));
        }
        Some(text) => {
            messages.success(format!("Presence Engine on {}: {text}", form.node));
        }
        None => {
            messages.warning(format!(
                "{} requested for the Presence Engine on {}; the node has not acted on it yet \
                 (it may be stopped or busy). This page shows it until it does.",
                action.label(),
                form.node
            ));
        }
    }
    Ok(Redirect::to(CONTROL_CENTER).into_response())
}

struct NodeRowView {
    name: String,
    slug: String,
    is_this: bool,
    on: bool,
    state: &'static str,
}

fn switches(
    rows: Vec<NodeEngine>,
    this: &str,
    on: impl Fn(&NodeEngine) -> bool,
) -> Vec<NodeRowView> {
    rows.into_iter()
        .map(|row| NodeRowView {
            slug: slug(&row.name),
            is_this: row.name == this,
            on: on(&row),
            state: row.state().label(),
            name: row.name,
        })
        .collect()
}

/// The values of the fields named `name` in a form (checkboxes, hidden
/// fields that repeat).
fn field_values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[derive(Template)]
#[template(path = "pages/control/activation.html")]
struct ActivationPage {
    shell: Shell,
    nodes: Vec<NodeRowView>,
}

async fn activation(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let rows = store::engine::nodes(&state.pool).await?;
    render(
        StatusCode::OK,
        &ActivationPage {
            shell: Shell::new(&state, &user, messages, "Service Activation", ACTIVATION).await?,
            nodes: switches(rows, &state.settings.node_name, |r| r.activated),
        },
    )
}

async fn save_activation(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(pairs): Form<Vec<(String, String)>>,
) -> AppResult<Response> {
    let changed = save_switch(&state, &user, NodeSwitch::Activated, &pairs).await?;
    if changed == 0 {
        messages.info("No changes.");
    } else {
        // This node's supervisor starts or stops its engine now; other nodes
        // notice within their poll interval.
        state.engine_wake.now();
        messages.success(format!(
            "Update successful: Service Activation changed on {}.",
            crate::domain::count(changed as i64, "node")
        ));
    }
    Ok(Redirect::to(ACTIVATION).into_response())
}

/// Sets a per-node checkbox switch from a form: each node the page showed
/// (hidden `shown` fields) is switched on when ticked (`node`) and off when
/// not. A node that registered after the page was rendered was not shown,
/// so an administrator saving an older page never deactivates it unseen.
async fn save_switch(
    state: &AppState,
    user: &super::session::CurrentUser,
    switch: NodeSwitch,
    pairs: &[(String, String)],
) -> AppResult<usize> {
    let on = field_values(pairs, "node");
    let shown = field_values(pairs, "shown");
    let values: Vec<(String, bool)> = store::engine::nodes(&state.pool)
        .await?
        .into_iter()
        .filter(|r| shown.contains(&r.name.as_str()))
        .map(|r| {
            let ticked = on.contains(&r.name.as_str());
            (r.name, ticked)
        })
        .collect();
    store::engine::set_switch(&state.pool, switch, &values, &user.row.user_id, state.now()).await
}

#[derive(Template)]
#[template(path = "pages/control/settings.html")]
struct SettingsPage {
    shell: Shell,
    nodes: Vec<NodeRowView>,
    proxy: ProxyForm,
}

/// The Outbound Proxy's fields as shown: never the password, only whether
/// one is stored.
#[derive(Default)]
struct ProxyForm {
    url: String,
    user: String,
    no_proxy: String,
    has_password: bool,
    /// Where the proxy in use comes from, in a sentence.
    source: String,
    errors: FieldErrors,
}

impl ProxyForm {
    fn password_help(&self) -> &'static str {
        if self.has_password {
            "A password is stored: leave empty to keep it."
        } else {
            "Sent to the proxy with Proxy User (Basic authentication); stored encrypted."
        }
    }
}

/// The proxy as saved, or as the environment gives it.
async fn proxy_form(state: &AppState) -> AppResult<ProxyForm> {
    let env = &state.settings.proxy_env;
    let env_note = match &env.https_proxy {
        Some((name, url)) => match proxy::parse_env_url(url) {
            Ok(_) => format!(" ({name} is set in the service's environment.)"),
            Err(e) => format!(" ({name} is set but cannot be used: {e})"),
        },
        None => String::new(),
    };
    Ok(match store::proxy::load(&state.pool).await? {
        Some(row) => match row.url {
            Some(url) => ProxyForm {
                url,
                user: row.user_name.unwrap_or_default(),
                no_proxy: row.no_proxy,
                has_password: row.password_nonce.is_some(),
                source: "Saved here: Microsoft 365 connections go through this proxy.".to_owned(),
                errors: FieldErrors::default(),
            },
            None => ProxyForm {
                source: format!("Cleared: Microsoft 365 is reached directly.{env_note}"),
                ..ProxyForm::default()
            },
        },
        None => match (&env.https_proxy, env.proxy()) {
            (Some((name, _)), Some(from_env)) => ProxyForm {
                url: from_env.server.to_string(),
                user: from_env
                    .credentials
                    .as_ref()
                    .map(|c| c.user.clone())
                    .unwrap_or_default(),
                no_proxy: env.no_proxy.clone().unwrap_or_default(),
                has_password: false,
                source: format!(
                    "From {name} (the service's environment), with {}: saving here replaces \
                     it.",
                    if env.no_proxy.is_some() {
                        "NO_PROXY"
                    } else {
                        "no NO_PROXY"
                    }
                ),
                errors: FieldErrors::default(),
            },
            _ => ProxyForm {
                source: format!("None: Microsoft 365 is reached directly.{env_note}"),
                ..ProxyForm::default()
            },
        },
    })
}

async fn settings(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let rows = store::engine::nodes(&state.pool).await?;
    render(
        StatusCode::OK,
        &SettingsPage {
            shell: Shell::new(&state, &user, messages, "Settings", SETTINGS).await?,
            nodes: switches(rows, &state.settings.node_name, |r| r.dns_configured),
            proxy: proxy_form(&state).await?,
        },
    )
}

async fn save_settings(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(pairs): Form<Vec<(String, String)>>,
) -> AppResult<Response> {
    // The page has two forms: the nodes' DNS switches, and the proxy.
    if field_values(&pairs, "section").first() == Some(&"proxy") {
        return save_proxy(state, user, messages, &pairs).await;
    }
    if save_switch(&state, &user, NodeSwitch::DnsConfigured, &pairs).await? == 0 {
        messages.info("No changes.");
    } else {
        messages.success("Update successful");
    }
    Ok(Redirect::to(SETTINGS).into_response())
}

/// The Outbound Proxy's fields, validated: the input to store, or the
/// form with its messages beside the fields. An empty URL clears the proxy.
fn validate_proxy(pairs: &[(String, String)]) -> Result<Option<ProxyInput>, Box<ProxyForm>> {
    let ProxyForm {
        url,
        user,
        no_proxy,
        ..
    } = typed(pairs);
    // Not trimmed: a password may begin or end with a space.
    let password = field_values(pairs, "proxy_password")
        .first()
        .map(|p| (*p).to_owned())
        .unwrap_or_default();
    let mut errors = FieldErrors::default();
    if url.is_empty() && user.is_empty() && password.is_empty() && no_proxy.is_empty() {
        return Ok(None);
    }
    let server = match proxy::parse_url(&url) {
        Ok(server) => Some(server),
        Err(e) => {
            errors.set("proxy_url", e);
            None
        }
    };
    if user.contains(':') {
        // Basic authentication joins user and password with a colon.
        errors.set("proxy_user", "A proxy user name cannot contain a colon.");
    } else if user.chars().any(char::is_control) || user.len() > 256 {
        errors.set(
            "proxy_user",
            "Enter the proxy user name in at most 256 printable characters.",
        );
    }
    if password.chars().any(char::is_control) || password.len() > 256 {
        errors.set(
            "proxy_password",
            "Enter the proxy password in at most 256 printable characters.",
        );
    }
    if let Err(e) = NoProxy::parse(&no_proxy) {
        errors.set("no_proxy", e);
    } else if no_proxy.len() > 4096 {
        errors.set("no_proxy", "No Proxy For is at most 4096 characters long.");
    }
    match server {
        Some(server) if !errors.any() => Ok(Some(ProxyInput {
            server,
            user: Some(user).filter(|u| !u.is_empty()),
            password: Some(password)
                .filter(|p| !p.is_empty())
                .map(secrecy::SecretString::from),
            no_proxy,
        })),
        _ => Err(Box::new(ProxyForm {
            errors,
            ..typed(pairs)
        })),
    }
}

/// The proxy's fields as typed (trimmed), the password left out.
fn typed(pairs: &[(String, String)]) -> ProxyForm {
    let value = |name| {
        field_values(pairs, name)
            .first()
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    ProxyForm {
        url: value("proxy_url"),
        user: value("proxy_user"),
        no_proxy: value("no_proxy"),
        ..ProxyForm::default()
    }
}

async fn save_proxy(
    state: AppState,
    user: super::session::CurrentUser,
    messages: Messages,
    pairs: &[(String, String)],
) -> AppResult<Response> {
    let actor = user.row.user_id.clone();
    let clear = field_values(pairs, "action").first() == Some(&"clear");
    let validated = if clear {
        Ok(None)
    } else {
        validate_proxy(pairs)
    };
    let outcome = match validated {
        Ok(None) => store::proxy::clear(&state.pool, &actor, state.now())
            .await
            .map(|changed| {
                (
                    changed,
                    "Outbound Proxy cleared: Microsoft 365 is reached directly.",
                )
            }),
        Ok(Some(input)) => {
            store::proxy::save(&state.pool, &state.cipher, &input, &actor, state.now())
                .await
                .map(|changed| (changed, "Update successful: Outbound Proxy saved."))
        }
        Err(form) => return proxy_refused(&state, &user, messages, *form).await,
    };
    match outcome {
        Ok((false, _)) => {
            messages.info("No changes.");
        }
        Ok((true, message)) => {
            messages.success(message);
        }
        Err(AppError::Refused(refusal)) => {
            // Show what was typed, not what is stored.
            let mut form = typed(pairs);
            super::refusals::place(&mut form.errors, &refusal);
            return proxy_refused(&state, &user, messages, form).await;
        }
        Err(other) => return Err(other),
    }
    Ok(Redirect::to(SETTINGS).into_response())
}

/// The page again, with the proxy's fields as typed and their messages.
async fn proxy_refused(
    state: &AppState,
    user: &super::session::CurrentUser,
    messages: Messages,
    mut form: ProxyForm,
) -> AppResult<Response> {
    let current = proxy_form(state).await?;
    form.has_password = current.has_password;
    form.source = current.source;
    let rows = store::engine::nodes(&state.pool).await?;
    render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &SettingsPage {
            shell: Shell::new(state, user, messages, "Settings", SETTINGS).await?,
            nodes: switches(rows, &state.settings.node_name, |r| r.dns_configured),
            proxy: form,
        },
    )
}
