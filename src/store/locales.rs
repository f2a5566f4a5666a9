//! Locales installed per node (LO-1). English (the built-in locale) counts
//! as installed everywhere and has no rows.

use sqlx::{AnyConnection, AnyPool};

use crate::domain::locale::{CATALOGUE, DEFAULT, Locale};
use crate::domain::refusal::LocaleRefusal;
use crate::error::{AppError, AppResult};

/// The tags installed on one node, the built-in locale first.
pub async fn installed_on(conn: &mut AnyConnection, node: &str) -> AppResult<Vec<String>> {
    let mut tags: Vec<String> =
        sqlx::query_scalar("SELECT locale FROM node_locales WHERE node = $1 ORDER BY locale")
            .bind(node)
            .fetch_all(conn)
            .await?;
    tags.retain(|t| t != DEFAULT);
    tags.insert(0, DEFAULT.to_owned());
    Ok(tags)
}

/// The catalogue locales a user may have (LO-1): installed on every
/// registered node. With no node registered yet, only the built-in one.
pub async fn usable(conn: &mut AnyConnection) -> AppResult<Vec<Locale>> {
    let everywhere: Vec<String> = sqlx::query_scalar(
        "SELECT locale FROM node_locales GROUP BY locale
         HAVING COUNT(DISTINCT node) = (SELECT COUNT(*) FROM nodes)",
    )
    .fetch_all(conn)
    .await?;
    Ok(CATALOGUE
        .iter()
        .filter(|l| l.is_builtin() || everywhere.iter().any(|t| t == l.tag))
        .copied()
        .collect())
}

/// Why a catalogue locale cannot be chosen for a user, naming the nodes that
/// lack it; None when it can.
pub async fn unusable(
    conn: &mut AnyConnection,
    locale: &Locale,
) -> AppResult<Option<LocaleRefusal>> {
    if locale.is_builtin() {
        return Ok(None);
    }
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM nodes
         WHERE name NOT IN (SELECT node FROM node_locales WHERE locale = $1)
         ORDER BY name",
    )
    .bind(locale.tag)
    .fetch_all(conn)
    .await?;
    Ok(
        (!missing.is_empty()).then_some(LocaleRefusal::NotOnEveryNode {
            locale: *locale,
            missing,
        }),
    )
}

/// Every (node, locale) installation, for the cluster view.
pub async fn installations(pool: &AnyPool) -> AppResult<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT node, locale FROM node_locales ORDER BY node, locale")
            .fetch_all(pool)
            .await?,
    )
}

/// How many users have each locale, for the cluster view and the uninstall
/// refusal.
pub async fn users_per_locale(pool: &AnyPool) -> AppResult<Vec<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT locale, COUNT(*) FROM users GROUP BY locale ORDER BY locale")
            .fetch_all(pool)
            .await?,
    )
}

/// The node must be registered; English is built in and never has rows.
async fn check_target(conn: &mut AnyConnection, node: &str, locale: &Locale) -> AppResult<()> {
    if locale.is_builtin() {
        return Err(AppError::refused(LocaleRefusal::BuiltIn {
            locale: *locale,
        }));
    }
    let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE name = $1")
        .bind(node)
        .fetch_optional(&mut *conn)
        .await?;
    if known.is_none() {
        return Err(AppError::refused(LocaleRefusal::UnknownNode {
            node: node.to_owned(),
        }));
    }
    Ok(())
}

async fn is_installed(conn: &mut AnyConnection, node: &str, locale: &Locale) -> AppResult<bool> {
    let row: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM node_locales WHERE node = $1 AND locale = $2")
            .bind(node)
            .bind(locale.tag)
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some())
}

/// Installs a locale on one node (LO-1). The engine loads locales at start,
/// so the change is recorded as needing a restart, with its audit entry, in
/// the same transaction.
pub async fn install(
    pool: &AnyPool,
    node: &str,
    locale: &Locale,
    actor: &str,
    now: i64,
) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    check_target(&mut tx, node, locale).await?;
    if is_installed(&mut tx, node, locale).await? {
        return Err(AppError::refused(LocaleRefusal::AlreadyInstalled {
            locale: *locale,
            node: node.to_owned(),
        }));
    }
    sqlx::query(
        "INSERT INTO node_locales (node, locale, installed_at, installed_by)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(node)
    .bind(locale.tag)
    .bind(now)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    let summary = format!("Locale {} installed on {node}", locale.label());
    record_change(
        &mut tx,
        &summary,
        "locale installed",
        node,
        locale,
        actor,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Uninstalls a locale from one node. Refused while any user has it: a user
/// locale must stay installed on every node (LO-1).
pub async fn uninstall(
    pool: &AnyPool,
    node: &str,
    locale: &Locale,
    actor: &str,
    now: i64,
) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    check_target(&mut tx, node, locale).await?;
    if !is_installed(&mut tx, node, locale).await? {
        return Err(AppError::refused(LocaleRefusal::NotInstalled {
            locale: *locale,
            node: node.to_owned(),
        }));
    }
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE locale = $1")
        .bind(locale.tag)
        .fetch_one(&mut *tx)
        .await?;
    if users > 0 {
        return Err(AppError::refused(LocaleRefusal::InUse {
            locale: *locale,
            users,
        }));
    }
    sqlx::query("DELETE FROM node_locales WHERE node = $1 AND locale = $2")
        .bind(node)
        .bind(locale.tag)
        .execute(&mut *tx)
        .await?;
    let summary = format!("Locale {} uninstalled from {node}", locale.label());
    record_change(
        &mut tx,
        &summary,
        "locale uninstalled",
        node,
        locale,
        actor,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn record_change(
    conn: &mut AnyConnection,
    summary: &str,
    action: &str,
    node: &str,
    locale: &Locale,
    actor: &str,
    now: i64,
) -> AppResult<()> {
    super::changes::record(conn, summary, actor, super::changes::Restart::Required, now).await?;
    super::audit::record(
        conn,
        super::audit::Entry {
            actor,
            action,
            target: &format!("{} on {node}", locale.tag),
            before: None,
            after: Some(serde_json::json!({ "node": node, "locale": locale.tag })),
        },
        now,
    )
    .await
}
