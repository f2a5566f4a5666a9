//! What the running engine reports about its work (EN-4, EN-7): each
//! gateway's health and the per-minute counts behind Control Center's
//! chart. Written by the engine every few seconds, read by any node.

use sqlx::AnyPool;

use crate::error::AppResult;

/// One gateway's health as the engine on `node` sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayHealth {
    pub node: String,
    pub gateway_id: i64,
    pub description: String,
    pub users: i64,
    /// Push subscriptions held through this gateway.
    pub subscriptions: i64,
    #[sqlx(try_from = "super::Flag")]
    pub healthy: bool,
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    pub throttled_until: Option<i64>,
    pub requests_per_minute: i64,
    pub updated_at: i64,
}

/// One minute's counts on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct Minute {
    /// Unix seconds at the minute's start.
    pub minute: i64,
    pub transitions: i64,
    pub requests: i64,
    pub errors: i64,
}

/// How long per-minute counts are kept: the chart shows the last hour.
pub const KEEP_MINUTES_SECONDS: i64 = 2 * 3600;

/// Replaces `node`'s gateway rows with `gateways` and adds `minutes`' counts
/// (a minute written twice accumulates), in one transaction; prunes counts
/// older than [`KEEP_MINUTES_SECONDS`] before `now`.
pub async fn write(
    pool: &AnyPool,
    node: &str,
    gateways: &[GatewayHealth],
    minutes: &[Minute],
    now: i64,
) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query("DELETE FROM gateway_health WHERE node = $1")
        .bind(node)
        .execute(&mut *tx)
        .await?;
    for g in gateways {
        sqlx::query(
            "INSERT INTO gateway_health (node, gateway_id, description, users, healthy,
                 last_success, last_error_at, last_error, throttled_until,
                 requests_per_minute, updated_at, subscriptions)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(node)
        .bind(g.gateway_id)
        .bind(&g.description)
        .bind(g.users)
        .bind(super::Flag(g.healthy))
        .bind(g.last_success)
        .bind(g.last_error_at)
        .bind(&g.last_error)
        .bind(g.throttled_until)
        .bind(g.requests_per_minute)
        .bind(g.updated_at)
        .bind(g.subscriptions)
        .execute(&mut *tx)
        .await?;
    }
    for m in minutes {
        sqlx::query(
            "INSERT INTO engine_minutes (node, minute, transitions, requests, errors)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (node, minute) DO UPDATE SET
                 transitions = engine_minutes.transitions + excluded.transitions,
                 requests = engine_minutes.requests + excluded.requests,
                 errors = engine_minutes.errors + excluded.errors",
        )
        .bind(node)
        .bind(m.minute)
        .bind(m.transitions)
        .bind(m.requests)
        .bind(m.errors)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM engine_minutes WHERE node = $1 AND minute < $2")
        .bind(node)
        .bind(now - KEEP_MINUTES_SECONDS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Forgets `node`'s gateway health (its engine stopped: nothing is read).
pub async fn clear(pool: &AnyPool, node: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM gateway_health WHERE node = $1")
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

/// Every node's gateway health, by node then gateway description.
pub async fn gateways(pool: &AnyPool) -> AppResult<Vec<GatewayHealth>> {
    Ok(sqlx::query_as(
        "SELECT node, gateway_id, description, users, subscriptions, healthy, last_success,
                last_error_at,
                last_error, throttled_until, requests_per_minute, updated_at
         FROM gateway_health ORDER BY node, description COLLATE NOCASE",
    )
    .fetch_all(pool)
    .await?)
}

/// `node`'s counts for the minutes from `since` (inclusive), oldest first;
/// minutes without a row had nothing to count.
pub async fn minutes(pool: &AnyPool, node: &str, since: i64) -> AppResult<Vec<Minute>> {
    Ok(sqlx::query_as(
        "SELECT minute, transitions, requests, errors FROM engine_minutes
         WHERE node = $1 AND minute >= $2 ORDER BY minute",
    )
    .bind(node)
    .bind(since)
    .fetch_all(pool)
    .await?)
}

/// How many of `node`'s calendar users are in each state, as published:
/// (in a meeting, away, available, unknown). A calendar user with nothing
/// published yet counts as unknown.
pub async fn presence_counts(pool: &AnyPool, node: &str) -> AppResult<[i64; 4]> {
    let row: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(CASE WHEN p.presence = 'in_a_meeting' THEN 1 END),
                COUNT(CASE WHEN p.presence = 'away' THEN 1 END),
                COUNT(CASE WHEN p.presence = 'available' THEN 1 END),
                COUNT(CASE WHEN p.presence IS NULL OR p.presence = 'unknown' THEN 1 END)
         FROM users u LEFT JOIN calendar_presence p ON p.user_id = u.id
         WHERE u.node = $1 AND u.calendar_enabled = 1 AND u.role = 'end_user'",
    )
    .bind(node)
    .fetch_one(pool)
    .await?;
    Ok([row.0, row.1, row.2, row.3])
}
