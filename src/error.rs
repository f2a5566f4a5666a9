//! The one error type of the application. Handlers return `Result<_, AppError>`;
//! the response logs the whole chain and shows the visitor a plain page that
//! says what happened without internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("database migration error")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("template error")]
    Template(#[from] askama::Error),
    #[error("session error")]
    Session(#[from] tower_sessions::session::Error),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Renders the error with the plain error page; the chain goes to the log.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            let mut chain = format!("{self}");
            let mut source = std::error::Error::source(&self);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %chain, "request failed");
        }
        crate::web::errors::error_page(status, None)
    }
}
