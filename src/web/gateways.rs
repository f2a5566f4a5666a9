//! Presence > Gateways (SPEC section 1): Find and List, Add New (type first),
//! edit, change type and delete. Handlers parse the form into domain types,
//! seal the password, and leave the rules to the domain and the store, which
//! checks them again inside its transaction.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_messages::Messages;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::gateway::{
    AccountName, Cloud, Description, GatewayKind, GraphSettings, Mailbox, Port, RawGraph,
    ServerLocation, may_add, parse_client_secret, parse_graph, parse_password,
};
use crate::error::{AppError, AppResult};
use crate::secrets::cipher::Sealed;
use crate::state::AppState;
use crate::store;
use crate::store::gateways::{GatewayInput, GatewayRow, TypeChange};

use super::forms::{FORM, FieldErrors, SecretField};
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, format_time, render};
use super::troubleshooter::PanelView;

const LIST: &str = paths::GATEWAYS;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(LIST, get(list))
        .route(paths::GATEWAY_NEW, get(new).post(create))
        .route(paths::GATEWAY, get(edit).post(update))
        .route(
            paths::GATEWAY_TROUBLESHOOT,
            axum::routing::post(troubleshoot),
        )
        .route(paths::GATEWAY_DELETE, get(confirm_delete).post(delete))
        .route(paths::GATEWAY_TYPE, get(type_form).post(change_type))
}

// ---------------------------------------------------------------- Find and List

/// A row borrows from the cached list: the page allocates per row only
/// the verdict's text, and only when there is one.
struct ListRow<'a> {
    id: i64,
    description: &'a str,
    kind: &'static str,
    server: &'a str,
    port: i64,
    verdict: String,
}

#[derive(Template)]
#[template(path = "pages/gateways/list.html")]
struct ListPage {
    shell: Shell,
    search: String,
    /// The table's rows, rendered (and escaped) by `RowsFragment`.
    rows_html: Arc<String>,
    shown: usize,
    total: i64,
}

#[derive(Template)]
#[template(path = "pages/gateways/rows.html")]
struct RowsFragment<'a> {
    rows: &'a [ListRow<'a>],
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    search: String,
}

async fn list(
    State(state): State<AppState>,
    Admin(user): Admin,
    Query(query): Query<ListQuery>,
    messages: Messages,
) -> AppResult<Response> {
    let search = query.search.trim();
    let key = (user.config.generation, user.config.verdicts);
    let all = all_gateways(&state, key).await?;
    let total = all.len() as i64;
    let (rows_html, shown) = if search.is_empty() {
        (unfiltered_rows(&state, key, &all).await?, all.len())
    } else {
        let needle = search.to_lowercase();
        let matching: Vec<&GatewayRow> = all
            .iter()
            .filter(|g| {
                g.description.to_lowercase().contains(&needle) || g.server.contains(&needle)
            })
            .collect();
        (
            Arc::new(rows_html(matching.iter().copied())?),
            matching.len(),
        )
    };
    render(
        StatusCode::OK,
        &ListPage {
            shell: shell(&state, &user, messages, "Find and List Presence Gateways").await?,
            search: search.to_owned(),
            rows_html,
            shown,
            total,
        },
    )
}

fn rows_html<'a>(gateways: impl Iterator<Item = &'a GatewayRow>) -> AppResult<String> {
    let rows: Vec<ListRow<'_>> = gateways
        .map(|g| ListRow {
            id: g.id,
            kind: g.kind().label(),
            verdict: match (&g.last_verdict, g.last_checked_at) {
                (Some(v), Some(at)) => format!("{v} ({})", format_time(at)),
                (Some(v), None) => v.clone(),
                _ => String::new(),
            },
            description: &g.description,
            server: &g.server,
            port: g.port,
        })
        .collect();
    Ok(RowsFragment { rows: &rows }.render()?)
}

/// The unfiltered table's rows, rendered once per cache key.
async fn unfiltered_rows(
    state: &AppState,
    key: (i64, i64),
    all: &[GatewayRow],
) -> AppResult<Arc<String>> {
    state
        .gateway_rows_html
        .get_or_load(&key, || async { Ok(Arc::new(rows_html(all.iter())?)) })
        .await
}

