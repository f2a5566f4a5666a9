//! Bulk Administration (US-4): checking and applying a CSV file of end users
//! in one transaction, exporting them, pending uploads awaiting "Apply", and
//! locale synchronization. Users are live configuration (SV-3): none of this
//! records a restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, AnyPool, FromRow};

use crate::domain::bulk::{self, Existing, ExportRow, FileError, Known, Report, UserRecord};
use crate::domain::locale::{CATALOGUE, DEFAULT, Locale};
use crate::domain::user::{Role, UserId};
use crate::error::{AppError, AppResult};

use super::{Backend, audit, locales};

/// A checked file waits this long for "Apply".
pub const PENDING_SECS: i64 = 3600;

/// One bulk import or check at a time in this process (one per node): each
/// holds a 16 MiB file, its parsed rows and seconds of CPU, so several at
/// once multiply the memory (four reached 1.7 GB) for no gain, and the
/// single applying transaction serializes the writes anyway. In the
/// application state, not a static, so each `AppState` (each test app) has
/// its own.
#[derive(Clone)]
pub struct ImportGate(Arc<Semaphore>);

impl Default for ImportGate {
    fn default() -> Self {
        ImportGate(Arc::new(Semaphore::new(1)))
    }
}

impl ImportGate {
    /// The right to import now, or None while another import runs here.
    pub fn try_start(&self) -> Option<Work> {
        let permit = self.0.clone().try_acquire_owned().ok()?;
        Some(Work {
            running: Running {
                stop: Arc::new(AtomicBool::new(false)),
                _permit: Arc::new(permit),
            },
        })
    }

    /// Whether an import holds the gate (tests wait on this).
    pub fn is_busy(&self) -> bool {
        self.0.available_permits() == 0
    }
}

/// What the blocking thread holds of a running import: the stop flag, and a
/// share of the gate's permit, so the gate opens only once that thread has
/// stopped too, not merely when the request ended.
#[derive(Clone)]
struct Running {
    stop: Arc<AtomicBool>,
    _permit: Arc<OwnedSemaphorePermit>,
}

/// A running import, owned by whoever asked for it (the request handler's
/// future). Dropping it, when the request ends in any way, the client
/// leaving or the request timeout included, tells the blocking work to
/// stop: nothing is written by a stopped import.
pub struct Work {
    running: Running,
}

impl Work {
    /// An import not gated by any service: the shell's, one per process.
    pub fn alone() -> Work {
        // A fresh gate nobody else holds: its permit is always there.
        ImportGate::default()
            .try_start()
            .unwrap_or_else(|| unreachable!("a new gate is open"))
    }

    fn stopped(&self) -> bool {
        self.running.stop.load(Ordering::Relaxed)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        self.running.stop.store(true, Ordering::Relaxed);
    }
}

/// Why a file was not applied: it cannot be read, or rows are in error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    File(FileError),
    Rows(Report),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub created: usize,
    pub updated: usize,
    /// Of `updated`, rows that changed nothing and were not written.
    pub unchanged: usize,
    /// The report the file was applied by (checked in the transaction).
    pub report: Report,
}

impl Applied {
    /// "120 created, 30 updated": the audit entry and the confirmations.
    pub fn summary(&self) -> String {
        format!("{} created, {} updated", self.created, self.updated)
    }
}

#[derive(FromRow)]
struct UserState {
    user_id: String,
    role: String,
    first_name: String,
    last_name: String,
    mailbox: Option<String>,
    node: Option<String>,
    locale: String,
    #[sqlx(try_from = "super::Flag")]
    calendar_enabled: bool,
}

