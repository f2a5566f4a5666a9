//! Sign-in throttling (SY-3): failures per typed user ID; five within fifteen
//! minutes lock that ID for fifteen minutes.

use sqlx::SqlitePool;

use crate::error::AppResult;

pub const MAX_FAILURES: i64 = 5;
pub const WINDOW_SECS: i64 = 15 * 60;
pub const LOCKOUT_SECS: i64 = 15 * 60;

/// The Unix time until which the key is locked, if it is locked now.
pub async fn locked_until(pool: &SqlitePool, key: &str, now: i64) -> AppResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT until FROM login_lockouts WHERE user_key = ?1 AND until > ?2")
            .bind(key)
            .bind(now)
            .fetch_optional(pool)
            .await?,
    )
}

/// Records a failure; returns the lockout end if this failure triggered one.
pub async fn record_failure(pool: &SqlitePool, key: &str, now: i64) -> AppResult<Option<i64>> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query("DELETE FROM login_failures WHERE user_key = ?1 AND at <= ?2")
        .bind(key)
        .bind(now - WINDOW_SECS)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO login_failures (user_key, at) VALUES (?1, ?2)")
        .bind(key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let recent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM login_failures WHERE user_key = ?1 AND at > ?2")
            .bind(key)
            .bind(now - WINDOW_SECS)
            .fetch_one(&mut *tx)
            .await?;
    let mut locked = None;
    if recent >= MAX_FAILURES {
        let until = now + LOCKOUT_SECS;
        sqlx::query(
            "INSERT INTO login_lockouts (user_key, until) VALUES (?1, ?2)
             ON CONFLICT (user_key) DO UPDATE SET until = excluded.until",
        )
        .bind(key)
        .bind(until)
        .execute(&mut *tx)
        .await?;
        // The lockout now carries the penalty; counting starts afresh after it.
        sqlx::query("DELETE FROM login_failures WHERE user_key = ?1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        locked = Some(until);
    }
    tx.commit().await?;
    Ok(locked)
}

/// Forgets failures and any lockout for the key (after a successful sign-in,
/// or a reset from the shell).
pub async fn clear(pool: &SqlitePool, key: &str) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query("DELETE FROM login_failures WHERE user_key = ?1")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM login_lockouts WHERE user_key = ?1")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