/// Every gateway, from memory while the configuration generation holds.
pub(super) async fn all_gateways(
    state: &AppState,
    key: (i64, i64),
) -> AppResult<Arc<Vec<GatewayRow>>> {
    state
        .gateways
        .get_or_load(&key, || async {
            Ok(Arc::new(store::gateways::list(&state.pool, None).await?))
        })
        .await
}

async fn shell(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    title: &str,
) -> AppResult<Shell> {
    Shell::new(state, user, messages, title, LIST).await
}

// ---------------------------------------------------------- the gateway form

/// The form as typed. Every field defaults to empty so a missing field is a
/// message beside it, not a bare 422.
#[derive(Debug, Default, Deserialize)]
struct RawGateway {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    account_name: String,
    #[serde(default)]
    password: SecretField,
    #[serde(default)]
    confirm: SecretField,
    #[serde(default)]
    port: String,
    #[serde(default)]
    test_mailbox: String,
    // Microsoft 365 (GR-1).
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    signin_url: String,
    #[serde(default)]
    graph_url: String,
    #[serde(default)]
    client_secret: SecretField,
    #[serde(default)]
    confirm_client_secret: SecretField,
}

impl RawGateway {
    fn graph(&self) -> RawGraph<'_> {
        RawGraph {
            tenant: &self.tenant,
            client_id: &self.client_id,
            cloud: &self.cloud,
            signin_url: &self.signin_url,
            graph_url: &self.graph_url,
        }
    }
}

/// One choice of the Cloud select.
struct CloudOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn cloud_options(chosen: &str) -> Vec<CloudOption> {
    Cloud::ALL
        .into_iter()
        .map(|c| CloudOption {
            value: c.as_str(),
            label: c.label(),
            selected: c.as_str() == chosen,
        })
        .collect()
}

/// Where a Microsoft 365 gateway's calendars are read: the Graph URL's host
/// and port, stored as the gateway's server and port so the list's columns
/// stay meaningful (GR-1).
fn graph_location(graph: &GraphSettings) -> Result<(ServerLocation, Port), String> {
    let server = ServerLocation::parse(&graph.graph_url.host())?;
    let port = Port::parse(&graph.graph_url.port().to_string())?;
    Ok((server, port))
}

/// What the form shows: the values as typed (passwords excepted), the
/// messages, and what is shared with other EWS gateways (GW-4).
#[derive(Debug)]
struct FormView {
    kind: GatewayKind,
    action: String,
    submit: &'static str,
    description: String,
    server: String,
    account_name: String,
    port: String,
    test_mailbox: String,
    errors: FieldErrors,
    /// A password is stored: both password fields may stay empty.
    password_stored: bool,
    /// Other gateways using the same credentials.
    shared_with: i64,
    id: Option<i64>,
    /// The last troubleshooter verdict, with when (edit only).
    last_verdict: String,
    tenant: String,
    client_id: String,
    cloud: String,
    signin_url: String,
    graph_url: String,
}

impl FormView {
    fn typed(kind: GatewayKind, raw: &RawGateway) -> FormView {
        FormView {
            kind,
            action: String::new(),
            submit: "Save",
            description: raw.description.clone(),
            server: raw.server.clone(),
            account_name: raw.account_name.clone(),
            port: raw.port.clone(),
            test_mailbox: raw.test_mailbox.clone(),
            errors: FieldErrors::default(),
            password_stored: false,
            shared_with: 0,
            id: None,
            last_verdict: String::new(),
            tenant: raw.tenant.clone(),
            client_id: raw.client_id.clone(),
            cloud: raw.cloud.clone(),
            signin_url: raw.signin_url.clone(),
            graph_url: raw.graph_url.clone(),
        }
    }

    fn is_graph(&self) -> bool {
        self.kind == GatewayKind::Graph
    }

    fn clouds(&self) -> Vec<CloudOption> {
        cloud_options(&self.cloud)
    }

    fn secret_help(&self) -> &'static str {
        if self.password_stored {
            "A client secret is stored. Leave both client secret fields empty to keep it."
        } else {
            "The app registration's client secret value. Stored encrypted; never shown again."
        }
    }

    fn kind_value(&self) -> &'static str {
        self.kind.as_str()
    }

    fn is_ews(&self) -> bool {
        self.kind == GatewayKind::Ews
    }

    /// The Test Mailbox input's type: an e-mail address for EWS; WebDAV
    /// takes the mailbox alias too (`alice`), which an email input refuses.
    fn mailbox_input(&self) -> &'static str {
        if self.kind == GatewayKind::WebDav {
            "text"
        } else {
            "email"
        }
    }

    fn password_help(&self) -> &'static str {
        if self.password_stored {
            "A password is stored. Leave both password fields empty to keep it."
        } else {
            "Stored encrypted; never shown again."
        }
    }
}

