//! Signed-in console sessions as the database knows them: the authority on
//! whether a session lives, shared by every node (the session records
//! themselves may sit in a node's memory cache, stale).

use sqlx::AnyPool;

use crate::error::AppResult;

/// When a signed-in session started and when it was last used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignIn {
    pub created_at: i64,
    pub seen_at: i64,
}

/// Records a new sign-in under `key`, and drops the rows of sessions that
/// can no longer be used (started before `started_after`, or last seen
/// before `seen_after`), so abandoned sessions do not pile up.
pub async fn start(
    pool: &AnyPool,
    key: &str,
    user: i64,
    now: i64,
    started_after: i64,
    seen_after: i64,
) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query("DELETE FROM sign_ins WHERE created_at <= $1 OR seen_at < $2")
        .bind(started_after)
        .bind(seen_after)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO sign_ins (key, user_id, created_at, seen_at) VALUES ($1, $2, $3, $3)")
        .bind(key)
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Notes a request. An update only: a row that was deleted stays deleted.
pub async fn touch(pool: &AnyPool, key: &str, now: i64) -> AppResult<()> {
    sqlx::query("UPDATE sign_ins SET seen_at = MAX(seen_at, $2) WHERE key = $1")
        .bind(key)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

/// Moves a sign-in to a new key, keeping its start time (a password change
/// renews the session id, not its lifetime). False if it had already ended.
pub async fn rekey(pool: &AnyPool, old: &str, new: &str) -> AppResult<bool> {
    let done = sqlx::query("UPDATE sign_ins SET key = $2 WHERE key = $1")
        .bind(old)
        .bind(new)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a sign-in on every node.
pub async fn end(pool: &AnyPool, key: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM sign_ins WHERE key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
