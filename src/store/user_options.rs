//! One end user's own options (US-2): their calendar switch and locale.
//! Every function takes the user's row id from the session, never from a
//! form, so a user reads and changes only their own row.

use sqlx::{AnyPool, FromRow};

use super::audit;
use crate::domain::locale::Locale;
use crate::domain::refusal::UserRefusal;
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, FromRow)]
pub struct Options {
    pub user_id: String,
    #[sqlx(try_from = "super::Flag")]
    pub calendar_enabled: bool,
    pub locale: String,
    pub mailbox: Option<String>,
}

pub async fn load(pool: &AnyPool, id: i64) -> AppResult<Option<Options>> {
    Ok(sqlx::query_as::<_, Options>(
        "SELECT user_id, calendar_enabled, locale, mailbox FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Switches the user's calendar presence on or off (US-3). Users' switches
/// apply live: no restart record. Refused while no gateway exists, checked
/// inside the transaction so a gateway deleted meanwhile (GW-6) wins.
pub async fn set_calendar(pool: &AnyPool, id: i64, on: bool, now: i64) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    let gateways: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateways")
        .fetch_one(&mut *tx)
        .await?;
    if gateways == 0 {
        return Err(AppError::refused(UserRefusal::NoGateway));
    }
    let user_id: Option<String> = sqlx::query_scalar(
        "UPDATE users SET calendar_enabled = $2, updated_at = $3 WHERE id = $1
         RETURNING user_id",
    )
    .bind(id)
    .bind(super::Flag(on))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let user_id = user_id.ok_or(AppError::NotFound)?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor: &user_id,
            action: if on {
                "calendar presence switched on"
            } else {
                "calendar presence switched off"
            },
            target: &user_id,
            before: None,
            after: Some(serde_json::json!({ "calendar_enabled": on })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets the user's locale, which must be installed on every node (LO-1):
/// checked inside the transaction, so an uninstall meanwhile wins.
pub async fn set_locale(pool: &AnyPool, id: i64, locale: &Locale, now: i64) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    if let Some(refusal) = super::locales::unusable(&mut tx, locale).await? {
        return Err(AppError::refused(refusal));
    }
    let before: Option<(String, String)> =
        sqlx::query_as("SELECT user_id, locale FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let (user_id, before) = before.ok_or(AppError::NotFound)?;
    sqlx::query("UPDATE users SET locale = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(locale.tag)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor: &user_id,
            action: "user locale changed",
            target: &user_id,
            before: Some(serde_json::json!({ "locale": before })),
            after: Some(serde_json::json!({ "locale": locale.tag })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