#[derive(Template)]
#[template(path = "pages/gateways/form.html")]
struct FormPage {
    shell: Shell,
    heading: String,
    form: FormView,
    /// The Troubleshooter's results, after a run.
    panel: Option<PanelView>,
}

/// Parses every field, collecting every message at once. The password is
/// sealed here, at the edge, so plaintext goes no further.
fn parse_gateway(
    state: &AppState,
    kind: GatewayKind,
    raw: &RawGateway,
    password_stored: bool,
) -> AppResult<Result<GatewayInput, FieldErrors>> {
    if kind == GatewayKind::Graph {
        return parse_graph_gateway(state, raw, password_stored);
    }
    let mut errors = FieldErrors::default();
    let description = Description::parse(&raw.description)
        .map_err(|e| errors.set("description", e))
        .ok();
    let server = ServerLocation::parse(&raw.server)
        .map_err(|e| errors.set("server", e))
        .ok();
    let account = AccountName::parse(kind, &raw.account_name)
        .map_err(|e| errors.set("account_name", e))
        .ok();
    let password = parse_password(&raw.password.0, &raw.confirm.0, password_stored)
        .map_err(|e| errors.set("password", e))
        .ok();
    let port = Port::parse(&raw.port)
        .map_err(|e| errors.set("port", e))
        .ok();
    let test_mailbox = Mailbox::parse_optional(kind, &raw.test_mailbox)
        .map_err(|e| errors.set("test_mailbox", e))
        .ok();
    match (description, server, account, password, port, test_mailbox) {
        (
            Some(description),
            Some(server),
            Some(account),
            Some(password),
            Some(port),
            Some(test_mailbox),
        ) if !errors.any() => {
            let password = seal(state, password)?;
            Ok(Ok(GatewayInput {
                kind,
                description,
                server,
                port,
                test_mailbox,
                account,
                password,
                graph: None,
            }))
        }
        _ => Ok(Err(errors)),
    }
}

/// The Microsoft 365 form (GR-1): the client secret is sealed here like a
/// password; the Application (client) ID is the credential set's account.
fn parse_graph_gateway(
    state: &AppState,
    raw: &RawGateway,
    secret_stored: bool,
) -> AppResult<Result<GatewayInput, FieldErrors>> {
    let mut errors = FieldErrors::default();
    let description = Description::parse(&raw.description)
        .map_err(|e| errors.set("description", e))
        .ok();
    let graph = parse_graph(&raw.graph())
        .map_err(|list| {
            for (field, message) in list {
                errors.set(field, message);
            }
        })
        .ok();
    let location = graph.as_ref().and_then(|g| {
        graph_location(g)
            .map_err(|e| errors.set("graph_url", e))
            .ok()
    });
    let secret = parse_client_secret(
        &raw.client_secret.0,
        &raw.confirm_client_secret.0,
        secret_stored,
    )
    .map_err(|e| errors.set("client_secret", e))
    .ok();
    let test_mailbox = Mailbox::parse_optional(GatewayKind::Graph, &raw.test_mailbox)
        .map_err(|e| errors.set("test_mailbox", e))
        .ok();
    match (description, graph, location, secret, test_mailbox) {
        (
            Some(description),
            Some(graph),
            Some((server, port)),
            Some(secret),
            Some(test_mailbox),
        ) if !errors.any() => {
            let password = seal(state, secret)?;
            Ok(Ok(GatewayInput {
                kind: GatewayKind::Graph,
                description,
                server,
                port,
                test_mailbox,
                account: AccountName::client_id(&graph.client_id),
                password,
                graph: Some(graph),
            }))
        }
        _ => Ok(Err(errors)),
    }
}

fn seal(state: &AppState, password: Option<String>) -> AppResult<Option<Sealed>> {
    password
        .map(|p| {
            let secret = SecretString::from(p);
            state.cipher.seal_password(secret.expose_secret())
        })
        .transpose()
}

