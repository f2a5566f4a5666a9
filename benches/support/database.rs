//! The database a benchmark runs on, included by path (`#[path =
//! "support/database.rs"] mod database;`): SQLite in the run's data
//! directory, or, when `PRESENCE_GATEWAY_BENCH_POSTGRES` holds a server URL
//! (scripts/bench.sh sets it for its PostgreSQL pass), a new database on
//! that server for each run, so runs never see each other's rows.
// Each benchmark uses a subset.
#![allow(dead_code)]

use std::path::Path;

use presence_gateway::store::Location;

pub const POSTGRES_ENV: &str = "PRESENCE_GATEWAY_BENCH_POSTGRES";

fn postgres_server() -> Option<String> {
    std::env::var(POSTGRES_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// "SQLite" or "PostgreSQL", for the figures' headings.
pub fn kind() -> &'static str {
    if postgres_server().is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

/// Where a run whose data directory is `data_dir` keeps its database.
pub async fn location(data_dir: &Path) -> Result<Location, Box<dyn std::error::Error>> {
    let Some(server) = postgres_server() else {
        return Ok(Location::Sqlite(presence_gateway::config::database_path(
            data_dir,
        )));
    };
    Ok(Location::Postgres(fresh(&server).await?))
}

/// A new, empty database on `server`, as its URL.
pub async fn fresh(server: &str) -> Result<String, Box<dyn std::error::Error>> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("bench_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::AnyConnection::connect(server)
        .await
        .map_err(|e| format!("{POSTGRES_ENV}={server}: {e}"))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    let mut url = url::Url::parse(server)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// A temporary folder only this user may open: the service refuses a data
/// directory others can read, and `tempfile` makes folders with the
/// umask's mode.
pub fn private_tempdir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}
