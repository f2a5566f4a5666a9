//! The JSON API under /api/. Anonymous callers get 401 JSON, never a redirect
//! to the sign-in page (EN-5).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::domain::user::Role;
use crate::error::AppResult;
use crate::state::AppState;
use crate::store;

use super::errors::json_error;
use super::paths;
use super::session::SignedIn;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::API_SESSION, get(whoami))
        .route(paths::API_PRESENCE, get(presence))
        .route("/api/{*rest}", axum::routing::any(unknown))
        .route("/api", axum::routing::any(unknown))
        .route(paths::API_PREFIX, axum::routing::any(unknown))
}

fn unauthorized() -> Response {
    json_error(
        StatusCode::UNAUTHORIZED,
        "Sign in, or send Authorization: Bearer <token>.",
    )
}

/// Who the caller is: `{"user_id", "role"}`.
async fn whoami(user: Option<SignedIn>) -> Response {
    match user {
        Some(SignedIn(user)) => axum::Json(serde_json::json!({
            "user_id": user.row.user_id,
            "role": user.role.as_str(),
        }))
        .into_response(),
        None => unauthorized(),
    }
}

/// Unknown API paths: 401 to anonymous callers (so nothing about the API is
/// revealed before authentication), 404 JSON otherwise.
async fn unknown(user: Option<SignedIn>) -> Response {
    match user {
        Some(_) => json_error(StatusCode::NOT_FOUND, "No such API endpoint."),
        None => unauthorized(),
    }
}

/// A published presence as EN-5's JSON object.
pub fn presence_json(p: &store::presence::Published) -> serde_json::Value {
    serde_json::json!({
        "userid": p.user_id,
        "calendar_presence": p.presence.as_str(),
        "since": crate::clock::rfc3339(p.since),
        "until": p.until.and_then(crate::clock::rfc3339),
        "gateway": p.gateway,
    })
}

/// `GET /api/v1/presence/{userid}` (EN-5): an administrator reads anyone's;
/// an end user reads only their own (anyone else's is 404, as if it did not
/// exist); anonymous callers get 401.
async fn presence(
    State(state): State<AppState>,
    user: Option<SignedIn>,
    Path(userid): Path<String>,
) -> AppResult<Response> {
    let Some(SignedIn(caller)) = user else {
        return Ok(unauthorized());
    };
    let not_found = || json_error(StatusCode::NOT_FOUND, "No such user.");
    if caller.role == Role::EndUser && !caller.row.user_id.eq_ignore_ascii_case(userid.trim()) {
        return Ok(not_found());
    }
    Ok(
        match store::presence::of_end_user(&state.pool, &userid).await? {
            Some(published) => axum::Json(presence_json(&published)).into_response(),
            None => not_found(),
        },
    )
}
