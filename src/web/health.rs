//! `GET /healthz`: 200 when the database answers, 503 otherwise; no sign-in.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use super::paths;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route(paths::HEALTHZ, get(healthz))
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match crate::store::ping(&state.pool).await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(e) => {
            tracing::error!(error = %e, "health check: database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}
