//! All SQL lives here, one file per aggregate. One store, two databases
//! (CL-1): SQLite in the data directory (WAL, so several node processes on
//! one host share the file) or PostgreSQL, which nodes on several hosts
//! share.
//!
//! Both go through sqlx's `Any` driver with one SQL text per query: the
//! schema holds only integers (times are Unix seconds, flags 0 or 1), text
//! and blobs, which `Any` carries on both, and `$N` placeholders mean the
//! same to both. Where the two dialects differ (search, JSON arrays,
//! string aggregation) a query asks `backend()` and says both; nothing
//! above this module knows which database it is.

pub mod audit;
pub mod bulk;
pub mod changes;
pub mod copy;
pub mod engine;
pub mod feed;
pub mod gateways;
pub mod health;
pub mod locales;
pub mod nodes;
pub mod notify;
pub mod params;
pub mod presence;
pub mod proxy;
pub mod redundancy;
pub mod secrets;
pub mod sessions;
pub mod sign_ins;
pub mod throttle;
pub mod tokens;
pub mod trust;
pub mod user_options;
pub mod users;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Transaction};

use crate::error::{AppError, AppResult};

pub use flag::Flag;

mod flag;

/// The SQLite schema, one file per change.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
/// The same schema for PostgreSQL. Its first file is SQLite's schema as of
/// that file's version; every later change is one file in each folder under
/// the same version (tests/it/schema.rs compares the two schemas).
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

pub use crate::domain::database::{Location, redact};

/// Which database a pool or connection talks to, for the few queries that
/// differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(pool: &AnyPool) -> Backend {
        match pool.connect_options().database_url.scheme() {
            "postgres" | "postgresql" => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    pub fn of_conn(conn: &AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

// Per-connection settings for SQLite (the `Any` driver takes only a URL).
// 32 MiB of page cache per connection (SQLite's default is 2 MiB): GW-6's
// bulk switch rewrites every user row in one transaction.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -32768;";

/// Opens (creating a SQLite file if needed) the database and applies the
/// migrations. Two nodes migrating one PostgreSQL database at once apply
/// each migration once: sqlx takes an advisory lock around the run.
pub async fn open_at(location: &Location) -> AppResult<AnyPool> {
    sqlx::any::install_default_drivers();
    let pool = match location {
        Location::Sqlite(path) => {
            let options = AnyConnectOptions::from_url(
                &url::Url::parse(&format!("{}?mode=rwc", location.url()))
                    .map_err(|e| AppError::Config(format!("{}: {e}", path.display())))?,
            )?;
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .min_connections(1)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?;
            // Password hashes and encrypted secrets: the service account
            // alone reads the file (SQLite gives its -wal and -shm files the
            // same mode).
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            SQLITE_MIGRATOR.run(&pool).await?;
            pool
        }
        Location::Postgres(url) => {
            // One connection first, for the server's own answer: the pool
            // would retry a refused connection until its timeout and say
            // only that it timed out.
            let first = tokio::time::timeout(Duration::from_secs(10), AnyConnection::connect(url));
            match first.await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                }
                Ok(Err(e)) => return Err(AppError::Unavailable(describe_connect_error(url, &e))),
                Err(_) => {
                    return Err(AppError::Unavailable(describe_connect_error(
                        url,
                        &sqlx::Error::PoolTimedOut,
                    )));
                }
            }
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .min_connections(1)
                // While the server restarts, a page waits this long for a
                // connection before it says the database is unavailable.
                .acquire_timeout(Duration::from_secs(5))
                // Every write holds the cluster's write lock until it
                // commits: a node frozen inside one (SIGSTOP, a stalled VM)
                // must not hold it, and so stop every other node, for
                // longer than this. The server ends such a session and its
                // transaction, and the frozen node's write fails when it
                // wakes (CL-4's failover goes on meanwhile).
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET idle_in_transaction_session_timeout = '5s'")
                            .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
                .map_err(|e| AppError::Unavailable(describe_connect_error(url, &e)))?;
            POSTGRES_MIGRATOR.run(&pool).await?;
            pool
        }
    };
    Ok(pool)
}

/// Opens the SQLite database file of a data directory (as before CL-1).
pub async fn open(path: &Path) -> AppResult<AnyPool> {
    open_at(&Location::Sqlite(path.to_owned())).await
}

/// What failed when a PostgreSQL server could not be used, in plain words:
/// the host, the authentication or the database.
pub fn describe_connect_error(url: &str, error: &sqlx::Error) -> String {
    let shown = redact(url);
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") | Some("28000") => format!(
                "{shown}: PostgreSQL refused the user name or password ({})",
                db.message()
            ),
            Some("3D000") => format!(
                "{shown}: the database does not exist on that server ({}): create it with \
                 createdb, or correct the URL",
                db.message()
            ),
            _ => format!(
                "{shown}: PostgreSQL refused the connection: {}",
                db.message()
            ),
        },
        sqlx::Error::Io(io) => format!(
            "{shown}: cannot reach the PostgreSQL server ({io}): check the host and port, and \
             that the server is running"
        ),
        sqlx::Error::Tls(tls) => format!("{shown}: the TLS connection failed: {tls}"),
        sqlx::Error::PoolTimedOut => format!(
            "{shown}: no answer from the PostgreSQL server within 10 seconds: check the host \
             and port"
        ),
        sqlx::Error::Configuration(e) => format!("{shown}: the URL is not usable: {e}"),
        other => format!("{shown}: {other}"),
    }
}

/// Starts a write transaction that takes the write lock at once. On SQLite,
/// `BEGIN IMMEDIATE`, so two writers never deadlock upgrading read locks
/// (SQLite's BEGIN DEFERRED trap). On PostgreSQL, the same one-writer rule
/// across the cluster by a transaction-scoped advisory lock: the store's
/// read-then-write checks (a name still free, the last gateway of a kind)
/// were written for one writer at a time, and stay correct that way.
pub async fn begin_write(pool: &AnyPool) -> AppResult<Transaction<'static, Any>> {
    match Backend::of(pool) {
        Backend::Sqlite => Ok(pool.begin_with("BEGIN IMMEDIATE").await?),
        Backend::Postgres => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(7262017)")
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        }
    }
}

/// Answers whether the database responds (for /healthz).
pub async fn ping(pool: &AnyPool) -> AppResult<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

pub use sessions::{SessionStore, session_store};
