//! Bulk seeding for tests and benchmarks: many users at once, in one
//! transaction, straight into the database. Kept out of the product's store
//! (nothing in the service creates users this way); the benchmarks include
//! this file by path.

#![allow(dead_code)]

use presence_gateway::domain::user::UserId;
use sqlx::AnyPool;

/// Creates many end users in one transaction, each with the same password
/// hash and calendar setting. Returns how many were created.
pub async fn create_many_end_users(
    pool: &AnyPool,
    user_ids: &[UserId],
    password_hash: &str,
    calendar_enabled: bool,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut created = 0;
    for user_id in user_ids {
        created += sqlx::query(
            "INSERT INTO users (user_id, role, password_hash, calendar_enabled, created_at,
                                updated_at)
             VALUES ($1, 'end_user', $2, $3, $4, $4)",
        )
        .bind(user_id.as_str())
        .bind(password_hash)
        .bind(presence_gateway::store::Flag(calendar_enabled))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(created)
}

/// An end user for `create_many_named_end_users`.
pub struct NamedEndUser {
    pub user_id: UserId,
    pub first_name: String,
    pub last_name: String,
}

/// Creates many end users with names in one transaction, each with the
/// same password hash. Returns how many were created.
pub async fn create_many_named_end_users(
    pool: &AnyPool,
    users: &[NamedEndUser],
    password_hash: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut created = 0;
    for user in users {
        created += sqlx::query(
            "INSERT INTO users (user_id, role, first_name, last_name, password_hash, created_at,
                                updated_at)
             VALUES ($1, 'end_user', $2, $3, $4, $5, $5)",
        )
        .bind(user.user_id.as_str())
        .bind(&user.first_name)
        .bind(&user.last_name)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(created)
}

/// How many users have calendar presence switched on.
pub async fn count_calendar_enabled(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE calendar_enabled = 1")
        .fetch_one(pool)
        .await
}

/// How many checked bulk imports wait to be applied.
pub async fn count_pending(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM bulk_uploads")
        .fetch_one(pool)
        .await
}
