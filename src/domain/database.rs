//! Where the store lives (CL-1): the data directory's SQLite file, or a
//! PostgreSQL database named by `--database`. Parsing only; the store opens
//! it.

use std::path::PathBuf;

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The SQLite file in a data directory.
    Sqlite(PathBuf),
    /// A `postgres://` URL.
    Postgres(String),
}

impl Location {
    /// `--database`: a `postgres://` (or `postgresql://`) URL, or
    /// `sqlite:PATH`.
    pub fn parse(text: &str) -> Result<Location, String> {
        let text = text.trim();
        if let Some(path) = text
            .strip_prefix("sqlite://")
            .or(text.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err("sqlite: needs the path of the database file".to_owned());
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") => {
                if url.host_str().unwrap_or("").is_empty() {
                    return Err(format!(
                        "{}: the URL names no host (postgres://user@host/database)",
                        redact(text)
                    ));
                }
                if url.path().trim_start_matches('/').is_empty() {
                    return Err(format!(
                        "{}: the URL names no database (postgres://user@host/database)",
                        redact(text)
                    ));
                }
                Ok(Location::Postgres(text.to_owned()))
            }
            Ok(url) => Err(format!(
                "{}: unsupported database scheme {}: use postgres://user@host/database or \
                 sqlite:PATH",
                redact(text),
                url.scheme()
            )),
            Err(e) => Err(format!(
                "{}: not a database URL ({e}): use postgres://user@host/database",
                redact(text)
            )),
        }
    }

    /// The location for messages and logs, without a password.
    pub fn display(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => redact(url),
        }
    }

    /// The URL sqlx opens.
    pub fn url(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("sqlite://{}", path.display()),
            Location::Postgres(url) => url.clone(),
        }
    }
}

/// A database URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_and_sqlite_paths_parse() {
        assert_eq!(
            Location::parse("postgres://pg@db.example.com:5433/presence"),
            Ok(Location::Postgres(
                "postgres://pg@db.example.com:5433/presence".to_owned()
            ))
        );
        assert!(matches!(
            Location::parse("postgresql://db.example.com/presence"),
            Ok(Location::Postgres(_))
        ));
        assert_eq!(
            Location::parse("sqlite:/var/lib/pg/presence-gateway.db"),
            Ok(Location::Sqlite(PathBuf::from(
                "/var/lib/pg/presence-gateway.db"
            )))
        );
        for bad in [
            "mysql://db/x",
            "postgres:///x",
            "postgres://db",
            "sqlite:",
            "not a url",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_never_reach_messages() {
        let error = Location::parse("mysql://u:hunter2@db/x").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        let shown = Location::Postgres("postgres://u:hunter2@db/x".to_owned()).display();
        assert_eq!(shown, "postgres://u:***@db/x");
    }
}
