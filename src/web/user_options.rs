//! User Options: the signed-in end user's own settings (US-2). Only the
//! shell exists so far; calendar settings and locale come with the users issue.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum_messages::Messages;

use crate::error::AppResult;
use crate::state::AppState;

use super::session::EndUser;
use super::shell::{Shell, render};

pub fn router() -> Router<AppState> {
    Router::new().route("/user-options", get(index))
}

#[derive(Template)]
#[template(path = "pages/user_options/index.html")]
struct IndexPage {
    shell: Shell,
    name: String,
    user_id: String,
}

async fn index(
    State(state): State<AppState>,
    EndUser(user): EndUser,
    messages: Messages,
) -> AppResult<Response> {
    render(
        StatusCode::OK,
        &IndexPage {
            name: user.row.display_name(),
            user_id: user.row.user_id.clone(),
            shell: Shell::new(&state, &user, messages, "User Options", "/user-options").await?,
        },
    )
}
