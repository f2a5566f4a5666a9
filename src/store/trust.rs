//! The certificate trust store (TS-3, TS-7).

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, FromRow};

use crate::error::{AppError, AppResult};
use crate::tls::certinfo::{CertInfo, colon_fingerprint};

use super::changes::{self, Restart};
use super::{audit, begin_write};

/// Every trusted certificate, as DER.
pub async fn anchors(pool: &AnyPool) -> AppResult<Vec<CertificateDer<'static>>> {
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
    pool: &AnyPool,
    der: &[u8],
    info: &CertInfo,
    actor: &str,
    now: i64,
) -> AppResult<bool> {
    let done = sqlx::query(
        "INSERT INTO trusted_certificates
             (sha256, der, subject, issuer, not_before, not_after, added_at, added_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
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

/// One stored certificate, as the Certificate Management page lists it.
#[derive(Debug, Clone, FromRow)]
pub struct TrustedRow {
    pub id: i64,
    pub sha256: String,
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    pub added_at: i64,
    pub added_by: String,
}

const COLUMNS: &str = "id, sha256, der, subject, issuer, not_before, not_after, added_at, added_by";

/// Every trusted certificate, by subject.
pub async fn list(pool: &AnyPool) -> AppResult<Vec<TrustedRow>> {
    let sql = format!("SELECT {COLUMNS} FROM trusted_certificates ORDER BY subject, id");
    Ok(sqlx::query_as::<_, TrustedRow>(&sql)
        .fetch_all(pool)
        .await?)
}

pub async fn find(pool: &AnyPool, id: i64) -> AppResult<Option<TrustedRow>> {
    let sql = format!("SELECT {COLUMNS} FROM trusted_certificates WHERE id = $1");
    Ok(sqlx::query_as::<_, TrustedRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The SHA-256 fingerprints (lowercase hex) of every trusted certificate.
pub async fn fingerprints(pool: &AnyPool) -> AppResult<HashSet<String>> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM trusted_certificates")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// A certificate parsed and checked at the edge, ready to be trusted.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub der: Vec<u8>,
    pub info: CertInfo,
}

/// What one import did: the subjects added, and those already trusted.
#[derive(Debug, Default)]
pub struct Imported {
    pub added: Vec<String>,
    pub already: Vec<String>,
}

/// "AB:CD:EF:01:23:45:67:89…": enough of the fingerprint for a summary line.
fn short_fingerprint(sha256: &str) -> String {
    let full = colon_fingerprint(sha256);
    match full.get(..23) {
        Some(head) if full.len() > 23 => format!("{head}…"),
        _ => full,
    }
}

/// Trusts `certs` in one transaction: all or nothing. A certificate already
/// present is reported, not duplicated. Each one added records its restart
/// entry (SV-3) and audit entry in the same transaction.
pub async fn import(
    pool: &AnyPool,
    certs: &[Candidate],
    actor: &str,
    now: i64,
) -> AppResult<Imported> {
    let mut tx = begin_write(pool).await?;
    let mut imported = Imported::default();
    for cert in certs {
        let info = &cert.info;
        let done = sqlx::query(
            "INSERT INTO trusted_certificates
                 (sha256, der, subject, issuer, not_before, not_after, added_at, added_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&info.sha256)
        .bind(&cert.der)
        .bind(&info.subject)
        .bind(&info.issuer)
        .bind(info.not_before)
        .bind(info.not_after)
        .bind(now)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            imported.already.push(info.subject.clone());
            continue;
        }
        let summary = format!(
            "Imported certificate {} (SHA-256 {})",
            info.subject,
            short_fingerprint(&info.sha256)
        );
        changes::record(&mut tx, &summary, actor, Restart::Required, now).await?;
        audit::record(
            &mut tx,
            audit::Entry {
                actor,
                action: "certificate imported",
                target: &info.subject,
                before: None,
                after: Some(json!({
                    "subject": info.subject,
                    "issuer": info.issuer,
                    "not_before": info.not_before,
                    "not_after": info.not_after,
                    "sha256": colon_fingerprint(&info.sha256),
                })),
            },
            now,
        )
        .await?;
        imported.added.push(info.subject.clone());
    }
    tx.commit().await?;
    Ok(imported)
}

/// Removes a trusted certificate, recording the restart entry and the audit
/// entry in the same transaction; returns what was removed.
pub async fn delete(pool: &AnyPool, id: i64, actor: &str, now: i64) -> AppResult<TrustedRow> {
    let mut tx = begin_write(pool).await?;
    let sql = format!("DELETE FROM trusted_certificates WHERE id = $1 RETURNING {COLUMNS}");
    let row = sqlx::query_as::<_, TrustedRow>(&sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(AppError::NotFound)?;
    let summary = format!(
        "Deleted certificate {} (SHA-256 {})",
        row.subject,
        short_fingerprint(&row.sha256)
    );
    changes::record(&mut tx, &summary, actor, Restart::Required, now).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "certificate deleted",
            target: &row.subject,
            before: Some(json!({
                "subject": row.subject,
                "issuer": row.issuer,
                "not_before": row.not_before,
                "not_after": row.not_after,
                "sha256": colon_fingerprint(&row.sha256),
            })),
            after: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_fingerprints_keep_eight_bytes() {
        let hex = "ab".repeat(32);
        assert_eq!(short_fingerprint(&hex), "AB:AB:AB:AB:AB:AB:AB:AB…");
    }
}
