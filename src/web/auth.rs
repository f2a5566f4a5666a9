//! Sign-in, sign-out and the password change (SY-3), including the forced
//! change after the first start.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_messages::Messages;
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::Session;

use crate::domain::user::{NewPassword, Role, UserId, safe_next, throttle_key};
use crate::error::AppResult;
use crate::state::AppState;
use crate::store;

use super::forms::{FORM, FieldErrors};
use super::paths;
use super::session::{self, SignedIn};
use super::shell::{Shell, render};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::LOGIN, get(login_form).post(login))
        .route(paths::LOGOUT, post(logout))
        .route(
            paths::ACCOUNT_PASSWORD,
            get(password_form).post(change_password),
        )
}

#[derive(Template)]
#[template(path = "pages/auth/login.html")]
struct LoginPage {
    shell: Shell,
    user_id: String,
    next: String,
    errors: FieldErrors,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    ended: Option<String>,
    signed_out: Option<String>,
}

async fn login_form(
    user: Option<SignedIn>,
    Query(query): Query<LoginQuery>,
) -> AppResult<Response> {
    if let Some(SignedIn(user)) = user {
        return Ok(Redirect::to(user.role.landing_path()).into_response());
    }
    let notice = if query.signed_out.is_some() {
        Some("You have signed out.")
    } else if query.ended.is_some() {
        Some("Your session has ended. Sign in again to continue.")
    } else {
        None
    };
    render(
        StatusCode::OK,
        &LoginPage {
            shell: Shell::anonymous("Sign in"),
            user_id: String::new(),
            next: query
                .next
                .as_deref()
                .and_then(safe_next)
                .unwrap_or_default()
                .to_owned(),
            errors: FieldErrors::default(),
            notice,
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

fn minutes_until(until: i64, now: i64) -> i64 {
    ((until - now) + 59) / 60
}

fn locked_message(until: i64, now: i64) -> String {
    let minutes = minutes_until(until, now).max(1);
    format!(
        "Too many failed sign-ins for this User ID: it is refused for 15 minutes. Try again in \
         {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    )
}

async fn login(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<LoginForm>,
) -> AppResult<Response> {
    let key = throttle_key(&form.user_id);
    // No stored User ID is longer than this, so a longer one cannot sign in:
    // it is answered before it is counted, logged or echoed, so that large
    // IDs cannot grow the database or the log (ASVS 7.1 / 11.1).
    let too_long = key.chars().count() > UserId::MAX_LEN;
    let retry = |status: StatusCode, error: String| {
        let mut errors = FieldErrors::default();
        errors.set(FORM, error);
        render(
            status,
            &LoginPage {
                shell: Shell::anonymous("Sign in"),
                user_id: if too_long {
                    String::new()
                } else {
                    form.user_id.trim().to_owned()
                },
                next: safe_next(&form.next).unwrap_or_default().to_owned(),
                errors,
                notice: None,
            },
        )
    };
    if key.is_empty() || form.password.is_empty() {
        return retry(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your User ID and password.".to_owned(),
        );
    }
    if too_long {
        // The usual answer: the page says no more than for a wrong password.
        return retry(
            StatusCode::UNAUTHORIZED,
            "The User ID or password is incorrect.".to_owned(),
        );
    }
    let now = state.now();
    // Counted before the password is verified, so parallel guesses cannot
    // all pass the check before any failure is recorded.
    let attempt = match store::throttle::admit(&state.pool, &key, now).await? {
        store::throttle::Admission::Admitted(attempt) => attempt,
        store::throttle::Admission::Locked(until) => {
            return retry(StatusCode::TOO_MANY_REQUESTS, locked_message(until, now));
        }
    };
    let user = store::users::find_by_user_id(&state.pool, &form.user_id).await?;
    let ok = crate::secrets::password::verify(
        SecretString::from(form.password.clone()),
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await?;
    let Some(user) = user.filter(|_| ok) else {
        // Debug formatting escapes line breaks and other control
        // characters, so a typed ID cannot forge a log line.
        tracing::info!(user_key = ?key, "sign-in failed");
        return match store::throttle::failed(&state.pool, attempt, &key, now).await? {
            Some(until) => retry(StatusCode::TOO_MANY_REQUESTS, locked_message(until, now)),
            None => retry(
                StatusCode::UNAUTHORIZED,
                "The User ID or password is incorrect.".to_owned(),
            ),
        };
    };
    if let Err(until) = store::throttle::succeeded(&state.pool, attempt, &key, now).await? {
        return retry(StatusCode::TOO_MANY_REQUESTS, locked_message(until, now));
    }
    session::sign_in(&state.pool, &session, &user, now).await?;
    tracing::info!(user_id = ?user.user_id, "signed in");
    let target = if user.must_change_password {
        paths::ACCOUNT_PASSWORD.to_owned()
    } else {
        safe_next(&form.next).map(str::to_owned).unwrap_or_else(|| {
            user.role()
                .map(Role::landing_path)
                .unwrap_or("/")
                .to_owned()
        })
    };
    Ok(Redirect::to(&target).into_response())
}

async fn logout(State(state): State<AppState>, session: Session) -> AppResult<Response> {
    session::sign_out(&state.pool, &session).await?;
    Ok(Redirect::to(&format!("{}?signed_out=1", paths::LOGIN)).into_response())
}

#[derive(Template)]
#[template(path = "pages/account/password.html")]
struct PasswordPage {
    shell: Shell,
    forced: bool,
    errors: FieldErrors,
}

async fn password_form(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    messages: Messages,
) -> AppResult<Response> {
    let forced = user.row.must_change_password;
    render(
        StatusCode::OK,
        &PasswordPage {
            shell: Shell::new(
                &state,
                &user,
                messages,
                "Change password",
                paths::ACCOUNT_PASSWORD,
            )
            .await?,
            forced,
            errors: FieldErrors::default(),
        },
    )
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

async fn change_password(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    session: Session,
    messages: Messages,
    Form(form): Form<PasswordForm>,
) -> AppResult<Response> {
    // A wrong current password is a password guess like a failed sign-in
    // (ASVS 2.1): it counts toward the same lock on the same key, so a
    // stolen session cannot guess without limit here, and a locked ID is
    // refused here as at sign-in.
    let key = throttle_key(&user.row.user_id);
    let now = state.now();
    let mut errors = FieldErrors::default();
    let mut locked = false;
    match store::throttle::admit(&state.pool, &key, now).await? {
        store::throttle::Admission::Locked(until) => {
            locked = true;
            errors.set("current", locked_message(until, now));
        }
        store::throttle::Admission::Admitted(attempt) => {
            let current_ok = crate::secrets::password::verify(
                SecretString::from(form.current.clone()),
                Some(user.row.password_hash.clone()),
            )
            .await?;
            if current_ok {
                if let Err(until) =
                    store::throttle::succeeded(&state.pool, attempt, &key, now).await?
                {
                    locked = true;
                    errors.set("current", locked_message(until, now));
                }
            } else {
                tracing::info!(user_id = %user.row.user_id, "wrong current password");
                match store::throttle::failed(&state.pool, attempt, &key, now).await? {
                    Some(until) => {
                        locked = true;
                        errors.set("current", locked_message(until, now));
                    }
                    None => errors.set("current", "The current password is incorrect."),
                }
            }
        }
    }
    let new_password =
        NewPassword::parse(&form.new, &form.confirm, &user.row.user_id).and_then(|p| {
            if p.expose() == form.current {
                Err("The new password must differ from the current one.".to_owned())
            } else {
                Ok(p)
            }
        });
    let new_password = match new_password {
        Ok(p) if !errors.any() => p,
        new_password => {
            if let Err(message) = new_password {
                errors.set("new", message);
            }
            let status = if locked {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return render(
                status,
                &PasswordPage {
                    shell: Shell::new(
                        &state,
                        &user,
                        messages,
                        "Change password",
                        paths::ACCOUNT_PASSWORD,
                    )
                    .await?,
                    forced: user.row.must_change_password,
                    errors,
                },
            );
        }
    };
    let hash = crate::secrets::password::hash(SecretString::from(new_password.expose().to_owned()))
        .await?;
    let epoch =
        store::users::set_password(&state.pool, user.row.id, &hash, false, state.now()).await?;
    session::adopt_epoch(&state.pool, &session, epoch).await?;
    if user.role == Role::Admin && user.row.user_id == crate::domain::user::FIRST_ADMIN {
        // The generated first password is no longer valid: do not leave it lying around.
        let file = state
            .settings
            .data_dir
            .join(crate::secrets::INITIAL_ADMIN_PASSWORD_FILE);
        if file.exists() {
            std::fs::remove_file(file)?;
        }
    }
    tracing::info!(user_id = ?user.row.user_id, "password changed");
    messages.success("Your password has been changed. Your other sessions have ended.");
    Ok(Redirect::to(user.role.landing_path()).into_response())
}