async fn render_form(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    status: StatusCode,
    heading: String,
    form: FormView,
) -> AppResult<Response> {
    let title = heading.clone();
    render(
        status,
        &FormPage {
            shell: shell(state, user, messages, &title).await?,
            heading,
            form,
            panel: None,
        },
    )
}

/// The confirmation after a save: what was saved, how many gateways the
/// credentials changed on (GW-4), and the port warning (GW-2).
fn confirm_saved(
    messages: Messages,
    verb: &str,
    input: &GatewayInput,
    saved: &store::gateways::Saved,
) -> Messages {
    let mut text = format!("{verb} successful.");
    if input.kind == GatewayKind::Ews && saved.sharing > 1 {
        if saved.credentials_changed {
            text.push_str(&format!(
                " The shared EWS credentials were updated on {} gateways.",
                saved.sharing
            ));
        } else {
            text.push_str(&format!(
                " The shared EWS credentials are unchanged on all {} gateways.",
                saved.sharing
            ));
        }
    }
    let messages = messages.success(text);
    // The port warning is Exchange's (GW-2); a Microsoft 365 gateway's
    // port comes from its Graph URL.
    match input.port.warning().filter(|_| input.graph.is_none()) {
        Some(warning) => messages.warning(warning),
        None => messages,
    }
}

// ------------------------------------------------------------------ Add New

#[derive(Debug, Deserialize)]
struct NewQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

struct KindOption {
    value: &'static str,
    label: &'static str,
    hint: &'static str,
    checked: bool,
}

#[derive(Template)]
#[template(path = "pages/gateways/choose_type.html")]
struct ChooseTypePage {
    shell: Shell,
    options: Vec<KindOption>,
    errors: FieldErrors,
}

async fn choose_type(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    chosen: Option<GatewayKind>,
    error: Option<String>,
) -> AppResult<Response> {
    // Preselect what GW-3 allows now: EWS unless nothing exists.
    let existing = store::gateways::kinds(&state.pool).await?;
    let preselected = chosen.unwrap_or(if existing.is_empty() {
        GatewayKind::Ews
    } else {
        existing[0]
    });
    let options = [GatewayKind::WebDav, GatewayKind::Ews, GatewayKind::Graph]
        .into_iter()
        .map(|k| KindOption {
            value: k.as_str(),
            label: k.label(),
            hint: k.hint(),
            checked: k == preselected,
        })
        .collect();
    let mut errors = FieldErrors::default();
    let status = match error {
        Some(message) => {
            errors.set("type", message);
            StatusCode::UNPROCESSABLE_ENTITY
        }
        None => StatusCode::OK,
    };
    render(
        status,
        &ChooseTypePage {
            shell: shell(state, user, messages, "Add New Presence Gateway").await?,
            options,
            errors,
        },
    )
}

/// The empty Add New form for `kind`, pre-filled with the shared EWS account
/// when EWS gateways exist (GW-4).
async fn new_form(state: &AppState, kind: GatewayKind) -> AppResult<FormView> {
    let mut form = FormView::typed(kind, &RawGateway::default());
    form.action = paths::GATEWAY_NEW.to_owned();
    form.submit = "Add New";
    form.port = Port::RECOMMENDED.to_string();
    form.cloud = Cloud::Global.as_str().to_owned();
    prefill_shared(state, kind, &mut form).await?;
    Ok(form)
}

async fn prefill_shared(state: &AppState, kind: GatewayKind, form: &mut FormView) -> AppResult<()> {
    if kind == GatewayKind::Ews
        && let Some(stored) = store::gateways::credentials(&state.pool, kind).await?
    {
        form.account_name = stored.account_name;
        form.password_stored = true;
        form.shared_with = store::gateways::count_kind(&state.pool, kind).await?;
    }
    Ok(())
}

