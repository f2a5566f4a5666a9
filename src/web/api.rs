//! The JSON API under /api/. Anonymous callers get 401 JSON, never a redirect
//! to the sign-in page (EN-5).

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

use super::errors::json_error;
use super::paths;
use super::session::SignedIn;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::API_SESSION, get(whoami))
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
