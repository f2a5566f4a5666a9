//! The configuration generation and its change log (SV-3). A change that the
//! engine only picks up on restart is recorded by `record` inside the same
//! transaction as the change itself; the banner reads `pending`.

use sqlx::{AnyConnection, AnyPool, FromRow};

use crate::error::AppResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Required,
    Recommended,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Required => "required",
            Restart::Recommended => "recommended",
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct ChangeRow {
    pub generation: i64,
    pub summary: String,
    pub actor: String,
    pub at: i64,
    pub restart: String,
}

/// Records a change and returns the new configuration generation. Takes the
/// caller's transaction so the change and its record commit together.
pub async fn record(
    conn: &mut AnyConnection,
    summary: &str,
    actor: &str,
    restart: Restart,
    now: i64,
) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO config_changes (summary, actor, at, restart) VALUES ($1, $2, $3, $4)
         RETURNING generation",
    )
    .bind(summary)
    .bind(actor)
    .bind(now)
    .bind(restart.as_str())
    .fetch_one(conn)
    .await?)
}

pub async fn current_generation(pool: &AnyPool) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(generation), 0) FROM config_changes")
            .fetch_one(pool)
            .await?,
    )
}

#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// Changes newer than what some activated node's engine runs, oldest first.
    pub changes: Vec<ChangeRow>,
    /// The activated nodes that run an older generation.
    pub nodes: Vec<String>,
    /// Whether any pending change requires a restart (else all recommend one).
    pub required: bool,
}

/// What the restart banner shows: the newest `limit` changes newer than the
/// generation the most out-of-date activated node runs (oldest first), and
/// which nodes lag. The banner gives the total from the session's query, so
/// a long run of changes costs no more than a short one.
pub async fn pending(pool: &AnyPool, limit: i64) -> AppResult<Pending> {
    let mut changes = sqlx::query_as::<_, ChangeRow>(
        "SELECT generation, summary, actor, at, restart FROM config_changes
         WHERE generation > (SELECT COALESCE(MIN(engine_generation), 0)
                             FROM nodes WHERE activated = 1)
           AND EXISTS (SELECT 1 FROM nodes WHERE activated = 1)
         ORDER BY generation DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    changes.reverse();
    if changes.is_empty() {
        return Ok(Pending::default());
    }
    let nodes = sqlx::query_scalar(
        "SELECT name FROM nodes
         WHERE activated = 1
           AND engine_generation < (SELECT COALESCE(MAX(generation), 0) FROM config_changes)
         ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let super::Flag(required) = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM config_changes
         WHERE restart = 'required'
           AND generation > (SELECT COALESCE(MIN(engine_generation), 0)
                             FROM nodes WHERE activated = 1))",
    )
    .fetch_one(pool)
    .await?;
    Ok(Pending {
        changes,
        nodes,
        required,
    })
}
