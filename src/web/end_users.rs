//! User Management > End User (US-1): Find and List by user ID or name,
//! *begins with* or *contains*, paged; the detail page to create, edit and
//! delete an end user; and the set-password page. Users are live
//! configuration: nothing here needs a Presence Engine restart.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_messages::Messages;
use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::locale::{DEFAULT, Locale};
use crate::domain::user::{
    NewPassword, Paging, Role, Search, SearchField, SearchMatch, UserId, parse_person_name,
    parse_user_mailbox,
};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;
use crate::store::users::{EndUserInput, EndUserRow};

use super::forms::{FieldErrors, SecretField};
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, format_time, render};

const LIST: &str = paths::END_USERS;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(LIST, get(list))
        .route(paths::END_USER_NEW, get(new).post(create))
        .route(paths::END_USER, get(edit).post(update))
        .route(paths::END_USER_DELETE, get(confirm_delete).post(delete))
        .route(
            paths::END_USER_PASSWORD,
            get(password_form).post(set_password),
        )
}

async fn shell(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    title: &str,
) -> AppResult<Shell> {
    Shell::new(state, user, messages, title, LIST).await
}

// ---------------------------------------------------------------- Find and List

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    field: String,
    #[serde(default, rename = "match")]
    how: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    page: String,
}

struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "pages/end_users/list.html")]
struct ListPage {
    shell: Shell,
    fields: Vec<Choice>,
    matches: Vec<Choice>,
    text: String,
    /// Why the text cannot be searched for (shown beside the box, as
    /// "text").
    errors: FieldErrors,
    rows: Vec<EndUserRow>,
    showing: Option<String>,
    searched: bool,
    previous: Option<String>,
    next: Option<String>,
}

/// The list's address for another page of the same search.
fn page_link(query: &ListQuery, field: SearchField, how: SearchMatch, page: i64) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("field", field.as_str());
    q.append_pair("match", how.as_str());
    q.append_pair("text", query.text.trim());
    q.append_pair("page", &page.to_string());
    format!("{LIST}?{}", q.finish())
}

async fn list(
    State(state): State<AppState>,
    Admin(user): Admin,
    Query(query): Query<ListQuery>,
    messages: Messages,
) -> AppResult<Response> {
    let field = SearchField::parse(&query.field);
    let how = SearchMatch::parse(&query.how);
    let paging = Paging::parse(&query.page);
    let parsed = Search::parse(field, how, &query.text);
    let mut errors = FieldErrors::default();
    let page = match &parsed {
        Ok(search) => {
            store::users::search_end_users(&state.pool, search, paging.offset(), Paging::PAGE_SIZE)
                .await?
        }
        // Too short for the trigram index: say so rather than scan.
        Err(message) => {
            errors.set("text", message.clone());
            store::users::SearchPage::default()
        }
    };
    let last = Paging::last_page(page.total);
    let previous =
        (paging.page > 1).then(|| page_link(&query, field, how, (paging.page - 1).min(last)));
    let next = (paging.page < last).then(|| page_link(&query, field, how, paging.page + 1));
    // A search page: the refusal of too short a text is shown beside the
    // box, as an answer to the search rather than a refused form.
    render(
        StatusCode::OK,
        &ListPage {
            shell: shell(&state, &user, messages, "Find and List Users").await?,
            fields: SearchField::ALL
                .into_iter()
                .map(|f| Choice {
                    value: f.as_str(),
                    label: f.label(),
                    selected: f == field,
                })
                .collect(),
            matches: SearchMatch::ALL
                .into_iter()
                .map(|m| Choice {
                    value: m.as_str(),
                    label: m.label(),
                    selected: m == how,
                })
                .collect(),
            text: query.text.trim().to_owned(),
            errors,
            showing: paging.showing(page.rows.len(), page.total),
            searched: !matches!(parsed, Ok(Search::All)),
            rows: page.rows,
            previous,
            next,
        },
    )
}

// ---------------------------------------------------------- the detail form

#[derive(Debug, Default, Deserialize)]
struct RawEndUser {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    mailbox: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    locale: String,
    /// A checkbox: present ("on") when ticked, absent otherwise.
    #[serde(default)]
    calendar_enabled: Option<String>,
    #[serde(default)]
    password: SecretField,
    #[serde(default)]
    confirm: SecretField,
}

struct LocaleOption {
    tag: &'static str,
    label: String,
    selected: bool,
}

struct NodeOption {
    name: String,
    selected: bool,
}