/// What a file is checked against, read on `conn` (inside the applying
/// transaction, so the check and the writes see the same database).
async fn known(conn: &mut AnyConnection) -> AppResult<Known> {
    let nodes: Vec<String> = sqlx::query_scalar("SELECT name FROM nodes ORDER BY name")
        .fetch_all(&mut *conn)
        .await?;
    let usable_locales: HashSet<&'static str> = locales::usable(&mut *conn)
        .await?
        .into_iter()
        .map(|l| l.tag)
        .collect();
    let mut locale_reasons = HashMap::new();
    for locale in CATALOGUE.iter().filter(|l| !usable_locales.contains(l.tag)) {
        if let Some(refusal) = locales::unusable(&mut *conn, locale).await? {
            locale_reasons.insert(locale.tag, refusal.to_string());
        }
    }
    let rows = sqlx::query_as::<_, UserState>(
        "SELECT user_id, role, first_name, last_name, mailbox, node, locale, calendar_enabled
         FROM users",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut users = HashMap::with_capacity(rows.len());
    for row in rows {
        let role = Role::parse(&row.role)
            .ok_or_else(|| AppError::Config(format!("unknown role {:?}", row.role)))?;
        users.insert(
            row.user_id.to_lowercase(),
            Existing {
                role,
                first_name: row.first_name,
                last_name: row.last_name,
                mailbox: row.mailbox,
                node: row.node,
                locale: row.locale,
                calendar: row.calendar_enabled,
            },
        );
    }
    Ok(Known {
        nodes,
        usable_locales,
        locale_reasons,
        users,
    })
}

/// Checks a file against the database as it is now; writes nothing.
pub async fn check(
    pool: &AnyPool,
    bytes: Bytes,
    work: &Work,
) -> AppResult<Result<Report, FileError>> {
    if bytes.len() > bulk::MAX_BYTES {
        return Ok(Err(FileError::TooLarge));
    }
    let mut conn = pool.acquire().await?;
    let known = known(&mut conn).await?;
    drop(conn);
    validate_off_thread(bytes, known, work).await
}

/// Reading 16 MiB of CSV takes CPU time: off the async threads, like
/// password hashing, so other requests are not stalled meanwhile. `bytes`
/// is shared, not copied. The thread stops early when `work` is dropped,
/// and holds the import gate until it has.
async fn validate_off_thread(
    bytes: Bytes,
    known: Known,
    work: &Work,
) -> AppResult<Result<Report, FileError>> {
    let running = work.running.clone();
    tokio::task::spawn_blocking(move || {
        let report = bulk::validate_until(&bytes, &known, &running.stop);
        // The file and what was read of the database go before the gate
        // opens, so the next import does not start beside them.
        drop((bytes, known));
        drop(running);
        report
    })
    .await
    .map_err(|e| AppError::Internal(e.into()))
}

/// A password hash that no password verifies: an Argon2id hash (the
/// format every stored hash has, so sign-in treats it like any other) of a
/// random secret that is dropped at once. Users created by an import get a
/// password from an administrator later. One hash serves a whole import:
/// 45,000 Argon2 runs would take many minutes, and with the secret gone
/// sharing the hash reveals nothing.
pub async fn unusable_password_hash() -> AppResult<String> {
    use rand::RngCore;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret = SecretString::from(hex(&secret));
    crate::secrets::password::hash(secret).await
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Rows written per statement: a statement per row spends most of its time
/// crossing to SQLite's worker thread and back, so rows go in batches (10
/// parameters each, far below SQLite's limit per statement).
const BATCH: usize = 256;

/// The upsert for `rows` rows: a new user ID is created as an end user, an
/// existing end user is updated with the password left alone. The stored
/// spelling of an existing ID is kept.
fn upsert_sql(rows: usize) -> String {
    let values = (0..rows)
        .map(|r| {
            let n = r * 10;
            format!(
                "(${}, 'end_user', ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8,
                n + 9,
                n + 10
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO users (user_id, role, first_name, last_name, password_hash, mailbox,
                            node, locale, calendar_enabled, created_at, updated_at)
         VALUES {values}
         ON CONFLICT (user_id) DO UPDATE SET
             first_name = excluded.first_name, last_name = excluded.last_name,
             mailbox = excluded.mailbox, node = excluded.node, locale = excluded.locale,
             calendar_enabled = excluded.calendar_enabled, updated_at = excluded.updated_at
         WHERE users.role = 'end_user'"
    )
}

/// Checks the file again against the database inside one `BEGIN IMMEDIATE`
/// transaction and, only if every row is good, writes all of it there: the
/// users (created with `password_hash`, or updated with the password
/// untouched), the audit entry, and the removal of the pending upload
/// `pending` names. Nothing is written when anything is refused.
pub async fn apply(
    pool: &AnyPool,
    bytes: Bytes,
    password_hash: &str,
    actor: &str,
    now: i64,
    pending: Option<&str>,
    work: &Work,
) -> AppResult<Result<Applied, Refused>> {
    if bytes.len() > bulk::MAX_BYTES {
        return Ok(Err(Refused::File(FileError::TooLarge)));
    }
    // Hashed now, so the file need not be kept until the audit entry.
    let sha256 = sha256_hex(&bytes);
    let mut tx = super::begin_write(pool).await?;
    let known = known(&mut tx).await?;
    let report = match validate_off_thread(bytes, known, work).await? {
        Ok(report) if report.is_clean() => report,
        Ok(report) => return Ok(Err(Refused::Rows(report))),
        Err(e) => return Ok(Err(Refused::File(e))),
    };
    // Two statements at most (a full batch and the last, shorter one), each
    // prepared once on this connection and reused.
    let writes: Vec<&UserRecord> = report.writes().collect();
    let full_batch = upsert_sql(BATCH);
    for chunk in writes.chunks(BATCH) {
        // A stopped import rolls back (the transaction is dropped unwritten).
        if work.stopped() {
            return Ok(Err(Refused::File(FileError::Stopped)));
        }
        let last_batch;
        let sql = if chunk.len() == BATCH {
            &full_batch
        } else {
            last_batch = upsert_sql(chunk.len());
            &last_batch
        };
        let mut query = sqlx::query(sql);
        for record in chunk {
            query = query
                .bind(record.user_id.as_str())
                .bind(&record.first_name)
                .bind(&record.last_name)
                .bind(password_hash)
                .bind(record.mailbox.as_ref().map(|m| m.as_str()))
                .bind(record.node.as_deref())
                .bind(record.locale)
                .bind(super::Flag(record.calendar))
                .bind(now)
                .bind(now);
        }
        let written = query.execute(&mut *tx).await?.rows_affected();
        // The check above ran under the write lock, so no administrator can
        // have appeared since; refuse rather than trust it.
        if written != chunk.len() as u64 {
            return Err(AppError::Internal(anyhow::anyhow!(
                "bulk import: {written} of {} users written",
                chunk.len()
            )));
        }
    }
    let applied = Applied {
        created: report.created,
        updated: report.updated,
        unchanged: report.unchanged,
        report,
    };
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "Bulk import",
            target: &applied.summary(),
            before: None,
            after: Some(serde_json::json!({
                "created": applied.created,
                "updated": applied.updated,
                "unchanged": applied.unchanged,
                "sha256": sha256,
            })),
        },
        now,
    )
    .await?;
    if let Some(token) = pending {
        // This upload is done with; expired ones go with it.
        sqlx::query("DELETE FROM bulk_uploads WHERE token = $1 OR created_at < $2")
            .bind(token)
            .bind(now - PENDING_SECS)
            .execute(&mut *tx)
            .await?;
    }
    if work.stopped() {
        return Ok(Err(Refused::File(FileError::Stopped)));
    }
    tx.commit().await?;
    Ok(Ok(applied))
}

#[derive(FromRow)]
struct ExportState {
    user_id: String,
    first_name: String,
    last_name: String,
    mailbox: Option<String>,
    node: Option<String>,
    locale: String,
    #[sqlx(try_from = "super::Flag")]
    calendar_enabled: bool,
}

/// Every end user in the import format, sorted by user ID.
pub async fn export(pool: &AnyPool) -> AppResult<Vec<u8>> {
    let rows = sqlx::query_as::<_, ExportState>(
        "SELECT user_id, first_name, last_name, mailbox, node, locale, calendar_enabled
         FROM users WHERE role = 'end_user' ORDER BY user_id",
    )
    .fetch_all(pool)
    .await?;
    bulk::write_csv(rows.iter().map(|r| ExportRow {
        user_id: &r.user_id,
        first_name: &r.first_name,
        last_name: &r.last_name,
        mailbox: r.mailbox.as_deref(),
        node: r.node.as_deref(),
        locale: &r.locale,
        calendar: r.calendar_enabled,
    }))
    .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))
}

