//! Static files, embedded in the binary so a release build is one file.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::paths;
use crate::state::AppState;

const APP_CSS: &str = include_str!("../../static/app.css");
const FAVICON: &str = include_str!("../../static/favicon.svg");

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::STATIC_CSS, get(css))
        .route(paths::STATIC_FAVICON, get(favicon))
}

const CACHE: &str = "public, max-age=3600";

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        APP_CSS,
    )
}

async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, CACHE),
        ],
        FAVICON,
    )
}
