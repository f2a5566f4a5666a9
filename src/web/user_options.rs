//! User Options: the signed-in end user's own settings (US-2): whether
//! calendar information goes into their presence, their locale, and what
//! their calendar presence currently is. The page speaks the user's locale
//! when it is installed here and translated (LO-2).
//!
//! No route takes a user id: the user is always the session's, and any id a
//! form carries is ignored, so nobody reads or changes another's options.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_messages::Messages;
use serde::Deserialize;

use crate::domain::locale::Locale;
use crate::domain::refusal::{Refusal, UserRefusal};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;
use crate::store::user_options::Options;
use crate::web::i18n::{page_language, tr};

use super::forms::FieldErrors;
use super::paths;
use super::session::{CurrentUser, EndUser};
use super::shell::{Shell, render};

const PAGE: &str = paths::USER_OPTIONS;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PAGE, get(index))
        .route(paths::USER_OPTIONS_CALENDAR, post(save_calendar))
        .route(paths::USER_OPTIONS_LOCALE, post(save_locale))
}

/// What the page says about the user's calendar presence (EN-5), as a
/// message id. `published` is the engine's value for the user
/// ("available", "in_a_meeting", "away", "unknown"), None when it has
/// published nothing for them.
pub fn presence_message(
    calendar_enabled: bool,
    gateway_exists: bool,
    published: Option<&str>,
) -> &'static str {
    if !gateway_exists {
        return "presence-no-gateway";
    }
    if !calendar_enabled {
        return "presence-off";
    }
    match published {
        None => "presence-not-read",
        Some("available") => "presence-available",
        Some("in_a_meeting") => "presence-in-a-meeting",
        Some("away") => "presence-away",
        Some(_) => "presence-unknown",
    }
}

struct LocaleOption {
    tag: &'static str,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "pages/user_options/index.html")]
struct IndexPage {
    shell: Shell,
    /// The language the page is written in (its `<html lang>`).
    lang: &'static str,
    signed_in: String,
    calendar_on: bool,
    calendar_available: bool,
    /// A refused POST: the message beside the calendar switch
    /// ("calendar") or the locale ("locale").
    errors: FieldErrors,
    locales: Vec<LocaleOption>,
    presence: &'static str,
}

impl IndexPage {
    fn t(&self, id: &str) -> String {
        tr(self.lang, id, &[])
    }

    fn presence_text(&self) -> String {
        self.t(self.presence)
    }
}

/// Everything the page shows, read for the session's user.
struct View {
    options: Options,
    gateways: i64,
    /// The calendar presence the engine published, if any (EN-5).
    published: Option<&'static str>,
    lang: &'static str,
    usable: Vec<Locale>,
}

impl View {
    async fn load(state: &AppState, user: &CurrentUser) -> AppResult<View> {
        let options = store::user_options::load(&state.pool, user.row.id)
            .await?
            .ok_or(AppError::NotFound)?;
        let gateways = store::gateways::count(&state.pool).await?;
        let published = store::presence::current(&state.pool, &options.user_id)
            .await?
            .map(|p| p.presence.as_str());
        let mut conn = state.pool.acquire().await?;
        let lang = language(state, &mut conn, &options.locale).await?;
        let usable = store::locales::usable(&mut conn).await?;
        Ok(View {
            options,
            gateways,
            published,
            lang,
            usable,
        })
    }
}

/// The page language for a locale: translated and installed on this node.
async fn language(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    tag: &str,
) -> AppResult<&'static str> {
    let installed = store::locales::installed_on(conn, &state.settings.node_name).await?;
    Ok(page_language(tag, installed.iter().any(|t| t == tag)))
}

async fn render_page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    status: StatusCode,
    view: View,
    errors: FieldErrors,
) -> AppResult<Response> {
    let lang = view.lang;
    let current = &view.options.locale;
    let mut locales: Vec<LocaleOption> = view
        .usable
        .iter()
        .map(|l| LocaleOption {
            tag: l.tag,
            label: l.label(),
            selected: l.tag == current,
        })
        .collect();
    // A locale no longer installed everywhere (a node joined since) is still
    // the user's: show it chosen rather than pretend another is.
    if !locales.iter().any(|o| o.selected)
        && let Ok(own) = Locale::parse(current)
    {
        locales.insert(
            0,
            LocaleOption {
                tag: own.tag,
                label: own.label(),
                selected: true,
            },
        );
    }
    let title = tr(lang, "user-options-title", &[]);
    render(
        status,
        &IndexPage {
            shell: Shell::new(state, user, messages, &title, PAGE).await?,
            lang,
            signed_in: tr(
                lang,
                "signed-in-as",
                &[
                    ("name", &user.row.display_name()),
                    ("user_id", &view.options.user_id),
                ],
            ),
            calendar_on: view.options.calendar_enabled,
            calendar_available: view.gateways > 0,
            errors,
            locales,
            presence: presence_message(
                view.options.calendar_enabled,
                view.gateways > 0,
                view.published,
            ),
        },
    )
}

