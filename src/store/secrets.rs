//! What the database knows about the secrets key (SY-4).

use sqlx::AnyPool;

use crate::error::AppResult;

pub async fn key_check(pool: &AnyPool) -> AppResult<Option<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT key_check FROM secrets_meta WHERE id = 1")
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn set_key_check(pool: &AnyPool, check: &[u8]) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO secrets_meta (id, key_check) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET key_check = excluded.key_check",
    )
    .bind(check)
    .execute(pool)
    .await?;
    Ok(())
}

/// How many encrypted secrets the database holds.
pub async fn count_encrypted(pool: &AnyPool) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM exchange_credentials")
            .fetch_one(pool)
            .await?,
    )
}