// ------------------------------------------------------------ pending uploads

#[derive(Debug, Clone, FromRow)]
pub struct PendingUpload {
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// Keeps a checked file for "Apply" under a new random token, and drops
/// pending uploads older than an hour. Returns the token.
pub async fn save_pending(
    pool: &AnyPool,
    uploaded_by: &str,
    file_name: &str,
    bytes: &[u8],
    now: i64,
) -> AppResult<String> {
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex(&raw);
    let mut tx = super::begin_write(pool).await?;
    sqlx::query("DELETE FROM bulk_uploads WHERE created_at < $1")
        .bind(now - PENDING_SECS)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO bulk_uploads (token, uploaded_by, file_name, bytes, sha256, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&token)
    .bind(uploaded_by)
    .bind(file_name)
    .bind(bytes)
    .bind(sha256_hex(bytes))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// The pending upload `token` names, if `uploaded_by` made it within the
/// last hour: an administrator applies only the file they checked.
pub async fn find_pending(
    pool: &AnyPool,
    token: &str,
    uploaded_by: &str,
    now: i64,
) -> AppResult<Option<PendingUpload>> {
    Ok(sqlx::query_as::<_, PendingUpload>(
        "SELECT file_name, bytes, sha256 FROM bulk_uploads
         WHERE token = $1 AND uploaded_by = $2 AND created_at >= $3",
    )
    .bind(token)
    .bind(uploaded_by)
    .bind(now - PENDING_SECS)
    .fetch_optional(pool)
    .await?)
}

// ------------------------------------------------------ locale synchronization

/// Whose locale to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    Users(Vec<UserId>),
    /// Every end user assigned to this node.
    Node(String),
    /// Every end user whose locale is not installed on every node.
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// Users whose locale changed.
    pub changed: u64,
    /// Users chosen who had that locale already.
    pub already: u64,
}

/// "The user's locale is not one of the JSON array `$1`", in the dialect of
/// `backend`.
fn locale_not_in_json(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "locale NOT IN (SELECT value FROM json_each($1))",
        Backend::Postgres => "locale NOT IN (SELECT json_array_elements_text($1::json))",
    }
}

