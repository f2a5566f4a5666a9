//! The one error type of the application. Handlers return `Result<_, AppError>`;
//! the response logs the whole chain and shows the visitor a plain page that
//! says what happened without internals.

use axum::http::StatusCode;

use crate::domain::refusal::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// A rule the store checks refused the write; `web` words it beside
    /// its field.
    #[error("refused: {0:?}")]
    Refused(Refusal),
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
    /// The database cannot be reached or refused this service (CL-1).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn refused(refusal: impl Into<Refusal>) -> Self {
        AppError::Refused(refusal.into())
    }

    /// Turns a unique-index violation on `constraint` (as SQLite names it,
    /// `table.column`) into `refusal`; other errors pass.
    pub fn on_constraint(self, constraint: &str, refusal: impl Into<Refusal>) -> Self {
        match &self {
            AppError::Db(sqlx::Error::Database(db))
                if db.is_unique_violation() && db.message().contains(constraint) =>
            {
                AppError::refused(refusal)
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
            AppError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ if self.database_away() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The database could not be reached or is restarting (CL-5): worth
    /// trying again in a moment, not a fault of this service.
    pub fn database_away(&self) -> bool {
        match self {
            AppError::Unavailable(_) => true,
            AppError::Db(e) => database_unreachable(e),
            _ => false,
        }
    }
}

fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL's classes 08 (connection exception) and 57P (operator
        // intervention: shutting down, cannot connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}
