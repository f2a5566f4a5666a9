//! All SQL lives here, one file per aggregate. The database is SQLite in WAL
//! mode so several node processes on one host can share the file.

pub mod audit;
pub mod bulk;
pub mod changes;
pub mod engine;
pub mod gateways;
pub mod health;
pub mod locales;
pub mod nodes;
pub mod params;
pub mod presence;
pub mod proxy;
pub mod secrets;
pub mod sign_ins;
pub mod throttle;
pub mod tokens;
pub mod trust;
pub mod user_options;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::error::AppResult;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn options(path: &Path) -> AppResult<SqliteConnectOptions> {
    let url = format!("sqlite://{}", path.display());
    Ok(SqliteConnectOptions::from_str(&url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
        // 32 MiB of page cache per connection (SQLite's default is 2 MiB):
        // GW-6's bulk switch rewrites every user row in one transaction.
        .pragma("cache_size", "-32768"))
}

/// Opens (creating if needed) the database and applies the migrations.
pub async fn open(path: &Path) -> AppResult<SqlitePool> {
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .connect_with(options(path)?.create_if_missing(true))
        .await?;
    // Password hashes and encrypted secrets: the service account alone reads
    // the file (SQLite gives its -wal and -shm files the same mode).
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Starts a write transaction that takes the write lock at once, so two
/// writers never deadlock upgrading read locks (SQLite's BEGIN DEFERRED trap).
pub async fn begin_write(pool: &SqlitePool) -> AppResult<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Answers whether the database responds (for /healthz).
pub async fn ping(pool: &SqlitePool) -> AppResult<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// The server-side session store (tower-sessions) on the same database.
pub fn session_store(pool: &SqlitePool) -> tower_sessions_sqlx_store::SqliteStore {
    tower_sessions_sqlx_store::SqliteStore::new(pool.clone())
}