async fn new(
    State(state): State<AppState>,
    Admin(user): Admin,
    Query(query): Query<NewQuery>,
    messages: Messages,
) -> AppResult<Response> {
    let Some(raw_kind) = query.kind else {
        return choose_type(&state, &user, messages, None, None).await;
    };
    let Some(kind) = GatewayKind::parse(&raw_kind) else {
        return choose_type(
            &state,
            &user,
            messages,
            None,
            Some("Choose a Presence Gateway Type.".to_owned()),
        )
        .await;
    };
    let existing = store::gateways::kinds(&state.pool).await?;
    if let Err(refusal) = may_add(kind, &existing) {
        return choose_type(
            &state,
            &user,
            messages,
            Some(kind),
            Some(refusal.to_string()),
        )
        .await;
    }
    let form = new_form(&state, kind).await?;
    let heading = format!("Add New Presence Gateway: {}", kind.label());
    render_form(&state, &user, messages, StatusCode::OK, heading, form).await
}

async fn create(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(raw): Form<RawGateway>,
) -> AppResult<Response> {
    let Some(kind) = GatewayKind::parse(&raw.kind) else {
        return choose_type(
            &state,
            &user,
            messages,
            None,
            Some("Choose a Presence Gateway Type.".to_owned()),
        )
        .await;
    };
    let heading = format!("Add New Presence Gateway: {}", kind.label());
    let fresh = new_form(&state, kind).await?;
    let form = FormView {
        action: fresh.action,
        submit: fresh.submit,
        password_stored: fresh.password_stored,
        shared_with: fresh.shared_with,
        ..FormView::typed(kind, &raw)
    };
    save(&state, &user, messages, &raw, form, heading, Save::Create).await
}

enum Save {
    Create,
    Update(i64),
}

/// Parses the form, saves it through the store (which checks the rules
/// again), and either confirms with a flash or shows the form again with
/// each message beside its field.
async fn save(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    raw: &RawGateway,
    mut form: FormView,
    heading: String,
    op: Save,
) -> AppResult<Response> {
    let refused = StatusCode::UNPROCESSABLE_ENTITY;
    let input = match parse_gateway(state, form.kind, raw, form.password_stored)? {
        Ok(input) => input,
        Err(errors) => {
            form.errors = errors;
            return render_form(state, user, messages, refused, heading, form).await;
        }
    };
    let (actor, now) = (&user.row.user_id, state.now());
    let (result, verb) = match op {
        Save::Create => (
            store::gateways::create(&state.pool, &input, actor, now).await,
            "Add",
        ),
        Save::Update(id) => (
            store::gateways::update(&state.pool, id, &input, actor, now).await,
            "Update",
        ),
    };
    match result {
        Ok(saved) => {
            confirm_saved(messages, verb, &input, &saved);
            Ok(Redirect::to(&format!("{LIST}/{}", saved.id)).into_response())
        }
        Err(AppError::Refused(refusal)) => {
            super::refusals::place(&mut form.errors, &refusal);
            render_form(state, user, messages, refused, heading, form).await
        }
        Err(other) => Err(other),
    }
}

// --------------------------------------------------------------------- edit

async fn find(state: &AppState, id: i64) -> AppResult<GatewayRow> {
    store::gateways::find(&state.pool, id)
        .await?
        .ok_or(AppError::NotFound)
}

fn edit_heading(gateway: &GatewayRow) -> String {
    format!("Presence Gateway: {}", gateway.description)
}

async fn edit_form(state: &AppState, gateway: &GatewayRow) -> AppResult<FormView> {
    let kind = gateway.kind();
    let stored = store::gateways::credentials(&state.pool, kind).await?;
    // A national cloud's URLs are the cloud's, not typed: the URL fields
    // show only what was typed for Custom.
    let custom = gateway.cloud.as_deref() == Some(Cloud::Custom.as_str());
    let typed_url = |url: &Option<String>| url.clone().filter(|_| custom).unwrap_or_default();
    Ok(FormView {
        kind,
        action: format!("{LIST}/{}", gateway.id),
        submit: "Save",
        description: gateway.description.clone(),
        server: gateway.server.clone(),
        account_name: stored
            .as_ref()
            .map(|c| c.account_name.clone())
            .unwrap_or_default(),
        port: gateway.port.to_string(),
        test_mailbox: gateway.test_mailbox.clone().unwrap_or_default(),
        errors: FieldErrors::default(),
        password_stored: stored.is_some(),
        shared_with: store::gateways::count_kind(&state.pool, kind).await?,
        id: Some(gateway.id),
        last_verdict: match (&gateway.last_verdict, gateway.last_checked_at) {
            (Some(v), Some(at)) => format!("{v} ({})", format_time(at)),
            (Some(v), None) => v.clone(),
            _ => String::new(),
        },
        tenant: gateway.tenant.clone().unwrap_or_default(),
        client_id: stored
            .as_ref()
            .filter(|_| kind == GatewayKind::Graph)
            .map(|c| c.account_name.clone())
            .unwrap_or_default(),
        cloud: gateway.cloud.clone().unwrap_or_default(),
        signin_url: typed_url(&gateway.signin_url),
        graph_url: typed_url(&gateway.graph_url),
    })
}