/// The usable tags as a JSON array, for `locale_not_in_json`.
async fn usable_json(conn: &mut AnyConnection) -> AppResult<String> {
    let tags: Vec<&str> = locales::usable(conn)
        .await?
        .into_iter()
        .map(|l| l.tag)
        .collect();
    Ok(serde_json::to_string(&tags).unwrap_or_else(|_| format!("[\"{DEFAULT}\"]")))
}

/// Sets the locale of the chosen end users in one transaction, after
/// checking (inside it) that the locale is installed on every node, the node
/// is registered, and every user ID names an end user. Err: why nothing was
/// written.
pub async fn sync_locales(
    pool: &AnyPool,
    chosen: &Chosen,
    locale: &Locale,
    actor: &str,
    now: i64,
) -> AppResult<Result<Synced, String>> {
    let mut tx = super::begin_write(pool).await?;
    if let Some(refusal) = locales::unusable(&mut tx, locale).await? {
        return Ok(Err(refusal.to_string()));
    }
    let (changed, total, target) = match chosen {
        Chosen::Users(ids) => {
            let mut unknown = Vec::new();
            let mut admins = Vec::new();
            for id in ids {
                let role: Option<String> =
                    sqlx::query_scalar("SELECT role FROM users WHERE user_id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                match role.as_deref() {
                    None => unknown.push(id.as_str()),
                    Some("end_user") => {}
                    Some(_) => admins.push(id.as_str()),
                }
            }
            if !unknown.is_empty() {
                return Ok(Err(format!(
                    "No end user has the User ID {}: nothing changed.",
                    listed(&unknown)
                )));
            }
            if !admins.is_empty() {
                return Ok(Err(format!(
                    "{} {} an administrator, not an end user: nothing changed.",
                    listed(&admins),
                    if admins.len() == 1 { "is" } else { "are" }
                )));
            }
            let mut changed = 0;
            for id in ids {
                changed += sqlx::query(
                    "UPDATE users SET locale = $2, updated_at = $3
                     WHERE user_id = $1 AND role = 'end_user' AND locale <> $2",
                )
                .bind(id.as_str())
                .bind(locale.tag)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            let target = format!("{} listed", crate::domain::count(ids.len() as i64, "user"));
            (changed, ids.len() as u64, target)
        }
        Chosen::Node(node) => {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT name FROM nodes WHERE name = $1")
                    .bind(node)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Ok(Err(format!(
                    "{node:?} is not a registered node: nothing changed."
                )));
            }
            let total: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM users WHERE role = 'end_user' AND node = $1",
            )
            .bind(node)
            .fetch_one(&mut *tx)
            .await?;
            let changed = sqlx::query(
                "UPDATE users SET locale = $2, updated_at = $3
                 WHERE role = 'end_user' AND node = $1 AND locale <> $2",
            )
            .bind(node)
            .bind(locale.tag)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            (changed, total as u64, format!("all users on {node}"))
        }
        Chosen::Stale => {
            let usable = usable_json(&mut tx).await?;
            let sql = format!(
                "UPDATE users SET locale = $2, updated_at = $3
                 WHERE role = 'end_user' AND {}",
                locale_not_in_json(Backend::of_conn(&tx))
            );
            let changed = sqlx::query(&sql)
                .bind(&usable)
                .bind(locale.tag)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            (
                changed,
                changed,
                "users whose locale is not installed on every node".to_owned(),
            )
        }
    };
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "Locale synchronization",
            target: &format!("{} for {target}", locale.tag),
            before: None,
            after: Some(serde_json::json!({
                "locale": locale.tag,
                "users changed": changed,
            })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(Synced {
        changed,
        already: total.saturating_sub(changed),
    }))
}

