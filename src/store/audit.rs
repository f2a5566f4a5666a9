//! The audit log: every configuration change, who, when, before and after.
//! Callers pass values with secrets already redacted.

use sqlx::{AnyConnection, AnyPool, FromRow};

use crate::error::AppResult;

pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

pub async fn record(conn: &mut AnyConnection, entry: Entry<'_>, now: i64) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, before_json, after_json)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.before.map(|v| v.to_string()))
    .bind(entry.after.map(|v| v.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
}

/// The newest entries first, `limit` per page, before the entry id `before`.
pub async fn page(pool: &AnyPool, before: Option<i64>, limit: i64) -> AppResult<Vec<AuditRow>> {
    Ok(sqlx::query_as::<_, AuditRow>(
        "SELECT id, at, actor, action, target, before_json, after_json FROM audit_log
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