async fn edit(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let gateway = find(&state, id).await?;
    let form = edit_form(&state, &gateway).await?;
    render_form(
        &state,
        &user,
        messages,
        StatusCode::OK,
        edit_heading(&gateway),
        form,
    )
    .await
}

/// The Troubleshooter panel on the gateway's page: runs the checks and
/// shows the page with their results.
async fn troubleshoot(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let gateway = find(&state, id).await?;
    let panel = super::troubleshooter::run_one(&state, &gateway).await?;
    // Shown again with the verdict just stored.
    let gateway = find(&state, id).await?;
    let form = edit_form(&state, &gateway).await?;
    let heading = edit_heading(&gateway);
    render(
        StatusCode::OK,
        &FormPage {
            shell: shell(&state, &user, messages, &heading).await?,
            heading,
            form,
            panel: Some(panel),
        },
    )
}

async fn update(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
    Form(raw): Form<RawGateway>,
) -> AppResult<Response> {
    let gateway = find(&state, id).await?;
    let kind = gateway.kind();
    let stored = edit_form(&state, &gateway).await?;
    let form = FormView {
        action: stored.action,
        password_stored: stored.password_stored,
        shared_with: stored.shared_with,
        id: Some(id),
        last_verdict: stored.last_verdict,
        ..FormView::typed(kind, &raw)
    };
    let heading = edit_heading(&gateway);
    save(
        &state,
        &user,
        messages,
        &raw,
        form,
        heading,
        Save::Update(id),
    )
    .await
}

// ------------------------------------------------------------------- delete

#[derive(Template)]
#[template(path = "pages/gateways/delete.html")]
struct DeletePage {
    shell: Shell,
    id: i64,
    description: String,
    kind: &'static str,
    server: String,
    is_last: bool,
    users_affected: i64,
}

async fn confirm_delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let impact = store::gateways::delete_impact(&state.pool, id).await?;
    render(
        StatusCode::OK,
        &DeletePage {
            shell: shell(&state, &user, messages, "Delete Presence Gateway").await?,
            id,
            kind: impact.gateway.kind().label(),
            description: impact.gateway.description,
            server: impact.gateway.server,
            is_last: impact.is_last,
            users_affected: impact.users_affected,
        },
    )
}

async fn delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let impact = store::gateways::delete(&state.pool, id, &user.row.user_id, state.now()).await?;
    let text = if impact.is_last {
        format!(
            "Delete successful. Calendar presence was switched off for {}.",
            crate::domain::count(impact.users_affected, "user")
        )
    } else {
        "Delete successful. No user's calendar presence changed: other EWS gateways remain."
            .to_owned()
    };
    messages.success(text);
    Ok(Redirect::to(LIST).into_response())
}

// -------------------------------------------------------------- change type

#[derive(Template)]
#[template(path = "pages/gateways/change_type.html")]
struct ChangeTypePage {
    shell: Shell,
    id: i64,
    description: String,
    from: &'static str,
    /// The chosen new type; `None` while there is a choice to make (EWS
    /// can become WebDAV or Microsoft 365).
    to_kind: Option<GatewayKind>,
    /// The types offered, when there is more than one.
    choices: Vec<KindOption>,
    /// Why the type cannot be changed now (more than one gateway).
    blocked: Option<String>,
    /// Microsoft 365 to EWS asks where the Exchange server is.
    needs_server: bool,
    account_name: String,
    server: String,
    port: String,
    tenant: String,
    client_id: String,
    cloud: String,
    signin_url: String,
    graph_url: String,
    errors: FieldErrors,
}

