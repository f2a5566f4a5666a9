//! Users: administrators and end users share one table, told apart by role.

use super::Backend;
use sqlx::{AnyConnection, AnyPool, FromRow};

use crate::domain::locale::Locale;
use crate::domain::refusal::UserRefusal;
use crate::domain::user::{Role, Search, SearchField, UserId};
use crate::error::{AppError, AppResult};
use crate::store::sign_ins::SignIn;

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub user_id: String,
    pub role: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: String,
    #[sqlx(try_from = "super::Flag")]
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

pub async fn find_by_user_id(pool: &AnyPool, user_id: &str) -> AppResult<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE user_id = $1");
    Ok(sqlx::query_as::<_, UserRow>(&sql)
        .bind(user_id.trim())
        .fetch_optional(pool)
        .await?)
}

pub async fn find(pool: &AnyPool, id: i64) -> AppResult<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
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

/// The signed-in user with the configuration state and the sign-in under
/// `key`, in one round trip: this runs on every page view. The sign-in is
/// `None` once it has ended (signed out on any node); the whole answer is
/// `None` for a deleted user.
pub async fn find_signed_in(
    pool: &AnyPool,
    id: i64,
    key: &str,
) -> AppResult<Option<(UserRow, ConfigState, Option<SignIn>)>> {
    let sql = format!(
        "SELECT {COLUMNS},
            (SELECT COALESCE(MAX(generation), 0) FROM config_changes) AS generation,
            (SELECT COUNT(*) FROM config_changes
              WHERE generation > (SELECT COALESCE(MIN(engine_generation), 0)
                                  FROM nodes WHERE activated = 1)
                AND EXISTS (SELECT 1 FROM nodes WHERE activated = 1)) AS pending,
            (SELECT COALESCE({concat}, '')
               FROM nodes WHERE activated = 1) AS nodes,
            (SELECT COALESCE(MAX(verdict_seq), 0) FROM gateways) AS verdicts,
            (SELECT s.created_at FROM sign_ins s
              WHERE s.key = $2 AND s.user_id = users.id) AS signed_in_at,
            (SELECT s.seen_at FROM sign_ins s
              WHERE s.key = $2 AND s.user_id = users.id) AS signed_in_seen
         FROM users WHERE id = $1",
        concat = match Backend::of(pool) {
            Backend::Sqlite => "group_concat(name || ':' || engine_generation, ',')",
            Backend::Postgres =>
                "string_agg(name || ':' || engine_generation, ',' ORDER BY name COLLATE \"C\")",
        }
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(key)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    use sqlx::Row;
    let user = UserRow::from_row(&row)?;
    let state = ConfigState {
        generation: row.try_get("generation")?,
        pending: row.try_get("pending")?,
        nodes: row.try_get("nodes")?,
        verdicts: row.try_get("verdicts")?,
    };
    let created_at: Option<i64> = row.try_get("signed_in_at")?;
    let seen_at: Option<i64> = row.try_get("signed_in_seen")?;
    let sign_in = created_at.zip(seen_at).map(|(created_at, seen_at)| SignIn {
        created_at,
        seen_at,
    });
    Ok(Some((user, state, sign_in)))
}

pub async fn count_admins(pool: &AnyPool) -> AppResult<i64> {
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

pub async fn create(pool: &AnyPool, user: NewUser<'_>, now: i64) -> AppResult<i64> {
    let mut tx = super::begin_write(pool).await?;
    let id = sqlx::query_scalar(
        "INSERT INTO users (user_id, role, first_name, last_name, password_hash,
                            must_change_password, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(user.user_id.as_str())
    .bind(user.role.as_str())
    .bind(user.first_name)
    .bind(user.last_name)
    .bind(user.password_hash)
    .bind(super::Flag(user.must_change_password))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Sets a new password hash and bumps the session epoch, which ends every
/// session the user has. Returns the new epoch.
pub async fn set_password(
    pool: &AnyPool,
    id: i64,
    password_hash: &str,
    must_change_password: bool,
    now: i64,
) -> AppResult<i64> {
    let mut tx = super::begin_write(pool).await?;
    let epoch: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET password_hash = $2, must_change_password = $3,
                          session_epoch = session_epoch + 1, updated_at = $4
         WHERE id = $1 RETURNING session_epoch",
    )
    .bind(id)
    .bind(password_hash)
    .bind(super::Flag(must_change_password))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    epoch.ok_or(AppError::NotFound)
}

// ------------------------------------------------------------ End User (US-1)

/// An end user as the End User pages show and edit them.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct EndUserRow {
    pub id: i64,
    pub user_id: String,
    pub first_name: String,
    pub last_name: String,
    pub mailbox: Option<String>,
    pub node: Option<String>,
    pub locale: String,
    #[sqlx(try_from = "super::Flag")]
    pub calendar_enabled: bool,
}

const END_USER_COLUMNS: &str =
    "id, user_id, first_name, last_name, mailbox, node, locale, calendar_enabled";

/// One page of Find and List, and how many end users match in all.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    pub rows: Vec<EndUserRow>,
    pub total: i64,
}

/// The index to use, the WHERE clause (over `users`, without the role)
/// and its bound values for a search. Every form is answered from an
/// index. On SQLite: the NOCASE indexes for prefixes (a range, see
/// `Search::prefix_range`), the trigram table `users_fts` for substrings.
/// On PostgreSQL: `LIKE` on the lower-cased text, which its pattern
/// indexes answer for prefixes and its trigram indexes for substrings.
/// Column names come from `SearchField`, never from the request.
fn search_filter(backend: Backend, search: &Search) -> (&'static str, String, Vec<String>) {
    match (backend, search) {
        (_, Search::All) => ("", String::new(), Vec::new()),
        (Backend::Sqlite, Search::BeginsWith(field, text)) => {
            let column = field.as_str();
            // With statistics (ANALYZE) SQLite may walk the user_id index
            // for its order and test every row's name instead: quick for a
            // common prefix, a walk of every user for a rare one. Naming the
            // name's index keeps every prefix search bounded by its matches.
            let index = match field {
                SearchField::UserId => " INDEXED BY users_user_id_role",
                SearchField::FirstName => " INDEXED BY users_first_name",
                SearchField::LastName => " INDEXED BY users_last_name",
            };
            // user_id is declared NOCASE; the names carry NOCASE on their
            // indexes only, so the comparison must name the collation.
            let (low, high) = Search::prefix_range(text);
            (
                index,
                format!(" AND {column} >= $1 COLLATE NOCASE AND {column} < $2 COLLATE NOCASE"),
                vec![low, high],
            )
        }
        (Backend::Sqlite, Search::Contains(field, text)) => (
            "",
            format!(
                " AND id IN (SELECT rowid FROM users_fts WHERE users_fts.{} MATCH $1)",
                field.as_str()
            ),
            vec![Search::fts_phrase(text)],
        ),
        // `lower` under the "C" collation folds ASCII letters only, as
        // SQLite's NOCASE does, so the text is folded the same way: "Øde"
        // finds Ødegaard on both, and lowering the Ø would find nobody.
        (Backend::Postgres, Search::BeginsWith(field, text)) => (
            "",
            format!(" AND lower({} COLLATE \"C\") LIKE $1", field.as_str()),
            vec![format!("{}%", like_escaped(&text.to_ascii_lowercase()))],
        ),
        (Backend::Postgres, Search::Contains(field, text)) => (
            "",
            format!(" AND lower({} COLLATE \"C\") LIKE $1", field.as_str()),
            vec![format!("%{}%", like_escaped(&text.to_ascii_lowercase()))],
        ),
    }
}

/// `text` matched literally by `LIKE` (PostgreSQL's escape is `\`).
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The page query and the count query for a search on `backend`, as run;
/// public so a test can check their query plans.
pub fn search_sql(backend: Backend, search: &Search) -> (String, String, Vec<String>) {
    if *search == Search::All {
        // Every end user: the few administrators are set aside by id, so
        // the walk to a deep page reads the covering user_id index alone
        // (reading each row for its role made the last page take ~35 ms
        // at 45,000 users, ~10 ms this way), and the count is the table's
        // (from its smallest index) less the administrators. Finding the
        // administrators reads the table once: no index holds the role.
        let page = format!(
            "SELECT {END_USER_COLUMNS} FROM users WHERE id IN (
                 SELECT id FROM users
                 WHERE id NOT IN (SELECT id FROM users WHERE role = 'admin')
                 ORDER BY user_id LIMIT $1 OFFSET $2)
             ORDER BY user_id"
        );
        let count = "SELECT (SELECT COUNT(*) FROM users)
                          - (SELECT COUNT(*) FROM users WHERE role = 'admin')"
            .to_owned();
        return (page, count, Vec::new());
    }
    let (index, filter, binds) = search_filter(backend, search);
    let n = binds.len();
    // The page's ids first, then their rows: for a prefix search the inner
    // query reads the name's covering index only, so a common prefix (6,000
    // matches) costs a sort of index entries, not a read of 6,000 rows.
    let page = format!(
        "SELECT {END_USER_COLUMNS} FROM users WHERE id IN (
             SELECT id FROM users{index} WHERE role = 'end_user'{filter}
             ORDER BY user_id LIMIT ${} OFFSET ${})
         ORDER BY user_id",
        n + 1,
        n + 2
    );
    let count = match (backend, search) {
        // Counted in the full-text index alone, less the administrators
        // among the matches (their partial index), without reading a row.
        (Backend::Sqlite, Search::Contains(field, _)) => format!(
            "SELECT COUNT(*) FROM users_fts WHERE users_fts.{} MATCH $1
               AND rowid NOT IN (SELECT id FROM users WHERE role = 'admin')",
            field.as_str()
        ),
        _ => format!("SELECT COUNT(*) FROM users{index} WHERE role = 'end_user'{filter}"),
    };
    (page, count, binds)
}

