//! Users: administrators and end users share one table, told apart by role.

use sqlx::{FromRow, SqlitePool};

use crate::domain::user::{Role, UserId};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub user_id: String,
    pub role: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: String,
    pub must_change_password: bool,
    pub session_epoch: i64,
}

impl UserRow {
    pub fn role(&self) -> AppResult<Role> {
        Role::parse(&self.role)
            .ok_or_else(|| AppError::Config(format!("unknown role {:?}", self.role)))
    }

    pub fn display_name(&self) -> String {
        let full = format!("{} {}", self.first_name, self.last_name);
        let full = full.trim();
        if full.is_empty() {
            self.user_id.clone()
        } else {
            full.to_owned()
        }
    }
}

const COLUMNS: &str = "id, user_id, role, first_name, last_name, password_hash, \
                       must_change_password, session_epoch";

pub async fn find_by_user_id(pool: &SqlitePool, user_id: &str) -> AppResult<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE user_id = ?1");
    Ok(sqlx::query_as::<_, UserRow>(&sql)
        .bind(user_id.trim())
        .fetch_optional(pool)
        .await?)
}

pub async fn find(pool: &SqlitePool, id: i64) -> AppResult<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(sqlx::query_as::<_, UserRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The configuration state every console page shows: the current generation
/// and how many changes some activated node's engine has yet to pick up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigState {
    pub generation: i64,
    pub pending: i64,
    /// The activated nodes and the generations their engines run: with the
    /// two counts above, it decides whether the restart banner changed.
    pub nodes: String,
    /// Moves whenever a troubleshooter verdict is stored (see gateways).
    pub verdicts: i64,
}

/// The signed-in user with the configuration state, in one round trip: this
/// runs on every page view.
pub async fn find_signed_in(
    pool: &SqlitePool,
    id: i64,
) -> AppResult<Option<(UserRow, ConfigState)>> {
    let sql = format!(
        "SELECT {COLUMNS},
            (SELECT COALESCE(MAX(generation), 0) FROM config_changes) AS generation,
            (SELECT COUNT(*) FROM config_changes
              WHERE generation > (SELECT COALESCE(MIN(engine_generation), 0)
                                  FROM nodes WHERE activated = 1)
                AND EXISTS (SELECT 1 FROM nodes WHERE activated = 1)) AS pending,
            (SELECT COALESCE(group_concat(name || ':' || engine_generation, ','), '')
               FROM nodes WHERE activated = 1) AS nodes,
            (SELECT COALESCE(MAX(verdict_seq), 0) FROM gateways) AS verdicts
         FROM users WHERE id = ?1"
    );
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
    let Some(row) = row else { return Ok(None) };
    use sqlx::Row;
    let user = UserRow::from_row(&row)?;
    let state = ConfigState {
        generation: row.try_get("generation")?,
        pending: row.try_get("pending")?,
        nodes: row.try_get("nodes")?,
        verdicts: row.try_get("verdicts")?,
    };
    Ok(Some((user, state)))
}

pub async fn count_admins(pool: &SqlitePool) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .fetch_one(pool)
            .await?,
    )
}

pub struct NewUser<'a> {
    pub user_id: &'a UserId,
    pub role: Role,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub password_hash: &'a str,
    pub must_change_password: bool,
}

pub async fn create(pool: &SqlitePool, user: NewUser<'_>, now: i64) -> AppResult<i64> {
    let mut tx = super::begin_write(pool).await?;
    let id = sqlx::query_scalar(
        "INSERT INTO users (user_id, role, first_name, last_name, password_hash,
                            must_change_password, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id",
    )
    .bind(user.user_id.as_str())
    .bind(user.role.as_str())
    .bind(user.first_name)
    .bind(user.last_name)
    .bind(user.password_hash)
    .bind(user.must_change_password)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Sets a new password hash and bumps the session epoch, which ends every
/// session the user has. Returns the new epoch.
pub async fn set_password(
    pool: &SqlitePool,
    id: i64,
    password_hash: &str,
    must_change_password: bool,
    now: i64,
) -> AppResult<i64> {
    let mut tx = super::begin_write(pool).await?;
    let epoch: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET password_hash = ?2, must_change_password = ?3,
                          session_epoch = session_epoch + 1, updated_at = ?4
         WHERE id = ?1 RETURNING session_epoch",
    )
    .bind(id)
    .bind(password_hash)
    .bind(must_change_password)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    epoch.ok_or(AppError::NotFound)
}

/// Creates many end users in one transaction (bulk loads, tests and the
/// benchmark), each with the same password hash and calendar setting.
/// Returns how many were created.
pub async fn create_many_end_users(
    pool: &SqlitePool,
    user_ids: &[UserId],
    password_hash: &str,
    calendar_enabled: bool,
    now: i64,
) -> AppResult<u64> {
    let mut tx = super::begin_write(pool).await?;
    let mut created = 0;
    for user_id in user_ids {
        created += sqlx::query(
            "INSERT INTO users (user_id, role, password_hash, calendar_enabled, created_at,
                                updated_at)
             VALUES (?1, 'end_user', ?2, ?3, ?4, ?4)",
        )
        .bind(user_id.as_str())
        .bind(password_hash)
        .bind(calendar_enabled)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(created)
}

/// How many users have calendar presence switched on.
pub async fn count_calendar_enabled(pool: &SqlitePool) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE calendar_enabled = 1")
            .fetch_one(pool)
            .await?,
    )
}
