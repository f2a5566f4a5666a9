//! User Management > Application User (US-5): the administrator accounts.
//! List, create (the new administrator changes the password at first
//! sign-in, as the first one does), delete (never the last one, never
//! yourself) and set password (which ends their sessions).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_messages::Messages;
use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::refusal::UserRefusal;
use crate::domain::user::{NewPassword, Role, UserId};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;
use crate::store::users::AdminRow;

use super::forms::{FORM, FieldErrors, SecretField};
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, format_time, render};

const LIST: &str = paths::APP_USERS;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(LIST, get(list))
        .route(paths::APP_USER_NEW, get(new).post(create))
        .route(paths::APP_USER_DELETE, get(confirm_delete).post(delete))
        .route(
            paths::APP_USER_PASSWORD,
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

// --------------------------------------------------------------------- list

struct Row {
    admin: AdminRow,
    created: String,
    is_you: bool,
}

#[derive(Template)]
#[template(path = "pages/app_users/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<Row>,
}

async fn list(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let rows = store::users::list_admins(&state.pool)
        .await?
        .into_iter()
        .map(|admin| Row {
            created: format_time(admin.created_at),
            is_you: admin.id == user.row.id,
            admin,
        })
        .collect();
    render(
        StatusCode::OK,
        &ListPage {
            shell: shell(&state, &user, messages, "Find and List Application Users").await?,
            rows,
        },
    )
}

// ------------------------------------------------------------------- create

#[derive(Debug, Default, Deserialize)]
struct RawAdmin {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    password: SecretField,
    #[serde(default)]
    confirm: SecretField,
}

#[derive(Template)]
#[template(path = "pages/app_users/new.html")]
struct NewPage {
    shell: Shell,
    user_id: String,
    errors: FieldErrors,
}

const NEW_TITLE: &str = "Add New Application User";

async fn new(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    render(
        StatusCode::OK,
        &NewPage {
            shell: shell(&state, &user, messages, NEW_TITLE).await?,
            user_id: String::new(),
            errors: FieldErrors::default(),
        },
    )
}

async fn create(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(raw): Form<RawAdmin>,
) -> AppResult<Response> {
    let user_id = UserId::parse(&raw.user_id);
    let password = NewPassword::parse(&raw.password.0, &raw.confirm.0, &raw.user_id);
    let mut errors = FieldErrors::default();
    match (user_id, password) {
        (Ok(user_id), Ok(password)) => {
            let hash =
                crate::secrets::password::hash(SecretString::from(password.expose().to_owned()))
                    .await?;
            match store::users::create_admin(
                &state.pool,
                &user_id,
                &hash,
                &user.row.user_id,
                state.now(),
            )
            .await
            {
                Ok(_) => {
                    messages.success(format!(
                        "Add successful: administrator {user_id} created. They choose a new \
                         password at first sign-in."
                    ));
                    return Ok(Redirect::to(LIST).into_response());
                }
                Err(AppError::Refused(refusal)) => super::refusals::place(&mut errors, &refusal),
                Err(other) => return Err(other),
            }
        }
        (user_id, password) => {
            if let Err(message) = user_id {
                errors.set("user_id", message);
            }
            if let Err(message) = password {
                errors.set("password", message);
            }
        }
    }
    render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &NewPage {
            shell: shell(&state, &user, messages, NEW_TITLE).await?,
            user_id: raw.user_id.trim().to_owned(),
            errors,
        },
    )
}

// ------------------------------------------------------------------- delete

#[derive(Template)]
#[template(path = "pages/app_users/delete.html")]
struct DeletePage {
    shell: Shell,
    row: AdminRow,
    /// Why it cannot be deleted (the last one, or yourself), at the top:
    /// the page has no fields.
    errors: FieldErrors,
}

async fn find(state: &AppState, id: i64) -> AppResult<AdminRow> {
    store::users::find_admin(&state.pool, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The refusal the store would give, shown before the administrator tries.
async fn refusal(state: &AppState, user: &CurrentUser, id: i64) -> AppResult<Option<UserRefusal>> {
    if id == user.row.id {
        return Ok(Some(UserRefusal::DeleteSelf));
    }
    if store::users::count_admins(&state.pool).await? <= 1 {
        return Ok(Some(UserRefusal::LastAdmin));
    }
    Ok(None)
}

async fn confirm_delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let row = find(&state, id).await?;
    let mut errors = FieldErrors::default();
    if let Some(refusal) = refusal(&state, &user, id).await? {
        errors.set(FORM, refusal.to_string());
    }
    render(
        StatusCode::OK,
        &DeletePage {
            shell: shell(&state, &user, messages, "Delete Application User").await?,
            row,
            errors,
        },
    )
}

async fn delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    match store::users::delete_admin(&state.pool, id, user.row.id, &user.row.user_id, state.now())
        .await
    {
        Ok(row) => {
            messages.success(format!(
                "Delete successful: administrator {} deleted and signed out everywhere.",
                row.user_id
            ));
            Ok(Redirect::to(LIST).into_response())
        }
        Err(AppError::Refused(refusal)) => {
            let mut errors = FieldErrors::default();
            errors.set(FORM, refusal.to_string());
            let row = find(&state, id).await?;
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &DeletePage {
                    shell: shell(&state, &user, messages, "Delete Application User").await?,
                    row,
                    errors,
                },
            )
        }
        Err(other) => Err(other),
    }
}

// ------------------------------------------------------------- set password

#[derive(Template)]
#[template(path = "pages/app_users/password.html")]
struct PasswordPage {
    shell: Shell,
    row: AdminRow,
    /// Your own password is changed on the account page, which asks for
    /// the current one.
    is_you: bool,
    errors: FieldErrors,
}

#[derive(Debug, Default, Deserialize)]
struct RawPassword {
    #[serde(default)]
    password: SecretField,
    #[serde(default)]
    confirm: SecretField,
}

const PASSWORD_TITLE: &str = "Set Application User Password";

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
            shell: shell(&state, &user, messages, PASSWORD_TITLE).await?,
            is_you: row.id == user.row.id,
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
    if row.id == user.row.id {
        // Without the current password a stolen session could lock the
        // owner out; the account page asks for it.
        return Ok(Redirect::to(paths::ACCOUNT_PASSWORD).into_response());
    }
    let password = match NewPassword::parse(&raw.password.0, &raw.confirm.0, &row.user_id) {
        Ok(password) => password,
        Err(error) => {
            let mut errors = FieldErrors::default();
            errors.set("password", error);
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &PasswordPage {
                    shell: shell(&state, &user, messages, PASSWORD_TITLE).await?,
                    row,
                    is_you: false,
                    errors,
                },
            );
        }
    };
    let hash =
        crate::secrets::password::hash(SecretString::from(password.expose().to_owned())).await?;
    // A password someone else chose is replaced at the next sign-in, as
    // for a new administrator.
    store::users::reset_password(
        &state.pool,
        id,
        Role::Admin,
        &hash,
        true,
        &user.row.user_id,
        state.now(),
    )
    .await?;
    messages.success(format!(
        "Password set for {}. Their sessions have ended; they choose a new password at their \
         next sign-in.",
        row.user_id
    ));
    Ok(Redirect::to(LIST).into_response())
}