/// Find and List: one page of end users matching `search`, by user ID.
pub async fn search_end_users(
    pool: &AnyPool,
    search: &Search,
    offset: i64,
    limit: i64,
) -> AppResult<SearchPage> {
    let (page_sql, count_sql, binds) = search_sql(Backend::of(pool), search);
    let mut page = sqlx::query_as::<_, EndUserRow>(&page_sql);
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    for value in &binds {
        page = page.bind(value.as_str());
        count = count.bind(value.as_str());
    }
    // The page and the count on two connections at once: each reads the
    // same index entries, and together they take the time of the slower.
    let (rows, total) = tokio::join!(
        page.bind(limit).bind(offset).fetch_all(pool),
        count.fetch_one(pool)
    );
    Ok(SearchPage {
        rows: rows?,
        total: total?,
    })
}

pub async fn find_end_user(pool: &AnyPool, id: i64) -> AppResult<Option<EndUserRow>> {
    let sql = format!("SELECT {END_USER_COLUMNS} FROM users WHERE id = $1 AND role = 'end_user'");
    Ok(sqlx::query_as::<_, EndUserRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// What the End User form saves, parsed.
#[derive(Debug, Clone)]
pub struct EndUserInput {
    pub user_id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub mailbox: Option<String>,
    pub node: Option<String>,
    pub locale: Locale,
    pub calendar_enabled: bool,
}

impl EndUserInput {
    fn audit_json(&self) -> serde_json::Value {
        serde_json::json!({
            "user_id": self.user_id.as_str(),
            "first_name": self.first_name,
            "last_name": self.last_name,
            "mailbox": self.mailbox,
            "node": self.node,
            "locale": self.locale.tag,
            "calendar_enabled": self.calendar_enabled,
        })
    }
}

impl EndUserRow {
    fn audit_json(&self) -> serde_json::Value {
        serde_json::json!({
            "user_id": self.user_id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "mailbox": self.mailbox,
            "node": self.node,
            "locale": self.locale,
            "calendar_enabled": self.calendar_enabled,
        })
    }
}

/// The unique index on `users.user_id` refused the value: say so beside it.
fn duplicate(error: AppError) -> AppError {
    error.on_constraint("users.user_id", UserRefusal::UserIdTaken)
}

/// The rules that depend on the database, checked inside the write
/// transaction so a node or locale removed meanwhile cannot slip through:
/// the node exists, and the locale is installed on every node (LO-1).
async fn check_placement(conn: &mut AnyConnection, input: &EndUserInput) -> AppResult<()> {
    if let Some(node) = &input.node {
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE name = $1")
            .bind(node)
            .fetch_optional(&mut *conn)
            .await?;
        if known.is_none() {
            return Err(AppError::refused(UserRefusal::UnknownNode {
                node: node.clone(),
            }));
        }
    }
    if let Some(refusal) = super::locales::unusable(conn, &input.locale).await? {
        return Err(AppError::refused(refusal));
    }
    Ok(())
}

/// Creates an end user with its audit entry. Users are live configuration:
/// no restart record.
pub async fn create_end_user(
    pool: &AnyPool,
    input: &EndUserInput,
    password_hash: &str,
    actor: &str,
    now: i64,
) -> AppResult<i64> {
    let mut tx = super::begin_write(pool).await?;
    check_placement(&mut tx, input).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (user_id, role, first_name, last_name, password_hash, mailbox, node,
                            locale, calendar_enabled, created_at, updated_at)
         VALUES ($1, 'end_user', $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(input.user_id.as_str())
    .bind(&input.first_name)
    .bind(&input.last_name)
    .bind(password_hash)
    .bind(&input.mailbox)
    .bind(&input.node)
    .bind(input.locale.tag)
    .bind(super::Flag(input.calendar_enabled))
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| duplicate(e.into()))?;
    super::audit::record(
        &mut tx,
        super::audit::Entry {
            actor,
            action: "end_user.create",
            target: input.user_id.as_str(),
            before: None,
            after: Some(input.audit_json()),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

async fn end_user_in(conn: &mut AnyConnection, id: i64) -> AppResult<EndUserRow> {
    let sql = format!("SELECT {END_USER_COLUMNS} FROM users WHERE id = $1 AND role = 'end_user'");
    sqlx::query_as::<_, EndUserRow>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(AppError::NotFound)
}

/// Saves the End User form over the stored user, with its audit entry.
pub async fn update_end_user(
    pool: &AnyPool,
    id: i64,
    input: &EndUserInput,
    actor: &str,
    now: i64,
) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    let before = end_user_in(&mut tx, id).await?;
    check_placement(&mut tx, input).await?;
    sqlx::query(
        "UPDATE users SET user_id = $2, first_name = $3, last_name = $4, mailbox = $5,
                          node = $6, locale = $7, calendar_enabled = $8, updated_at = $9
         WHERE id = $1",
    )
    .bind(id)
    .bind(input.user_id.as_str())
    .bind(&input.first_name)
    .bind(&input.last_name)
    .bind(&input.mailbox)
    .bind(&input.node)
    .bind(input.locale.tag)
    .bind(super::Flag(input.calendar_enabled))
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| duplicate(e.into()))?;
    super::audit::record(
        &mut tx,
        super::audit::Entry {
            actor,
            action: "end_user.update",
            target: input.user_id.as_str(),
            before: Some(before.audit_json()),
            after: Some(input.audit_json()),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes an end user. Their sessions end with the row: every request
/// reads the signed-in user, and a missing user signs the session out.
pub async fn delete_end_user(
    pool: &AnyPool,
    id: i64,
    actor: &str,
    now: i64,
) -> AppResult<EndUserRow> {
    let mut tx = super::begin_write(pool).await?;
    let before = end_user_in(&mut tx, id).await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    super::audit::record(
        &mut tx,
        super::audit::Entry {
            actor,
            action: "end_user.delete",
            target: &before.user_id,
            before: Some(before.audit_json()),
            after: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(before)
}

/// Sets another user's password (an administrator's reset) with an audit
/// entry, in one transaction; the epoch moves, so their sessions end.
/// `role` must match the stored user's, so an End User page cannot reset
/// an administrator's password or the other way round.
pub async fn reset_password(
    pool: &AnyPool,
    id: i64,
    role: Role,
    password_hash: &str,
    must_change_password: bool,
    actor: &str,
    now: i64,
) -> AppResult<()> {
    let mut tx = super::begin_write(pool).await?;
    let user_id: Option<String> = sqlx::query_scalar(
        "UPDATE users SET password_hash = $3, must_change_password = $4,
                          session_epoch = session_epoch + 1, updated_at = $5
         WHERE id = $1 AND role = $2 RETURNING user_id",
    )
    .bind(id)
    .bind(role.as_str())
    .bind(password_hash)
    .bind(super::Flag(must_change_password))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let user_id = user_id.ok_or(AppError::NotFound)?;
    let action = match role {
        Role::Admin => "app_user.set_password",
        Role::EndUser => "end_user.set_password",
    };
    super::audit::record(
        &mut tx,
        super::audit::Entry {
            actor,
            action,
            target: &user_id,
            before: None,
            after: Some(serde_json::json!({
                "password": "[changed]",
                "must_change_password": must_change_password,
            })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------- Application User (US-5)

#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct AdminRow {
    pub id: i64,
    pub user_id: String,
    #[sqlx(try_from = "super::Flag")]
    pub must_change_password: bool,
    pub created_at: i64,
}

/// The administrators, by user ID (a handful: reading them all is cheap).
pub async fn list_admins(pool: &AnyPool) -> AppResult<Vec<AdminRow>> {
    Ok(sqlx::query_as::<_, AdminRow>(
        "SELECT id, user_id, must_change_password, created_at FROM users
         WHERE role = 'admin' ORDER BY user_id",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn find_admin(pool: &AnyPool, id: i64) -> AppResult<Option<AdminRow>> {
    Ok(sqlx::query_as::<_, AdminRow>(
        "SELECT id, user_id, must_change_password, created_at FROM users
         WHERE id = $1 AND role = 'admin'",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Creates an administrator who must change the password at first
/// sign-in, as the first administrator does (SY-1).
pub async fn create_admin(
    pool: &AnyPool,
    user_id: &UserId,
    password_hash: &str,
    actor: &str,
    now: i64,
) -> AppResult<i64> {
    let mut tx = super::begin_write(pool).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (user_id, role, password_hash, must_change_password, created_at,
                            updated_at)
         VALUES ($1, 'admin', $2, 1, $3, $3) RETURNING id",
    )
    .bind(user_id.as_str())
    .bind(password_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| duplicate(e.into()))?;
    super::audit::record(
        &mut tx,
        super::audit::Entry {
            actor,
            action: "app_user.create",
            target: user_id.as_str(),
            before: None,
            after: Some(serde_json::json!({ "user_id": user_id.as_str() })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Deletes an administrator, never the last one and never the one asking
/// (`actor_id`). The count and the delete share one BEGIN IMMEDIATE
/// transaction, so two administrators deleting each other at once cannot
/// leave none.
pub async fn delete_admin(
    pool: &AnyPool,
    id: i64,
    actor_id: i64,
    actor: &str,
    now: i64,
) -> AppResult<AdminRow> {
    let mut tx = super::begin_write(pool).await?;
    let row = sqlx::query_as::<_, AdminRow>(
        "SELECT id, user_id, must_change_password, created_at FROM users
         WHERE id = $1 AND role = 'admin'",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::NotFound)?;
    if id == actor_id {
        return Err(AppError::refused(UserRefusal::DeleteSelf));
    }
    let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
        .fetch_one(&mut *tx)
        .await?;
    if admins <= 1 {
        return Err(AppError::refused(UserRefusal::LastAdmin));
    }
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    super::audit::record(
        &mut tx,
        super::audit::Entry {
            actor,
            action: "app_user.delete",
            target: &row.user_id,
            before: Some(serde_json::json!({ "user_id": row.user_id })),
            after: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The locales of the users whose mailboxes are gateways' test mailboxes
/// (lower-cased mailbox -> locale tag): the troubleshooter opens a WebDAV
/// test mailbox's calendar under its folder name in that locale (LO-3).
pub async fn test_mailbox_locales(
    pool: &AnyPool,
) -> AppResult<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT lower(u.mailbox), u.locale FROM users u
         JOIN gateways g ON g.test_mailbox IS NOT NULL AND lower(u.mailbox) = lower(g.test_mailbox)",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}
