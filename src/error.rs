//! The one error type of the application. Handlers return `Result<_, AppError>`;
//! the response logs the whole chain and shows the visitor a plain page that
//! says what happened without internals.

use axum::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// A rule refused the input; the page shows `message` beside `field`.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
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
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field,
            message: message.into(),
        }
    }

    /// Turns a unique-index violation on `constraint` (as SQLite names it,
    /// `table.column`) into a message beside `field`; other errors pass.
    pub fn on_constraint(self, constraint: &str, field: &'static str, message: &str) -> Self {
        match &self {
            AppError::Db(sqlx::Error::Database(db))
                if db.is_unique_violation() && db.message().contains(constraint) =>
            {
                AppError::invalid(field, message)
            }
            _ => self,
        }
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