/// What the form shows: the values as typed (passwords excepted), the
/// choices and the messages.
struct FormView {
    id: Option<i64>,
    action: String,
    submit: &'static str,
    user_id: String,
    first_name: String,
    last_name: String,
    mailbox: String,
    calendar_enabled: bool,
    nodes: Vec<NodeOption>,
    no_node: bool,
    locales: Vec<LocaleOption>,
    /// Why the stored locale cannot be kept (not installed on every node),
    /// shown beside the field before any save.
    locale_warning: Option<String>,
    errors: FieldErrors,
    gateway_exists: bool,
    /// An existing user's calendar presence (EN-5): their stored switch and
    /// what the engine published.
    presence: Option<String>,
}

impl FormView {
    fn is_new(&self) -> bool {
        self.id.is_none()
    }
}

#[derive(Template)]
#[template(path = "pages/end_users/form.html")]
struct FormPage {
    shell: Shell,
    heading: String,
    form: FormView,
}

/// The values a form shows, whether typed or stored.
struct Values<'a> {
    user_id: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    mailbox: &'a str,
    node: &'a str,
    locale: &'a str,
    calendar_enabled: bool,
}

impl<'a> Values<'a> {
    fn typed(raw: &'a RawEndUser) -> Values<'a> {
        Values {
            user_id: &raw.user_id,
            first_name: &raw.first_name,
            last_name: &raw.last_name,
            mailbox: &raw.mailbox,
            node: &raw.node,
            locale: &raw.locale,
            calendar_enabled: raw.calendar_enabled.is_some(),
        }
    }

    fn stored(row: &'a EndUserRow) -> Values<'a> {
        Values {
            user_id: &row.user_id,
            first_name: &row.first_name,
            last_name: &row.last_name,
            mailbox: row.mailbox.as_deref().unwrap_or_default(),
            node: row.node.as_deref().unwrap_or_default(),
            locale: &row.locale,
            calendar_enabled: row.calendar_enabled,
        }
    }
}

/// Builds the form around `values`: the node and locale choices come from
/// the database. A locale that is not usable everywhere is still offered
/// when it is the one shown, with the reason beside the field.
async fn form_view(state: &AppState, id: Option<i64>, values: Values<'_>) -> AppResult<FormView> {
    let nodes = store::nodes::list(&state.pool).await?;
    let mut conn = state.pool.acquire().await?;
    let usable = store::locales::usable(&mut conn).await?;
    let mut locale_warning = None;
    let mut locales: Vec<LocaleOption> = usable
        .iter()
        .map(|l| LocaleOption {
            tag: l.tag,
            label: l.label(),
            selected: l.tag.eq_ignore_ascii_case(values.locale),
        })
        .collect();
    if let Ok(current) = Locale::parse(values.locale)
        && !usable.contains(&current)
    {
        locale_warning = store::locales::unusable(&mut conn, &current)
            .await?
            .map(|refusal| refusal.to_string());
        locales.push(LocaleOption {
            tag: current.tag,
            label: format!("{} (not installed on every node)", current.label()),
            selected: true,
        });
    }
    if !locales.iter().any(|l| l.selected)
        && let Some(first) = locales.first_mut()
    {
        first.selected = true;
    }
    drop(conn);
    let gateway_exists = store::gateways::count(&state.pool).await? > 0;
    // The stored switch, not a refused form's typed value: presence follows
    // what is saved.
    let presence = match id {
        Some(id) => match store::user_options::load(&state.pool, id).await? {
            Some(stored) => {
                let mut published = store::presence::current(&state.pool, &stored.user_id).await?;
                // On no node nobody reads the calendar, whatever was
                // published before: say so, as the API does.
                if let Some(none) = store::presence::of_end_user(&state.pool, &stored.user_id)
                    .await?
                    .filter(|p| p.reason.as_deref() == Some(store::presence::NO_NODE))
                {
                    published = Some(none);
                }
                Some(presence_text(
                    stored.calendar_enabled,
                    gateway_exists,
                    published.as_ref(),
                ))
            }
            None => None,
        },
        None => None,
    };
    let (action, submit) = match id {
        Some(id) => (format!("{LIST}/{id}"), "Save"),
        None => (format!("{LIST}/new"), "Add New"),
    };
    Ok(FormView {
        id,
        action,
        submit,
        user_id: values.user_id.to_owned(),
        first_name: values.first_name.to_owned(),
        last_name: values.last_name.to_owned(),
        mailbox: values.mailbox.to_owned(),
        calendar_enabled: values.calendar_enabled,
        no_node: values.node.is_empty(),
        nodes: nodes
            .into_iter()
            .map(|n| NodeOption {
                selected: n.name == values.node,
                name: n.name,
            })
            .collect(),
        locales,
        locale_warning,
        errors: FieldErrors::default(),
        gateway_exists,
        presence,
    })
}

/// The End User page's wording of a user's calendar presence, the same
/// states as User Options (`presence_message`) seen by an administrator,
/// with until when it holds and why it is unknown, when known.
fn presence_text(
    calendar_enabled: bool,
    gateway_exists: bool,
    published: Option<&store::presence::Published>,
) -> String {
    let state = published.map(|p| p.presence.as_str());
    let text = match super::user_options::presence_message(calendar_enabled, gateway_exists, state)
    {
        "presence-no-gateway" => "Not available: no presence gateway has been configured.",
        "presence-off" => "Not available: calendar information is switched off for this user.",
        "presence-not-read" => {
            "Not available yet: the Presence Engine has not read this user's calendar."
        }
        "presence-available" => "Available",
        "presence-in-a-meeting" => "In a meeting",
        "presence-away" => "Away",
        _ => "Unknown",
    };
    let mut text = text.to_owned();
    if let Some(p) = published.filter(|_| calendar_enabled && gateway_exists) {
        if let Some(until) = p.until {
            text.push_str(&format!(" until {}", format_time(until)));
        }
        if let Some(reason) = &p.reason {
            text.push_str(&format!(" ({reason})"));
        }
    }
    text
}

/// Parses every field, collecting every message at once. The password is
/// parsed only on create.
fn parse_end_user(
    raw: &RawEndUser,
    with_password: bool,
) -> Result<(EndUserInput, Option<NewPassword>), FieldErrors> {
    let mut errors = FieldErrors::default();
    let user_id = UserId::parse(&raw.user_id)
        .map_err(|e| errors.set("user_id", e))
        .ok();
    let first_name = parse_person_name(&raw.first_name, "First Name")
        .map_err(|e| errors.set("first_name", e))
        .ok();
    let last_name = parse_person_name(&raw.last_name, "Last Name")
        .map_err(|e| errors.set("last_name", e))
        .ok();
    let mailbox = parse_user_mailbox(&raw.mailbox)
        .map_err(|e| errors.set("mailbox", e))
        .ok();
    let locale = Locale::parse(&raw.locale)
        .map_err(|e| errors.set("locale", e))
        .ok();
    let node = raw.node.trim();
    let node = (!node.is_empty()).then(|| node.to_owned());
    let password = if with_password {
        NewPassword::parse(&raw.password.0, &raw.confirm.0, &raw.user_id)
            .map_err(|e| errors.set("password", e))
            .ok()
    } else {
        None
    };
    match (user_id, first_name, last_name, mailbox, locale) {
        (Some(user_id), Some(first_name), Some(last_name), Some(mailbox), Some(locale))
            if !errors.any() =>
        {
            Ok((
                EndUserInput {
                    user_id,
                    first_name,
                    last_name,
                    mailbox,
                    node,
                    locale,
                    calendar_enabled: raw.calendar_enabled.is_some(),
                },
                password,
            ))
        }
        _ => Err(errors),
    }
}

async fn render_form(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    status: StatusCode,
    heading: String,
    form: FormView,
) -> AppResult<Response> {
    render(
        status,
        &FormPage {
            shell: shell(state, user, messages, &heading).await?,
            heading,
            form,
        },
    )
}

const NEW_HEADING: &str = "Add New End User";

async fn new(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let form = form_view(
        &state,
        None,
        Values {
            user_id: "",
            first_name: "",
            last_name: "",
            mailbox: "",
            node: "",
            locale: DEFAULT,
            calendar_enabled: false,
        },
    )
    .await?;
    render_form(
        &state,
        &user,
        messages,
        StatusCode::OK,
        NEW_HEADING.to_owned(),
        form,
    )
    .await
}

async fn create(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(raw): Form<RawEndUser>,
) -> AppResult<Response> {
    let mut form = form_view(&state, None, Values::typed(&raw)).await?;
    let refused = StatusCode::UNPROCESSABLE_ENTITY;
    let heading = NEW_HEADING.to_owned();
    let (input, password) = match parse_end_user(&raw, true) {
        Ok((input, Some(password))) => (input, password),
        Ok((_, None)) => return Err(AppError::Config("no password parsed".to_owned())),
        Err(errors) => {
            form.errors = errors;
            return render_form(&state, &user, messages, refused, heading, form).await;
        }
    };
    let hash =
        crate::secrets::password::hash(SecretString::from(password.expose().to_owned())).await?;
    match store::users::create_end_user(&state.pool, &input, &hash, &user.row.user_id, state.now())
        .await
    {
        Ok(id) => {
            messages.success(format!(
                "Add successful: end user {} created.",
                input.user_id
            ));
            Ok(Redirect::to(&format!("{LIST}/{id}")).into_response())
        }
        Err(AppError::Refused(refusal)) => {
            super::refusals::place(&mut form.errors, &refusal);
            render_form(&state, &user, messages, refused, heading, form).await
        }
        Err(other) => Err(other),
    }
}

async fn find(state: &AppState, id: i64) -> AppResult<EndUserRow> {
    store::users::find_end_user(&state.pool, id)
        .await?
        .ok_or(AppError::NotFound)
}

fn edit_heading(row: &EndUserRow) -> String {
    format!("End User: {}", row.user_id)
}

async fn edit(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let row = find(&state, id).await?;
    let form = form_view(&state, Some(id), Values::stored(&row)).await?;
    render_form(
        &state,
        &user,
        messages,
        StatusCode::OK,
        edit_heading(&row),
        form,
    )
    .await
}

async fn update(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
    Form(raw): Form<RawEndUser>,
) -> AppResult<Response> {
    let row = find(&state, id).await?;
    let heading = edit_heading(&row);
    let mut form = form_view(&state, Some(id), Values::typed(&raw)).await?;
    let refused = StatusCode::UNPROCESSABLE_ENTITY;
    let input = match parse_end_user(&raw, false) {
        Ok((input, _)) => input,
        Err(errors) => {
            form.errors = errors;
            return render_form(&state, &user, messages, refused, heading, form).await;
        }
    };
    match store::users::update_end_user(&state.pool, id, &input, &user.row.user_id, state.now())
        .await
    {
        Ok(()) => {
            messages.success("Update successful.");
            Ok(Redirect::to(&format!("{LIST}/{id}")).into_response())
        }
        Err(AppError::Refused(refusal)) => {
            super::refusals::place(&mut form.errors, &refusal);
            // The refusal is beside the field: no need to repeat it above.
            if form.errors.has("locale") {
                form.locale_warning = None;
            }
            render_form(&state, &user, messages, refused, heading, form).await
        }
        Err(other) => Err(other),
    }
}

// ------------------------------------------------------------------- delete

#[derive(Template)]
#[template(path = "pages/end_users/delete.html")]
struct DeletePage {
    shell: Shell,
    row: EndUserRow,
}

async fn confirm_delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let row = find(&state, id).await?;
    render(
        StatusCode::OK,
        &DeletePage {
            shell: shell(&state, &user, messages, "Delete End User").await?,
            row,
        },
    )
}

async fn delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let row =
        store::users::delete_end_user(&state.pool, id, &user.row.user_id, state.now()).await?;
    messages.success(format!(
        "Delete successful: end user {} deleted and signed out everywhere.",
        row.user_id
    ));
    Ok(Redirect::to(LIST).into_response())
}

