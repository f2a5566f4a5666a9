//! The certificate trust store (TS-3, TS-7).

use std::path::Path;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqlitePool};

use crate::error::AppResult;

/// Every trusted certificate, as DER.
pub async fn anchors(pool: &SqlitePool) -> AppResult<Vec<CertificateDer<'static>>> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT der FROM trusted_certificates ORDER BY id")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(CertificateDer::from).collect())
}

/// The anchors of a data directory's database, opened read-only and without
/// migrations, for `check` beside (or without) a running service. A database
/// from before the trust store existed has none.
pub async fn read_only_anchors(db: &Path) -> AppResult<Vec<CertificateDer<'static>>> {
    let url = format!("sqlite://{}", db.display());
    let mut conn = SqliteConnectOptions::from_str(&url)?
        .read_only(true)
        .connect()
        .await?;
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'trusted_certificates'",
    )
    .fetch_one(&mut conn)
    .await?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT der FROM trusted_certificates ORDER BY id")
        .fetch_all(&mut conn)
        .await?;
    Ok(rows.into_iter().map(CertificateDer::from).collect())
}

/// Adds a certificate unless it is already there; returns whether it was new.
pub async fn insert(
    pool: &SqlitePool,
    der: &[u8],
    info: &crate::tls::certinfo::CertInfo,
    actor: &str,
    now: i64,
) -> AppResult<bool> {
    let done = sqlx::query(
        "INSERT INTO trusted_certificates
             (sha256, der, subject, issuer, not_before, not_after, added_at, added_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(&info.sha256)
    .bind(der)
    .bind(&info.subject)
    .bind(&info.issuer)
    .bind(info.not_before)
    .bind(info.not_after)
    .bind(now)
    .bind(actor)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
