//! Locales installed per node (LO-1). English (the built-in locale) counts
//! as installed everywhere and has no rows.

use sqlx::SqliteConnection;

use crate::domain::locale::{CATALOGUE, DEFAULT, Locale};
use crate::error::AppResult;

/// The tags installed on one node, the built-in locale first.
pub async fn installed_on(conn: &mut SqliteConnection, node: &str) -> AppResult<Vec<String>> {
    let mut tags: Vec<String> =
        sqlx::query_scalar("SELECT locale FROM node_locales WHERE node = ?1 ORDER BY locale")
            .bind(node)
            .fetch_all(conn)
            .await?;
    tags.retain(|t| t != DEFAULT);
    tags.insert(0, DEFAULT.to_owned());
    Ok(tags)
}

/// The catalogue locales a user may have (LO-1): installed on every
/// registered node. With no node registered yet, only the built-in one.
pub async fn usable(conn: &mut SqliteConnection) -> AppResult<Vec<Locale>> {
    let everywhere: Vec<String> = sqlx::query_scalar(
        "SELECT locale FROM node_locales GROUP BY locale
         HAVING COUNT(DISTINCT node) = (SELECT COUNT(*) FROM nodes)",
    )
    .fetch_all(conn)
    .await?;
    Ok(CATALOGUE
        .iter()
        .filter(|l| l.is_builtin() || everywhere.iter().any(|t| t == l.tag))
        .copied()
        .collect())
}

/// Why a catalogue locale cannot be chosen for a user, naming the nodes that
/// lack it; None when it can.
pub async fn unusable_reason(
    conn: &mut SqliteConnection,
    locale: &Locale,
) -> AppResult<Option<String>> {
    if locale.is_builtin() {
        return Ok(None);
    }
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM nodes
         WHERE name NOT IN (SELECT node FROM node_locales WHERE locale = ?1)
         ORDER BY name",
    )
    .bind(locale.tag)
    .fetch_all(conn)
    .await?;
    Ok((!missing.is_empty()).then(|| {
        format!(
            "{} is not installed on {}: install it on every node first (System > Locale \
             Installation).",
            locale.label(),
            missing.join(", ")
        )
    }))
}
