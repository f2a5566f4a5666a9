//! The server-side session store (tower-sessions) on the same database as
//! everything else. tower-sessions-sqlx-store needs a pool of the concrete
//! driver, so the store keeps one beside the `Any` pool: lazy, small, on
//! the same file or server.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::AnyPool;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use super::Backend;

#[derive(Debug, Clone)]
pub enum SessionStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// The session store on the database `pool` talks to.
pub fn session_store(pool: &AnyPool) -> SessionStore {
    let url = pool.connect_options().database_url.to_string();
    match Backend::of(pool) {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .unwrap_or_default()
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_lazy_with(options);
            SessionStore::Sqlite(SqliteStore::new(pool))
        }
        Backend::Postgres => {
            let options = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap_or_default();
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(options);
            // In the public schema under SQLite's table name, so both
            // databases hold it alike (and db copy's target is one schema).
            let store = PostgresStore::new(pool);
            let store = store
                .clone()
                .with_schema_name("public")
                .and_then(|s| s.with_table_name("tower_sessions"))
                .unwrap_or(store);
            SessionStore::Postgres(store)
        }
    }
}

impl SessionStore {
    /// Creates the store's table when it is missing.
    pub async fn migrate(&self) -> sqlx::Result<()> {
        match self {
            SessionStore::Sqlite(store) => store.migrate().await,
            SessionStore::Postgres(store) => store.migrate().await,
        }
    }
}

#[async_trait]
impl session_store::SessionStore for SessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            SessionStore::Sqlite(store) => store.create(record).await,
            SessionStore::Postgres(store) => store.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            SessionStore::Sqlite(store) => store.save(record).await,
            SessionStore::Postgres(store) => store.save(record).await,
        }
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            SessionStore::Sqlite(store) => store.load(session_id).await,
            SessionStore::Postgres(store) => store.load(session_id).await,
        }
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        match self {
            SessionStore::Sqlite(store) => store.delete(session_id).await,
            SessionStore::Postgres(store) => store.delete(session_id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for SessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            SessionStore::Sqlite(store) => store.delete_expired().await,
            SessionStore::Postgres(store) => store.delete_expired().await,
        }
    }
}