async fn index(
    State(state): State<AppState>,
    EndUser(user): EndUser,
    messages: Messages,
) -> AppResult<Response> {
    let view = View::load(&state, &user).await?;
    let errors = FieldErrors::default();
    render_page(&state, &user, messages, StatusCode::OK, view, errors).await
}

/// Only the switch is read: any other field (an `id`, a `user_id`) is
/// ignored, the row is the session's.
#[derive(Debug, Default, Deserialize)]
struct CalendarForm {
    #[serde(default)]
    calendar: String,
}

async fn save_calendar(
    State(state): State<AppState>,
    EndUser(user): EndUser,
    messages: Messages,
    Form(form): Form<CalendarForm>,
) -> AppResult<Response> {
    let view = View::load(&state, &user).await?;
    let lang = view.lang;
    let on = match form.calendar.trim() {
        "on" => true,
        "off" => false,
        _ => {
            let error = tr(lang, "calendar-choose", &[]);
            return refuse(&state, &user, messages, view, "calendar", error).await;
        }
    };
    match store::user_options::set_calendar(&state.pool, user.row.id, on, state.now()).await {
        Ok(()) => {
            let id = if on {
                "calendar-saved-on"
            } else {
                "calendar-saved-off"
            };
            let _ = messages.success(tr(lang, id, &[]));
            Ok(Redirect::to(PAGE).into_response())
        }
        Err(AppError::Refused(Refusal::User(UserRefusal::NoGateway))) => {
            // No gateway (US-2), in the user's language.
            let view = View::load(&state, &user).await?;
            let error = tr(lang, "calendar-unavailable", &[]);
            refuse(&state, &user, messages, view, "calendar", error).await
        }
        Err(other) => Err(other),
    }
}

/// Only the locale is read; see `CalendarForm`.
#[derive(Debug, Default, Deserialize)]
struct LocaleForm {
    #[serde(default)]
    locale: String,
}

async fn save_locale(
    State(state): State<AppState>,
    EndUser(user): EndUser,
    messages: Messages,
    Form(form): Form<LocaleForm>,
) -> AppResult<Response> {
    let view = View::load(&state, &user).await?;
    let lang = view.lang;
    let Ok(locale) = Locale::parse(&form.locale) else {
        let error = tr(lang, "locale-choose", &[]);
        return refuse(&state, &user, messages, view, "locale", error).await;
    };
    match store::user_options::set_locale(&state.pool, user.row.id, &locale, state.now()).await {
        Ok(()) => {
            // Confirmed in the language the next page is shown in.
            let mut conn = state.pool.acquire().await?;
            let new_lang = language(&state, &mut conn, locale.tag).await?;
            let label = locale.label();
            let _ = messages.success(tr(new_lang, "locale-saved", &[("locale", &label)]));
            Ok(Redirect::to(PAGE).into_response())
        }
        Err(AppError::Refused(refusal)) => {
            // The store names the nodes that lack it: that is for the log
            // and the administrator; the user is told to ask one.
            tracing::info!(locale = locale.tag, reason = %refusal, "user locale refused");
            let label = locale.label();
            let error = tr(lang, "locale-not-installed", &[("locale", &label)]);
            refuse(&state, &user, messages, view, "locale", error).await
        }
        Err(other) => Err(other),
    }
}

/// The page again with `message` beside `field`.
async fn refuse(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    view: View,
    field: &'static str,
    message: String,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    errors.set(field, message);
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    render_page(state, user, messages, status, view, errors).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_gateway_switch_and_engine() {
        assert_eq!(presence_message(true, false, None), "presence-no-gateway");
        assert_eq!(presence_message(false, true, None), "presence-off");
        assert_eq!(
            presence_message(false, true, Some("available")),
            "presence-off"
        );
        assert_eq!(presence_message(true, true, None), "presence-not-read");
        assert_eq!(
            presence_message(true, true, Some("in_a_meeting")),
            "presence-in-a-meeting"
        );
        assert_eq!(
            presence_message(true, true, Some("available")),
            "presence-available"
        );
        assert_eq!(presence_message(true, true, Some("away")), "presence-away");
        assert_eq!(
            presence_message(true, true, Some("unknown")),
            "presence-unknown"
        );
        // Every message the function can name exists in English.
        for id in [
            "presence-no-gateway",
            "presence-off",
            "presence-not-read",
            "presence-available",
            "presence-in-a-meeting",
            "presence-away",
            "presence-unknown",
        ] {
            assert_ne!(tr("en-US", id, &[]), id);
        }
    }
}
