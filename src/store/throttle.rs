//! Sign-in throttling (SY-3): failures per typed user ID; five within fifteen
//! minutes lock that ID for fifteen minutes.

use sqlx::{AnyConnection, AnyPool};

use crate::error::AppResult;

pub const MAX_FAILURES: i64 = 5;
pub const WINDOW_SECS: i64 = 15 * 60;
pub const LOCKOUT_SECS: i64 = 15 * 60;

/// Whether a sign-in attempt may verify its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Recorded as pending: finish it with [`failed`] or [`succeeded`].
    Admitted(Attempt),
    /// Refused until this Unix time.
    Locked(i64),
}

/// The end of the lockout on `key` in force at `now`, if any.
async fn lockout(conn: &mut AnyConnection, key: &str, now: i64) -> AppResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT until FROM login_lockouts WHERE user_key = $1 AND until > $2")
            .bind(key)
            .bind(now)
            .fetch_optional(conn)
            .await?,
    )
}

/// A pending attempt's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt(i64);

/// Records an attempt for `key` before its password is verified, in one
/// write transaction, so parallel guesses are counted before any is judged:
/// failures and pending attempts within the window together admit at most
/// `MAX_FAILURES` verifications.
pub async fn admit(pool: &AnyPool, key: &str, now: i64) -> AppResult<Admission> {
    let mut tx = super::begin_write(pool).await?;
    let locked = lockout(&mut tx, key, now).await?;
    if let Some(until) = locked {
        tx.commit().await?;
        return Ok(Admission::Locked(until));
    }
    // Every ID's failures older than the window, and ended lockouts, count
    // for nothing any more: purged here so that IDs tried once are not kept
    // for ever and the tables stay bounded by the recent attempts.
    sqlx::query("DELETE FROM login_failures WHERE at <= $1")
        .bind(now - WINDOW_SECS)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM login_lockouts WHERE until <= $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let (recent, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(at) FROM login_failures WHERE user_key = $1 AND at > $2",
    )
    .bind(key)
    .bind(now - WINDOW_SECS)
    .fetch_one(&mut *tx)
    .await?;
    if recent >= MAX_FAILURES {
        // Attempts still being verified fill the allowance: wait until the
        // oldest leaves the window (or a lockout replaces it).
        tx.commit().await?;
        return Ok(Admission::Locked(oldest.unwrap_or(now) + WINDOW_SECS));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO login_failures (user_key, at, pending) VALUES ($1, $2, 1) RETURNING rowid",
    )
    .bind(key)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Admission::Admitted(Attempt(id)))
}

/// The attempt's password was wrong: it counts as a failure. Returns the
/// lockout end if this failure triggered one.
pub async fn failed(
    pool: &AnyPool,
    attempt: Attempt,
    key: &str,
    now: i64,
) -> AppResult<Option<i64>> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query("UPDATE login_failures SET pending = 0 WHERE rowid = $1")
        .bind(attempt.0)
        .execute(&mut *tx)
        .await?;
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM login_failures WHERE user_key = $1 AND at > $2 AND pending = 0",
    )
    .bind(key)
    .bind(now - WINDOW_SECS)
    .fetch_one(&mut *tx)
    .await?;
    let mut locked = None;
    if recent >= MAX_FAILURES {
        let until = now + LOCKOUT_SECS;
        sqlx::query(
            "INSERT INTO login_lockouts (user_key, until) VALUES ($1, $2)
             ON CONFLICT (user_key) DO UPDATE SET until = MAX(login_lockouts.until, excluded.until)",
        )
        .bind(key)
        .bind(until)
        .execute(&mut *tx)
        .await?;
        // The lockout now carries the penalty; counting starts afresh after
        // it. Pending attempts stay: they are still being judged.
        sqlx::query("DELETE FROM login_failures WHERE user_key = $1 AND pending = 0")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        locked = Some(until);
    }
    tx.commit().await?;
    Ok(locked)
}

/// The attempt's password was right. Its failures are forgotten, unless a
/// lockout was set meanwhile by failures judged alongside it: then the
/// sign-in is refused until the lockout ends, and the lockout stays. While
/// other attempts for the ID are still being judged (guesses sent in
/// parallel with it), nothing is forgotten: this attempt and the failures
/// so far keep their places in the allowance until they leave the window,
/// so a burst never gets more than `MAX_FAILURES` verifications, however
/// its answers are ordered.
pub async fn succeeded(
    pool: &AnyPool,
    attempt: Attempt,
    key: &str,
    now: i64,
) -> AppResult<Result<(), i64>> {
    let mut tx = super::begin_write(pool).await?;
    let locked = lockout(&mut tx, key, now).await?;
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM login_failures WHERE user_key = $1 AND pending = 1 AND rowid <> $2",
    )
    .bind(key)
    .bind(attempt.0)
    .fetch_one(&mut *tx)
    .await?;
    if locked.is_none() && others > 0 {
        // Kept as 2: it fills a place like a pending attempt, but neither
        // counts as a failure nor keeps a later success from forgetting.
        sqlx::query("UPDATE login_failures SET pending = 2 WHERE rowid = $1")
            .bind(attempt.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(Ok(()));
    }
    sqlx::query("DELETE FROM login_failures WHERE rowid = $1")
        .bind(attempt.0)
        .execute(&mut *tx)
        .await?;
    if let Some(until) = locked {
        tx.commit().await?;
        return Ok(Err(until));
    }
    sqlx::query("DELETE FROM login_failures WHERE user_key = $1 AND pending <> 1")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Forgets failures and any lockout for the key (a reset from the shell).
pub async fn clear(pool: &AnyPool, key: &str) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query("DELETE FROM login_failures WHERE user_key = $1")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM login_lockouts WHERE user_key = $1")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