/// "a, b and 3 more", for messages about many user IDs.
fn listed(ids: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut text = ids
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    text
}

#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct StaleUser {
    pub user_id: String,
    pub locale: String,
}

/// End users whose locale is not installed on every node (LO-1), the first
/// `limit` by user ID, with how many there are in all.
pub async fn stale_locales(pool: &AnyPool, limit: i64) -> AppResult<(i64, Vec<StaleUser>)> {
    let mut conn = pool.acquire().await?;
    let usable = usable_json(&mut conn).await?;
    let not_usable = locale_not_in_json(Backend::of(pool));
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM users WHERE role = 'end_user' AND {not_usable}"
    ))
    .bind(&usable)
    .fetch_one(&mut *conn)
    .await?;
    let users = sqlx::query_as::<_, StaleUser>(&format!(
        "SELECT user_id, locale FROM users WHERE role = 'end_user' AND {not_usable}
         ORDER BY user_id LIMIT $2"
    ))
    .bind(&usable)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok((total, users))
}

pub async fn count_end_users(pool: &AnyPool) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'end_user'")
            .fetch_one(pool)
            .await?,
    )
}

/// Registered node names, for the "all users on node" choice.
pub async fn node_names(pool: &AnyPool) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT name FROM nodes ORDER BY name")
        .fetch_all(pool)
        .await?)
}
