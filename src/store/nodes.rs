//! Cluster nodes (SY-2): every `serve` process registers itself.

use sqlx::{AnyPool, FromRow};

use crate::error::AppResult;

#[derive(Debug, Clone, FromRow)]
pub struct NodeRow {
    pub name: String,
    pub address: String,
    #[sqlx(try_from = "super::Flag")]
    pub activated: bool,
    pub engine_generation: i64,
    pub started_at: i64,
    pub last_heartbeat: i64,
}

/// Registers this process as a node, or refreshes the node of the same name
/// after a restart. Activation and the engine's generation are kept.
pub async fn register(pool: &AnyPool, name: &str, address: &str, now: i64) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query(
        "INSERT INTO nodes (name, address, started_at, last_heartbeat) VALUES ($1, $2, $3, $3)
         ON CONFLICT (name) DO UPDATE SET address = excluded.address,
             started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat",
    )
    .bind(name)
    .bind(address)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn heartbeat(pool: &AnyPool, name: &str, now: i64) -> AppResult<()> {
    sqlx::query("UPDATE nodes SET last_heartbeat = $2 WHERE name = $1")
        .bind(name)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn list(pool: &AnyPool) -> AppResult<Vec<NodeRow>> {
    Ok(sqlx::query_as::<_, NodeRow>(
        "SELECT name, address, activated, engine_generation, started_at, last_heartbeat
         FROM nodes ORDER BY name",
    )
    .fetch_all(pool)
    .await?)
}