impl ChangeTypePage {
    fn to(&self) -> &'static str {
        self.to_kind.map_or("", GatewayKind::label)
    }

    fn to_value(&self) -> &'static str {
        self.to_kind.map_or("", GatewayKind::as_str)
    }

    fn to_graph(&self) -> bool {
        self.to_kind == Some(GatewayKind::Graph)
    }

    fn clouds(&self) -> Vec<CloudOption> {
        cloud_options(&self.cloud)
    }

    /// The stored password carries over only between WebDAV and EWS: a
    /// client secret is not an account password.
    fn password_help(&self) -> &'static str {
        if self.needs_server {
            "Enter the EWS account's password: the Microsoft 365 client secret does not carry \
             over."
        } else {
            "Leave both password fields empty to keep the stored password."
        }
    }

    fn account_help(&self) -> &'static str {
        match self.to_kind {
            Some(GatewayKind::Ews) => "The impersonation account, as user@domain or domain\\user.",
            Some(GatewayKind::WebDav) => {
                "The Receive-As account, as domain\\user, or user when Exchange has a default \
                 domain."
            }
            Some(GatewayKind::Graph) | None => "",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawChangeType {
    #[serde(default)]
    to: String,
    #[serde(default)]
    account_name: String,
    #[serde(default)]
    password: SecretField,
    #[serde(default)]
    confirm: SecretField,
    #[serde(default)]
    server: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    signin_url: String,
    #[serde(default)]
    graph_url: String,
    #[serde(default)]
    client_secret: SecretField,
    #[serde(default)]
    confirm_client_secret: SecretField,
}

#[derive(Debug, Deserialize)]
struct TypeQuery {
    #[serde(default)]
    to: String,
}

/// The new type: the only one offered, or the one asked for among those
/// offered (`None` while the administrator has yet to choose).
fn chosen_target(from: GatewayKind, asked: &str) -> Option<GatewayKind> {
    match from.change_targets() {
        [only] => Some(*only),
        targets => GatewayKind::parse(asked).filter(|k| targets.contains(k)),
    }
}

async fn change_type_page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    gateway: &GatewayRow,
    to_kind: Option<GatewayKind>,
    raw: &RawChangeType,
) -> AppResult<ChangeTypePage> {
    let from = gateway.kind();
    let total = store::gateways::count(&state.pool).await?;
    let blocked = (total > 1).then(|| {
        format!(
            "The type can only be changed while this is the only gateway; there are {total}. \
             Delete the others first."
        )
    });
    let choices = if from.change_targets().len() > 1 {
        from.change_targets()
            .iter()
            .map(|k| KindOption {
                value: k.as_str(),
                label: k.label(),
                hint: k.hint(),
                checked: Some(*k) == to_kind,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ChangeTypePage {
        shell: shell(state, user, messages, "Change Presence Gateway Type").await?,
        id: gateway.id,
        description: gateway.description.clone(),
        from: from.label(),
        to_kind,
        choices,
        blocked,
        needs_server: from == GatewayKind::Graph,
        account_name: raw.account_name.clone(),
        server: raw.server.clone(),
        port: if raw.port.is_empty() {
            Port::RECOMMENDED.to_string()
        } else {
            raw.port.clone()
        },
        tenant: raw.tenant.clone(),
        client_id: raw.client_id.clone(),
        cloud: if raw.cloud.is_empty() {
            Cloud::Global.as_str().to_owned()
        } else {
            raw.cloud.clone()
        },
        signin_url: raw.signin_url.clone(),
        graph_url: raw.graph_url.clone(),
        errors: FieldErrors::default(),
    })
}

async fn type_form(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    Query(query): Query<TypeQuery>,
    messages: Messages,
) -> AppResult<Response> {
    let gateway = find(&state, id).await?;
    let to = chosen_target(gateway.kind(), &query.to);
    // Offer the current account when it is valid for the new type too (a
    // client ID never is an Exchange account, nor the reverse).
    let account = match to {
        Some(to) if to != GatewayKind::Graph && gateway.kind() != GatewayKind::Graph => {
            store::gateways::credentials(&state.pool, gateway.kind())
                .await?
                .map(|c| c.account_name)
                .filter(|a| AccountName::parse(to, a).is_ok())
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    let raw = RawChangeType {
        account_name: account,
        ..RawChangeType::default()
    };
    let page = change_type_page(&state, &user, messages, &gateway, to, &raw).await?;
    render(StatusCode::OK, &page)
}

/// Parses the fields the new type needs, each message beside its field.
fn parse_type_change(
    state: &AppState,
    from: GatewayKind,
    to: GatewayKind,
    raw: &RawChangeType,
    errors: &mut FieldErrors,
) -> AppResult<Option<TypeChange>> {
    if to == GatewayKind::Graph {
        let graph = parse_graph(&RawGraph {
            tenant: &raw.tenant,
            client_id: &raw.client_id,
            cloud: &raw.cloud,
            signin_url: &raw.signin_url,
            graph_url: &raw.graph_url,
        })
        .map_err(|list| {
            for (field, message) in list {
                errors.set(field, message);
            }
        })
        .ok();
        if let Some(graph) = &graph
            && let Err(e) = graph_location(graph)
        {
            errors.set("graph_url", e);
        }
        // A client secret is always new: an Exchange password is not one.
        let secret = parse_client_secret(&raw.client_secret.0, &raw.confirm_client_secret.0, false)
            .map_err(|e| errors.set("client_secret", e))
            .ok()
            .flatten();
        return Ok(match (graph, secret) {
            (Some(graph), Some(secret)) if !errors.any() => Some(TypeChange {
                to,
                account: AccountName::client_id(&graph.client_id),
                password: seal(state, Some(secret))?,
                server: None,
                graph: Some(graph),
            }),
            _ => None,
        });
    }
    let account = AccountName::parse(to, &raw.account_name)
        .map_err(|e| errors.set("account_name", e))
        .ok();
    // The password moves over between WebDAV and EWS unless a new one is
    // typed; from Microsoft 365 there is none to move.
    let carry = from != GatewayKind::Graph;
    let password = parse_password(&raw.password.0, &raw.confirm.0, carry)
        .map_err(|e| errors.set("password", e))
        .ok();
    let server = if from == GatewayKind::Graph {
        let server = ServerLocation::parse(&raw.server)
            .map_err(|e| errors.set("server", e))
            .ok();
        let port = Port::parse(&raw.port)
            .map_err(|e| errors.set("port", e))
            .ok();
        server.zip(port)
    } else {
        None
    };
    if errors.any() {
        return Ok(None);
    }
    let (Some(account), Some(password)) = (account, password) else {
        return Ok(None);
    };
    Ok(Some(TypeChange {
        to,
        account,
        password: seal(state, password)?,
        server,
        graph: None,
    }))
}

async fn change_type(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
    Form(raw): Form<RawChangeType>,
) -> AppResult<Response> {
    let gateway = find(&state, id).await?;
    let from = gateway.kind();
    let to = chosen_target(from, &raw.to);
    let mut page = change_type_page(&state, &user, messages.clone(), &gateway, to, &raw).await?;
    let Some(to) = to else {
        page.errors
            .set("to", "Choose the new Presence Gateway Type.");
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    if let Some(change) = parse_type_change(&state, from, to, &raw, &mut page.errors)? {
        match store::gateways::change_type(&state.pool, id, &change, &user.row.user_id, state.now())
            .await
        {
            Ok(changed) => {
                let cleared = changed
                    .cleared_test_mailbox
                    .map(|m| {
                        format!(
                            " The Test Mailbox {m} was cleared: {} names a mailbox by its \
                             e-mail address; enter one to prove impersonation.",
                            changed.kind.label()
                        )
                    })
                    .unwrap_or_default();
                messages.success(format!(
                    "Type changed to {}. Users keep their calendar setting; restart the \
                     Presence Engine for the change to take effect.{cleared}",
                    changed.kind.label()
                ));
                return Ok(Redirect::to(&format!("{LIST}/{id}")).into_response());
            }
            // The page has no type field: a refusal about the type (not the
            // only gateway any more) goes at the top.
            Err(AppError::Refused(refusal)) => match super::refusals::field(&refusal) {
                field @ ("password" | "account_name" | "client_secret") => {
                    page.errors.set(field, refusal.to_string())
                }
                _ => page.errors.set(FORM, refusal.to_string()),
            },
            Err(other) => return Err(other),
        }
    }
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_never_print() {
        let raw = RawGateway {
            password: SecretField("hunter2-secret".to_owned()),
            confirm: SecretField("hunter2-secret".to_owned()),
            ..RawGateway::default()
        };
        assert!(!format!("{raw:?}").contains("hunter2"));
    }
}
