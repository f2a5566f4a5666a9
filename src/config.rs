//! Settings assembled from flags and PRESENCE_GATEWAY_* environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::cli::ServeArgs;
use crate::domain::database::Location;

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub node_name: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Password for the first administrator, from PRESENCE_GATEWAY_ADMIN_PASSWORD.
    pub admin_password: Option<SecretString>,
    /// HTTPS_PROXY and NO_PROXY as the service started with them: the
    /// Outbound Proxy when none is saved (GR-3).
    pub proxy_env: crate::domain::proxy::ProxyEnv,
    /// Where the store lives: the data directory's SQLite file, or the
    /// PostgreSQL database given by `--database` (CL-1).
    pub database: Location,
}

pub const ADMIN_PASSWORD_ENV: &str = "PRESENCE_GATEWAY_ADMIN_PASSWORD";

impl Settings {
    pub fn from_args(data_dir: PathBuf, database: Location, args: &ServeArgs) -> Self {
        let admin_password = std::env::var(ADMIN_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(SecretString::from);
        Settings {
            data_dir,
            listen: args.listen,
            node_name: args.node_name.clone().unwrap_or_else(default_node_name),
            tls_cert: args.tls_cert.clone(),
            tls_key: args.tls_key.clone(),
            admin_password,
            proxy_env: crate::domain::proxy::ProxyEnv::from_env(),
            database,
        }
    }

    /// Whether the console must be served over HTTPS (SY-1): always off
    /// loopback, and on loopback when a certificate was given.
    pub fn serves_https(&self) -> bool {
        !self.listen.ip().is_loopback() || self.tls_cert.is_some()
    }

    pub fn database_path(&self) -> PathBuf {
        database_path(&self.data_dir)
    }
}

/// The store `--database` names, or the data directory's SQLite file.
pub fn database(data_dir: &Path, url: Option<&str>) -> Result<Location, String> {
    match url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => Location::parse(url),
        None => Ok(Location::Sqlite(database_path(data_dir))),
    }
}

/// The store of an installation a service has started on at least once,
/// for the shell's commands: a missing SQLite file is a usage error (a
/// PostgreSQL database is checked by connecting).
pub fn existing_store(data_dir: &Path, url: Option<&str>) -> Result<Location, String> {
    match database(data_dir, url)? {
        Location::Sqlite(_) if url.is_none_or(|u| u.trim().is_empty()) => {
            existing_database(data_dir).map(Location::Sqlite)
        }
        Location::Sqlite(path) if !path.exists() => {
            Err(format!("no database at {}", path.display()))
        }
        location => Ok(location),
    }
}

/// The database file in a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("presence-gateway.db")
}

/// The database of a data directory that a service has started on at
/// least once, for the shell's commands; a missing one is a usage error.
pub fn existing_database(data_dir: &Path) -> Result<PathBuf, String> {
    let db = database_path(data_dir);
    if db.exists() {
        Ok(db)
    } else {
        Err(format!(
            "no database at {}: start the service once, or pass --data-dir",
            db.display()
        ))
    }
}

pub fn default_node_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