// ------------------------------------------------------------- set password

#[derive(Template)]
#[template(path = "pages/end_users/password.html")]
struct PasswordPage {
    shell: Shell,
    row: EndUserRow,
    errors: FieldErrors,
}

#[derive(Debug, Default, Deserialize)]
struct RawPassword {
    #[serde(default)]
    password: SecretField,
    #[serde(default)]
    confirm: SecretField,
}

async fn password_form(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let row = find(&state, id).await?;
    render(
        StatusCode::OK,
        &PasswordPage {
            shell: shell(&state, &user, messages, "Set End User Password").await?,
            row,
            errors: FieldErrors::default(),
        },
    )
}

async fn set_password(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
    Form(raw): Form<RawPassword>,
) -> AppResult<Response> {
    let row = find(&state, id).await?;
    let password = match NewPassword::parse(&raw.password.0, &raw.confirm.0, &row.user_id) {
        Ok(password) => password,
        Err(error) => {
            let mut errors = FieldErrors::default();
            errors.set("password", error);
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &PasswordPage {
                    shell: shell(&state, &user, messages, "Set End User Password").await?,
                    row,
                    errors,
                },
            );
        }
    };
    let hash =
        crate::secrets::password::hash(SecretString::from(password.expose().to_owned())).await?;
    store::users::reset_password(
        &state.pool,
        id,
        Role::EndUser,
        &hash,
        false,
        &user.row.user_id,
        state.now(),
    )
    .await?;
    messages.success(format!(
        "Password set for {}. Their sessions have ended.",
        row.user_id
    ));
    Ok(Redirect::to(&format!("{LIST}/{id}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_never_print() {
        let raw = RawEndUser {
            password: SecretField("hunter2-secret".to_owned()),
            confirm: SecretField("hunter2-secret".to_owned()),
            ..RawEndUser::default()
        };
        assert!(!format!("{raw:?}").contains("hunter2"));
    }
}
