//! System > API Tokens (EN-5): administrators create tokens for callers of
//! the presence API (each shown once, in the answer to the creating POST,
//! and stored only as its hash), list them and revoke them.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_messages::Messages;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::token::TokenName;
use crate::error::{AppError, AppResult};
use crate::secrets::api_token;
use crate::state::AppState;
use crate::store;
use crate::store::tokens::TokenRow;

use super::forms::{FORM, FieldErrors};
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, format_time, render};

const LIST: &str = paths::API_TOKENS;
const TITLE: &str = "API Tokens";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(LIST, get(list).post(create))
        .route(paths::API_TOKEN_REVOKE, get(confirm_revoke).post(revoke))
}

async fn shell(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    title: &str,
) -> AppResult<Shell> {
    Shell::new(state, user, messages, title, LIST).await
}

/// One token as the table shows it.
struct Row {
    id: i64,
    name: String,
    created: String,
    created_by: String,
    last_used: String,
    /// `None` while the token works.
    revoked: Option<String>,
}

impl From<TokenRow> for Row {
    fn from(t: TokenRow) -> Row {
        Row {
            id: t.id,
            created: format_time(t.created_at),
            last_used: t
                .last_used_at
                .map_or_else(|| "Never".to_owned(), format_time),
            revoked: t.revoked_at.map(|at| {
                format!(
                    "{} by {}",
                    format_time(at),
                    t.revoked_by.as_deref().unwrap_or("?")
                )
            }),
            name: t.name,
            created_by: t.created_by,
        }
    }
}

/// The token just created: shown in this one answer, never again.
struct Created {
    name: String,
    token: SecretString,
}

impl Created {
    fn token(&self) -> &str {
        self.token.expose_secret()
    }
}

#[derive(Template)]
#[template(path = "pages/tokens/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<Row>,
    created: Option<Created>,
    name: String,
    errors: FieldErrors,
}

impl ListPage {
    fn active(&self) -> usize {
        self.rows.iter().filter(|r| r.revoked.is_none()).count()
    }
}

async fn page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    created: Option<Created>,
    name: String,
    errors: FieldErrors,
) -> AppResult<ListPage> {
    let rows = store::tokens::list(&state.pool)
        .await?
        .into_iter()
        .map(Row::from)
        .collect();
    Ok(ListPage {
        shell: shell(state, user, messages, TITLE).await?,
        rows,
        created,
        name,
        errors,
    })
}

async fn list(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let page = page(
        &state,
        &user,
        messages,
        None,
        String::new(),
        FieldErrors::default(),
    )
    .await?;
    render(StatusCode::OK, &page)
}

#[derive(Debug, Default, Deserialize)]
struct RawToken {
    #[serde(default)]
    name: String,
}

async fn create(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(raw): Form<RawToken>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    match TokenName::parse(&raw.name) {
        Ok(name) => {
            let (token, hash) = api_token::generate();
            match store::tokens::create(&state.pool, &name, &hash, &user.row.user_id, state.now())
                .await
            {
                Ok(row) => {
                    // Rendered in this answer rather than after a redirect:
                    // the token must not travel through a URL, a flash in
                    // the session store, or a page that can be reloaded.
                    let created = Created {
                        name: row.name,
                        token,
                    };
                    let page = page(
                        &state,
                        &user,
                        messages,
                        Some(created),
                        String::new(),
                        errors,
                    )
                    .await?;
                    let mut response = render(StatusCode::OK, &page)?;
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    return Ok(response);
                }
                Err(AppError::Refused(refusal)) => super::refusals::place(&mut errors, &refusal),
                Err(other) => return Err(other),
            }
        }
        Err(message) => errors.set("name", message),
    }
    let page = page(
        &state,
        &user,
        messages,
        None,
        raw.name.trim().to_owned(),
        errors,
    )
    .await?;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

// ------------------------------------------------------------------- revoke

#[derive(Template)]
#[template(path = "pages/tokens/revoke.html")]
struct RevokePage {
    shell: Shell,
    row: Row,
    /// Why it cannot be revoked (already revoked), at the top.
    errors: FieldErrors,
}

const REVOKE_TITLE: &str = "Revoke API Token";

async fn find(state: &AppState, id: i64) -> AppResult<TokenRow> {
    store::tokens::find(&state.pool, id)
        .await?
        .ok_or(AppError::NotFound)
}

async fn confirm_revoke(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let row = Row::from(find(&state, id).await?);
    let mut errors = FieldErrors::default();
    if row.revoked.is_some() {
        errors.set(FORM, "This token is revoked already.");
    }
    render(
        StatusCode::OK,
        &RevokePage {
            shell: shell(&state, &user, messages, REVOKE_TITLE).await?,
            row,
            errors,
        },
    )
}

async fn revoke(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    match store::tokens::revoke(&state.pool, id, &user.row.user_id, state.now()).await {
        Ok(row) => {
            messages.success(format!(
                "Revoke successful: the token {} no longer opens the API.",
                row.name
            ));
            Ok(Redirect::to(LIST).into_response())
        }
        Err(AppError::Refused(refusal)) => {
            let mut errors = FieldErrors::default();
            super::refusals::place(&mut errors, &refusal);
            let row = Row::from(find(&state, id).await?);
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &RevokePage {
                    shell: shell(&state, &user, messages, REVOKE_TITLE).await?,
                    row,
                    errors,
                },
            )
        }
        Err(other) => Err(other),
    }
}
