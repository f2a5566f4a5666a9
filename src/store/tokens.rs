//! API tokens (EN-5): created and revoked by administrators, each change
//! with its audit entry in one transaction; looked up by the token's hash
//! on every API call that carries one.

use serde_json::json;
use sqlx::{AnyPool, FromRow};

use crate::domain::refusal::TokenRefusal;
use crate::domain::token::TokenName;
use crate::error::{AppError, AppResult};

use super::{audit, begin_write};

/// `last_used_at` is written at most this often per token, so a busy caller
/// does not turn every read into a write.
pub const LAST_USED_EVERY_SECS: i64 = 60;

#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}

const COLUMNS: &str = "id, name, created_by, created_at, last_used_at, revoked_at, revoked_by";

/// Stores a new token's hash under `name`; refused when an unrevoked token
/// has the name already (case aside).
pub async fn create(
    pool: &AnyPool,
    name: &TokenName,
    token_hash: &str,
    actor: &str,
    now: i64,
) -> AppResult<TokenRow> {
    let mut tx = begin_write(pool).await?;
    let super::Flag(taken) = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_tokens
                        WHERE name = $1 COLLATE NOCASE AND revoked_at IS NULL)",
    )
    .bind(name.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Err(AppError::refused(TokenRefusal::NameTaken));
    }
    let sql = format!(
        "INSERT INTO api_tokens (name, token_hash, created_by, created_at)
         VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, TokenRow>(&sql)
        .bind(name.as_str())
        .bind(token_hash)
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        // The check above holds under BEGIN IMMEDIATE; the index is the
        // backstop should anyone write around it.
        .map_err(|e| AppError::from(e).on_constraint("api_tokens.name", TokenRefusal::NameTaken))?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "API token created",
            target: &row.name,
            before: None,
            // Never the token or its hash: the log is readable by every
            // administrator.
            after: Some(json!({ "id": row.id, "name": row.name })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Every token, unrevoked first, then by name.
pub async fn list(pool: &AnyPool) -> AppResult<Vec<TokenRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_tokens
         ORDER BY revoked_at IS NOT NULL, name COLLATE NOCASE, id"
    );
    Ok(sqlx::query_as::<_, TokenRow>(&sql).fetch_all(pool).await?)
}

pub async fn find(pool: &AnyPool, id: i64) -> AppResult<Option<TokenRow>> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1");
    Ok(sqlx::query_as::<_, TokenRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Revokes a token at once (the next call with it is refused, on every
/// node); refused if it was revoked already.
pub async fn revoke(pool: &AnyPool, id: i64, actor: &str, now: i64) -> AppResult<TokenRow> {
    let mut tx = begin_write(pool).await?;
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1");
    let before = sqlx::query_as::<_, TokenRow>(&sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(AppError::NotFound)?;
    if before.revoked_at.is_some() {
        return Err(AppError::refused(TokenRefusal::AlreadyRevoked {
            by: before.revoked_by.unwrap_or_default(),
        }));
    }
    let sql = format!(
        "UPDATE api_tokens SET revoked_at = $2, revoked_by = $3 WHERE id = $1
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, TokenRow>(&sql)
        .bind(id)
        .bind(now)
        .bind(actor)
        .fetch_one(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "API token revoked",
            target: &row.name,
            before: Some(json!({ "id": row.id, "name": row.name, "status": "active" })),
            after: Some(json!({ "id": row.id, "name": row.name, "status": "revoked" })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The unrevoked token with this hash, if any, its use recorded (at most
/// once a minute: the check is on the row just read, so most calls only
/// read).
pub async fn authenticate(
    pool: &AnyPool,
    token_hash: &str,
    now: i64,
) -> AppResult<Option<TokenRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL");
    let Some(mut row) = sqlx::query_as::<_, TokenRow>(&sql)
        .bind(token_hash)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    if row
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_EVERY_SECS)
    {
        // The same condition in SQL, so parallel calls (or nodes) write
        // once between them.
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2 - $3)",
        )
        .bind(row.id)
        .bind(now)
        .bind(LAST_USED_EVERY_SECS)
        .execute(pool)
        .await?;
        row.last_used_at = Some(now);
    }
    Ok(Some(row))
}

/// Whether the token is still unrevoked: an open stream asks now and then,
/// so revoking ends it.
pub async fn is_live(pool: &AnyPool, id: i64) -> AppResult<bool> {
    let super::Flag(live) = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE id = $1 AND revoked_at IS NULL)",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(live)
}
