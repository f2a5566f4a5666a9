//! `db copy` (CL-2): a SQLite installation into an empty PostgreSQL
//! database, every table in one transaction, ids kept and the target's
//! identity sequences moved past them so new rows do not collide.

use futures_util::TryStreamExt;
use sqlx::{AnyPool, Row};

use crate::error::{AppError, AppResult};

use super::{Backend, begin_write};

/// Every table of the schema, parents before the tables that refer to
/// them. tests/it/schema.rs checks that no table is missing here.
pub const TABLES: &[&str] = &[
    "users",
    "nodes",
    "gateways",
    "exchange_credentials",
    "outbound_proxy",
    "secrets_meta",
    "config_changes",
    "audit_log",
    "trusted_certificates",
    "engine_commands",
    "engine_snapshots",
    "service_parameters",
    "node_locales",
    "bulk_uploads",
    "calendar_presence",
    "presence_events",
    "api_tokens",
    "gateway_health",
    "engine_minutes",
    "sign_ins",
    "login_failures",
    "login_lockouts",
    "redundancy_groups",
    "node_leases",
];

/// Rows per INSERT: well under PostgreSQL's 65,535 parameters for the
/// widest table.
const BATCH: usize = 500;

#[derive(Debug)]
pub enum CopyOutcome {
    /// Rows copied per table, in `TABLES` order.
    Copied(Vec<(&'static str, u64)>),
    /// The target already holds rows in these tables: nothing was written.
    TargetNotEmpty(Vec<(&'static str, i64)>),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Blob,
}

enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

/// The target's columns of `table` with their kinds, in order.
async fn columns(target: &AnyPool, table: &str) -> AppResult<Vec<(String, Kind, bool)>> {
    let rows = sqlx::query(
        "SELECT column_name::text, data_type::text, is_identity::text
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(target)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get(0)?;
        let data_type: String = row.try_get(1)?;
        let identity: String = row.try_get(2)?;
        let kind = match data_type.as_str() {
            "bigint" | "integer" | "smallint" => Kind::Int,
            "bytea" => Kind::Blob,
            "text" | "character varying" => Kind::Text,
            other => {
                return Err(AppError::Config(format!(
                    "db copy: column {table}.{name} has the type {other}, which the copy does \
                     not know"
                )));
            }
        };
        out.push((name, kind, identity == "YES"));
    }
    if out.is_empty() {
        return Err(AppError::Config(format!(
            "db copy: the target has no table {table}"
        )));
    }
    Ok(out)
}

/// Copies every table of `source` (SQLite) into `target` (PostgreSQL),
/// both already migrated to the same schema.
pub async fn copy(source: &AnyPool, target: &AnyPool) -> AppResult<CopyOutcome> {
    if Backend::of(source) != Backend::Sqlite || Backend::of(target) != Backend::Postgres {
        return Err(AppError::Config(
            "db copy copies a SQLite database into a PostgreSQL one".to_owned(),
        ));
    }
    let mut tx = begin_write(target).await?;
    let mut holding = Vec::new();
    for table in TABLES {
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if count > 0 {
            holding.push((*table, count));
        }
    }
    if !holding.is_empty() {
        return Ok(CopyOutcome::TargetNotEmpty(holding));
    }
    let mut copied = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let columns = columns(target, table).await?;
        let names: Vec<&str> = columns.iter().map(|(n, _, _)| n.as_str()).collect();
        let list = names.join(", ");
        let select = format!("SELECT {list} FROM {table}");
        let mut rows = sqlx::query(&select).fetch(source);
        let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(BATCH);
        let mut count = 0u64;
        loop {
            let next = rows.try_next().await?;
            let done = next.is_none();
            if let Some(row) = next {
                let mut cells = Vec::with_capacity(columns.len());
                for (i, (_, kind, _)) in columns.iter().enumerate() {
                    cells.push(match kind {
                        Kind::Int => Cell::Int(row.try_get(i)?),
                        Kind::Text => Cell::Text(row.try_get(i)?),
                        Kind::Blob => Cell::Blob(row.try_get(i)?),
                    });
                }
                batch.push(cells);
            }
            if batch.len() == BATCH || (done && !batch.is_empty()) {
                count += insert(&mut tx, table, &list, columns.len(), &batch).await?;
                batch.clear();
            }
            if done {
                break;
            }
        }
        // New rows follow the copied ids.
        for (name, _, identity) in &columns {
            if *identity {
                sqlx::query(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{name}'),
                                   COALESCE((SELECT MAX({name}) FROM {table}), 0) + 1, false)::text"
                ))
                .fetch_one(&mut *tx)
                .await?;
            }
        }
        copied.push((*table, count));
    }
    tx.commit().await?;
    Ok(CopyOutcome::Copied(copied))
}

async fn insert(
    tx: &mut sqlx::AnyConnection,
    table: &str,
    list: &str,
    width: usize,
    batch: &[Vec<Cell>],
) -> AppResult<u64> {
    let mut values = Vec::with_capacity(batch.len());
    for r in 0..batch.len() {
        let row: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
        values.push(format!("({})", row.join(", ")));
    }
    let sql = format!(
        "INSERT INTO {table} ({list}) OVERRIDING SYSTEM VALUE VALUES {}",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for row in batch {
        for cell in row {
            query = match cell {
                Cell::Int(v) => query.bind(*v),
                Cell::Text(v) => query.bind(v.as_deref()),
                Cell::Blob(v) => query.bind(v.as_deref()),
            };
        }
    }
    Ok(query.execute(&mut *tx).await?.rows_affected())
}
